#!/usr/bin/env python3
"""host-upgrade benchmark (`make bench`): blackout and scaling, side by side
with the alternatives, on real QEMU (TCG) VMs of this machine.

  1. per-VM checkpoint time and state size vs guest RAM size, three methods:
     in-place (host-upgrade checkpoint: cpr-reboot + x-ignore-shared, RAM in a
     shared file on disk), full copy (stop + normal migrate to file:, what
     `virsh save` does), mapped-ram + multifd (4 channels) to file:;
  2. userland round trip per VM (checkpoint -> running again), interleaved in
     the same run: run --no-reboot by prelaunch, run --no-reboot --restart
     sequential, checkpoint + restore (flushed), and the naive raw-QMP floor
     (floor.py); ratios to the floor;
  3. scaling with the number of 128 MiB in-place VMs: checkpoint all, restore
     all, per-VM blackout (median, max); then run --no-reboot of as many VMs
     by prelaunch, per-VM blackout against the single VM's;
  4. plan with N VMs whose agent channels no agent answers (the guest never
     opens the port): the whole plan, and with --jobs 1.

Every measurement is repeated BENCH_RUNS times (default 3); tables show
medians. Targets are printed as met/missed, informational only.

Environment:
  BENCH_RUNS=3            repetitions of every measurement
  BENCH_SIZES="256M 1G 4G"  guest RAM sizes of parts 1 and 2
  BENCH_BIG=1             add 16G to BENCH_SIZES (needs ~35 GB disk, ~20 GB RAM)
  BENCH_VMS="1 2 4 8 16"  VM counts of part 3;  BENCH_SCALE_MEM=128M
  BENCH_PARTS="ram scale agent" which parts to run (round trip comes with "ram")
  BENCH_AGENT_VMS="1 4 16" VM counts of part 4
  BENCH_RESULTS=DIR       where results go (default bench/results)
  BENCH_TMP=/tmp          where the work dir (RAM files, state) is made
  BENCH_KEEP=1            keep the work dir
  BENCH_PROFILE=auto      after the tables, profile host-upgrade under strace
                          (results/profile.txt) when a target was missed;
                          1: always, 0: never
  HU=PATH QEMU=PATH       the host-upgrade binary, the QEMU binary

`bench.py profile [N...]` instead runs host-upgrade checkpoint and restore of
N VMs (default: 1, then 16) under strace and prints where the time goes
(results/profile.txt); see profile_hu.py.
"""
import atexit
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import floor  # noqa: E402
from qmpc import QMP, pid_alive, wait_pid_exit  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def mono_ms():
    return time.monotonic() * 1000.0


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMGT]?)i?B?", s.strip(), re.I)
    if not m:
        raise ValueError("bad size %r" % s)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


def size_label(b):
    return "%d GiB" % (b // GiB) if b >= GiB and b % GiB == 0 else "%d MiB" % (b // MiB)


def qemu_size(b):
    return "%dG" % (b // GiB) if b % GiB == 0 else "%dM" % (b // MiB)


def human_bytes(b):
    if b is None:
        return "-"
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if b >= div:
            return "%.2f %s" % (b / div, unit) if b < 10 * div else "%.1f %s" % (b / div, unit)
    return "%d B" % b


def fmt_ms(v):
    if v is None:
        return "-"
    if v >= 10000:
        return "%.1f s" % (v / 1000)
    if v >= 1000:
        return "%.2f s" % (v / 1000)
    if v >= 100:
        return "%.0f ms" % v
    return "%.1f ms" % v


def fmt_ratio(v):
    if v is None:
        return "-"
    return "%.0f×" % v if v >= 100 else "%.2f×" % v if v < 10 else "%.1f×" % v


def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def ratio(a, b):
    return a / b if a is not None and b else None


# --- processes ----------------------------------------------------------------------------


class Reaper:
    """Every QEMU we start (or that host-upgrade starts for us) is ended by
    pid on exit: the pids we know, plus any qemu-system-* whose argv names
    our work dir (the restored ones). Never by name."""

    def __init__(self, work):
        self.work = work.rstrip("/") + "/"
        self.pids = set()

    def add(self, pid):
        if pid:
            self.pids.add(int(pid))

    def _ours(self, pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            return False
        return (argv and os.path.basename(argv[0]).startswith(b"qemu-system-")
                and any(self.work.encode() in a for a in argv[1:]))

    def scan(self):
        found = set()
        for d in os.listdir("/proc"):
            if d.isdigit() and self._ours(int(d)):
                found.add(int(d))
        return found

    def kill(self, pids):
        pids = [p for p in pids if self._ours(p)]
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in pids:
            wait_pid_exit(p, 10)
        self.pids.difference_update(pids)

    def kill_all(self):
        self.kill(self.pids | self.scan())


class VM:
    def __init__(self, bench, name, mem, ram_file, share):
        self.b = bench
        self.name = name
        self.mem = mem
        self.ram_file = ram_file
        w = bench.work
        self.qmp_path = "%s/%s.qmp" % (w, name)
        self.serial = "%s/%s.serial" % (w, name)
        self.pidfile = "%s/%s.pid" % (w, name)
        self.log = "%s/%s.log" % (w, name)
        self.argv = [
            bench.qemu, "-machine", "pc,accel=tcg", "-cpu", "max", "-m", qemu_size(mem), "-smp", "1",
            "-nodefaults", "-display", "none", "-kernel", bench.guest, "-append", name,
            "-chardev", "file,id=ser0,path=%s,append=on" % self.serial, "-serial", "chardev:ser0",
            "-name", "guest=" + name, "-pidfile", self.pidfile,
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
            "-object", "memory-backend-file,id=ram0,size=%s,mem-path=%s,share=%s"
            % (qemu_size(mem), ram_file, "on" if share else "off"),
            "-machine", "memory-backend=ram0",
        ]
        self.pid = None

    def start(self):
        with open(self.log, "ab") as out:
            p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
        self.pid = p.pid
        self.b.reaper.add(p.pid)
        return self

    def boots(self):
        try:
            with open(self.serial, "rb") as f:
                return f.read().count(b"BOOT ")
        except OSError:
            return 0

    def wait_boot(self, timeout=60):
        deadline = time.monotonic() + timeout
        while self.boots() < 1:
            if not pid_alive(self.pid):
                raise RuntimeError("QEMU for %s exited during boot: %s" % (self.name, tail(self.log)))
            if time.monotonic() > deadline:
                raise RuntimeError("VM %s did not boot in %d s" % (self.name, timeout))
            time.sleep(0.02)

    def current_pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return self.pid

    def kill(self):
        self.b.reaper.kill({p for p in (self.pid, self.current_pid()) if p})


def hu_errors(stderr):
    """host-upgrade's stderr without its progress lines."""
    lines = [l for l in stderr.splitlines()
             if not re.search(r": (starting|restored|saving|saved|checkpointing|resum|all \d+ VM|restoring)", l)]
    return "\n".join(lines[-30:]) or stderr[-1500:]


def check_restart(stderr, names, sequential):
    """run --no-reboot restarted each VM the way asked: its progress line says
    "restarted by prelaunch" only for prelaunch (an ineligible VM would go
    sequential and be measured as the wrong method)."""
    for n in names:
        pre = re.search(r"^host-upgrade: (?:run: )?%s: restarted by prelaunch" % re.escape(n), stderr, re.M)
        if bool(pre) == sequential:
            raise RuntimeError("%s was restarted %s, not %s as asked:\n%s" % (
                n, "by prelaunch" if pre else "sequentially", "sequentially" if sequential else "by prelaunch",
                hu_errors(stderr)))


def settle():
    """After writing and deleting GBs: flush, wait until the kernel has no
    write-back left (at most 30 s), and let the freed blocks be discarded,
    so the next measurement's fsyncs do not queue behind this one's."""
    os.sync()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (meminfo("Dirty") or 0) + (meminfo("Writeback") or 0) > 16 * MiB:
        time.sleep(0.1)
    time.sleep(0.5)


def tail(path, n=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().splitlines()[-n:])
    except OSError:
        return "(no log)"


# --- the benchmark ------------------------------------------------------------------------


class Bench:
    def __init__(self):
        e = os.environ
        self.runs = int(e.get("BENCH_RUNS", "3"))
        sizes = e.get("BENCH_SIZES", "256M 1G 4G").split()
        if e.get("BENCH_BIG") == "1" and "16G" not in sizes:
            sizes.append("16G")
        self.sizes = sorted(parse_size(s) for s in sizes)
        self.counts = [int(x) for x in e.get("BENCH_VMS", "1 2 4 8 16").split()]
        self.scale_mem = parse_size(e.get("BENCH_SCALE_MEM", "128M"))
        self.parts = e.get("BENCH_PARTS", "ram scale agent").split()
        self.agent_counts = [int(x) for x in e.get("BENCH_AGENT_VMS", "1 4 16").split()]
        self.results = os.path.abspath(e.get("BENCH_RESULTS", os.path.join(HERE, "results")))
        self.hu_bin = os.path.abspath(e.get("HU", os.path.join(TOP, "build", "host-upgrade")))
        self.qemu = shutil.which(e.get("QEMU", "qemu-system-x86_64")) or e.get("QEMU", "qemu-system-x86_64")
        self.keep = e.get("BENCH_KEEP") == "1"
        self.tag = secrets.token_hex(2)
        # run-bench makes the work dir (its trap is the last line of defence);
        # run by hand, we make our own.
        self.work = e.get("BENCH_WORK") or tempfile.mkdtemp(prefix="hu-bench.", dir=e.get("BENCH_TMP", "/tmp"))
        if not os.path.isdir(self.work):
            os.makedirs(self.work, mode=0o700)
        self.reaper = Reaper(self.work)
        self.guest = os.path.join(self.work, "tick.elf")
        self.rows = {"ram": [], "roundtrip": [], "roundtrip_tmpfs": [], "scale": [], "scale_pre": [], "agent": []}
        self.notes = []
        self.failures = []
        atexit.register(self.cleanup)

    def cleanup(self):
        self.reaper.kill_all()
        if self.keep:
            log("work dir kept: %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- helpers

    def build_guest(self):
        subprocess.run([os.path.join(TOP, "tests", "guest", "build-tick.sh"), self.guest], check=True)

    def prefill(self, path, size):
        """A RAM file full of non-zero, non-repeating data, on disk (fdatasync)."""
        if os.path.exists(path) and os.path.getsize(path) == size:
            return
        chunk = 16 * MiB
        block = bytearray(os.urandom(chunk))
        t0 = mono_ms()
        with open(path, "wb") as f:
            for i in range(size // chunk):
                block[0:8] = (i + 1).to_bytes(8, "little")  # every chunk differs
                f.write(block)
            if size % chunk:
                f.write(block[: size % chunk])
            f.flush()
            os.fdatasync(f.fileno())
        log("filled %s (%s) in %.1f s" % (os.path.basename(path), size_label(size), (mono_ms() - t0) / 1000))

    def hu(self, verb, state_dir, names, extra=()):
        argv = [self.hu_bin, verb, "--state-dir", state_dir] + list(extra)
        for n in names:
            argv += ["--vm", n]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = mono_ms()
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            # wait4: the wall time and the CPU time of that process alone (the
            # QEMUs it starts are not its waited children).
            _, status, ru = os.wait4(child.pid, 0)
            ms = mono_ms() - t0
            child.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(argv, child.returncode, out.read().decode(errors="replace"),
                                            err.read().decode(errors="replace"))
        p.cpu_ms = (ru.ru_utime + ru.ru_stime) * 1000
        if p.returncode != 0:
            detail = [hu_errors(p.stderr)]
            st = subprocess.run([self.hu_bin, "status", "--state-dir", state_dir], capture_output=True, text=True)
            detail.append(st.stdout.strip())
            for n in names:
                lg = "%s/%s.log" % (state_dir, n)
                if os.path.exists(lg) and os.path.getsize(lg):
                    detail.append("%s.log: %s" % (n, tail(lg, 8)))
            raise RuntimeError("%s failed (exit %d):\n%s" % (" ".join(argv[:4]) + " ...", p.returncode,
                                                              "\n".join(detail)))
        return ms, p

    def hu_status(self, state_dir):
        p = subprocess.run([self.hu_bin, "status", "--json", "--state-dir", state_dir], capture_output=True,
                           text=True, check=True)
        st = json.loads(p.stdout)
        for v in st["vms"]:
            self.reaper.add(v.get("pid"))
        return st

    @staticmethod
    def saved_ms(stderr):
        """Per-VM stop->saved times from checkpoint's progress lines."""
        return {m.group(1): float(m.group(2))
                for m in re.finditer(r"^host-upgrade: (?:checkpoint: )?([^:\s]+): saved \d+ KiB in ([\d.]+) ms",
                                     stderr, re.M)}

    def attempt(self, what, fn, *args, **kwargs):
        """Run one measurement; a failure is recorded (results/failures.txt) and
        left out of the medians instead of ending the whole benchmark."""
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, OSError, ValueError, KeyError, TimeoutError, EOFError) as e:
            log("FAILED: %s: %s" % (what, str(e).splitlines()[0] if str(e) else type(e).__name__))
            self.failures.append("## %s\n%s: %s\n" % (what, type(e).__name__, e))
            return None

    def start_vms(self, vms):
        for vm in vms:
            vm.start()
        for vm in vms:
            vm.wait_boot()

    # -- part 1/2: one VM, by RAM size

    def hu_roundtrip(self, size, ram_file, run, state_root=None, extra=(), one_process=False, sequential=False):
        """checkpoint then restore (two processes), or `run --no-reboot` (one):
        by prelaunch, or with sequential, `--restart sequential` (quit, then
        start the new QEMU). The run's progress lines must say which it was."""
        kind = ("rs" if sequential else "rn") if one_process else "ip"
        name = "hb%s-%s%s-%d%s" % (self.tag, kind, qemu_size(size), run, "t" if state_root else "")
        vm = VM(self, name, size, ram_file, share=True).start()
        sd = "%s/state-%s" % (state_root or self.work, name)
        try:
            vm.wait_boot()
            if one_process:
                ck_ms, p = self.hu("run", sd, [name], ("--no-reboot", "--yes") +
                                   (("--restart", "sequential") if sequential else ()))
                check_restart(p.stderr, [name], sequential)
            else:
                ck_ms, p = self.hu("checkpoint", sd, [name], extra)
            save = self.saved_ms(p.stderr).get(name)
            state_bytes = os.path.getsize("%s/%s.state" % (sd, name))
            rs_ms, rs_cpu_ms = 0.0, 0.0
            if not one_process:
                rs_ms, p2 = self.hu("restore", sd, [name])
                rs_cpu_ms = p2.cpu_ms
            st = self.hu_status(sd)
            v = st["vms"][0]
            if v["state"] != "restored":
                raise RuntimeError("%s: state %s after restore: %s" % (name, v["state"], v.get("error")))
            if vm.boots() != 1:
                raise RuntimeError("%s booted %d times (expected once: restored, not rebooted)" % (name, vm.boots()))
            return {"ram_bytes": size, "run": run, "ckpt_cmd_ms": ck_ms, "save_ms": save,
                    "state_bytes": state_bytes, "restore_cmd_ms": rs_ms, "roundtrip_cmd_ms": ck_ms + rs_ms,
                    "blackout_ms": v["downtime_ms"], "ckpt_cpu_ms": p.cpu_ms, "restore_cpu_ms": rs_cpu_ms}
        finally:
            vm.kill()
            shutil.rmtree(sd, ignore_errors=True)

    def floor_roundtrip(self, size, ram_file, run, state_root=None):
        name = "hb%s-fl%s-%d%s" % (self.tag, qemu_size(size), run, "t" if state_root else "")
        vm = VM(self, name, size, ram_file, share=True).start()
        state = "%s/%s.state" % (state_root or self.work, name)
        try:
            vm.wait_boot()
            r = floor.roundtrip(vm.qmp_path, vm.pid, vm.argv, state, vm.log, on_spawn=self.reaper.add)
            r.pop("_popen")
            new_pid = r.pop("new_pid")
            if vm.boots() != 1:
                raise RuntimeError("%s booted %d times" % (name, vm.boots()))
            self.reaper.kill({new_pid})
            r.update({"ram_bytes": size, "run": run})
            return r
        finally:
            vm.kill()
            if os.path.exists(state):
                os.unlink(state)

    def copy_save(self, size, ram_file, run, mapped):
        """stop + migrate (normal mode, RAM private) to a file + fsync, as virsh save does."""
        method = "mapped" if mapped else "full"
        name = "hb%s-%s%s-%d" % (self.tag, method, qemu_size(size), run)
        vm = VM(self, name, size, ram_file, share=False).start()
        state = "%s/%s.state" % (self.work, name)
        try:
            vm.wait_boot()
            q = QMP(vm.qmp_path, pid=vm.pid)
            caps = [{"capability": "events", "state": True}]
            params = {"max-bandwidth": 1 << 40}
            if mapped:
                caps += [{"capability": "mapped-ram", "state": True}, {"capability": "multifd", "state": True}]
                params["multifd-channels"] = 4
            q.cmd("migrate-set-capabilities", {"capabilities": caps})
            q.cmd("migrate-set-parameters", params)
            t0 = mono_ms()
            q.cmd("stop")
            q.cmd("migrate", {"uri": "file:" + state})
            q.wait_migration(timeout=3600)
            t1 = mono_ms()
            fd = os.open(state, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            t2 = mono_ms()
            info = q.cmd("query-migrate")
            q.close()
            st = os.stat(state)
            ram = info.get("ram", {})
            return {"ram_bytes": size, "run": run, "method": method, "migrate_ms": t1 - t0, "save_ms": t2 - t0,
                    "state_bytes": st.st_size, "state_alloc_bytes": st.st_blocks * 512,
                    "normal_pages": ram.get("normal"), "zero_pages": ram.get("duplicate")}
        finally:
            vm.kill()
            if os.path.exists(state):
                os.unlink(state)
            settle()

    def part_ram(self):
        for size in self.sizes:
            ram_file = "%s/ram-%s.img" % (self.work, qemu_size(size))
            self.prefill(ram_file, size)
            for run in range(self.runs):
                what = "%s run %d/%d" % (size_label(size), run + 1, self.runs)
                log("%s: host-upgrade round trip" % what)
                r = self.attempt(what + ": host-upgrade round trip", self.hu_roundtrip, size, ram_file, run)
                if r:
                    self.rows["roundtrip"].append(dict(r, method="host-upgrade"))
                log("%s: host-upgrade run --no-reboot (prelaunch)" % what)
                r = self.attempt(what + ": host-upgrade run --no-reboot (prelaunch)", self.hu_roundtrip, size,
                                 ram_file, run, one_process=True)
                if r:
                    self.rows["roundtrip"].append(dict(r, method="run"))
                log("%s: host-upgrade run --no-reboot --restart sequential" % what)
                r = self.attempt(what + ": host-upgrade run --no-reboot --restart sequential", self.hu_roundtrip,
                                 size, ram_file, run, one_process=True, sequential=True)
                if r:
                    self.rows["roundtrip"].append(dict(r, method="run-sequential"))
                log("%s: raw-QMP floor" % what)
                r = self.attempt(what + ": raw-QMP floor", self.floor_roundtrip, size, ram_file, run)
                if r:
                    self.rows["roundtrip"].append(dict(r, method="floor"))
                for mapped in (False, True):
                    label = "mapped-ram + multifd" if mapped else "full copy"
                    log("%s: %s" % (what, label))
                    r = self.attempt("%s: %s" % (what, label), self.copy_save, size, ram_file, run, mapped)
                    if not r:
                        continue
                    if not mapped and r["state_bytes"] < 0.95 * size:
                        self.notes.append("full copy of %s wrote only %s: RAM not all non-zero?"
                                          % (size_label(size), human_bytes(r["state_bytes"])))
                    self.rows["ram"].append(r)
            os.unlink(ram_file)
        self.part_roundtrip_tmpfs()

    def part_roundtrip_tmpfs(self):
        """The round trip with nothing to flush: RAM file and state dir on tmpfs,
        `checkpoint --no-reboot` (a QEMU restart without a reboot). What is left
        of the difference to the floor is host-upgrade's own work and its two
        processes, not the disk."""
        size = min(self.sizes)
        shm = tempfile.mkdtemp(prefix="hu-bench.", dir="/dev/shm")
        try:
            ram_file = os.path.join(shm, "ram.img")
            self.prefill(ram_file, size)
            for run in range(self.runs):
                what = "%s run %d/%d, tmpfs" % (size_label(size), run + 1, self.runs)
                log("%s: host-upgrade round trip --no-reboot" % what)
                r = self.attempt(what + ": host-upgrade", self.hu_roundtrip, size, ram_file, run, shm,
                                 ("--no-reboot",))
                if r:
                    self.rows["roundtrip_tmpfs"].append(dict(r, method="host-upgrade"))
                log("%s: raw-QMP floor" % what)
                r = self.attempt(what + ": floor", self.floor_roundtrip, size, ram_file, run, shm)
                if r:
                    self.rows["roundtrip_tmpfs"].append(dict(r, method="floor"))
        finally:
            shutil.rmtree(shm, ignore_errors=True)

    # -- part 3: many small VMs

    def part_scale(self):
        files = []
        for i in range(max(self.counts)):
            f = "%s/scale-%02d.img" % (self.work, i)
            self.prefill(f, self.scale_mem)
            files.append(f)
        for n in self.counts:
            for run in range(self.runs):
                log("scaling: %d VM%s, run %d/%d" % (n, "" if n == 1 else "s", run + 1, self.runs))
                r = self.attempt("scaling: %d VMs, run %d/%d" % (n, run + 1, self.runs), self.scale_run, files, n, run)
                if r:
                    self.rows["scale"].append(r)
                log("scaling: %d VM%s by prelaunch, run %d/%d" % (n, "" if n == 1 else "s", run + 1, self.runs))
                r = self.attempt("scaling: %d VMs by prelaunch, run %d/%d" % (n, run + 1, self.runs),
                                 self.scale_run, files, n, run, prelaunch=True)
                if r:
                    self.rows["scale_pre"].append(r)

    def scale_run(self, files, n, run, prelaunch=False):
        """n fresh VMs: one `checkpoint` and one `restore` of all of them, or
        with prelaunch one `run --no-reboot` (prelaunch); each VM's blackout."""
        names = ["hb%s-%s%02d-%d-%02d" % (self.tag, "p" if prelaunch else "s", n, run, i) for i in range(n)]
        vms = [VM(self, nm, self.scale_mem, files[i], share=True) for i, nm in enumerate(names)]
        sd = "%s/state-%s%02d-%d" % (self.work, "p" if prelaunch else "s", n, run)
        try:
            self.start_vms(vms)
            if prelaunch:
                run_ms, p = self.hu("run", sd, names, ("--no-reboot", "--yes"))
                check_restart(p.stderr, names, False)
                row = {"vms": n, "run": run, "run_cmd_ms": run_ms, "run_cpu_ms": p.cpu_ms}
            else:
                ck_ms, p = self.hu("checkpoint", sd, names)
                rs_ms, p2 = self.hu("restore", sd, names)
                row = {"vms": n, "run": run, "ckpt_cmd_ms": ck_ms, "restore_cmd_ms": rs_ms,
                       "ckpt_cpu_ms": p.cpu_ms, "restore_cpu_ms": p2.cpu_ms}
            saves = list(self.saved_ms(p.stderr).values())
            st = self.hu_status(sd)
            down = [v["downtime_ms"] for v in st["vms"]]
            bad = [v["name"] for v in st["vms"] if v["state"] != "restored"]
            bad += [vm.name for vm in vms if vm.boots() != 1]
            if bad:
                raise RuntimeError("not restored (or rebooted): %s" % ", ".join(bad))
            row.update({"blackout_median_ms": statistics.median(down), "blackout_max_ms": max(down),
                        "blackout_min_ms": min(down), "save_median_ms": med(saves),
                        "save_max_ms": max(saves or [0])})
            return row
        finally:
            for vm in vms:
                vm.kill()
            shutil.rmtree(sd, ignore_errors=True)

    # -- part 4: plan with agent channels nobody answers on

    def part_agent(self):
        for n in self.agent_counts:
            for run in range(self.runs):
                log("agent probe: %d VM%s, run %d/%d" % (n, "" if n == 1 else "s", run + 1, self.runs))
                r = self.attempt("agent probe: %d VMs, run %d/%d" % (n, run + 1, self.runs), self.agent_run, n, run)
                if r:
                    self.rows["agent"].append(r)

    def agent_run(self, n, run):
        names = ["hb%s-a%02d-%d-%02d" % (self.tag, n, run, i) for i in range(n)]
        vms = []
        for nm in names:
            vm = VM(self, nm, 64 * MiB, "%s/%s.ram" % (self.work, nm), share=True)
            # tick.S has no virtio driver: the port stays closed, as in a guest running no agent
            vm.argv += ["-chardev", "socket,id=qga0,path=%s/%s.qga,server=on,wait=off" % (self.work, nm),
                        "-device", "virtio-serial",
                        "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]
            vms.append(vm)
        sd = "%s/state-a%02d-%d" % (self.work, n, run)
        try:
            self.start_vms(vms)
            plan_ms, p = self.hu("plan", sd, names, ("--json",))
            serial_ms, _ = self.hu("plan", sd, names, ("--jobs", "1"))
            states = sorted({v.get("agent") or "?" for v in json.loads(p.stdout)["vms"]})
            return {"vms": n, "run": run, "plan_ms": plan_ms, "plan_jobs1_ms": serial_ms, "agent": "/".join(states)}
        finally:
            for vm in vms:
                vm.kill()
                try:
                    os.unlink(vm.ram_file)
                except OSError:
                    pass
            shutil.rmtree(sd, ignore_errors=True)

    # -- checks before we start

    def preflight(self):
        """Drop the sizes this machine cannot hold: on disk a RAM file and one
        state file of that size at a time; in memory the RAM file's page cache."""
        st = os.statvfs(self.work)
        free_disk = st.f_bavail * st.f_frsize
        mem_avail = meminfo("MemAvailable")
        log("work dir %s: %s free on disk, %s memory available" % (self.work, human_bytes(free_disk),
                                                                human_bytes(mem_avail)))
        keep = []
        for s in self.sizes:
            if 2 * s + 2 * GiB > free_disk:
                self.notes.append("skipped %s: %s free in %s, needs %s" % (
                    size_label(s), human_bytes(free_disk), self.work, human_bytes(2 * s + 2 * GiB)))
            elif s + 2 * GiB > mem_avail:
                self.notes.append("skipped %s: %s memory available, needs %s" % (
                    size_label(s), human_bytes(mem_avail), human_bytes(s + 2 * GiB)))
            else:
                keep.append(s)
        if "scale" in self.parts and max(self.counts) * self.scale_mem + 2 * GiB > free_disk:
            sys.exit("bench: not enough disk space in %s for %d VMs of %s" % (
                self.work, max(self.counts), size_label(self.scale_mem)))
        for n in self.notes:
            log(n)
        self.sizes = keep

    def run(self):
        for tool, why in ((self.hu_bin, "run `make` first"), (self.qemu, "install qemu-system-x86 (QEMU 10)")):
            if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
                sys.exit("bench: %s not found: %s" % (tool, why))
        self.machine = machine_info(self.qemu, self.work)
        self.started = datetime.datetime.now().astimezone()
        self.build_guest()
        self.preflight()
        t0 = time.monotonic()
        if "ram" in self.parts and self.sizes:
            self.part_ram()
        if "scale" in self.parts:
            self.part_scale()
        if "agent" in self.parts:
            self.part_agent()
        self.elapsed = time.monotonic() - t0
        self.machine["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        report = Report(self)
        report.write()
        missed = [t for met, t in report.targets if not met]
        mode = os.environ.get("BENCH_PROFILE", "auto")
        if mode == "1" or (mode == "auto" and missed and "scale" in self.parts):
            if shutil.which("strace"):
                import profile_hu
                log("profiling host-upgrade under strace (%s)" % ("asked for" if mode == "1" else
                                                                 "%d target%s missed" % (len(missed), "" if len(missed) == 1 else "s")))
                sys.stdout.write("\n")
                profile_hu.run(self, sorted({1, max(self.counts)}))
            else:
                log("no profile: strace is not installed")


# --- results ------------------------------------------------------------------------------


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def machine_info(qemu, work):
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    qv = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()
    fs = subprocess.run(["df", "--output=source,fstype", work], capture_output=True, text=True).stdout.split()
    git = subprocess.run(["git", "-C", TOP, "describe", "--always", "--dirty"], capture_output=True,
                         text=True).stdout.strip()
    others = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/comm" % d) as f:
                    others += f.read().startswith("qemu-system")
            except OSError:
                pass
    return {
        "nproc": os.cpu_count(), "cpu": model, "mem": human_bytes(meminfo("MemTotal")),
        "kernel": platform.release(), "qemu": qv[0] if qv else "?",
        "disk": "%s (%s)" % (fs[-2], fs[-1]) if len(fs) >= 2 else "?",
        "host_upgrade": git or "?", "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "other_qemus": others,
    }


class Report:
    def __init__(self, b):
        self.b = b
        self.md = []
        self.targets = []

    def p(self, line=""):
        self.md.append(line)

    def write_csv(self, name, rows, cols=None):
        if not rows:
            return
        cols = cols or list(dict.fromkeys(k for r in rows for k in r))
        with open(os.path.join(self.b.results, name), "w") as f:
            f.write(",".join(cols) + "\n")
            for r in rows:
                f.write(",".join("" if r.get(c) is None else
                                 ("%.3f" % r[c] if isinstance(r[c], float) else str(r[c])) for c in cols) + "\n")

    def machine(self):
        m = self.b.machine
        self.p("Machine: %s × %s, %s RAM, kernel %s, %s; work dir on %s; host-upgrade %s."
               % (m["nproc"], m["cpu"], m["mem"], m["kernel"], m["qemu"], m["disk"], m["host_upgrade"]))
        self.p("Load average %s at the start, %s at the end; %d other QEMU process%s running at the start."
               % (" ".join(m["loadavg_start"]), " ".join(m["loadavg_end"]), m["other_qemus"],
                  "" if m["other_qemus"] == 1 else "es"))
        busy = float(m["loadavg_start"][0]) > m["nproc"] or float(m["loadavg_end"][0]) > m["nproc"]
        if busy or m["other_qemus"]:
            self.p("**The machine was busy** (load above %d cores, or other QEMUs running): absolute times are "
                   "inflated and noisy; the ratios, measured side by side in this run, are the figures to read."
                   % m["nproc"])
        self.p("Guests: TCG (`-machine pc,accel=tcg`), 1 vCPU, a 2 KB multiboot guest (tests/guest/tick.S) that "
               "counts on COM1; guest RAM is a file filled with non-zero, non-repeating data before QEMU starts "
               "(`share=on` for in-place, `share=off` — private copy-on-write — for the copying methods). "
               "%d runs per measurement, medians shown; %.0f s in all." % (self.b.runs, self.b.elapsed))

    def part_ram(self):
        b = self.b
        ram, rt = b.rows["ram"], b.rows["roundtrip"]
        if not ram:
            return
        self.p()
        self.p("## 1. Checkpoint time and state size vs guest RAM (one VM)")
        self.p()
        self.p("In-place: `host-upgrade checkpoint` (cpr-reboot + x-ignore-shared, RAM in a shared file on disk), "
               "whole command (discover, save, fsync, quit) and the VM's stop→saved part. Full copy: `stop` + "
               "`migrate` to `file:` in normal mode (RAM private, max-bandwidth 1 TiB/s) + fsync of the file, "
               "as `virsh save` does. Mapped-ram: the same with the mapped-ram and multifd capabilities, "
               "4 channels. Ratios: copy time ÷ the `host-upgrade checkpoint` command time.")
        self.p()
        self.p("| guest RAM | in-place: checkpoint command | in-place: stop→saved | in-place state | "
               "full copy | full copy state | mapped-ram + multifd | mapped-ram state (allocated) | "
               "full copy ÷ in-place | mapped-ram ÷ in-place |")
        self.p("|---|---|---|---|---|---|---|---|---|---|")
        summary = []
        for s in b.sizes:
            hu = [r for r in rt if r["ram_bytes"] == s and r["method"] == "host-upgrade"]
            fl = [r for r in rt if r["ram_bytes"] == s and r["method"] == "floor"]
            full = [r for r in ram if r["ram_bytes"] == s and r["method"] == "full"]
            mp = [r for r in ram if r["ram_bytes"] == s and r["method"] == "mapped"]
            row = {
                "ram_bytes": s, "ram_mib": s // MiB,
                "inplace_ckpt_cmd_ms": med(r["ckpt_cmd_ms"] for r in hu),
                "inplace_save_ms": med(r["save_ms"] for r in hu),
                "inplace_state_bytes": med(r["state_bytes"] for r in hu),
                "floor_save_ms": med(r["save_ms"] for r in fl),
                "full_ms": med(r["save_ms"] for r in full),
                "full_migrate_ms": med(r["migrate_ms"] for r in full),
                "full_state_bytes": med(r["state_bytes"] for r in full),
                "mapped_ms": med(r["save_ms"] for r in mp),
                "mapped_migrate_ms": med(r["migrate_ms"] for r in mp),
                "mapped_state_bytes": med(r["state_bytes"] for r in mp),
                "mapped_state_alloc_bytes": med(r["state_alloc_bytes"] for r in mp),
            }
            row["full_over_inplace"] = ratio(row["full_ms"], row["inplace_ckpt_cmd_ms"])
            row["mapped_over_inplace"] = ratio(row["mapped_ms"], row["inplace_ckpt_cmd_ms"])
            row["full_over_inplace_save"] = ratio(row["full_ms"], row["inplace_save_ms"])
            summary.append(row)
            self.p("| %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s | %s |" % (
                size_label(s), fmt_ms(row["inplace_ckpt_cmd_ms"]), fmt_ms(row["inplace_save_ms"]),
                human_bytes(row["inplace_state_bytes"]), fmt_ms(row["full_ms"]),
                human_bytes(row["full_state_bytes"]), fmt_ms(row["mapped_ms"]),
                human_bytes(row["mapped_state_bytes"]), human_bytes(row["mapped_state_alloc_bytes"]),
                fmt_ratio(row["full_over_inplace"]), fmt_ratio(row["mapped_over_inplace"])))
        self.p()
        self.p("Copy times without the final fsync (stop→migration completed): " + ", ".join(
            "%s full %s, mapped-ram %s" % (size_label(r["ram_bytes"]), fmt_ms(r["full_migrate_ms"]),
                                           fmt_ms(r["mapped_migrate_ms"])) for r in summary) + ".")
        self.write_csv("ram.csv", summary)
        self.ram_summary = summary
        with open(os.path.join(b.results, "ram.dat"), "w") as f:
            f.write("# ram_mib inplace_cmd_ms inplace_save_ms floor_save_ms full_ms mapped_ms\n")
            for r in summary:
                f.write("%d %s %s %s %s %s\n" % (r["ram_mib"], *["%.3f" % r[k] if r[k] is not None else "NaN" for k in (
                    "inplace_ckpt_cmd_ms", "inplace_save_ms", "floor_save_ms", "full_ms", "mapped_ms")]))
        big = [r for r in summary if r["ram_bytes"] == 4 * GiB] or summary[-1:]
        if big:
            r = big[0]
            # The full copy is timed from the guest's stop to its state on disk:
            # the in-place figure timed the same way is the VM's stop→saved.
            # The whole command (process start, discovery, quit) is shown too.
            met = r["full_over_inplace_save"] is not None and r["full_over_inplace_save"] >= 1000
            self.targets.append((met, "in-place checkpoint ≥ 1000× faster than the full copy at %s, per VM timed "
                                 "as the copy is (guest stopped → state durable): full copy %s ÷ stop→saved %s = %s" % (
                                     size_label(r["ram_bytes"]), fmt_ms(r["full_ms"]),
                                     fmt_ms(r["inplace_save_ms"]), fmt_ratio(r["full_over_inplace_save"]))))
            top = summary[-1]
            if top["ram_bytes"] > r["ram_bytes"] and top["full_over_inplace_save"] is not None:
                self.targets.append((top["full_over_inplace_save"] >= 1000, "the same at %s (informational: the "
                                     "target names 4 GiB): full copy %s ÷ stop→saved %s = %s" % (
                                         size_label(top["ram_bytes"]), fmt_ms(top["full_ms"]),
                                         fmt_ms(top["inplace_save_ms"]), fmt_ratio(top["full_over_inplace_save"]))))
            met = r["full_over_inplace"] is not None and r["full_over_inplace"] >= 1000
            self.targets.append((met, "the same against the whole `host-upgrade checkpoint` command (process start, "
                                 "discovery, quit included): %s ÷ %s = %s" % (
                                     fmt_ms(r["full_ms"]), fmt_ms(r["inplace_ckpt_cmd_ms"]),
                                     fmt_ratio(r["full_over_inplace"]))))
        if len(summary) >= 2:
            lo, hi = summary[0], summary[-1]
            fl = ratio(hi["inplace_ckpt_cmd_ms"], lo["inplace_ckpt_cmd_ms"])
            self.targets.append((fl is not None and fl <= 1.5, "in-place checkpoint flat in RAM size (≤ 1.5× from %s "
                                 "to %s, informational reading of \"flat\"): %s → %s = %s" % (
                                     size_label(lo["ram_bytes"]), size_label(hi["ram_bytes"]),
                                     fmt_ms(lo["inplace_ckpt_cmd_ms"]), fmt_ms(hi["inplace_ckpt_cmd_ms"]),
                                     fmt_ratio(fl))))

    def part_roundtrip(self):
        b = self.b
        rt = b.rows["roundtrip"]
        if not rt:
            return
        self.p()
        self.p("## 2. Userland round trip per VM (checkpoint → running again)")
        self.p()
        self.p("A QEMU-only upgrade, measured four ways side by side, interleaved in this run at every size. "
               "**prelaunch**: `host-upgrade run --no-reboot` (the new QEMU is started with -incoming defer beside "
               "the running one; then the old one is saved, the new one loads, the old one is ended: the blackout is "
               "save + load). **sequential**: `host-upgrade run --no-reboot --restart sequential` (save, quit, start "
               "the new QEMU, wait for its QMP, load — the path before prelaunch). Both restore at once in the same "
               "process, nothing flushed but the manifest. **checkpoint + restore**: two commands, the checkpoint "
               "flushed (state file and RAM fsync'ed) because a reboot may follow it. **floor**: bench/floor.py "
               "issues the naive sequence directly (cpr-reboot + x-ignore-shared, migrate file:, wait completed, "
               "quit, start with -incoming defer, wait QMP, same caps/mode, migrate-incoming, wait RESUME), timed "
               "from stop to running, no fsync. Blackout = `status --json` downtime_ms (host-upgrade's stop → "
               "running again); ratios are ÷ the floor's blackout of the same run.")
        self.p()
        self.p("| guest RAM | floor | prelaunch | prelaunch ÷ floor | sequential | sequential ÷ floor | "
               "checkpoint + restore (flushed) | ÷ floor |")
        self.p("|---|---|---|---|---|---|---|---|")
        summary = []
        for s in b.sizes:
            by = {m: [r for r in rt if r["ram_bytes"] == s and r["method"] == m]
                  for m in ("host-upgrade", "run", "run-sequential", "floor")}
            hu, rn, sq, fl = by["host-upgrade"], by["run"], by["run-sequential"], by["floor"]
            row = {"ram_bytes": s, "floor_blackout_ms": med(r["blackout_ms"] for r in fl),
                   "run_blackout_ms": med(r["blackout_ms"] for r in rn),
                   "run_save_ms": med(r["save_ms"] for r in rn),
                   "run_cmd_ms": med(r["roundtrip_cmd_ms"] for r in rn),
                   "run_cpu_ms": med(r["ckpt_cpu_ms"] for r in rn),
                   "seq_blackout_ms": med(r["blackout_ms"] for r in sq),
                   "seq_save_ms": med(r["save_ms"] for r in sq),
                   "seq_cmd_ms": med(r["roundtrip_cmd_ms"] for r in sq),
                   "seq_cpu_ms": med(r["ckpt_cpu_ms"] for r in sq),
                   "hu_blackout_ms": med(r["blackout_ms"] for r in hu),
                   "hu_ckpt_cmd_ms": med(r["ckpt_cmd_ms"] for r in hu),
                   "hu_restore_cmd_ms": med(r["restore_cmd_ms"] for r in hu),
                   "hu_roundtrip_cmd_ms": med(r["roundtrip_cmd_ms"] for r in hu),
                   "hu_ckpt_cpu_ms": med(r["ckpt_cpu_ms"] for r in hu),
                   "hu_restore_cpu_ms": med(r["restore_cpu_ms"] for r in hu),
                   "floor_total_ms": med(r["total_ms"] for r in fl),
                   "runs_prelaunch": len(rn), "runs_sequential": len(sq), "runs_floor": len(fl)}
            for k in ("save_ms", "quit_ms", "spawn_ms", "qmp_up_ms", "load_ms"):
                row["floor_" + k] = med(r[k] for r in fl)
            row["run_blackout_ratio"] = ratio(row["run_blackout_ms"], row["floor_blackout_ms"])
            row["seq_blackout_ratio"] = ratio(row["seq_blackout_ms"], row["floor_blackout_ms"])
            row["blackout_ratio"] = ratio(row["hu_blackout_ms"], row["floor_blackout_ms"])
            row["run_cmd_ratio"] = ratio(row["run_cmd_ms"], row["floor_total_ms"])
            row["seq_cmd_ratio"] = ratio(row["seq_cmd_ms"], row["floor_total_ms"])
            row["cmd_ratio"] = ratio(row["hu_roundtrip_cmd_ms"], row["floor_total_ms"])
            summary.append(row)
            self.p("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                size_label(s), fmt_ms(row["floor_blackout_ms"]), fmt_ms(row["run_blackout_ms"]),
                fmt_ratio(row["run_blackout_ratio"]), fmt_ms(row["seq_blackout_ms"]),
                fmt_ratio(row["seq_blackout_ratio"]), fmt_ms(row["hu_blackout_ms"]),
                fmt_ratio(row["blackout_ratio"])))
        self.p()
        self.p("The whole commands (process start to exit; prelaunch's includes starting the new QEMU before the "
               "guest stops):")
        self.p()
        self.p("| guest RAM | prelaunch `run --no-reboot` | sequential `run --no-reboot` | checkpoint + restore | "
               "floor total (incl. setup) | ratios ÷ floor total (prelaunch; sequential; checkpoint + restore) |")
        self.p("|---|---|---|---|---|---|")
        for row in summary:
            self.p("| %s | %s | %s | %s + %s = %s | %s | %s; %s; %s |" % (
                size_label(row["ram_bytes"]), fmt_ms(row["run_cmd_ms"]), fmt_ms(row["seq_cmd_ms"]),
                fmt_ms(row["hu_ckpt_cmd_ms"]), fmt_ms(row["hu_restore_cmd_ms"]), fmt_ms(row["hu_roundtrip_cmd_ms"]),
                fmt_ms(row["floor_total_ms"]), fmt_ratio(row["run_cmd_ratio"]), fmt_ratio(row["seq_cmd_ratio"]),
                fmt_ratio(row["cmd_ratio"])))
        self.p()
        self.p("Prelaunch blackout = the old QEMU's save (its stop→saved progress line) + the rest (the new QEMU's "
               "migration settings, the manifest records, the load, ending the old QEMU): " + "; ".join(
                   "%s: %s + %s" % (size_label(r["ram_bytes"]), fmt_ms(r["run_save_ms"]),
                                    fmt_ms(r["run_blackout_ms"] - r["run_save_ms"])
                                    if r["run_blackout_ms"] is not None and r["run_save_ms"] is not None else "-")
                   for r in summary) + ".")
        self.p()
        self.p("host-upgrade's own CPU time (user + sys): prelaunch " + ", ".join(
            "%s %s" % (size_label(r["ram_bytes"]), fmt_ms(r["run_cpu_ms"])) for r in summary) +
            "; sequential " + ", ".join(
            "%s %s" % (size_label(r["ram_bytes"]), fmt_ms(r["seq_cpu_ms"])) for r in summary) +
            "; checkpoint + restore " + ", ".join(
            "%s %s + %s" % (size_label(r["ram_bytes"]), fmt_ms(r["hu_ckpt_cpu_ms"]), fmt_ms(r["hu_restore_cpu_ms"]))
            for r in summary) + ".")
        self.p()
        self.p("Floor steps (medians): " + "; ".join(
            "%s: save %s, quit %s, spawn %s, QMP up %s, load→running %s" % (
                size_label(r["ram_bytes"]), fmt_ms(r["floor_save_ms"]), fmt_ms(r["floor_quit_ms"]),
                fmt_ms(r["floor_spawn_ms"]), fmt_ms(r["floor_qmp_up_ms"]), fmt_ms(r["floor_load_ms"]))
            for r in summary) + ".")
        self.write_csv("roundtrip.csv", summary)
        tm = b.rows["roundtrip_tmpfs"]
        if tm:
            hu_b = med(r["blackout_ms"] for r in tm if r["method"] == "host-upgrade")
            fl_b = med(r["blackout_ms"] for r in tm if r["method"] == "floor")
            size = tm[0]["ram_bytes"]
            self.p()
            self.p("With nothing to flush — RAM file and state dir on tmpfs, `checkpoint --no-reboot` (restarting "
                   "QEMU without a reboot), the floor on the same tmpfs: %s blackout %s vs floor %s = %s. What is "
                   "left is host-upgrade's own work and its two process starts." % (
                       size_label(size), fmt_ms(hu_b), fmt_ms(fl_b), fmt_ratio(ratio(hu_b, fl_b))))
            self.write_csv("runs-roundtrip-tmpfs.csv", tm)
            r = ratio(hu_b, fl_b)
            self.targets.append((r is not None and r <= 1.2, "round trip ≤ 1.2× the floor with nothing to flush "
                                 "(tmpfs, --no-reboot; informational, the disk's share left out): %s vs %s = %s" % (
                                     fmt_ms(hu_b), fmt_ms(fl_b), fmt_ratio(r))))
        for r in summary:
            # #16: prelaunch ≤ 0.3× the naive floor, at every size.
            rr = r["run_blackout_ratio"]
            self.targets.append((rr is not None and rr <= 0.3, "%s: blackout of `run --no-reboot` (prelaunch) ≤ "
                                 "0.3× the raw-QMP floor: %s vs %s = %s (sequential: %s = %s)" % (
                                     size_label(r["ram_bytes"]), fmt_ms(r["run_blackout_ms"]),
                                     fmt_ms(r["floor_blackout_ms"]), fmt_ratio(rr), fmt_ms(r["seq_blackout_ms"]),
                                     fmt_ratio(r["seq_blackout_ratio"]))))
        for key, what in (
                ("seq_blackout", "round trip ≤ 1.2× the raw-QMP floor, `run --no-reboot --restart sequential` "
                 "(the path before prelaunch, one command; #7's target): blackout"),
                ("seq_cmd", "the same, whole sequential `run --no-reboot` command vs the floor's total"),
                ("blackout", "round trip ≤ 1.2× the floor, checkpoint + restore flushed for a reboot (two commands, "
                 "fsync of state and RAM on this disk): blackout"),
                ("cmd", "the same, whole checkpoint + restore commands")):
            have = [r for r in summary if r[key + "_ratio"] is not None]
            if not have:
                continue
            worst = max(have, key=lambda r: r[key + "_ratio"])
            num = {"seq_blackout": "seq_blackout_ms", "seq_cmd": "seq_cmd_ms", "blackout": "hu_blackout_ms",
                   "cmd": "hu_roundtrip_cmd_ms"}[key]
            den = "floor_total_ms" if key.endswith("cmd") else "floor_blackout_ms"
            self.targets.append((worst[key + "_ratio"] <= 1.2, "%s %s = %s (worst size, %s)" % (
                what, "%s vs %s" % (fmt_ms(worst[num]), fmt_ms(worst[den])), fmt_ratio(worst[key + "_ratio"]),
                size_label(worst["ram_bytes"]))))

    def part_scale(self):
        b = self.b
        sc = b.rows["scale"]
        if not sc and not b.rows["scale_pre"]:
            return
        self.p()
        self.p("## 3. Scaling with the number of VMs (%s each, RAM in place)" % size_label(b.scale_mem))
        self.p()
        self.p("One `host-upgrade checkpoint` and one `host-upgrade restore` for all VMs (--vm per VM); blackout "
               "per VM from `status --json`; per run the median and max over the VMs, then the median over runs.")
        self.p()
        self.p("| VMs | checkpoint all | restore all | blackout median | blackout max | stop→saved median (max) | "
               "host-upgrade CPU: checkpoint + restore |")
        self.p("|---|---|---|---|---|---|---|")
        summary = []
        for n in b.counts:
            rs = [r for r in sc if r["vms"] == n]
            if not rs:
                continue
            row = {"vms": n}
            for k in ("ckpt_cmd_ms", "restore_cmd_ms", "blackout_median_ms", "blackout_max_ms",
                      "save_median_ms", "save_max_ms", "ckpt_cpu_ms", "restore_cpu_ms"):
                row[k] = med(r[k] for r in rs)
            summary.append(row)
            self.p("| %d | %s | %s | %s | %s | %s (%s) | %s + %s |" % (
                n, fmt_ms(row["ckpt_cmd_ms"]), fmt_ms(row["restore_cmd_ms"]), fmt_ms(row["blackout_median_ms"]),
                fmt_ms(row["blackout_max_ms"]), fmt_ms(row["save_median_ms"]), fmt_ms(row["save_max_ms"]),
                fmt_ms(row["ckpt_cpu_ms"]), fmt_ms(row["restore_cpu_ms"])))
        pre = b.rows["scale_pre"]
        if pre:
            self.p()
            self.p("The same VMs by prelaunch: one `host-upgrade run --no-reboot` for all of them (fresh VMs, run "
                   "after the checkpoint + restore of the same count); per run the median and max blackout over the "
                   "VMs, then the median over runs. Ratios: ÷ the blackout of the single VM restarted the same way in "
                   "this run (the 1-VM row).")
            self.p()
            self.p("| VMs | run --no-reboot (all) | blackout median | blackout max | median ÷ 1 VM | max ÷ 1 VM | "
                   "stop→saved median (max) | host-upgrade CPU |")
            self.p("|---|---|---|---|---|---|---|---|")
            single = med(r["blackout_median_ms"] for r in pre if r["vms"] == 1)
            by_n = {r["vms"]: r for r in summary}
            for n in b.counts:
                rs = [r for r in pre if r["vms"] == n]
                if not rs:
                    continue
                row = by_n.setdefault(n, {"vms": n})
                for k in ("run_cmd_ms", "blackout_median_ms", "blackout_max_ms", "save_median_ms", "save_max_ms",
                          "run_cpu_ms"):
                    row["prelaunch_" + k] = med(r[k] for r in rs)
                row["prelaunch_single_blackout_ms"] = single
                row["prelaunch_median_over_single"] = ratio(row["prelaunch_blackout_median_ms"], single)
                row["prelaunch_max_over_single"] = ratio(row["prelaunch_blackout_max_ms"], single)
                self.p("| %d | %s | %s | %s | %s | %s | %s (%s) | %s |" % (
                    n, fmt_ms(row["prelaunch_run_cmd_ms"]), fmt_ms(row["prelaunch_blackout_median_ms"]),
                    fmt_ms(row["prelaunch_blackout_max_ms"]), fmt_ratio(row["prelaunch_median_over_single"]),
                    fmt_ratio(row["prelaunch_max_over_single"]), fmt_ms(row["prelaunch_save_median_ms"]),
                    fmt_ms(row["prelaunch_save_max_ms"]), fmt_ms(row["prelaunch_run_cpu_ms"])))
            summary = [by_n[n] for n in sorted(by_n)]
            self.write_csv("runs-scaling-prelaunch.csv", pre)
        self.write_csv("scaling.csv", summary)
        with open(os.path.join(b.results, "scaling.dat"), "w") as f:
            f.write("# vms ckpt_ms restore_ms blackout_median_ms blackout_max_ms prelaunch_run_ms "
                    "prelaunch_blackout_median_ms prelaunch_blackout_max_ms\n")
            for r in summary:
                f.write("%d %s\n" % (r["vms"], " ".join(
                    "%.3f" % r[k] if r.get(k) is not None else "NaN" for k in (
                        "ckpt_cmd_ms", "restore_cmd_ms", "blackout_median_ms", "blackout_max_ms",
                        "prelaunch_run_cmd_ms", "prelaunch_blackout_median_ms", "prelaunch_blackout_max_ms"))))
        top = summary[-1]
        if top.get("ckpt_cmd_ms") is not None and top.get("restore_cmd_ms") is not None:
            self.targets.append((top["ckpt_cmd_ms"] <= 250, "%d VMs on %d cores: checkpoint all ≤ 250 ms: %s" % (
                top["vms"], b.machine["nproc"], fmt_ms(top["ckpt_cmd_ms"]))))
            self.targets.append((top["restore_cmd_ms"] <= 2000, "%d VMs on %d cores: restore all ≤ 2 s: %s" % (
                top["vms"], b.machine["nproc"], fmt_ms(top["restore_cmd_ms"]))))
        if top.get("prelaunch_max_over_single") is not None and top["vms"] > 1:
            r = top["prelaunch_max_over_single"]
            self.targets.append((r <= 2, "%d VMs by prelaunch (`run --no-reboot`) all back within 2× the single-VM "
                                 "blackout of this run: max %s (median %s) vs one VM %s = %s (median %s)" % (
                                     top["vms"], fmt_ms(top["prelaunch_blackout_max_ms"]),
                                     fmt_ms(top["prelaunch_blackout_median_ms"]),
                                     fmt_ms(top["prelaunch_single_blackout_ms"]), fmt_ratio(r),
                                     fmt_ratio(top["prelaunch_median_over_single"]))))

    def part_agent(self):
        b = self.b
        rows = b.rows["agent"]
        if not rows:
            return
        self.p()
        self.p("## 4. plan with agent channels no agent answers on")
        self.p()
        self.p("N VMs of 64 MiB, each with a `virtserialport name=org.qemu.guest_agent.0` that the guest never "
               "opens (a guest running no agent). `host-upgrade plan` for all of them, and with `--jobs 1`; "
               "`agent` is what `plan --json` said.")
        self.p()
        self.p("| VMs | plan | plan --jobs 1 | agent |")
        self.p("|---|---|---|---|")
        summary = []
        for n in b.agent_counts:
            rs = [r for r in rows if r["vms"] == n]
            if not rs:
                continue
            row = {"vms": n, "plan_ms": med(r["plan_ms"] for r in rs),
                   "plan_jobs1_ms": med(r["plan_jobs1_ms"] for r in rs), "agent": rs[-1]["agent"]}
            summary.append(row)
            self.p("| %d | %s | %s | %s |" % (n, fmt_ms(row["plan_ms"]), fmt_ms(row["plan_jobs1_ms"]), row["agent"]))
        self.write_csv("agent.csv", summary)
        top = summary[-1]
        self.targets.append((top["plan_jobs1_ms"] <= 3000, "%d VMs with silent agent channels: plan --jobs 1 "
                             "within one 3 s agent deadline: %s" % (top["vms"], fmt_ms(top["plan_jobs1_ms"]))))

    def plots(self):
        b = self.b
        gp = shutil.which("gnuplot")
        made = []
        if not gp:
            self.b.notes.append("no PNG: gnuplot is not installed (Debian package gnuplot-nox)")
            return made
        for dat, out in (("ram.dat", "checkpoint-vs-ram.png"), ("scaling.dat", "scaling.png")):
            if not os.path.exists(os.path.join(b.results, dat)):
                continue
            p = subprocess.run([gp, "-e", "dir='%s'; which='%s'" % (b.results, dat),
                                os.path.join(HERE, "plot.gp")], capture_output=True, text=True)
            if p.returncode != 0:
                self.b.notes.append("gnuplot failed for %s: %s" % (out, p.stderr.strip()[-300:]))
            else:
                made.append(out)
        return made

    def write(self):
        b = self.b
        os.makedirs(b.results, exist_ok=True)
        for f in ("ram.csv", "roundtrip.csv", "scaling.csv", "agent.csv", "ram.dat", "scaling.dat", "runs-ram.csv",
                  "runs-roundtrip.csv", "runs-roundtrip-tmpfs.csv", "runs-scaling.csv", "runs-scaling-prelaunch.csv",
                  "runs-agent.csv",
                  "checkpoint-vs-ram.png", "scaling.png"):
            if os.path.exists(os.path.join(b.results, f)):
                os.unlink(os.path.join(b.results, f))
        self.p("# host-upgrade benchmark, %s" % b.started.strftime("%Y-%m-%d %H:%M %Z"))
        self.p()
        self.machine()
        self.part_ram()
        self.part_roundtrip()
        self.part_scale()
        self.part_agent()
        self.write_csv("runs-ram.csv", b.rows["ram"])
        self.write_csv("runs-roundtrip.csv", b.rows["roundtrip"])
        self.write_csv("runs-scaling.csv", b.rows["scale"])
        self.write_csv("runs-agent.csv", b.rows["agent"])
        made = self.plots()
        if made:
            self.p()
            for m in made:
                self.p("![%s](%s)" % (m, m))
        self.p()
        self.p("## Against the issue's targets (informational, never asserted)")
        self.p()
        for met, text in self.targets:
            self.p("- %s: %s" % ("met" if met else "missed", text))
        fail_path = os.path.join(b.results, "failures.txt")
        if b.failures:
            with open(fail_path, "w") as f:
                f.write("\n".join(b.failures))
            b.notes.append("%d measurement%s failed and %s left out of the medians (failures.txt)" % (
                len(b.failures), "" if len(b.failures) == 1 else "s", "is" if len(b.failures) == 1 else "are"))
        elif os.path.exists(fail_path):
            os.unlink(fail_path)
        if b.notes:
            self.p()
            self.p("Notes: " + "; ".join(b.notes) + ".")
        text = "\n".join(self.md) + "\n"
        with open(os.path.join(b.results, "results.md"), "w") as f:
            f.write(text)
        with open(os.path.join(b.results, "machine.json"), "w") as f:
            json.dump(b.machine, f, indent=1)
        sys.stdout.write(text)
        sys.stdout.write("\nResults: %s/ (results.md, *.csv, %s)\n" % (b.results, ", ".join(made) or "no PNG"))


def main():
    # A signal must run the atexit cleanup (kill our QEMUs by pid).
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, lambda sig, frame: sys.exit(128 + sig))
    if len(sys.argv) > 1 and sys.argv[1] == "profile":
        import profile_hu
        b = Bench()
        profile_hu.run(b, [int(x) for x in sys.argv[2:]] or [1, 16])
        return
    Bench().run()


if __name__ == "__main__":
    main()
