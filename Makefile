# host-upgrade — see README.md. `make`, `make check`, `make demo`, `make install`.
# `make` builds build/host-upgrade and its man page build/host-upgrade.8.
PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
CC ?= gcc
# libcrypto: sha256 of -readconfig files (libkmod links it already, so no new library at run time)
PKGS = json-c libkmod blkid libsystemd libndctl libdaxctl uuid libcrypto
# libvirt-managed VMs (lib/libvirt.c): WITH_LIBVIRT=auto uses libvirt when its
# -dev packages are there; without, such VMs stay blocked ("built without libvirt").
WITH_LIBVIRT ?= auto
ifeq ($(WITH_LIBVIRT),auto)
WITH_LIBVIRT := $(shell pkg-config --exists libvirt libvirt-qemu libxml-2.0 2>/dev/null && echo yes || echo no)
endif
# Their headers only: lib/libvirt-dl.c loads the libraries at first use (dlopen), so
# the binary runs on hosts without libvirt and the initrd does not carry it.
LV_PKGS = libvirt libvirt-qemu libxml-2.0
# CFLAGS, CPPFLAGS, LDFLAGS and LDLIBS are the builder's (a distribution passes its own, e.g.
# `make CFLAGS='-O2 -g -ffile-prefix-map=...'`); what the project needs to build at all is in
# HU_CFLAGS/HU_LDLIBS, which a command-line CFLAGS cannot replace. The builder's flags come
# last so that they win (-O0 over the default -O2).
CFLAGS ?= -O2 -g
HU_CFLAGS := -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror=implicit-function-declaration \
	-Werror=format -fno-strict-aliasing -pthread -Ilib $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
HU_LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread
ifeq ($(WITH_LIBVIRT),yes)
HU_CFLAGS += -DHU_WITH_LIBVIRT=1 $(shell pkg-config --cflags $(LV_PKGS) 2>/dev/null)
endif
ALL_CFLAGS = $(HU_CFLAGS) $(CPPFLAGS) $(CFLAGS)

LIB_SRC = $(wildcard lib/*.c)
CMD_SRC = $(wildcard cmd/*.c)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
CMD_OBJ = $(CMD_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC = $(wildcard tests/unit/test-*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: $(BUILD)/host-upgrade $(BUILD)/host-upgrade.8

$(BUILD)/%.o: %.c $(wildcard lib/*.h cmd/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libhu.a: $(LIB_OBJ)
	@$(AR) rcs $@ $^

$(BUILD)/host-upgrade: $(CMD_OBJ) $(BUILD)/libhu.a
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(HU_LDLIBS)

# host-upgrade(8), printed by the binary from its own option tables, so
# --help and the man page cannot drift apart.
$(BUILD)/host-upgrade.8: $(BUILD)/host-upgrade
	@echo "  MAN     $@"
	@$< --man > $@.tmp && mv $@.tmp $@

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libhu.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -DHU_TEST_FIXTURES='"$(CURDIR)/tests/fixtures"' $(LDFLAGS) -o $@ $(filter-out %.h,$^) -lcmocka $(LDLIBS) $(HU_LDLIBS)

# A real kernel upgrade of a disposable test host (tests/system/): a few minutes.
demo:
	scripts/install-deps
	$(MAKE) all
	scripts/demo

# The system test alone (tests/system/, as root; part of `make check` too):
# one run of a test host per scenario, a few minutes each.
system-test: all
	bats tests/bats/90-system.bats

# bench/README.md: blackout and scaling vs the alternatives, on TCG VMs (~10 min).
bench: all
	scripts/install-deps
	bench/run-bench

$(BUILD)/tests/libfake-kexec.so: tests/fake/kexec-shim.c
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) -O2 -g -Wall -shared -fPIC -o $@ $< -ldl

# Lint of the fleet rollout (scripts/ansible/README.md) and install-deps.
lint:
	@echo "  LINT    scripts/fleet-rollout scripts/install-deps tests/fleet/fleet.bash"
	@shellcheck scripts/fleet-rollout tests/fleet/fleet.bash
	@shellcheck scripts/install-deps
	@echo "  LINT    tests/system tests/guest bench/run-bench scripts/demo"
	@shellcheck -x -P SCRIPTDIR --severity=warning tests/system/*.sh tests/system/in-host/*.sh tests/guest/*.sh \
		bench/run-bench scripts/demo
	@echo "  LINT    tests/bats (shared directives: tests/bats/.shellcheckrc)"
	@shellcheck --severity=warning tests/bats/*.bats
	@shellcheck --norc tests/bats/helpers.bash tests/bats/libvirt.bash tests/bats/proxmox.bash tests/fake/qm-cleanup
	@echo "  LINT    scripts/ansible (ansible-playbook --syntax-check)"
	@python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' \
		scripts/ansible/fleet-state.py scripts/ansible/roles/host_upgrade/action_plugins/host_upgrade_record.py
	@ANSIBLE_ROLES_PATH=scripts/ansible/roles ansible-playbook -i localhost, --syntax-check \
		scripts/ansible/fleet-upgrade.yml tests/fleet/syntax-check.yml >/dev/null

check: all $(UNIT_BIN) $(BUILD)/tests/libfake-kexec.so lint
	@tests/run-tests $(BUILD)

# The unit tests and a fast subset of the bats files (a few minutes) against a build with
# AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer) in $(SAN_BUILD). ASan and
# LSan reports go to files there, not to the commands' stderr: a report fails the target even
# when it came from a command a test expected to fail. UBSan (gcc's libubsan, which ignores
# log_path next to ASan) prints to stderr and ends the process with status 86, which no test
# expects. verify_asan_link_order=0: the kexec shim is LD_PRELOADed ahead of the ASan runtime.
SAN_BUILD ?= build/san
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_BATS ?= 15-garbage-qmp 18-manifest 19-cli 23-may-start 24-status-golden
SAN_LOGS = $(CURDIR)/$(SAN_BUILD)/sanitizer-logs
check-sanitize:
	@$(MAKE) --no-print-directory BUILD=$(SAN_BUILD) CFLAGS='-O1 -g $(SAN_FLAGS)' LDFLAGS='$(SAN_FLAGS)' \
		all $(UNIT_SRC:tests/unit/%.c=$(SAN_BUILD)/tests/%) $(SAN_BUILD)/tests/libfake-kexec.so
	@rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	@ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:log_path=$(SAN_LOGS)/asan \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86 \
		tests/run-tests $(SAN_BUILD) $(SAN_BATS:%=tests/bats/%.bats); rc=$$?; \
	if [ -n "$$(ls -A $(SAN_LOGS))" ]; then \
		echo "check-sanitize: sanitizer reports ($(SAN_LOGS)):"; cat $(SAN_LOGS)/*; exit 1; \
	fi; \
	echo "check-sanitize: no sanitizer reports"; exit $$rc

# libFuzzer harnesses (tests/fuzz/README.md) for the parsers of outside input: clang's libFuzzer
# with ASan + UBSan (+ LeakSanitizer), the library rebuilt with coverage in $(FUZZ_BUILD). `make fuzz`
# runs each harness FUZZ_SECONDS (CI: 20 s each) on a copy of its seed corpus (the tree is not
# written to) and fails on the first finding: the input lands in $(FUZZ_BUILD)/artifacts/.
# `make fuzz-long` is the same for half an hour per harness, by hand.
FUZZ_BUILD ?= build/fuzz
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 20
FUZZ_TIMEOUT ?= 10
FUZZ_RSS_MB ?= 2048
FUZZ_ARGS ?=
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_NAMES = $(patsubst tests/fuzz/fuzz-%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
FUZZ_BIN = $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz-%)
FUZZ_LIB_OBJ = $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o) $(FUZZ_BUILD)/tests/fuzz/common.o
FUZZ_CFLAGS = $(HU_CFLAGS) -O1 -g $(FUZZ_SAN) -Itests/fuzz

$(FUZZ_BUILD)/%.o: %.c $(wildcard lib/*.h tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $< (fuzz)"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/fuzz-%: tests/fuzz/fuzz-%.c $(FUZZ_LIB_OBJ)
	@echo "  LD      $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(HU_LDLIBS)

# The objects are shared by every harness: not intermediates make may delete.
.SECONDARY: $(FUZZ_LIB_OBJ)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@for n in $(FUZZ_NAMES); do \
		corpus=$(FUZZ_BUILD)/corpus/$$n; mkdir -p $$corpus $(FUZZ_BUILD)/artifacts && \
		cp -r tests/fuzz/corpus/$$n/. $$corpus/ && \
		echo "  FUZZ    $$n ($(FUZZ_SECONDS) s)" && \
		scratch=$$(mktemp -d /dev/shm/hu-fuzz-run.XXXXXX) && \
		HU_FUZZ_TMPDIR=$$scratch $(FUZZ_BUILD)/fuzz-$$n -max_total_time=$(FUZZ_SECONDS) \
			-timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=$(FUZZ_RSS_MB) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/artifacts/$$n- $(FUZZ_ARGS) $$corpus \
			> $(FUZZ_BUILD)/fuzz-$$n.log 2>&1; rc=$$?; rm -rf $$scratch; \
		grep -E '^#[0-9]+.*DONE|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
			$(FUZZ_BUILD)/fuzz-$$n.log | sed 's/^/          /'; \
		if [ $$rc -ne 0 ]; then \
			tail -n 60 $(FUZZ_BUILD)/fuzz-$$n.log; \
			echo "fuzz: $$n found a problem (exit $$rc); log $(FUZZ_BUILD)/fuzz-$$n.log, input in $(FUZZ_BUILD)/artifacts/"; \
			exit 1; \
		fi; \
	done; echo "fuzz: no findings"

fuzz-long:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=1800

SBINDIR ?= $(PREFIX)/sbin
DOCDIR ?= $(PREFIX)/share/doc/host-upgrade
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /usr/lib/systemd/system)
DRACUTDIR ?= /usr/lib/dracut/modules.d
# libvirt runs every executable in it (libvirt >= 6.5); an existing
# /etc/libvirt/hooks/qemu is never touched.
LIBVIRT_HOOKDIR ?= /etc/libvirt/hooks/qemu.d
SUBST = sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' -e 's|@HOOK_OPTIONS@||g'

# The units name the installed binary: made at install time (or into
# $(BUILD)/units for `make units SBINDIR=...`, which the tests verify).
units:
	@mkdir -p $(BUILD)/units
	@$(SUBST) units/host-upgrade-restore.service.in > $(BUILD)/units/host-upgrade-restore.service
	@$(SUBST) units/host-upgrade-restore-libvirt.service.in > $(BUILD)/units/host-upgrade-restore-libvirt.service
	@$(SUBST) units/host-upgrade-restore-proxmox.service.in > $(BUILD)/units/host-upgrade-restore-proxmox.service
	@$(SUBST) dracut/90host-upgrade/host-upgrade-early.service.in > $(BUILD)/units/host-upgrade-early.service

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DRACUTDIR)/90host-upgrade \
		$(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(BUILD)/host-upgrade $(DESTDIR)$(SBINDIR)/host-upgrade
	install -m 0644 $(BUILD)/host-upgrade.8 $(DESTDIR)$(MANDIR)/man8/host-upgrade.8
	$(SUBST) units/host-upgrade-restore.service.in > $(DESTDIR)$(UNITDIR)/host-upgrade-restore.service
	$(SUBST) units/host-upgrade-restore-libvirt.service.in > $(DESTDIR)$(UNITDIR)/host-upgrade-restore-libvirt.service
	$(SUBST) units/host-upgrade-restore-proxmox.service.in > $(DESTDIR)$(UNITDIR)/host-upgrade-restore-proxmox.service
	install -m 0755 dracut/90host-upgrade/module-setup.sh $(DESTDIR)$(DRACUTDIR)/90host-upgrade/
	$(SUBST) dracut/90host-upgrade/host-upgrade-early.service.in > $(DESTDIR)$(DRACUTDIR)/90host-upgrade/host-upgrade-early.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/host-upgrade-restore.service $(DESTDIR)$(UNITDIR)/host-upgrade-restore-libvirt.service \
		$(DESTDIR)$(UNITDIR)/host-upgrade-restore-proxmox.service \
		$(DESTDIR)$(DRACUTDIR)/90host-upgrade/host-upgrade-early.service
	install -m 0644 README.md docs/preparing-a-host.md $(DESTDIR)$(DOCDIR)/
ifeq ($(WITH_LIBVIRT),yes)
	install -d $(DESTDIR)$(LIBVIRT_HOOKDIR)
	$(SUBST) libvirt/host-upgrade-hook.in > $(DESTDIR)$(LIBVIRT_HOOKDIR)/host-upgrade
	chmod 0755 $(DESTDIR)$(LIBVIRT_HOOKDIR)/host-upgrade
	@# libvirtd reads its hooks at start and SIGHUP only: tell a running one.
	@if [ -z "$(DESTDIR)" ]; then for u in libvirtd.service virtqemud.service; do \
		systemctl -q is-active $$u 2>/dev/null && systemctl reload $$u || true; done; fi
endif

clean:
	rm -rf $(BUILD)/*.o $(BUILD)/lib $(BUILD)/cmd $(BUILD)/tests $(BUILD)/libhu.a $(BUILD)/host-upgrade $(BUILD)/host-upgrade.8

.PHONY: all check check-sanitize install clean demo bench units system-test lint fuzz fuzz-build fuzz-long
