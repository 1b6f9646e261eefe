#!/usr/bin/env python3
# A stand-in for Proxmox VE's qmeventd (qemu-server's qmeventd/qmeventd.c), for tests: Proxmox
# does not install here. It speaks the same protocol to the same QEMUs and acts the same way,
# and records everything it sees as JSON lines:
#   - listens on SOCKET (0600); a client whose peer uid is not 0 is dropped;
#   - a client's VMID is the basename NNN.pid of the -pidfile in its /proc/PID/cmdline, as
#     qmeventd's get_vmid_from_pid; none: "could not get vmid", dropped, never cleaned up;
#   - greeting -> qmp_capabilities; SHUTDOWN -> graceful=1, guest=data.guest, query-status;
#     a status that is not running/paused/suspended/prelaunch -> quit;
#   - EOF or a failed write -> runs QM_CLEANUP VMID GRACEFUL GUEST at once, not waited for
#     (qmeventd forks `qm cleanup` and ignores SIGCHLD).
# Usage: qmeventd.py SOCKET LOG QM_CLEANUP. SIGTERM ends it and every cleanup it started.
import json, os, select, signal, socket, struct, subprocess, sys, time

sock_path, log_path, qm_cleanup = sys.argv[1:4]
log = open(log_path, 'a', buffering=1)
children = []


def rec(what, **kw):
    line = {'what': what}
    line.update(kw)
    line['t'] = round(time.monotonic(), 3)
    log.write(json.dumps(line) + '\n')


def stop(*_):
    for c in children:
        if c.poll() is None:
            c.kill()
            c.wait()
    rec('exit')
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)


def vmid_of(pid):
    try:
        argv = open('/proc/%d/cmdline' % pid, 'rb').read().split(b'\0')
        i = argv.index(b'-pidfile')
        base = os.path.basename(argv[i + 1].decode())
    except (OSError, ValueError, IndexError):
        return None
    if not base.endswith('.pid') or not base[:-4].isdigit():
        return None
    return base[:-4]


try:
    os.unlink(sock_path)
except FileNotFoundError:
    pass
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sock_path)
os.chmod(sock_path, 0o600)
srv.listen(16)
rec('listening', path=sock_path)
clients = {}


def cleanup_client(s, why):
    st = clients.pop(s)
    s.close()
    rec('close', pid=st['pid'], vmid=st['vmid'], why=why, graceful=st['graceful'], guest=st['guest'])
    args = [qm_cleanup, st['vmid'], str(st['graceful']), str(st['guest'])]
    rec('qm-cleanup', args=args[1:])
    children.append(subprocess.Popen(args, stdin=subprocess.DEVNULL))


def send(s, obj):
    try:
        s.sendall((json.dumps(obj) + '\n').encode())
        return True
    except OSError as e:
        cleanup_client(s, 'write failed: %s' % e)
        return False


while True:
    for c in children:
        c.poll()  # reap
    r, _, _ = select.select([srv] + list(clients), [], [], 1.0)
    for s in r:
        if s is srv:
            c, _ = srv.accept()
            pid, uid, _gid = struct.unpack('3i', c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid != 0:
                rec('reject', pid=pid, uid=uid)
                c.close()
                continue
            vmid = vmid_of(pid)
            rec('accept', pid=pid, vmid=vmid)
            if vmid is None:
                rec('could not get vmid', pid=pid)
                c.close()
                continue
            clients[c] = {'pid': pid, 'vmid': vmid, 'buf': b'', 'graceful': 0, 'guest': 0}
            continue
        if s not in clients:
            continue
        st = clients[s]
        try:
            d = s.recv(65536)
        except OSError:
            d = b''
        if not d:
            cleanup_client(s, 'eof')
            continue
        st['buf'] += d
        while s in clients and b'\n' in st['buf']:
            line, st['buf'] = st['buf'].split(b'\n', 1)
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if 'QMP' in m:
                rec('greeting', pid=st['pid'], vmid=st['vmid'])
                send(s, {'execute': 'qmp_capabilities'})
            elif 'event' in m:
                rec('event', pid=st['pid'], vmid=st['vmid'], event=m['event'], data=m.get('data'))
                if m['event'] == 'SHUTDOWN':
                    st['graceful'] = 1
                    st['guest'] = 1 if (m.get('data') or {}).get('guest') else 0
                    send(s, {'execute': 'query-status', 'id': 'status'})
            elif m.get('id') == 'status' and isinstance(m.get('return'), dict):
                status = m['return'].get('status')
                rec('status', pid=st['pid'], vmid=st['vmid'], status=status)
                if status not in ('running', 'paused', 'suspended', 'prelaunch'):
                    send(s, {'execute': 'quit'})
