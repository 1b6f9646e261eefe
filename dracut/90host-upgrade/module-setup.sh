#!/bin/bash
# dracut module "host-upgrade": the initrd side of host-upgrade's restore.
# Included on request only: dracut --add host-upgrade (or add_dracutmodules+=" host-upgrade ").
# HOST_UPGRADE_BIN=PATH takes the binary from PATH instead of the installed one
# (dracut resets PATH; the tests build initrds this way).

check() {
    [[ -x ${HOST_UPGRADE_BIN:-} ]] || require_binaries host-upgrade || return 1
    # Only when asked for.
    return 255
}

depends() {
    echo systemd
    return 0
}

installkernel() {
    # What the RAM medium and KVM need, whatever this host uses today:
    # the next boot may be the one that restores.
    hostonly='' instmods libnvdimm nfit nd_pmem nd_e820 nd_btt dax_pmem device_dax kvm kvm_intel kvm_amd
}

install() {
    if [[ -x ${HOST_UPGRADE_BIN:-} ]]; then
        inst_binary "$HOST_UPGRADE_BIN" /usr/sbin/host-upgrade
    else
        inst_multiple host-upgrade
    fi
    inst_multiple -o ndctl daxctl
    inst_simple "$moddir/host-upgrade-early.service" "$systemdsystemunitdir/host-upgrade-early.service"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd.target host-upgrade-early.service
}
