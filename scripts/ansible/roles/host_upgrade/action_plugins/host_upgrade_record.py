# SPDX-License-Identifier: GPL-2.0-or-later
"""host_upgrade_record: one step of a host's upgrade: its record and its gate.

Runs on the controller only (no module, no connection to the host):
  - merges `update` (a dict) into the host's record (the fact hu_record; a `vms` list is
    merged VM by VM, by name),
  - if `problems` (a list of strings) is not empty, marks the record failed at `gate`,
  - writes the record to DIR/hosts/HOST.json (atomically: tmp, fsync, rename),
  - and fails the host when there were problems.
The file is written before the gate fails, so a host's record is complete even when the
play stops because another host of its wave failed.

    - host_upgrade_record:
        dir: "{{ hu_report_dir }}"
        gate: pre-check
        problems: "{{ ['VM x: blocked'] }}"
        update: {step: pre-check}
"""
import datetime
import json
import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain(v):
    """Ansible's wrapped strings and mappings as plain JSON types."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, str):
        return str(v)
    return v


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("dir", "update", "gate", "problems"))
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        report_dir = args.get("dir")
        if not report_dir:
            raise AnsibleActionFail("host_upgrade_record: dir is required")
        update = _plain(args.get("update") or {})
        problems = [str(p) for p in _plain(args.get("problems") or [])]
        gate = str(args.get("gate") or "gate")
        if not isinstance(update, dict):
            raise AnsibleActionFail("host_upgrade_record: update must be a dict, not %r" % (update,))
        host = task_vars.get("inventory_hostname")

        current = task_vars.get("hu_record")
        if current is None:
            current = (task_vars.get("ansible_facts") or {}).get("hu_record")
        record = _plain(dict(current or {}))
        if isinstance(update.get("vms"), list) and isinstance(record.get("vms"), list):
            before = {v.get("name"): v for v in record["vms"] if isinstance(v, dict)}
            update["vms"] = [dict(before.get(v.get("name"), {}), **v) for v in update["vms"]]
        record.update(update)
        if problems:
            record.update(result="failed", step=gate, gate=gate, reason=" | ".join(problems),
                          finished_at=_now())

        hosts_dir = os.path.join(report_dir, "hosts")
        path = os.path.join(hosts_dir, "%s.json" % host)
        try:
            os.makedirs(hosts_dir, exist_ok=True)
            fd, tmpname = tempfile.mkstemp(prefix=".%s." % host, dir=hosts_dir)
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=4)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmpname, 0o644)
            os.rename(tmpname, path)
        except OSError as e:
            raise AnsibleActionFail("host_upgrade_record: %s: %s" % (path, to_native(e)))

        result["changed"] = True
        result["path"] = path
        result["ansible_facts"] = {"hu_record": record}
        if problems:
            result["failed"] = True
            result["msg"] = "%s failed on %s: %s" % (gate, host, " | ".join(problems))
        return result
