/* SPDX-License-Identifier: MIT */
/*
 * Who killed a process. A traced process that sends another a signal
 * records a KILL (preload/hook_kill.c). A process killed by SIGKILL
 * leaves a trace without its END; so does one killed by a signal kprof
 * does not take (KOTOBA_PROFILE_SIGNALS off). When its killer was traced
 * too, the report says who killed it, with what, when and from where:
 * the last signal another process sent its pid after it started, and
 * before another process of that pid began (a pid used again, an exec's
 * next image), that could have ended it (could_kill). A signal to a
 * process group went to the processes in that group then: each one's
 * group at start is in its trace's header, and each move to another
 * (setpgid, setsid) a PGID record in the trace of the process that made
 * the call, itself or its parent (group_at). A process the kernel's OOM
 * killer ended has no killer: its memory cgroup near its limit says
 * what probably did (oom_suspect).
 */
#include "analyze.h"
#include "json.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static void *grow(void *v, size_t n, size_t *cap, size_t size)
{
	if (n < *cap)
		return v;
	*cap = *cap ? 2 * *cap : 4;
	return xrealloc_array(v, *cap, size);
}

static void kills_events(void *state, struct kp_trace *t,
			 const struct kp_batch *b)
{
	struct kp_proc *p = t->proc;

	(void)state;
	for (size_t i = 0; i < b->nxev; i++) {
		const struct kp_event *e = &b->ev[b->xev[i]];
		if (e->type == KP_REC_PGID) {
			const struct kp_rec *r = kp_batch_rec(b, e);
			p->moves = grow(p->moves, p->nmoves, &p->moves_cap,
					sizeof(*p->moves));
			p->moves[p->nmoves++] = (struct kp_pgid_move){
				.at = p->start_mono_ns + e->ts,
				.pid = r->u.ext.v[KP_PGID_PID],
				.pgid = r->u.ext.v[KP_PGID_GROUP],
			};
			continue;
		}
		if (e->type != KP_REC_KILL)
			continue;
		const struct kp_rec *r = kp_batch_rec(b, e);
		int64_t sig = r->u.ext.v[KP_KILL_SIG];
		if (sig <= 0 || sig > 64)
			continue;
		p->kills = grow(p->kills, p->nkills, &p->kills_cap,
				sizeof(*p->kills));
		p->kills[p->nkills++] = (struct kp_kill){
			.ts = e->ts,
			.target = r->u.ext.v[KP_KILL_TARGET],
			.sig = (int)sig,
			.how = e->kind,
			.stack = kp_trace_stack(t, e->stack),
		};
	}
}

static void kills_end_trace(void *state, struct kp_trace *t)
{
	struct kp_proc *p = t->proc;

	(void)state;
	for (size_t i = 0; i < p->nkills; i++)
		p->kills[i].stack = kp_trace_canon_stack(t, p->kills[i].stack);
}

/* When another process of p's pid began after p did (UINT64_MAX: none). */
static uint64_t next_of_pid(const struct kp_analysis *an,
			    const struct kp_proc *p)
{
	uint64_t next = UINT64_MAX;

	for (size_t i = 0; i < an->nprocs; i++) {
		const struct kp_proc *q = an->procs[i];
		if (q != p && q->pid == p->pid &&
		    q->start_mono_ns > p->start_mono_ns &&
		    q->start_mono_ns < next)
			next = q->start_mono_ns;
	}
	return next;
}

/* Could signal sig have ended p? The one its END names, for an END by a
 * signal; else one whose default action ends a process (not SIGCONT,
 * which timeout(1) sends after its SIGTERM, SIGCHLD, SIGSTOP ...). */
static int could_kill(const struct kp_proc *p, int sig)
{
	if (p->ended)
		return p->exit_status == 128 + sig;
	switch (sig) {
	case SIGCONT: case SIGCHLD: case SIGURG: case SIGWINCH:
	case SIGSTOP: case SIGTSTP: case SIGTTIN: case SIGTTOU:
		return 0;
	default:
		return 1;
	}
}

/* The process group p was in at time at (before next, when another
 * process of its pid began): its header's, or the last move of its pid
 * that any trace recorded since p began. 0: not known. */
static int64_t group_at(const struct kp_analysis *an, const struct kp_proc *p,
			uint64_t at, uint64_t next)
{
	int64_t g = p->pgid;
	uint64_t last = 0;

	for (size_t i = 0; i < an->nprocs; i++) {
		const struct kp_proc *q = an->procs[i];
		for (size_t k = 0; k < q->nmoves; k++) {
			const struct kp_pgid_move *m = &q->moves[k];
			if (m->pid == p->pid && m->at >= p->start_mono_ns &&
			    m->at <= at && m->at < next && m->at >= last) {
				g = m->pgid;
				last = m->at;
			}
		}
	}
	return g;
}

/* Did x, which q sent at `at`, go to p? To its pid; to the group p was
 * in then; to every process but q (kill(-1)). */
static int sent_to(const struct kp_analysis *an, const struct kp_proc *p,
		   const struct kp_proc *q, const struct kp_kill *x,
		   uint64_t at, uint64_t next)
{
	if (x->target > 0)
		return x->target == p->pid;
	if (x->target == -1)
		return q->pid != p->pid;
	return x->target < 0 && group_at(an, p, at, next) == -x->target;
}

static void kills_finish(void *state, struct kp_analysis *an)
{
	(void)state;
	size_t sent = 0;

	for (size_t i = 0; i < an->nprocs; i++)
		sent += an->procs[i]->nkills;
	if (!sent)
		return;
	for (size_t i = 0; i < an->nprocs; i++) {
		struct kp_proc *p = an->procs[i];
		if (p->ended && p->end_reason != KP_END_SIGNAL)
			continue;
		uint64_t next = next_of_pid(an, p), best = 0;
		for (size_t j = 0; j < an->nprocs; j++) {
			const struct kp_proc *q = an->procs[j];
			for (size_t k = 0; k < q->nkills; k++) {
				const struct kp_kill *x = &q->kills[k];
				uint64_t at = q->start_mono_ns + x->ts;
				if (q == p || at < p->start_mono_ns ||
				    at >= next || (p->killer && at < best) ||
				    !could_kill(p, x->sig) ||
				    !sent_to(an, p, q, x, at, next))
					continue;
				p->killer = q;
				p->killed_by = x;
				best = at;
			}
		}
	}
}

static const char *how_name(int how)
{
	static const char *const names[] = { "kill", "killpg", "sigqueue",
					     "tgkill", "pidfd_send_signal" };
	return how >= 0 && how <= KP_KILL_HOW_MAX ? names[how] : "?";
}

/* ns from p's start to the signal that killed it */
static uint64_t killed_at(const struct kp_proc *p)
{
	return p->killer->start_mono_ns + p->killed_by->ts - p->start_mono_ns;
}

/*
 * The kernel's OOM killer sends SIGKILL from no process: a trace that
 * ends without its END, with no killer, in a memory cgroup near its limit
 * at the last snapshot (preload/cgroup.c), the heap's growth after it
 * counted, was probably ended so: near is a tenth of the limit or less
 * left. Near the limit the recorder takes its snapshots every 10 ms
 * (preload/snapshot.c), so the last one is close to the end.
 */
struct oom {
	uint64_t usage, limit, at, growth;
};

static int oom_suspect(const struct kp_analysis *an, const struct kp_proc *p,
		       struct oom *o)
{
	if (p->killer || p->ended ||
	    !kp_cgroup_last(an, p, &o->usage, &o->limit, &o->at))
		return 0;
	const struct kp_mem_totals *m = kp_mem_proc_totals(an, p);
	o->growth = m && m->live_bytes > m->heap_at_snapshot ?
			    m->live_bytes - m->heap_at_snapshot : 0;
	return kp_sat_add(o->usage, o->growth) >= o->limit - o->limit / 10;
}

static void kills_proc_text(void *state, struct kp_analysis *an,
			    const struct kp_proc *p, FILE *out)
{
	char b[128], c[32], d[32];
	struct oom o;

	(void)state;
	if (oom_suspect(an, p, &o)) {
		fprintf(out, "  killer   probably the kernel's OOM killer: its "
			"memory cgroup held %s of its %s limit\n",
			kp_fmt_bytes(b, sizeof(b), o.usage),
			kp_fmt_bytes(c, sizeof(c), o.limit));
		fprintf(out, "           at %s (the last snapshot)",
			kp_fmt_ns(d, sizeof(d), o.at));
		if (o.growth)
			fprintf(out, ", and the heap grew %s more after it",
				kp_fmt_bytes(b, sizeof(b), o.growth));
		fprintf(out, "\n");
		return;
	}
	if (!p->killer)
		return;
	char to[48] = "";
	int64_t target = p->killed_by->target;
	if (target == -1)
		snprintf(to, sizeof(to), " to every process");
	else if (target < 0)
		snprintf(to, sizeof(to), " to process group %" PRId64, -target);
	fprintf(out, "  killer   pid %" PRId64 " %s sent %s at %s (%s%s), from:\n",
		p->killer->pid, kp_disp(b, sizeof(b), p->killer->exe, 40),
		kp_sig_str(c, sizeof(c), p->killed_by->sig),
		kp_fmt_ns(d, sizeof(d), killed_at(p)),
		how_name(p->killed_by->how), to);
	kp_text_stack(an, out, p->killed_by->stack, 6, "           ");
}

static void kills_proc_json(void *state, struct kp_analysis *an,
			    const struct kp_proc *p, struct kp_json *j)
{
	struct oom o;

	(void)state;
	/* killed by the OOM killer, by the look of it: its cgroup near its
	 * limit at the end */
	kp_json_key(j, "oom_suspect");
	if (oom_suspect(an, p, &o)) {
		kp_json_begin_object(j);
		kp_json_key(j, "cgroup_usage");
		kp_json_u64(j, o.usage);
		kp_json_key(j, "cgroup_limit");
		kp_json_u64(j, o.limit);
		kp_json_key(j, "time_ns");
		kp_json_u64(j, o.at);
		kp_json_key(j, "heap_growth_after");
		kp_json_u64(j, o.growth);
		kp_json_end_object(j);
	} else {
		kp_json_null(j);
	}
	kp_json_key(j, "killed_by");
	if (!p->killer) {
		kp_json_null(j);
		return;
	}
	kp_json_begin_object(j);
	kp_json_key(j, "pid");
	kp_json_i64(j, p->killer->pid);
	kp_json_key(j, "exe");
	kp_json_str(j, p->killer->exe);
	kp_json_key(j, "signal");
	kp_json_i64(j, p->killed_by->sig);
	kp_json_key(j, "how");
	kp_json_str(j, how_name(p->killed_by->how));
	/* the process group it went to: null for a signal to the pid, -1
	 * for kill(-1) (every process the sender could signal) */
	kp_json_key(j, "group");
	if (p->killed_by->target > 0)
		kp_json_null(j);
	else
		kp_json_i64(j, p->killed_by->target == -1 ? -1 :
						       -p->killed_by->target);
	kp_json_key(j, "time_ns");
	kp_json_u64(j, killed_at(p));
	kp_json_key(j, "stack");
	kp_json_stack(an, j, p->killed_by->stack);
	kp_json_end_object(j);
}

const struct kp_pass kp_pass_kills = {
	.name = "kills",
	.xEvents = kills_events,
	.xEndTrace = kills_end_trace,
	.xFinish = kills_finish,
	.xProcText = kills_proc_text,
	.xProcJson = kills_proc_json,
};
