#!/usr/bin/env python3
"""The raw-QMP floor: one VM's userland round trip with nothing but the QMP
steps QEMU itself needs, to compare host-upgrade against.

    floor.py --qmp SOCKET --pid PID --state FILE [--log LOG] -- QEMU_ARGV...

SOCKET/PID: the running QEMU (RAM in a shared file, started with QEMU_ARGV,
which must create SOCKET again when started anew). Steps:
  connect (not timed: host-upgrade has discovered the VM before it stops it)
  migrate-set-capabilities x-ignore-shared + events, migrate-set-parameters mode cpr-reboot
  -- blackout starts --
  migrate file:STATE, wait for the MIGRATION "completed" event,
  quit, wait until that process is gone,
  start QEMU_ARGV + -incoming defer, wait for its QMP greeting,
  the same capabilities and mode, migrate-incoming file:STATE,
  wait for the RESUME event (the guest runs again)
  -- blackout ends --
Prints one JSON object (times in ms, monotonic clock): blackout_ms, total_ms
and the steps; new_pid is the restored QEMU (left running: the caller ends it).
No fsync anywhere: this is the floor QEMU allows, not a durable checkpoint.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmpc import QMP, QMPError, wait_pid_exit  # noqa: E402

CAPS = [{"capability": "x-ignore-shared", "state": True}, {"capability": "events", "state": True}]


def now_ms():
    return time.monotonic() * 1000.0


def roundtrip(qmp_path, pid, argv, state, log=None, on_spawn=None):
    """Run the floor round trip; returns a dict of timings. on_spawn(pid) is
    called as soon as the new QEMU exists (so a caller can clean it up)."""
    q = QMP(qmp_path, pid=pid)
    t0 = now_ms()
    q.cmd("migrate-set-capabilities", {"capabilities": CAPS})
    q.cmd("migrate-set-parameters", {"mode": "cpr-reboot"})
    if os.path.exists(state):
        os.unlink(state)
    t_stop = now_ms()
    q.cmd("migrate", {"uri": "file:" + state})
    q.wait_migration(timeout=600)
    t_saved = now_ms()
    q.cmd("quit")
    q.close()
    if not wait_pid_exit(pid, 30):
        raise QMPError("QEMU pid %d did not exit after quit" % pid)
    t_gone = now_ms()
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        p = subprocess.Popen(list(argv) + ["-incoming", "defer"], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    finally:
        if log:
            out.close()
    if on_spawn:
        on_spawn(p.pid)
    t_spawned = now_ms()
    q2 = QMP(qmp_path, pid=p.pid)
    t_qmp = now_ms()
    q2.cmd("migrate-set-capabilities", {"capabilities": CAPS})
    q2.cmd("migrate-set-parameters", {"mode": "cpr-reboot"})
    q2.cmd("migrate-incoming", {"uri": "file:" + state})
    q2.wait_event("RESUME", timeout=600)
    t_run = now_ms()
    status = q2.cmd("query-status")["status"]
    q2.close()
    if status != "running":
        raise QMPError("restored QEMU is %s, not running" % status)
    return {
        "blackout_ms": t_run - t_stop,
        "total_ms": t_run - t0,
        "setup_ms": t_stop - t0,
        "save_ms": t_saved - t_stop,
        "quit_ms": t_gone - t_saved,
        "spawn_ms": t_spawned - t_gone,
        "qmp_up_ms": t_qmp - t_spawned,
        "load_ms": t_run - t_qmp,
        "state_bytes": os.path.getsize(state),
        "new_pid": p.pid,
        "_popen": p,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qmp", required=True)
    ap.add_argument("--pid", required=True, type=int)
    ap.add_argument("--state", required=True)
    ap.add_argument("--log")
    ap.add_argument("argv", nargs="+")
    a = ap.parse_args()
    r = roundtrip(a.qmp, a.pid, a.argv, a.state, a.log)
    r.pop("_popen")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
