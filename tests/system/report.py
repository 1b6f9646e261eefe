#!/usr/bin/python3
"""Timings of a system-test run, from its stamped logs (run-host.sh calls it).

    report.py OUTDIR        writes OUTDIR/report.txt and OUTDIR/timings.json, prints the report

Every time is put on one clock: this machine's, as serial-relay.py stamped each
line of the test host's serial ports when it arrived (the one clock that runs on
across the test host's kexec). The test host's own journals (monotonic time since
that boot's kernel started) are mapped onto it with a per-boot offset: the
smallest (arrival stamp - printk time) of that boot's kernel lines on the console
within 10 s of the event (from its second 1 on: earlier lines may carry [0.000000],
the clock not running yet; and a TCG guest's clock can step when its clocksource changes).

Sources: console.log (ttyS0), scenario.log (ttyS1: the scenario, `host-upgrade run`'s
progress lines, the harness's RAM-hook events), results/bootN/journal*.txt
(journalctl -o short-monotonic), results/status.json (`host-upgrade status --json`).
Only measured values are printed; what was not found is left out or said so.
"""
import json
import os
import re
import sys

STAMP = re.compile(r"^\[\s*(\d+\.\d+)\] (.*)$")
PRINTK = re.compile(r"^\[\s*(\d+\.\d+)\] ")


def read_stamped(path):
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = STAMP.match(line.rstrip("\n"))
                if m:
                    out.append((float(m.group(1)), m.group(2)))
    except FileNotFoundError:
        pass
    return out


def console_boots(console):
    """Split the console into boots (a 'Linux version' line starts one); per boot
    the offset from its kernel's monotonic clock to this machine's clock."""
    boots = []
    for t, text in console:
        if re.search(r"\] Linux version \S+", text):
            boots.append({"start": t, "lines": [], "kver": re.search(r"Linux version (\S+)", text).group(1)})
        if boots:
            boots[-1]["lines"].append((t, text))
    for b in boots:
        # Lines printed before the kernel's clock runs say [0.000000]: left out
        # (the first second), or they would pull the offset down.
        b["marks"] = []
        for t, text in b["lines"]:
            m = PRINTK.match(text)
            if m and float(m.group(1)) >= 1.0:
                b["marks"].append((float(m.group(1)), t - float(m.group(1))))
        b["offset"] = min((d for _, d in b["marks"]), default=None)
    return boots


def offset_at(boot, mono, window=10.0):
    """The offset near `mono`: under TCG the guest's clock can step (clocksource
    change) or lag, so a local offset (kernel lines within `window` s) is better
    than one for the whole boot."""
    near = [d for m, d in boot["marks"] if abs(m - mono) <= window]
    return min(near) if near else boot["offset"]


def read_journal(path, boot):
    """short-monotonic journal of `boot` -> [(this machine's time, text)]"""
    out = []
    if boot is None or boot["offset"] is None:
        return out
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"^\[\s*(\d+\.\d+)\] \S+ (.*)$", line.rstrip("\n"))
                if m:
                    mono = float(m.group(1))
                    out.append((mono + offset_at(boot, mono), m.group(2)))
    except FileNotFoundError:
        pass
    return out


def first(lines, pattern, after=None):
    rx = re.compile(pattern)
    for t, text in lines:
        if (after is None or t >= after) and rx.search(text):
            return t
    return None


def last(lines, pattern):
    rx = re.compile(pattern)
    found = None
    for t, text in lines:
        if rx.search(text):
            found = t
    return found


def fmt(v, unit="s"):
    return "%7.2f %s" % (v, unit) if v is not None else "      ? " + unit


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    out = sys.argv[1]
    console = read_stamped(os.path.join(out, "console.log"))
    scen = read_stamped(os.path.join(out, "scenario.log"))
    boots = console_boots(console)
    res = os.path.join(out, "results")
    tm = {"boots": [{"kernel": b["kver"], "start": b["start"], "offset": b["offset"]} for b in boots]}

    # The boot that ran `host-upgrade run`, and the one after it.
    run_boot = None
    for t, text in scen:
        m = re.search(r"HU-EVENT: run-start boot=(\d+)", text)
        if m:
            run_boot = int(m.group(1))
    j_prev, j_next = [], []
    if run_boot and len(boots) >= run_boot:
        j_prev = read_journal(os.path.join(res, "boot%d" % (run_boot + 1), "journal-prev.txt"), boots[run_boot - 1])
    if run_boot and len(boots) > run_boot:
        j_next = read_journal(os.path.join(res, "boot%d" % (run_boot + 1), "journal.txt"), boots[run_boot])

    ev = {}
    ev["run_start"] = first(scen, r"HU-EVENT: run-start")
    ev["ckpt_start"] = first(scen, r"host-upgrade: checkpointing \d+ VM")
    ev["ckpt_done"] = first(scen, r"host-upgrade: all \d+ VMs? checkpointed")
    ev["startunit"] = first(scen, r"host-upgrade: rebooting into")
    ev["hook_before_start"] = first(scen, r"HU-EVENT: ram-hook before start")
    ev["hook_before_done"] = first(scen, r"HU-EVENT: ram-hook before (digest-done|not-mounted)")
    ev["hook_before_end"] = last(scen, r"HU-EVENT: ram-hook before (digest-done|not-mounted|tampered|power-cycle)")
    ev["hook_after_start"] = first(scen, r"HU-EVENT: ram-hook after start")
    ev["hook_after_done"] = first(scen, r"HU-EVENT: ram-hook after (digest-done|not-mounted)")
    ev["kexec_jump"] = first(console, r"kexec_core: Starting new kernel")
    ev["power_cycle"] = first(scen, r"HU-EVENT: power-cycle")
    nxt = boots[run_boot] if run_boot and len(boots) > run_boot else None
    if nxt:
        ev["kernel2"] = offset_at(nxt, 1.0) if nxt["marks"] else None  # the new kernel's monotonic 0
        ev["kernel2_printed"] = nxt["start"]
        ev["initrd2"] = first(nxt["lines"], r"Run /init as init process")
    ev["early_start"] = first(j_next, r"Starting host-upgrade-early\.service")
    ev["early_done"] = first(j_next, r"(Finished|Failed to start) host-upgrade-early\.service")
    ev["switch_root"] = first(j_next, r"systemd\[1\]: Switching root")
    ev["mount"] = first(j_next, r"Mounted mnt-pmem\.mount")
    ev["restore_start"] = first(j_next, r"Starting host-upgrade-restore\.service")
    ev["restore_done"] = first(j_next, r"(Finished|Failed to start) host-upgrade-restore\.service")
    ev["scenario2"] = first(scen, r"HU-EVENT: scenario-start boot=%d" % ((run_boot or 0) + 1))

    vms = {}
    for t, text in scen:
        m = re.search(r"host-upgrade: (\S+): saving", text)
        if m:
            vms.setdefault(m.group(1), {})["stop"] = t
        m = re.search(r"host-upgrade: (\S+): saved (\d+) KiB in ([\d.]+) ms", text)
        if m:
            vms.setdefault(m.group(1), {}).update(saved=t, state_kib=int(m.group(2)), save_ms=float(m.group(3)))
    for t, text in j_next:
        m = re.search(r"host-upgrade\[\d+\]: (\S+): restored \((\w+)\) as pid (\d+), down (\d+) ms", text)
        if m and m.group(1) in vms:
            vms[m.group(1)].update(running=t, product_log_down_ms=int(m.group(4)))
    status = {}
    try:
        with open(os.path.join(res, "status.json")) as f:
            for v in json.load(f).get("vms", []):
                status[v["name"]] = v
    except (OSError, ValueError):
        pass
    for name, v in vms.items():
        s = status.get(name, {})
        v["state"] = s.get("state")
        v["error"] = s.get("error")
        v["product_downtime_ms"] = s.get("downtime_ms")
        if "stop" in v and "running" in v:
            v["measured_down_s"] = v["running"] - v["stop"]
    tm["events"] = ev
    tm["vms"] = vms

    def d(a, b):
        return ev[b] - ev[a] if ev.get(a) is not None and ev.get(b) is not None else None

    stops = [v["stop"] for v in vms.values() if "stop" in v]
    runs = [v["running"] for v in vms.values() if "running" in v]
    first_stop = min(stops) if stops else None
    last_run = max(runs) if runs else None
    ev["first_stop"] = first_stop
    ev["last_running"] = last_run
    all_back = bool(vms) and len(runs) == len(vms)

    L = []
    verdict = None
    for t, text in scen:
        m = re.search(r"HU-VERDICT: (.*)", text)
        if m:
            verdict = m.group(1)
    scen_name = os.path.basename(out.rstrip("/"))
    try:
        with open(os.path.join(out, "summary.txt")) as f:
            m = re.search(r"^scenario:\s+(\S+)", f.read(), re.M)
            if m:
                scen_name = m.group(1)
    except OSError:
        pass
    L.append("host-upgrade system test: %s" % scen_name)
    try:
        with open(os.path.join(out, "summary.txt")) as f:
            m = re.search(r"^load:\s+(.*)$", f.read(), re.M)
            if m:
                L.append("  load:      %s" % m.group(1))
    except OSError:
        pass
    if boots:
        L.append("  kernels:   %s" % " -> ".join(b["kver"] for b in boots))
    if run_boot and len(boots) > run_boot:
        how = "kexec" if ev.get("kexec_jump") else ("power cycle (cold)" if ev.get("power_cycle") else "reboot")
        L.append("  reboot:    %s -> %s by %s" % (boots[run_boot - 1]["kver"], boots[run_boot]["kver"], how))
    L.append("")
    if vms:
        L.append("Per VM (guest stopped for the checkpoint -> guest running again)")
        L.append("  %-6s %-10s %12s %14s %18s  %s" % ("VM", "state", "state file", "save", "downtime measured", "downtime (status --json)"))
        for name in sorted(vms):
            v = vms[name]
            L.append("  %-6s %-10s %9s KiB %11s ms %18s  %s" % (
                name, v.get("state") or "?",
                v.get("state_kib", "?"), v.get("save_ms", "?"),
                "%.2f s" % v["measured_down_s"] if "measured_down_s" in v else "-",
                "%s ms" % v["product_downtime_ms"] if v.get("product_downtime_ms") is not None else "-"))
            if v.get("error"):
                L.append("         refused: %s" % v["error"])
        L.append("")
    if first_stop is not None:
        if all_back:
            L.append("Total host blackout (first VM stopped -> last VM running): %.2f s" % (last_run - first_stop))
        elif runs:
            L.append("Blackout of the VMs that came back (first VM stopped -> last of them running): %.2f s" % (last_run - first_stop))
        else:
            L.append("No VM came back (none was resumed)")
        hb0 = d("hook_before_start", "hook_before_done") or 0.0
        ha0 = d("hook_after_start", "hook_after_done") or 0.0
        if runs and (hb0 or ha0):
            L.append("  of which the harness's own RAM digests (not the product): %.2f s at shutdown + %.2f s before the restore;"
                     % (hb0, ha0))
            L.append("  without them: %.2f s" % (last_run - first_stop - hb0 - ha0))
        L.append("")
    rows = []

    def row(label, a, b, note=""):
        if a is not None and b is not None:
            rows.append("  %-58s %8.2f s%s" % (label, b - a, note))

    hb = d("hook_before_start", "hook_before_done")
    ha = d("hook_after_start", "hook_after_done")
    row("checkpoint (first VM stopped -> all saved, QEMUs quit)", first_stop, ev.get("ckpt_done"))
    row("checkpoint done -> StartUnit(kexec.target) returned", ev.get("ckpt_done"), ev.get("startunit"))
    row("systemd shutdown -> kexec -e (old kernel jumps)", ev.get("startunit"), ev.get("kexec_jump"),
        "   (of which the harness's RAM digest %.2f s)" % hb if hb is not None else "")
    row("kexec -e -> new kernel's clock starts (decompress, setup)", ev.get("kexec_jump"), ev.get("kernel2"))
    row("new kernel -> initrd /init", ev.get("kernel2"), ev.get("initrd2"))
    row("initrd /init -> switch root", ev.get("initrd2"), ev.get("switch_root"),
        "   (host-upgrade-early.service %.2f s)" % d("early_start", "early_done") if d("early_start", "early_done") is not None else "")
    row("switch root -> restore unit starts", ev.get("switch_root"), ev.get("restore_start"),
        "   (of which the harness's RAM digest %.2f s)" % ha if ha is not None else "")
    row("restore (unit start -> last VM running)", ev.get("restore_start"), last_run)
    if rows:
        L.append("Where the time went")
        L.extend(rows)
        L.append("")
    rows = []
    for base, label in (("kexec_jump", "kexec -e"), ("startunit", "StartUnit(kexec.target)")):
        if ev.get(base) is None:
            continue
        parts = []
        for key, what in (("initrd2", "initrd"), ("early_start", "host-upgrade-early"),
                          ("restore_start", "restore unit start"), ("last_running", "last VM running")):
            if ev.get(key) is not None:
                parts.append("%s %.2f s" % (what, ev[key] - ev[base]))
        if parts:
            rows.append("  from %-24s %s" % (label + ":", ", ".join(parts)))
    if rows:
        L.append("From the reboot")
        L.extend(rows)
        L.append("")
    if ev.get("mount") is not None and ev.get("restore_start") is not None:
        L.append("Ordering: %s mounted %.2f s %s the restore unit started" % (
            "/mnt/pmem", abs(ev["restore_start"] - ev["mount"]),
            "before" if ev["mount"] <= ev["restore_start"] else "AFTER"))
    try:
        with open(os.path.join(res, "boot%d" % ((run_boot or 0) + 1), "systemd-analyze.txt")) as f:
            line = f.readline().strip()
            if line.startswith("Startup finished"):
                L.append("systemd-analyze (new boot): %s" % line)
    except OSError:
        pass
    if verdict:
        L.append("verdict: %s" % verdict)
    L.append("(times on this machine's clock: the test host's serial lines as they arrived; its journal mapped by per-boot offset)")
    text = "\n".join(L) + "\n"
    with open(os.path.join(out, "report.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "timings.json"), "w") as f:
        json.dump(tm, f, indent=1, sort_keys=True)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
