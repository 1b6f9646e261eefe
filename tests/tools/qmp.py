#!/usr/bin/env python3
"""Send one QMP command to a QEMU unix socket and print the reply.

usage: qmp.py SOCKET '{"execute":"query-status"}'
       qmp.py SOCKET query-status                      (shorthand: command name)
       qmp.py SOCKET migrate '{"uri":"file:/x/state"}' (shorthand: name + arguments)

Connects (retrying while the socket is not there yet), reads the greeting, negotiates
qmp_capabilities, sends the command, skips asynchronous events and prints the "return"
object (exit 0) or the "error" object (exit 1) as compact JSON on stdout.
Exit 1 as well on timeout or when the connection fails; a message goes to stderr.
A "quit" whose connection closes before the reply arrives counts as success ({}).
Timeout: 10 s overall, QMP_TIMEOUT=SECONDS in the environment overrides it.
"""
import json
import os
import socket
import sys
import time


def die(msg):
    sys.stderr.write("qmp.py: %s\n" % msg)
    sys.exit(1)


class Conn:
    def __init__(self, path, deadline):
        self.deadline = deadline
        self.buf = b""
        last = None
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                s.connect(path)
                self.sock = s
                return
            except (FileNotFoundError, ConnectionRefusedError) as e:
                s.close()
                last = e
            except OSError as e:
                s.close()
                die("connect %s: %s" % (path, e))
            if time.monotonic() >= deadline:
                die("connect %s: %s (timed out)" % (path, last))
            time.sleep(0.05)

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self):
        """Next JSON message, or None on EOF."""
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if self.buf.strip():
                    line, self.buf = self.buf, b""
                    return json.loads(line)
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        if not line.strip():
            return self.recv()
        return json.loads(line)

    def reply(self, want_id):
        """Skip events and replies to other ids; return the reply to want_id."""
        while True:
            msg = self.recv()
            if msg is None:
                return None
            if "event" in msg:
                continue
            if ("return" in msg or "error" in msg) and msg.get("id", want_id) == want_id:
                return msg


def parse_command(argv):
    if not argv:
        die("usage: qmp.py SOCKET JSON_COMMAND | COMMAND [ARGUMENTS_JSON]")
    text = argv[0].strip()
    if text.startswith("{"):
        try:
            cmd = json.loads(text)
        except ValueError as e:
            die("bad JSON command %r: %s" % (text, e))
        if not isinstance(cmd, dict) or "execute" not in cmd:
            die("command must be an object with \"execute\": %r" % text)
        if len(argv) > 1:
            die("extra arguments after a JSON command")
        return cmd
    cmd = {"execute": text}
    if len(argv) > 1:
        try:
            cmd["arguments"] = json.loads(argv[1])
        except ValueError as e:
            die("bad JSON arguments %r: %s" % (argv[1], e))
    return cmd


def main():
    if len(sys.argv) < 3:
        die("usage: qmp.py SOCKET JSON_COMMAND | COMMAND [ARGUMENTS_JSON]")
    path = sys.argv[1]
    cmd = parse_command(sys.argv[2:])
    timeout = float(os.environ.get("QMP_TIMEOUT", "10"))
    deadline = time.monotonic() + timeout
    name = cmd["execute"]
    try:
        c = Conn(path, deadline)
        greeting = c.recv()
        if greeting is None or "QMP" not in greeting:
            die("no QMP greeting on %s: %r" % (path, greeting))
        c.send({"execute": "qmp_capabilities", "id": "hu-cap"})
        r = c.reply("hu-cap")
        if r is None or "error" in r:
            die("qmp_capabilities failed: %r" % (r,))
        cmd.setdefault("id", "hu-cmd")
        c.send(cmd)
        r = c.reply(cmd["id"])
    except TimeoutError:
        die("%s: timed out after %gs waiting for QEMU on %s" % (name, timeout, path))
    except (BrokenPipeError, ConnectionResetError) as e:
        if name == "quit":
            r = {"return": {}}
        else:
            die("%s: connection lost: %s" % (name, e))
    if r is None:
        if name == "quit":
            r = {"return": {}}
        else:
            die("%s: connection closed before the reply" % name)
    if "error" in r:
        print(json.dumps(r["error"]))
        return 1
    print(json.dumps(r["return"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
