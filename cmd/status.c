/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade status [--json]: the phase and every VM's state and downtime. */
#include <json-c/json.h>
#include <string.h>
#include "cmd.h"

static int cmd_status(struct cli *c)
{
	struct hu_manifest *m = NULL;
	int r;

	r = hu_manifest_load(c->ctx, &m);
	if (r == -ENOENT) {
		if (c->json)
			printf("{\"phase\":\"idle\",\"vms\":[]}\n");
		else
			printf("phase: idle (no checkpoint in %s)\n", hu_get_state_dir(c->ctx));
		r = 0;
		goto out;
	}
	if (r < 0) {
		char what[256];

		/* The library says which file or dir, and why. */
		if (hu_get_error(c->ctx)) {
			cli_error(c, NULL, hu_get_error(c->ctx));
		} else {
			snprintf(what, sizeof(what), "%s/manifest.json", hu_get_state_dir(c->ctx));
			cli_error(c, what, hu_manifest_strerror(r));
		}
		r = EXIT_BLOCKED;
		goto out;
	}
	if (c->json) {
		json_object *o = json_object_new_object(), *vms = json_object_new_array();

		json_object_object_add(o, "phase", json_object_new_string(hu_manifest_get_phase(m)));
		for (size_t i = 0; i < hu_manifest_count(m); i++) {
			json_object *v = json_object_new_object();
			int64_t d = hu_manifest_vm_downtime_ms(m, i);
			const char *err = hu_manifest_vm_error(m, i);

			json_object_object_add(v, "name", json_object_new_string(hu_manifest_vm_name(m, i)));
			json_object_object_add(v, "state",
					       json_object_new_string(hu_manifest_vm_state(m, i)));
			json_object_object_add(v, "downtime_ms", d >= 0 ? json_object_new_int64(d) : NULL);
			json_object_object_add(v, "pid", json_object_new_int(hu_manifest_vm_pid(m, i)));
			int64_t step;
			json_object_object_add(v, "clock_step_ms",
					       hu_manifest_vm_clock_step_ms(m, i, &step)
						       ? json_object_new_int64(step)
						       : NULL);
			json_object_object_add(v, "error", err ? json_object_new_string(err) : NULL);
			json_object_array_add(vms, v);
		}
		json_object_object_add(o, "vms", vms);
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
									 JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		printf("phase: %s\n", hu_manifest_get_phase(m));
		printf("%-20s %-13s %8s %11s  %s\n", "NAME", "STATE", "PID", "DOWNTIME", "ERROR");
		for (size_t i = 0; i < hu_manifest_count(m); i++) {
			int64_t d = hu_manifest_vm_downtime_ms(m, i);
			char dt[32] = "-";

			if (d >= 0)
				snprintf(dt, sizeof(dt), "%lld ms", (long long)d);
			printf("%-20s %-13s %8d %11s  %s\n", hu_manifest_vm_name(m, i),
			       hu_manifest_vm_state(m, i), (int)hu_manifest_vm_pid(m, i), dt,
			       hu_manifest_vm_error(m, i) ?: "");
		}
	}
	r = 0;
out:
	hu_manifest_free(m);
	return r;
}

const struct cli_verb cli_verb_status = {
	.name = "status",
	.run = cmd_status,
	.summary = "phase and per-VM state and downtime; --json",
	.about = "The phase of the last checkpoint and every VM's state (running, checkpointed,\n"
		 "restored, failed), pid, downtime and error; with --json also the guest clock\n"
		 "step. With no checkpoint in the state dir the phase is idle.",
};
