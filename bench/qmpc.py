"""Minimal QMP client for the benchmark (python3 standard library only).

One connection per QEMU, kept open: commands carry an id, events that arrive
in between are queued for wait_event(). Every wait has a deadline; nothing
sleeps except the connect retry (1 ms) while a new QEMU creates its socket.
"""
import json
import os
import select
import socket
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=30.0, pid=None):
        """Connect to a QMP unix socket, retrying while it is not there yet.
        pid: the QEMU's pid; give up early when that process is gone."""
        deadline = time.monotonic() + timeout
        self.path = path
        self.buf = b""
        self.events = []
        self.next_id = 0
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                s.close()
                if pid is not None and not pid_alive(pid):
                    raise QMPError("QEMU pid %d exited before its QMP socket %s came up" % (pid, path))
                if time.monotonic() >= deadline:
                    raise QMPError("connect %s: %s (timed out)" % (path, e))
                time.sleep(0.001)
        self.sock = s
        greeting = self._recv(deadline)
        if "QMP" not in greeting:
            raise QMPError("no QMP greeting on %s: %r" % (path, greeting))
        self.cmd("qmp_capabilities", timeout=max(1.0, deadline - time.monotonic()))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("QMP %s: no message in time" % self.path)
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError("QMP %s: connection closed" % self.path)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        if not line.strip():
            return self._recv(deadline)
        return json.loads(line)

    def cmd(self, name, args=None, timeout=30.0):
        """Execute a command; return its "return" value, raise QMPError on "error"."""
        self.next_id += 1
        mid = "b%d" % self.next_id
        msg = {"execute": name, "id": mid}
        if args is not None:
            msg["arguments"] = args
        deadline = time.monotonic() + timeout
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            try:
                r = self._recv(deadline)
            except EOFError:
                if name == "quit":
                    return {}
                raise
            if "event" in r:
                self.events.append(r)
                continue
            if r.get("id") != mid:
                continue
            if "error" in r:
                raise QMPError("%s: %s" % (name, r["error"].get("desc", r["error"])))
            return r.get("return")

    def wait_event(self, name, pred=None, timeout=30.0):
        """Next event NAME (data matching pred), queued or arriving; returns the event."""
        for i, ev in enumerate(self.events):
            if ev.get("event") == name and (pred is None or pred(ev.get("data", {}))):
                del self.events[i]
                return ev
        deadline = time.monotonic() + timeout
        while True:
            r = self._recv(deadline)
            if "event" not in r:
                continue
            if r["event"] == name and (pred is None or pred(r.get("data", {}))):
                return r
            self.events.append(r)

    def wait_migration(self, timeout=3600.0):
        """Wait for the MIGRATION event with a terminal status (capability
        "events" must be on); raise QMPError unless it is completed."""
        ev = self.wait_event("MIGRATION", lambda d: d.get("status") in ("completed", "failed", "cancelled"),
                             timeout)
        st = ev["data"]["status"]
        if st != "completed":
            info = self.cmd("query-migrate")
            raise QMPError("migration %s: %s" % (st, info.get("error-desc", info)))
        return ev


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    return st.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def wait_pid_exit(pid, timeout=30.0):
    """Wait for a process that may not be our child to be gone (pidfd, no polling sleep)."""
    deadline = time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        fd = None
    try:
        while pid_alive(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if fd is not None:
                select.select([fd], [], [], min(left, 0.1))
                try:
                    os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
                except ChildProcessError:
                    pass
            else:
                time.sleep(0.001)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return True
    finally:
        if fd is not None:
            os.close(fd)
