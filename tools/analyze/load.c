/* SPDX-License-Identifier: MIT */
/*
 * The analysis driver: one streaming pass over each trace.
 *
 * The reading (zstd, decoding) and the putting of each frame's events in
 * time order (order.c) run ahead on a thread of their own (readahead.c);
 * here metadata records go to the passes as they come, and the events to
 * the passes' xEvents in time order, a frame after the records that came
 * with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyze.h"
#include "err.h"

/* The passes, in report order. Add a new analysis here. */
static const struct kp_pass *const kp_passes[] = {
	&kp_pass_kills, /* first: its xFinish names the killers */
	&kp_pass_memory,
	&kp_pass_resources,
	&kp_pass_app,
	&kp_pass_io,
	&kp_pass_queries,
	&kp_pass_cpu,
	&kp_pass_timeline,
	&kp_pass_peak,
	&kp_pass_advise, /* last: it takes the others' findings */
};

const struct kp_pass *const *kp_pass_list(size_t *n)
{
	*n = KP_ARRAY_SIZE(kp_passes);
	return kp_passes;
}

void *kp_pass_state(const struct kp_analysis *an, const struct kp_pass *pass)
{
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i] == pass)
			return an->pass_state[i];
	return NULL;
}

struct kp_load {
	struct kp_analysis *an;
	struct kp_trace *t;
	uint32_t last_tid;      /* note_tid() cache */
	int have_tid;
	/* the passes that take events */
	void (*xEvents[KP_MAX_PASSES])(void *, struct kp_trace *,
				       const struct kp_batch *);
	void *ev_state[KP_MAX_PASSES];
	size_t nev_passes;
};

/* ---- analysis lifetime ------------------------------------------------------ */

struct kp_analysis *kp_analysis_new(const struct kp_opts *opts)
{
	struct kp_analysis *an = xcalloc(1, sizeof(*an));

	an->opts = opts;
	an->seed = kp_random_seed();
	kp_idmap_init(&an->exe_ids);
	kp_idmap_init(&an->module_ids);
	kp_idmap_init(&an->gstack_ids);
	kp_idmap_init(&an->frame_ids);
	/* Module 0 is "no module" and stack 0 the empty stack; neither is in
	 * a hash table, so no record can alias them. */
	an->modules_cap = 16;
	an->modules = xcalloc(an->modules_cap, sizeof(*an->modules));
	an->modules[0].path = xstrdup("");
	an->modules[0].next = UINT32_MAX;
	an->modules[0].sym_failed = 1;
	an->nmodules = 1;
	an->gstacks_cap = 16;
	an->gstacks = xcalloc(an->gstacks_cap, sizeof(*an->gstacks));
	an->gstacks[0].next = UINT32_MAX;
	an->ngstacks = 1;

	an->passes = kp_passes;
	an->npasses = KP_ARRAY_SIZE(kp_passes);
	for (size_t i = 0; i < an->npasses; i++)
		an->pass_state[i] = an->passes[i]->xInit ?
			an->passes[i]->xInit(an, (unsigned)i) : NULL;
	return an;
}

static void proc_free(struct kp_proc *p)
{
	free(p->file);
	free(p->exe);
	for (uint32_t i = 0; i < p->argc; i++)
		free(p->argv[i]);
	free(p->argv);
	free(p->exec_path);
	free(p->malloc_owner);
	free(p->kills);
	free(p->moves);
	free(p);
}

void kp_analysis_free(struct kp_analysis *an)
{
	if (!an)
		return;
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xFree)
			an->passes[i]->xFree(an->pass_state[i], an);
	if (an->sym)
		kp_symbols_free(an->sym);
	kp_debug_ahead_end();
	for (size_t i = 0; i < an->nprocs; i++)
		proc_free(an->procs[i]);
	free(an->procs);
	for (size_t i = 0; i < an->nexes; i++)
		free(an->exes[i]);
	free(an->exes);
	free(an->exe_next);
	for (size_t i = 0; i < an->nmodules; i++) {
		free(an->modules[i].path);
		free(an->modules[i].build_id);
		kp_perfmap_free(an->modules[i].jit);
	}
	free(an->modules);
	free(an->gstacks);
	free(an->frames);
	free(an->fids);
	kp_idmap_free(&an->frame_ids);
	kp_idmap_free(&an->exe_ids);
	kp_idmap_free(&an->module_ids);
	kp_idmap_free(&an->gstack_ids);
	free(an);
}

void kp_analysis_finish(struct kp_analysis *an)
{
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xFinish)
			an->passes[i]->xFinish(an->pass_state[i], an);
}

/* ---- events ------------------------------------------------------------------ */

/* Events in time order, to the passes that take them. */
static void deliver(struct kp_load *L, const struct kp_batch *b)
{
	L->an->events += b->n;
	for (size_t i = 0; i < L->nev_passes; i++)
		L->xEvents[i](L->ev_state[i], L->t, b);
}

/* ---- records ------------------------------------------------------------------ */

static void note_tid_slow(struct kp_load *L, uint32_t tid)
{
	struct kp_trace *t = L->t;

	L->last_tid = tid;
	L->have_tid = 1;
	if (kp_idmap_get(&t->tids, tid) != UINT32_MAX)
		return;
	if (t->tids.n >= KP_MAX_TIDS)
		return;
	kp_idmap_put(&t->tids, tid, 1);
}

/* Thread tid is called name (at most KP_MAX_THREAD_NAME bytes kept). */
static void name_thread(struct kp_trace *t, uint32_t tid, const char *name,
			uint32_t len)
{
	if (!name)
		return;
	if (len > KP_MAX_THREAD_NAME)
		len = KP_MAX_THREAD_NAME;
	uint32_t i = kp_idmap_get(&t->tname_ids, tid);
	if (i != UINT32_MAX) {
		free(t->tnames[i]);
		t->tnames[i] = xstrndup(name, len);
		return;
	}
	if (t->ntnames >= KP_MAX_TIDS)
		return;
	if ((t->ntnames & (t->ntnames - 1)) == 0)
		t->tnames = xrealloc_array(t->tnames,
					   t->ntnames ? 2 * t->ntnames : 16,
					   sizeof(*t->tnames));
	t->tnames[t->ntnames] = xstrndup(name, len);
	kp_idmap_put(&t->tname_ids, tid, (uint32_t)t->ntnames++);
}

const char *kp_trace_thread_name(const struct kp_trace *t, uint32_t tid)
{
	uint32_t i = kp_idmap_get(&t->tname_ids, tid);
	return i == UINT32_MAX ? NULL : t->tnames[i];
}

static KP_ALWAYS_INLINE void note_tid(struct kp_load *L, uint32_t tid)
{
	if (KP_UNLIKELY(tid != L->last_tid || !L->have_tid))
		note_tid_slow(L, tid);
}

/* Records the order stage took (the events they made come later). */
static void handle_count(struct kp_load *L, const struct kp_order_count *k)
{
	struct kp_trace *t = L->t;

	L->an->records += k->records;
	t->proc->records += k->records;
	if (k->last_ts > t->last_ts)
		t->last_ts = k->last_ts;
	note_tid(L, k->tid);
}

static void handle_record(struct kp_load *L, const struct kp_rec *rec)
{
	struct kp_analysis *an = L->an;
	struct kp_trace *t = L->t;
	struct kp_proc *p = t->proc;

	an->records++;
	p->records++;
	if (rec->ts > t->last_ts && rec->type != KP_REC_FRAME)
		t->last_ts = rec->ts;

	switch (rec->type) {
	case KP_REC_FRAME:
		p->frames++;
		break;
	case KP_REC_STACK:
		kp_trace_define_stack(t, rec->u.stack.id, rec->u.stack.pcs,
				      rec->u.stack.pcs ? rec->u.stack.depth : 0);
		break;
	case KP_REC_MODULE:
		kp_trace_add_module(t, rec);
		break;
	case KP_REC_JIT_CODE:
		if (!t->jit_rec)
			t->jit_rec = kp_perfmap_new();
		kp_perfmap_add(t->jit_rec, rec->u.jit.lo, rec->u.jit.size,
			       rec->u.jit.name, rec->u.jit.name_len);
		break;
	case KP_REC_UNMODULE:
		kp_trace_unmap_module(t, rec);
		break;
	case KP_REC_THREAD_START:
	case KP_REC_THREAD_NAME:
		note_tid(L, rec->tid);
		name_thread(L->t, rec->tid, rec->u.thread.name,
			    rec->u.thread.name_len);
		break;
	case KP_REC_LOST:
		/* Cumulative per type: the latest count replaces the last. */
		if (rec->u.lost.what <= KP_REC_TYPE_MAX)
			p->lost[rec->u.lost.what] = rec->u.lost.count;
		break;
	case KP_REC_END:
		p->ended = 1;
		p->end_reason = rec->kind;
		p->exit_status = rec->u.end.status;
		break;
	case KP_REC_FORK:
		p->forks++;
		break;
	case KP_REC_EXEC:
		free(p->exec_path);
		p->exec_path = xstrndup(rec->u.exec.path ? rec->u.exec.path : "",
					rec->u.exec.path ? rec->u.exec.path_len
							 : 0);
		break;
	default:
		break;
	}
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xRecord)
			an->passes[i]->xRecord(an->pass_state[i], t, rec);
}

/* ---- one trace ------------------------------------------------------------------- */

static struct kp_proc *proc_new(struct kp_analysis *an, const char *name,
				const struct kp_header *h)
{
	struct kp_proc *p = xcalloc(1, sizeof(*p));

	p->file = xstrdup(name);
	p->pid = h->pid;
	p->ppid = h->ppid;
	p->pgid = h->pgid;
	p->forked = h->forked;
	const char *mem = kp_header_config(h, "memory");
	const char *owner = kp_header_config(h, "malloc_owner");
	p->mem_off = mem && !strcmp(mem, "0");
	if (owner)
		p->malloc_owner = xstrdup(owner);
	p->exe = xstrdup(h->exe ? h->exe : "");
	p->argc = h->argv ? h->argc : 0;
	p->argv = xcalloc(p->argc ? p->argc : 1, sizeof(*p->argv));
	for (uint32_t i = 0; i < p->argc; i++)
		p->argv[i] = xstrdup(h->argv[i] ? h->argv[i] : "");
	p->start_wall_ns = h->start_wall_ns;
	p->start_mono_ns = h->start_mono_ns;
	p->exe_id = kp_exe_intern(an, p->exe);
	if (an->nprocs >= an->procs_cap) {
		an->procs_cap = an->procs_cap ? an->procs_cap * 2 : 8;
		an->procs = xrealloc_array(an->procs, an->procs_cap,
					   sizeof(*an->procs));
	}
	an->procs[an->nprocs++] = p;
	return p;
}

const char *kp_lower_first(char *buf, size_t n, const char *s)
{
	snprintf(buf, n, "%s", s);
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

static const char *trace_strerror(char *buf, size_t n, int rc)
{
	switch (rc) {
	case KP_EFORMAT:
		return "not a kprof trace";
	case KP_EVERSION:
		snprintf(buf, n, "trace format is newer than this kprof-analyze "
			 "(reads major versions %d to %d)", KP_FORMAT_MAJOR_MIN,
			 KP_FORMAT_MAJOR);
		return buf;
	case KP_ETRUNC:
		return "truncated trace header";
	case KP_ECORRUPT:
		return "corrupt trace";
	case KP_ELIMIT:
		return "corrupt trace (a length or count exceeds its limit)";
	default:
		if (rc < 0 && rc > -4096)
			return kp_lower_first(buf, n, strerror(-rc));
		return kp_strerror(rc);
	}
}

int kp_analysis_add(struct kp_analysis *an, const char *name,
		    const struct kp_source *src)
{
	struct kp_reader *r = NULL;
	char ebuf[256];
	int rc, ret = 0;

	rc = kp_reader_open(&r, &kp_allocator_libc, src);
	if (rc < 0) {
		kp_reader_free(r);
		return error("%s: %s", name, trace_strerror(ebuf, sizeof(ebuf),
							   rc));
	}
	const struct kp_header *h = kp_reader_header(r);
	struct kp_trace t;
	memset(&t, 0, sizeof(t));
	t.an = an;
	t.hdr = h;
	t.proc = proc_new(an, name, h);
	kp_idmap_init(&t.stack_ids);
	kp_idmap_init(&t.tids);
	kp_idmap_init(&t.tname_ids);
	struct kp_load L = { .an = an, .t = &t };
	for (size_t i = 0; i < an->npasses; i++) {
		if (an->passes[i]->xEvents) {
			L.xEvents[L.nev_passes] = an->passes[i]->xEvents;
			L.ev_state[L.nev_passes++] = an->pass_state[i];
		}
	}

	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xBeginTrace)
			an->passes[i]->xBeginTrace(an->pass_state[i], &t);
	struct kp_ra *ra = kp_ra_start(r);
	for (;;) {
		struct kp_ra_out out;
		uint64_t frames;
		rc = kp_ra_next(ra, &out, &frames);
		if (rc == KP_RA_EVENTS) {
			deliver(&L, &out.batch);
			continue;
		}
		if (rc == KP_RA_COUNT) {
			handle_count(&L, &out.count);
			continue;
		}
		if (rc == KP_RA_RECORD) {
			handle_record(&L, out.rec);
			continue;
		}
		if (rc == 0)
			break;
		if (rc == KP_ETRUNC) {
			/* Killed mid-write: everything before the last whole
			 * frame is good. Not an error. */
			t.proc->truncated = 1;
			break;
		}
		ret = error("%s: %s (after %llu good frame%s)", name,
			    trace_strerror(ebuf, sizeof(ebuf), rc),
			    (unsigned long long)frames, frames == 1 ? "" : "s");
		break;
	}
	kp_ra_end(ra);

	struct kp_proc *p = t.proc;
	if (!p->ended)
		p->truncated = 1;
	p->duration_ns = t.last_ts;
	p->threads = t.tids.n;
	for (unsigned w = 0; w <= KP_REC_TYPE_MAX; w++) {
		p->lost_total = kp_sat_add(p->lost_total, p->lost[w]);
		an->lost[w] = kp_sat_add(an->lost[w], p->lost[w]);
	}
	an->lost_total = kp_sat_add(an->lost_total, p->lost_total);
	if (p->truncated)
		an->truncated = 1;
	kp_trace_name_jit(&t);
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xEndTrace)
			an->passes[i]->xEndTrace(an->pass_state[i], &t);

	kp_trace_release(&t);
	kp_reader_free(r);
	return ret;
}

/* ---- files ---------------------------------------------------------------------- */

long kp_fd_read(void *ctx, void *buf, size_t n)
{
	int fd = *(int *)ctx;

	for (;;) {
		ssize_t got = read(fd, buf, n);
		if (got >= 0)
			return (long)got;
		if (errno != EINTR)
			return -errno;
	}
}

int kp_analysis_add_file(struct kp_analysis *an, const char *path)
{
	char ebuf[256];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return error("%s: %s", path,
			     kp_lower_first(ebuf, sizeof(ebuf), strerror(errno)));
	int known = fstat(fd, &st) == 0;
	if (known && S_ISDIR(st.st_mode)) {
		close(fd);
		return error("%s: is a directory", path);
	}
	if (known && S_ISREG(st.st_mode) && st.st_size == 0) {
		/* what kprof leaves of a process killed before its header */
		close(fd);
		return error("%s: empty file, not a kprof trace (a process "
			     "killed as kprof created it leaves one)", path);
	}
	struct kp_source src = { .xRead = kp_fd_read, .ctx = &fd };
	int ret = kp_analysis_add(an, path, &src);
	close(fd);
	return ret;
}
