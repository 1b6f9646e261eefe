"""Where host-upgrade's time goes: `bench.py profile [N...]` (default 1 16).

For each N: starts N in-place VMs (BENCH_SCALE_MEM each), times `host-upgrade checkpoint`
and `host-upgrade restore` of all of them, and on N fresh VMs `host-upgrade run --no-reboot`
(prelaunch), each once untraced, then once more under
`strace -f -b execve -y -T -ttt` (the QEMUs restore starts are let go at
execve), and summarises each trace:
  - the phases: batches of worker threads (hu_parallel_for) and the serial
    work of the main thread between them, named by the QMP commands sent;
  - per batch: the slowest thread, and over all threads the time blocked in
    QMP replies (per command), fsync (per kind of file), sleeps (usleep
    polling) and failed connects (QMP socket not there yet);
  - restore: per VM, fork -> QMP connected (QEMU start) and the rest;
  - for one VM, the blackout path: every step from `migrate` sent to the
    restore's exit on one clock, with QEMU's STOP and RESUME events; by
    prelaunch, every step from `migrate` sent to the old QEMU to the
    "restarted by prelaunch" line (QMP commands, fsyncs, renames, the kill).
strace slows host-upgrade down (every syscall stops it): read the traced
numbers for their proportions, the untraced ones for the times.
"""
import collections
import json
import os
import re
import statistics
import subprocess
import sys

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+|\d\d:\d\d:\d\d\.\d+)\s+(.*)$")
CALL = re.compile(r"^([a-z0-9_]+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
DUR = re.compile(r"<(\d+\.\d+)>\s*$")
EXECUTE = re.compile(r'\\?"execute\\?"\s*:\s*\\?"([a-zA-Z0-9_-]+)')


class Call:
    __slots__ = ("pid", "t", "dur", "name", "args", "ret")

    def __init__(self, pid, t, name, args):
        self.pid, self.t, self.name, self.args, self.dur, self.ret = pid, t, name, args, 0.0, ""


def parse(path):
    calls, pending = [], {}
    first, exits, starts = None, {}, {}
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid = int(m.group(1))
            ts = m.group(2)
            if ":" in ts:
                h, mi, sec = ts.split(":")
                t = int(h) * 3600 + int(mi) * 60 + float(sec)
            else:
                t = float(ts)  # -ttt: seconds since the epoch, like QEMU's event timestamps
            rest = m.group(3)
            if first is None:
                first = (pid, t)
            starts.setdefault(pid, t)
            if rest.startswith("+++"):
                exits[pid] = t
                continue
            if rest.startswith("---"):
                continue
            r = RESUMED.match(rest)
            if r:
                c = pending.pop(pid, None)
                if c is None:
                    continue
                body = r.group(2)
            else:
                cm = CALL.match(rest)
                if not cm:
                    continue
                c = Call(pid, t, cm.group(1), "")
                body = cm.group(2)
                if body.endswith("<unfinished ...>"):
                    c.args = body[: -len("<unfinished ...>")]
                    pending[pid] = c
                    continue
            c.args += body
            d = DUR.search(body)
            c.dur = float(d.group(1)) if d else 0.0
            eq = c.args.rfind(" = ")
            c.ret = c.args[eq + 3:] if eq >= 0 else ""
            calls.append(c)
    calls.sort(key=lambda c: c.t)
    return first, calls, starts, exits


def fsync_kind(args):
    m = re.search(r"<([^>]*)>", args)
    p = m.group(1) if m else "?"
    if p.endswith(".state"):
        return "state file"
    if "manifest.json" in p:
        return "manifest (tmp file)"
    if p.endswith("journal.jsonl"):
        return "journal.jsonl"
    if p.endswith(".img") or p.endswith(".ram"):
        return "RAM file"
    if "." not in os.path.basename(p):
        return "directory"
    return os.path.basename(p)


def ms(s):
    return "%.1f ms" % (s * 1000)


def analyze(path, title):
    first, calls, starts, exits = parse(path)
    if not calls:
        return "%s: empty trace\n" % title
    main = first[0]
    t0 = first[1]
    t_end = max(exits.get(main, calls[-1].t), calls[-1].t)
    out = ["%s: %s wall under strace (%d syscalls)" % (title, ms(t_end - t0), len(calls))]
    by_pid = collections.defaultdict(list)
    for c in calls:
        by_pid[c.pid].append(c)
    # Threads of host-upgrade (clone3 with CLONE_THREAD) vs forked children (QEMU before execve).
    threads, children = set(), set()
    for c in calls:
        if c.name in ("clone3", "clone") and c.ret.split()[0].isdigit():
            (threads if "CLONE_THREAD" in c.args else children).add(int(c.ret.split()[0]))
    # Batches of threads: a new batch starts after every thread of the last one ended.
    life = sorted((starts[p], exits.get(p, by_pid[p][-1].t if by_pid[p] else starts[p]), p) for p in threads)
    batches = []
    for s, e, p in life:
        if batches and s <= batches[-1]["end"]:
            batches[-1]["tids"].append(p)
            batches[-1]["end"] = max(batches[-1]["end"], e)
        else:
            batches.append({"start": s, "end": e, "tids": [p]})
    # What each thread asked QEMU, and what it waited for.
    for b in batches:
        cmds = collections.Counter()
        for p in b["tids"]:
            for c in by_pid[p]:
                if c.name in ("sendto", "write", "sendmsg"):
                    m = EXECUTE.search(c.args)
                    if m:
                        cmds[m.group(1)] += 1
        b["cmds"] = cmds
        b["label"] = ("save" if "migrate" in cmds else "restore" if "migrate-incoming" in cmds else
                      "quit" if "quit" in cmds else "discover" if "query-memdev" in cmds or "qom-list" in cmds
                      else "resume" if "cont" in cmds else "workers")
    # Main thread: serial time between the batches.
    mains = by_pid[main]
    cursor = t0
    segments = []
    for b in batches:
        segments.append(("main thread", cursor, b["start"]))
        segments.append(("%s: %d threads" % (b["label"], len(b["tids"])), b["start"], b["end"]))
        cursor = b["end"]
    segments.append(("main thread", cursor, t_end))
    out.append("  timeline (ms from exec):")
    for name, s, e in segments:
        extra = ""
        if name == "main thread":
            inside = [c for c in mains if s <= c.t < e]
            fs = [c for c in inside if c.name in ("fsync", "fdatasync")]
            if fs:
                kinds = collections.Counter(fsync_kind(c.args) for c in fs)
                extra = "; %d fsync %s (%s)" % (len(fs), ms(sum(c.dur for c in fs)),
                                                  ", ".join("%s ×%d" % kv for kv in kinds.items()))
            reads = sum(1 for c in inside if c.name == "openat" and "/proc/" in c.args)
            if reads:
                extra += "; %d opens under /proc" % reads
        out.append("    %7.1f – %7.1f  %-28s %s%s" % ((s - t0) * 1000, (e - t0) * 1000, name, ms(e - s), extra))
    for b in batches:
        out.append("  %s batch (%d threads, %s wall):" % (b["label"], len(b["tids"]), ms(b["end"] - b["start"])))
        qmp_wait = collections.defaultdict(list)
        fsyncs = collections.defaultdict(list)
        sleeps, failed_connects, per_thread = [], 0, []
        for p in b["tids"]:
            last_cmd = None
            th = {"tid": p, "wall": exits.get(p, starts[p]) - starts[p], "qmp": 0.0, "fsync": 0.0, "sleep": 0.0}
            for c in by_pid[p]:
                if c.name in ("sendto", "write", "sendmsg"):
                    m = EXECUTE.search(c.args)
                    if m:
                        last_cmd = m.group(1)
                elif c.name in ("poll", "ppoll", "select", "pselect6", "epoll_wait"):
                    qmp_wait[last_cmd or "(greeting)"].append(c.dur)
                    th["qmp"] += c.dur
                elif c.name in ("fsync", "fdatasync"):
                    fsyncs[fsync_kind(c.args)].append(c.dur)
                    th["fsync"] += c.dur
                elif c.name in ("clock_nanosleep", "nanosleep"):
                    sleeps.append(c.dur)
                    th["sleep"] += c.dur
                elif c.name == "connect" and "= -1" in c.ret:
                    failed_connects += 1
            per_thread.append(th)
        walls = [t["wall"] for t in per_thread]
        slow = max(per_thread, key=lambda t: t["wall"])
        out.append("    thread wall: median %s, max %s; slowest thread: %s blocked on QMP replies, %s in fsync, "
                   "%s asleep" % (ms(statistics.median(walls)), ms(max(walls)), ms(slow["qmp"]),
                                  ms(slow["fsync"]), ms(slow["sleep"])))
        if qmp_wait:
            top = sorted(qmp_wait.items(), key=lambda kv: -sum(kv[1]))[:8]
            out.append("    blocked on QMP (by the last command sent: polls, total, max): " + "; ".join(
                "%s: %d, %s, %s" % (k, len(v), ms(sum(v)), ms(max(v))) for k, v in top))
        if fsyncs:
            out.append("    fsync, all threads (file: calls, total, max; concurrent calls overlap): " + "; ".join(
                "%s: %d, %s, %s" % (k, len(v), ms(sum(v)), ms(max(v))) for k, v in sorted(fsyncs.items())))
        if sleeps:
            out.append("    sleeping (usleep polling): %d sleeps, %s in all, %s per thread on median"
                       % (len(sleeps), ms(sum(sleeps)), ms(statistics.median([t["sleep"] for t in per_thread]))))
        if failed_connects:
            out.append("    failed QMP connects (socket not there yet): %d" % failed_connects)
        qs = "%s" % ", ".join("%s ×%d" % kv for kv in b["cmds"].most_common())
        out.append("    QMP commands sent: %s" % (qs or "none"))
        if b["label"] == "restore":
            starts_q = []
            for p in b["tids"]:
                fork = next((c for c in by_pid[p] if c.name == "clone" and "CLONE_THREAD" not in c.args), None)
                ok = next((c for c in by_pid[p] if c.name == "connect" and c.ret.startswith("0")), None)
                cap = next((c for c in by_pid[p] if c.name in ("sendto", "write", "sendmsg") and "qmp_capabilities" in c.args),
                           None)
                cap_done = next((c for c in by_pid[p] if cap and c.t > cap.t and c.name == "recvfrom"), None)
                inc = next((c for c in by_pid[p] if c.name in ("sendto", "write", "sendmsg") and "migrate-incoming" in c.args),
                           None)
                if fork and ok:
                    starts_q.append((ok.t - fork.t, (exits.get(p, ok.t) - inc.t) if inc else None,
                                     fork.t - starts[p],
                                     (cap_done.t + cap_done.dur - fork.t) if cap_done else None))
            if starts_q:
                def col(i, f):
                    v = [x[i] for x in starts_q if x[i] is not None]
                    return ms(f(v)) if v else "-"
                out.append("    per VM: thread start → fork (checks, RAM digest) median %s; fork → QMP socket "
                           "connected median %s (max %s); fork → first QMP reply (QEMU ready) median %s (max %s); "
                           "migrate-incoming sent → thread done median %s" % (
                               col(2, statistics.median), col(0, statistics.median), col(0, max),
                               col(3, statistics.median), col(3, max), col(1, statistics.median)))
    return "\n".join(out) + "\n"


EVENT_TS = re.compile(r'seconds\\?": (\d+), \\?"microseconds\\?": (\d+)\}, \\?"event\\?": \\?"([A-Z_]+)\\?"'
                      r'(?:, \\?"data\\?": \{\\?"status\\?": \\?"([a-z-]+))?')


def timeline(title, t0, steps):
    """steps [(time, label)] as ms after t0, each with the time since the one before."""
    out = ["%s (ms after `migrate` was sent; strace clock and QEMU event clock):" % title]
    prev = t0
    for t, label in sorted(steps, key=lambda x: x[0]):
        out.append("  %8.1f  (+%6.1f)  %s" % ((t - t0) * 1000, (t - prev) * 1000, label))
        prev = t
    return "\n".join(out) + "\n"


def sent(c, cmd):
    return c.name in ("sendto", "write", "sendmsg") and re.search(r'execute\\?":\\?"%s\\?"' % re.escape(cmd), c.args)


def qemu_events(calls):
    """(QEMU's own timestamp, event, status) of every event read from a QMP socket."""
    out = []
    for c in calls:
        if c.name in ("recvfrom", "read"):
            for m in EVENT_TS.finditer(c.args):
                out.append((int(m.group(1)) + int(m.group(2)) / 1e6, m.group(3), m.group(4)))
    return out


def blackout_path(ck_path, rs_path):
    """One VM: every step from `migrate` sent to the restore process's exit,
    on one clock (strace -ttt and QEMU's event timestamps are both epoch)."""
    _, ck, ck_starts, ck_exits = parse(ck_path)
    _, rs, rs_starts, rs_exits = parse(rs_path)
    steps = []
    mig = next((c for c in ck if sent(c, "migrate")), None)
    if mig is None:
        return "no migrate command in %s\n" % ck_path
    worker = mig.pid
    steps.append((mig.t, "checkpoint: `migrate` sent (host-upgrade's stopped_at_ms)"))
    for t, ev, st in qemu_events(ck):
        if ev == "STOP":
            steps.append((t, "checkpoint: QEMU STOP event (guest stopped)"))
        elif ev == "MIGRATION" and st == "completed":
            steps.append((t, "checkpoint: QEMU MIGRATION completed event"))
    for c in ck:
        if c.pid == worker and c.t > mig.t and c.name in ("fsync", "fdatasync"):
            steps.append((c.t + c.dur, "checkpoint: fsync %s done (%s)" % (fsync_kind(c.args), ms(c.dur))))
    steps.append((ck_exits.get(worker, ck[-1].t), "checkpoint: save thread done"))
    main_ck = ck[0].pid
    after = [c for c in ck if c.pid == main_ck and c.t > mig.t and c.name in ("fsync", "fdatasync")]
    for c in after:
        steps.append((c.t + c.dur, "checkpoint: main thread fsync %s (%s)" % (fsync_kind(c.args), ms(c.dur))))
    q = next((c for c in ck if sent(c, "quit")), None)
    if q:
        steps.append((q.t, "checkpoint: `quit` sent"))
        steps.append((ck_exits.get(q.pid, q.t), "checkpoint: quit thread done (QEMU gone, RAM fsync)"))
    steps.append((ck_exits.get(main_ck, ck[-1].t), "checkpoint: process exits"))
    main_rs = rs[0].pid
    steps.append((rs_starts[main_rs], "restore: process exec"))
    th = next((c for c in rs if c.pid == main_rs and c.name == "clone3"), None)
    if th:
        steps.append((th.t, "restore: worker thread created (lock, manifest, /proc scan done)"))
    fork = next((c for c in rs if c.name == "clone" and "CLONE_THREAD" not in c.args), None)
    if fork:
        steps.append((fork.t, "restore: fork of QEMU (after state/disk/RAM-digest checks)"))
        w = fork.pid
        conn = [c for c in rs if c.pid == w and c.name == "connect"]
        ok = next((c for c in conn if c.ret.startswith("0")), None)
        if ok:
            steps.append((ok.t + ok.dur, "restore: QMP socket connected after %d failed connects, %d sleeps" % (
                sum(1 for c in conn if c.t < ok.t),
                sum(1 for c in rs if c.pid == w and c.name == "clock_nanosleep" and c.t < ok.t))))
        cap = next((c for c in rs if c.pid == w and sent(c, "qmp_capabilities")), None)
        if cap:
            rep = next((c for c in rs if c.pid == w and c.t > cap.t and c.name == "recvfrom"), None)
            if rep:
                steps.append((rep.t + rep.dur, "restore: qmp_capabilities answered (QEMU main loop up)"))
        inc = next((c for c in rs if c.pid == w and sent(c, "migrate-incoming")), None)
        if inc:
            steps.append((inc.t, "restore: `migrate-incoming` sent"))
        for t, ev, st in qemu_events([c for c in rs if c.pid == w]):
            if ev == "RESUME":
                steps.append((t, "restore: QEMU RESUME event (guest runs again)"))
            elif ev == "MIGRATION" and st == "completed":
                steps.append((t, "restore: QEMU MIGRATION completed event"))
        last = [c for c in rs if c.pid == w and c.name in ("sendto", "write", "sendmsg") and EXECUTE.search(c.args)]
        if last:
            steps.append((last[-1].t, "restore: last QMP command sent (%s)" % EXECUTE.search(last[-1].args).group(1)))
        for c in rs:
            if c.pid == w and c.name in ("fsync", "fdatasync") and (not inc or c.t > inc.t):
                steps.append((c.t + c.dur, "restore: fsync %s (%s)" % (fsync_kind(c.args), ms(c.dur))))
        steps.append((rs_exits.get(w, rs[-1].t), "restore: worker thread done (running_at_ms is taken before "
                      "the manifest save)"))
    steps.append((rs_exits.get(main_rs, rs[-1].t), "restore: process exits"))
    return timeline("blackout path of one VM", mig.t, steps)


LANDMARK = ("fsync", "fdatasync", "rename", "renameat", "renameat2", "unlink", "unlinkat", "kill", "tgkill",
            "pidfd_send_signal", "pidfd_open", "waitid", "wait4", "clone", "clone3", "connect", "execve")


def prelaunch_path(path):
    """One VM by prelaunch (`run --no-reboot`): every step of host-upgrade's
    threads from `migrate` sent to the old QEMU (stopped_at_ms) to the
    "restarted by prelaunch" line (after running_at_ms), on one clock, with
    the QEMU events: the old one's STOP and MIGRATION completed, the new one's
    MIGRATION completed and RESUME (the guest runs again)."""
    first, calls, starts, exits = parse(path)
    mig = next((c for c in calls if sent(c, "migrate")), None)
    if mig is None:
        return "no migrate command in %s\n" % path
    children = {int(c.ret.split()[0]) for c in calls
                if c.name in ("clone", "clone3") and "CLONE_THREAD" not in c.args and c.ret.split()[0].isdigit()}
    ours = [c for c in calls if c.pid not in children and c.t >= mig.t]
    inc = next((c for c in ours if sent(c, "migrate-incoming")), None)
    done = next((c for c in ours if c.name == "write" and "restarted by prelaunch" in c.args), None)
    steps = [(mig.t, "`migrate` sent to the old QEMU (stopped_at_ms)")]
    for t, ev, st in qemu_events(ours):
        who = "new" if inc and t >= inc.t else "old"
        if ev in ("STOP", "RESUME") or (ev == "MIGRATION" and st == "completed"):
            steps.append((t, "%s QEMU: %s%s event" % (who, ev, " " + st if st else "")))
    reads = None  # a run of pread64 of one file: the RAM digest's sampled pages
    for c in ours:
        if done and c.t > done.t + done.dur:
            break
        if c.name == "pread64":
            f = c.args.split(",")[0]
            if reads and reads[0] == f:
                reads[2], reads[3] = c.t + c.dur, reads[3] + 1
            else:
                reads = [f, c.t, c.t + c.dur, 1]
                steps.append(reads)
            continue
        m = EXECUTE.search(c.args) if c.name in ("sendto", "write", "sendmsg") else None
        if m and c is not mig:
            rep_ = next((r for r in ours if r.pid == c.pid and r.t > c.t and r.name in ("recvfrom", "read", "recvmsg")
                         and "return" in r.args), None)
            steps.append((c.t, "`%s` sent%s" % (m.group(1), " (reply after %s)" % ms(rep_.t + rep_.dur - c.t)
                                                 if rep_ else "")))
        elif c.name in LANDMARK:
            arg = c.args.split(",")[0][:60]
            steps.append((c.t, "%s(%s) %s" % (c.name, arg, "%s" % ms(c.dur) if c.dur >= 0.0005 else "")))
        elif c is done:
            steps.append((c.t, "progress line: restarted by prelaunch"))
    steps = [(x[1], "pread64(%s) ×%d in %s (the RAM digest's sampled pages)" % (x[0], x[3], ms(x[2] - x[1])))
             if isinstance(x, list) else x for x in steps]
    return timeline("blackout path of one VM by prelaunch", mig.t, steps)


def traced(b, verb, sd, names, extra, trace):
    """host-upgrade VERB of names, under strace when trace names a file; its wall time."""
    import bench as B
    argv = [b.hu_bin, verb, "--state-dir", sd] + list(extra) + sum((["--vm", x] for x in names), [])
    if trace:
        argv = ["strace", "-f", "-b", "execve", "-y", "-T", "-ttt", "-s", "400", "-o", trace] + argv
    t = B.mono_ms()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    ms_ = B.mono_ms() - t
    if p.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (verb, B.hu_errors(p.stderr)))
    return ms_


def run(bench, counts):
    import bench as B
    b = bench
    b.build_guest()
    files = []
    for i in range(max(counts)):
        f = "%s/prof-%02d.img" % (b.work, i)
        b.prefill(f, b.scale_mem)
        files.append(f)
    report = []
    for n in counts:
        report += ["## %d VM%s of %s, RAM in place" % (n, "" if n == 1 else "s", B.size_label(b.scale_mem)), ""]
        # checkpoint + restore, then the same by prelaunch (run --no-reboot), each on fresh VMs,
        # once untraced (the times) and once under strace (the proportions).
        for how in ("checkpoint", "prelaunch"):
            for tr in (False, True):
                names = ["hb%s-%s%d-%d-%02d" % (b.tag, how[:2], n, tr, i) for i in range(n)]
                vms = [B.VM(b, nm, b.scale_mem, files[i], share=True) for i, nm in enumerate(names)]
                sd = "%s/state-prof-%s-%d-%d" % (b.work, how, n, tr)
                verbs = ("checkpoint", "restore") if how == "checkpoint" else ("run",)
                traces = {v: "%s/%s-%d.strace" % (b.work, v, n) if tr else None for v in verbs}
                try:
                    b.start_vms(vms)
                    times = {v: traced(b, v, sd, names, ("--no-reboot", "--yes") if v == "run" else (), traces[v])
                             for v in verbs}
                    down = [v["downtime_ms"] for v in b.hu_status(sd)["vms"]]
                    report.append("%s: %s, blackout (downtime_ms) median %s, max %s" % (
                        "traced" if tr else "untraced",
                        ", ".join("%s %s" % ("run --no-reboot (prelaunch)" if v == "run" else v, B.fmt_ms(t))
                                  for v, t in times.items()),
                        B.fmt_ms(statistics.median(down)), B.fmt_ms(max(down))))
                    if tr:
                        report.append("")
                        for v in verbs:
                            report.append(analyze(traces[v], "host-upgrade %s of %d VM%s" % (
                                "run --no-reboot (prelaunch)" if v == "run" else v, n, "" if n == 1 else "s")))
                        if n == 1:
                            report.append(blackout_path(traces["checkpoint"], traces["restore"])
                                          if how == "checkpoint" else prelaunch_path(traces["run"]))
                finally:
                    for vm in vms:
                        vm.kill()
        report.append("")
    text = "# host-upgrade profile (strace)\n\n" + "\n".join(report)
    os.makedirs(b.results, exist_ok=True)
    with open(os.path.join(b.results, "profile.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    sys.stdout.write("\nwritten to %s\n" % os.path.join(b.results, "profile.txt"))


if __name__ == "__main__":
    # profile_hu.py TRACE...: summarise traces made by hand; CHECKPOINT RESTORE of one VM: + blackout path
    for p in sys.argv[1:]:
        sys.stdout.write(analyze(p, p))
    if len(sys.argv) == 3:
        sys.stdout.write(blackout_path(sys.argv[1], sys.argv[2]))
