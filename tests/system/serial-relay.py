#!/usr/bin/python3
"""Timestamp the test host's serial output as it is written (run-host.sh).

    serial-relay.py T0 NAME:RAW:LOG:ECHO [...]

Follows each RAW file (a QEMU `-chardev file`), and for every complete line
writes "[SECONDS] line" to LOG, SECONDS since T0 (epoch seconds, float) on this
machine's clock: the one clock that runs on across the test host's kexec.
ECHO says which lines also go to stdout, prefixed with NAME:
  all         every line
  milestones  kernel/boot milestones and HU- lines only
  none        nothing
Polls every 20 ms. On SIGTERM/SIGINT: reads what is left, flushes, exits.
"""
import os
import re
import signal
import sys
import time

MILESTONES = re.compile(
    r"Linux version \S+|kexec_core: Starting new kernel|Run /init as init process|"
    r"Rebooting with kexec|reboot: Power down|reboot: Restarting|Kernel panic|"
    r"Switching root|HU-|hu-runner|Emergency|emergency shell|Failed to start"
)


class Stream:
    def __init__(self, spec, t0):
        self.name, self.raw, log, self.echo = spec.split(":", 3)
        self.t0 = t0
        self.pos = 0
        self.buf = b""
        self.log = open(log, "a", buffering=1, encoding="utf-8", errors="replace")

    def poll(self, final=False):
        try:
            with open(self.raw, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        if not data and not (final and self.buf):
            return
        self.pos += len(data)
        self.buf += data
        now = time.time() - self.t0
        lines = self.buf.split(b"\n")
        self.buf = lines.pop()
        if final and self.buf:
            lines.append(self.buf)
            self.buf = b""
        for raw in lines:
            line = raw.decode("utf-8", "replace").replace("\r", "").rstrip()
            # Strip terminal escape sequences (getty, systemd colours).
            line = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)
            if not line:
                continue
            stamp = "[%9.3f]" % now
            self.log.write("%s %s\n" % (stamp, line))
            if self.echo == "all" or (self.echo == "milestones" and MILESTONES.search(line)):
                sys.stdout.write("%s %s| %s\n" % (stamp, self.name, line))
        sys.stdout.flush()


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    t0 = float(sys.argv[1])
    streams = [Stream(s, t0) for s in sys.argv[2:]]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while not stop:
        for s in streams:
            s.poll()
        time.sleep(0.02)
    for s in streams:
        s.poll(final=True)
        s.log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
