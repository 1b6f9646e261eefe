#!/usr/bin/env python3
"""State and report of a fleet rollout, for scripts/fleet-rollout (stdlib only).

The report directory of a rollout holds:
  state.json            what the rollout is (inventory, kernel, waves, gates) and its runs
  hosts/HOST.json       one record per host, written by the Ansible role as it goes
  run-N-vars.json       the extra variables run N gave ansible-playbook
  ansible-run-N.log     ansible-playbook's output of run N
  report.json           the whole rollout: parameters, runs and one entry per host
  report.md             the same as a table

  fleet-state.py init DIR --inventory PATH [--limit P] [--no-reboot 0|1] [--kernel PATH]
                 [--kernel-version V] [--kernel-package P] --waves SPEC
                 [--max-downtime-ms N] [--max-fail-percentage N] --hosts "H1 H2 ..."
  fleet-state.py get DIR KEY          a parameter ("" for none, 1/0 for booleans)
  fleet-state.py finished DIR         hosts whose record says ok, one per line
  fleet-state.py run-begin DIR        waves on stdin ("h1 h2" per line); prints N and the vars file
  fleet-state.py run-end DIR N RC     ansible-playbook's exit status for run N
  fleet-state.py report DIR           write report.json + report.md, print the table;
                                      exit 0 when every host is ok, else 1
"""
import argparse
import datetime
import glob
import json
import os
import sys
import tempfile

PROG = "fleet-rollout"


def die(msg, code=1):
    print("%s: %s" % (PROG, msg), file=sys.stderr)
    sys.exit(code)


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_json(path, obj):
    """Atomically: a reader never sees half a file."""
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def read_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        die("%s: %s" % (path, e.strerror))
    except ValueError as e:
        die("%s: not valid JSON (%s): %s" % (path, what, e))


def state_path(d):
    return os.path.join(d, "state.json")


def load_state(d):
    st = read_json(state_path(d), "the rollout's state")
    if not isinstance(st, dict) or st.get("version") != 1:
        die("%s: not a fleet-rollout state file (version 1)" % state_path(d))
    return st


def waves_list(spec):
    out = []
    for w in spec.split(","):
        w = w.strip()
        out.append(w if w.endswith("%") else int(w))
    return out


def host_records(d):
    recs = {}
    for p in sorted(glob.glob(os.path.join(d, "hosts", "*.json"))):
        try:
            with open(p) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            r = {"result": "unreadable", "reason": "%s: %s" % (p, e)}
        name = r.get("host") or os.path.basename(p)[:-5]
        recs[name] = r
    return recs


def cmd_init(a):
    st = {
        "version": 1,
        "inventory": os.path.abspath(a.inventory),
        "limit": a.limit or None,
        "no_reboot": a.no_reboot == "1",
        "kernel": a.kernel or None,
        "kernel_version": a.kernel_version or None,
        "kernel_package": a.kernel_package or None,
        "waves": a.waves,
        "max_downtime_ms": int(a.max_downtime_ms) if a.max_downtime_ms != "" else None,
        "max_fail_percentage": int(a.max_fail_percentage),
        "hosts": a.hosts.split(),
        "created_at": now(),
        "status": "new",
        "runs": [],
    }
    os.makedirs(os.path.join(a.dir, "hosts"), exist_ok=True)
    write_json(state_path(a.dir), st)


def cmd_get(a):
    st = load_state(a.dir)
    v = st.get(a.key)
    if v is None:
        v = ""
    elif isinstance(v, bool):
        v = "1" if v else "0"
    elif isinstance(v, list):
        v = " ".join(str(x) for x in v)
    print(v)


def cmd_finished(a):
    for h, r in host_records(a.dir).items():
        if r.get("result") == "ok":
            print(h)


def cmd_run_begin(a):
    st = load_state(a.dir)
    waves = [line.split() for line in sys.stdin.read().splitlines() if line.strip()]
    n = len(st["runs"]) + 1
    wave_of = {h: i + 1 for i, w in enumerate(waves) for h in w}
    ev = {
        "hu_waves": waves_list(st["waves"]),
        "hu_max_fail_percentage": st["max_fail_percentage"],
        "hu_no_reboot": st["no_reboot"],
        "hu_report_dir": os.path.abspath(a.dir),
        "hu_run_number": n,
        "hu_wave_of": wave_of,
    }
    for key, var in (("kernel", "hu_kernel"), ("kernel_version", "hu_kernel_version"),
                     ("kernel_package", "hu_kernel_package"), ("max_downtime_ms", "hu_max_downtime_ms")):
        if st.get(key) is not None and not (st["no_reboot"] and key.startswith("kernel")):
            ev[var] = st[key]
    vars_file = os.path.join(os.path.abspath(a.dir), "run-%d-vars.json" % n)
    write_json(vars_file, ev)
    st["runs"].append({"run": n, "started_at": now(), "finished_at": None, "ansible_rc": None,
                       "waves": waves, "log": "ansible-run-%d.log" % n})
    st["status"] = "running"
    write_json(state_path(a.dir), st)
    print(n)
    print(vars_file)


def cmd_run_end(a):
    st = load_state(a.dir)
    for r in st["runs"]:
        if r["run"] == int(a.run):
            r["finished_at"] = now()
            r["ansible_rc"] = int(a.rc)
    write_json(state_path(a.dir), st)


def fmt_ms(v):
    return "" if v is None else "%d ms" % v


def md_escape(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def cmd_report(a):
    st = load_state(a.dir)
    recs = host_records(a.dir)
    hosts = []
    counts = {}
    for h in st["hosts"] + sorted(set(recs) - set(st["hosts"])):
        r = dict(recs.get(h) or {"host": h, "result": "not-started"})
        if r.get("result") == "running":
            # The play stopped while this host was between gates (another host of its wave
            # failed, or the connection was lost): not finished, a resume redoes it.
            r["result"] = "interrupted"
        r["host"] = h
        hosts.append(r)
        counts[r["result"]] = counts.get(r["result"], 0) + 1
    ok = counts.get("ok", 0) == len(hosts)
    st["status"] = "finished" if ok else "halted"
    st["finished_at"] = now() if ok else None
    write_json(state_path(a.dir), st)
    summary = {k: counts[k] for k in sorted(counts)}
    report = {
        "rollout": {k: st[k] for k in ("inventory", "limit", "no_reboot", "kernel", "kernel_version",
                                       "kernel_package", "waves", "max_downtime_ms", "max_fail_percentage",
                                       "created_at", "status", "finished_at")},
        "summary": summary,
        "runs": st["runs"],
        "hosts": hosts,
    }
    write_json(os.path.join(a.dir, "report.json"), report)

    lines = ["# Fleet rollout report", ""]
    what = "QEMU-only upgrade (`--no-reboot`)" if st["no_reboot"] else "kernel `%s`" % st["kernel"]
    lines.append("- upgrade: %s" % what)
    lines.append("- inventory: `%s`%s" % (st["inventory"], " (limit `%s`)" % st["limit"] if st["limit"] else ""))
    lines.append("- waves: %s; max fail percentage per wave: %d%%" % (st["waves"], st["max_fail_percentage"]))
    lines.append("- max downtime per VM: %s" % (fmt_ms(st["max_downtime_ms"]) if st["max_downtime_ms"] is not None
                                               else "per host (`hu_max_downtime_ms`)"))
    lines.append("- runs: %d (%s)" % (len(st["runs"]), ", ".join(
        "run %d: %s, ansible-playbook exit %s" % (r["run"], r["started_at"], r["ansible_rc"]) for r in st["runs"])))
    lines.append("- status: **%s** — %s" % (st["status"], ", ".join("%d %s" % (v, k) for k, v in summary.items())))
    lines += ["", "| run | wave | host | result | old kernel | new kernel | VMs | max downtime | note |",
              "|---:|---:|---|---|---|---|---|---:|---|"]
    for r in hosts:
        vms = ", ".join("%s (%s)" % (v.get("name"), fmt_ms(v.get("downtime_ms")) or v.get("state") or "-")
                        for v in r.get("vms") or [])
        note = ""
        if r.get("gate"):
            note = "%s: %s" % (r["gate"], r.get("reason") or "")
        elif r.get("note"):
            note = r["note"]
        elif r["result"] == "interrupted":
            note = "stopped after %s" % r.get("step", "?")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % tuple(md_escape(x) for x in (
            r.get("run") or "", r.get("wave") or "", r["host"], r["result"], r.get("old_kernel") or "",
            r.get("new_kernel") or "", vms, fmt_ms(r.get("max_downtime_ms")), note)))
    md = "\n".join(lines) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=a.dir)
    with os.fdopen(fd, "w") as f:
        f.write(md)
    os.chmod(tmp, 0o644)
    os.rename(tmp, os.path.join(a.dir, "report.md"))
    print(md, end="")
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(prog="fleet-state.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("init")
    s.add_argument("dir")
    s.add_argument("--inventory", required=True)
    s.add_argument("--limit", default="")
    s.add_argument("--no-reboot", default="0")
    s.add_argument("--kernel", default="")
    s.add_argument("--kernel-version", default="")
    s.add_argument("--kernel-package", default="")
    s.add_argument("--waves", required=True)
    s.add_argument("--max-downtime-ms", default="")
    s.add_argument("--max-fail-percentage", default="0")
    s.add_argument("--hosts", required=True)
    s = sub.add_parser("get")
    s.add_argument("dir")
    s.add_argument("key")
    s = sub.add_parser("finished")
    s.add_argument("dir")
    s = sub.add_parser("run-begin")
    s.add_argument("dir")
    s = sub.add_parser("run-end")
    s.add_argument("dir")
    s.add_argument("run")
    s.add_argument("rc")
    s = sub.add_parser("report")
    s.add_argument("dir")
    a = p.parse_args()
    return {"init": cmd_init, "get": cmd_get, "finished": cmd_finished, "run-begin": cmd_run_begin,
            "run-end": cmd_run_end, "report": cmd_report}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
