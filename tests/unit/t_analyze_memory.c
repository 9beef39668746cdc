/* SPDX-License-Identifier: MIT */
/*
 * kprof-analyze's memory pass on synthetic traces built in memory with
 * kp_writer: exact counts (valgrind's rules), leaks and their confidence,
 * realloc chains, cross-thread reuse of a pointer, frame merging, unknown
 * frees, truncation, LOST, merging of processes, and JSON that python's
 * json module accepts.
 */
#include <dirent.h>
#include <elfutils/libdw.h>
#include <fcntl.h>
#include <gelf.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyze.h"
#include "err.h"
#include "harness.h"
#include "json.h"
#include "kpz.h"
#include "kpz_testutil.h"

/* ---- building traces -------------------------------------------------------- */

struct tb {
	struct membuf m; /* the trace as written (kpz_testutil.h) */
	struct kp_writer *w;
};

/* The header's config pairs for the next tb_begin* (then reset). */
static const char *const *next_keys, *const *next_vals;
static uint32_t next_nconfig;

static void tb_config(const char *const *keys, const char *const *vals,
		      uint32_t n)
{
	next_keys = keys;
	next_vals = vals;
	next_nconfig = n;
}

static void tb_begin_argv(struct tb *b, int64_t pid, int64_t ppid,
			  const char *exe, const char *const *argv,
			  uint32_t argc)
{
	struct kp_sink sink = { membuf_write, &b->m, NULL };
	struct kp_header h;

	memset(b, 0, sizeof(*b));
	memset(&h, 0, sizeof(h));
	h.config_keys = (const char **)next_keys;
	h.config_vals = (const char **)next_vals;
	h.nconfig = next_nconfig;
	next_keys = next_vals = NULL;
	next_nconfig = 0;
	h.pid = pid;
	h.ppid = ppid;
	h.exe = exe;
	h.argv = argv;
	h.argc = argc;
	h.start_wall_ns = 1700000000ULL * 1000000000ULL;
	h.clock = "clock_gettime";
	if (kp_writer_create(&b->w, &kp_allocator_libc, &sink, 1, 1 << 20) ||
	    kp_writer_header(b->w, &h)) {
		fprintf(stderr, "cannot create a writer\n");
		abort();
	}
}

static void tb_begin(struct tb *b, int64_t pid, int64_t ppid, const char *exe)
{
	static const char *const argv[] = { "./app", "--leak", "23" };
	tb_begin_argv(b, pid, ppid, exe, argv, 3);
}

static void tb_add(struct tb *b, const struct kp_rec *r)
{
	int rc = kp_writer_add(b->w, r);
	if (rc) {
		fprintf(stderr, "kp_writer_add: %s\n", kp_strerror(rc));
		abort();
	}
}

static void tb_flush(struct tb *b)
{
	if (kp_writer_flush(b->w))
		abort();
}

static void tb_end_writer(struct tb *b)
{
	tb_flush(b);
	kp_writer_free(b->w);
	b->w = NULL;
}

static void t_alloc(struct tb *b, uint32_t tid, uint64_t ts, uint64_t ptr,
		    uint64_t size, uint32_t stack)
{
	struct kp_rec r = { .type = KP_REC_ALLOC, .tid = tid, .ts = ts };
	r.u.alloc.ptr = ptr;
	r.u.alloc.size = size;
	r.u.alloc.stack = stack;
	tb_add(b, &r);
}

static void t_free(struct tb *b, uint32_t tid, uint64_t ts, uint64_t ptr)
{
	struct kp_rec r = { .type = KP_REC_FREE, .tid = tid, .ts = ts };
	r.u.free.ptr = ptr;
	tb_add(b, &r);
}

static void t_realloc(struct tb *b, uint32_t tid, uint64_t ts, uint64_t old,
		      uint64_t new, uint64_t size, uint32_t stack,
		      uint64_t dur)
{
	struct kp_rec r = { .type = KP_REC_REALLOC, .tid = tid, .ts = ts };
	r.u.realloc.old_ptr = old;
	r.u.realloc.new_ptr = new;
	r.u.realloc.size = size;
	r.u.realloc.stack = stack;
	r.u.realloc.dur = dur;
	tb_add(b, &r);
}

static void t_stack(struct tb *b, uint32_t id, const uint64_t *pcs,
		    uint32_t depth)
{
	struct kp_rec r = { .type = KP_REC_STACK };
	r.u.stack.id = id;
	r.u.stack.depth = depth;
	r.u.stack.pcs = pcs;
	tb_add(b, &r);
}

static void t_module(struct tb *b, uint64_t ts, uint64_t bias, uint64_t lo,
		     uint64_t hi, const char *path)
{
	static const uint8_t bid[] = { 0xde, 0xad, 0xbe, 0xef };
	struct kp_rec r = { .type = KP_REC_MODULE, .ts = ts };
	r.u.module.bias = bias;
	r.u.module.lo = lo;
	r.u.module.hi = hi;
	r.u.module.path = path;
	r.u.module.path_len = (uint32_t)strlen(path);
	r.u.module.build_id = bid;
	r.u.module.build_id_len = sizeof(bid);
	tb_add(b, &r);
}

static void t_end(struct tb *b, uint64_t ts, int reason, int64_t status)
{
	struct kp_rec r = { .type = KP_REC_END, .ts = ts };
	r.kind = (uint8_t)reason;
	r.u.end.status = status;
	tb_add(b, &r);
}

static void t_lost(struct tb *b, uint32_t what, uint64_t count)
{
	struct kp_rec r = { .type = KP_REC_LOST };
	r.u.lost.what = what;
	r.u.lost.count = count;
	tb_add(b, &r);
}

static void t_thread_start(struct tb *b, uint64_t ts, uint32_t tid)
{
	struct kp_rec r = { .type = KP_REC_THREAD_START, .ts = ts, .tid = tid };
	r.u.thread.name = "worker";
	r.u.thread.name_len = 6;
	tb_add(b, &r);
}

/* ---- reading them back ---------------------------------------------------- */

static struct kp_opts test_opts = { .format = KP_FMT_TEXT, .top = 10,
				    .no_symbols = 1 };

static int an_add(struct kp_analysis *an, const char *name, const void *p,
		  size_t len)
{
	struct memsrc s = { .p = p, .len = len };
	struct kp_source src = { memsrc_read, &s };
	return kp_analysis_add(an, name, &src);
}

/* Analyze one finished builder. */
static struct kp_analysis *analyze1(struct tb *b)
{
	struct kp_analysis *an = kp_analysis_new(&test_opts);
	if (an_add(an, "mem.kpz", b->m.p, b->m.len) < 0)
		printf("#   analysis failed\n");
	kp_analysis_finish(an);
	return an;
}

/* Analyze two finished builders, as traces n1 and n2 (the two of a fork,
 * say); *ok: both were read. */
static struct kp_analysis *analyze2(const char *n1, struct tb *b1,
				    const char *n2, struct tb *b2, int *ok)
{
	struct kp_analysis *an = kp_analysis_new(&test_opts);
	*ok = (an_add(an, n1, b1->m.p, b1->m.len) == 0) &
	      (an_add(an, n2, b2->m.p, b2->m.len) == 0);
	kp_analysis_finish(an);
	return an;
}

/* Render the report into a string (for text checks). */
static char *render(struct kp_analysis *an, int json)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	if (json)
		kp_report_json(an, f);
	else
		kp_report_text(an, f);
	fclose(f);
	return s;
}

/* Run python3's json module over the report; extra is a python assert. */
static int python_check(const char *doc, const char *extra)
{
	char path[] = "/tmp/t_analyze_XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	size_t n = strlen(doc);
	if (write(fd, doc, n) != (ssize_t)n) {
		close(fd);
		return -1;
	}
	close(fd);
	char cmd[4096];
	snprintf(cmd, sizeof(cmd),
		 "/usr/bin/python3 -c 'import json,sys; "
		 "d = json.load(open(sys.argv[1], encoding=\"utf-8\")); %s' %s",
		 extra ? extra : "", path);
	int rc = system(cmd);
	unlink(path);
	return rc;
}

static int have_python(void)
{
	return access("/usr/bin/python3", X_OK) == 0;
}

/* ---- the tests ------------------------------------------------------------------ */

static const uint64_t pcs_leak[] = { 0x401010, 0x401200, 0x401300 };
static const uint64_t pcs_tmp[] = { 0x402010, 0x401300 };

/* bcc's rule: 23 blocks of 1000 bytes leak from one stack, exactly. */
static void build_leak23(struct tb *b)
{
	tb_begin(b, 4242, 1, "/usr/bin/app");
	t_module(b, 0, 0, 0x400000, 0x500000, "/usr/bin/app");
	t_stack(b, 1, pcs_leak, 3);
	t_stack(b, 2, pcs_tmp, 2);
	uint64_t ts = 1000;
	for (int i = 0; i < 23; i++) {
		t_alloc(b, 7, ts += 10, 0x10000 + (uint64_t)i * 0x1000, 1000, 1);
		t_alloc(b, 7, ts += 10, 0x90000, 64, 2);
		t_free(b, 7, ts += 10, 0x90000);
		if (i % 5 == 4)
			tb_flush(b);
	}
	t_end(b, ts + 1000000, KP_END_EXIT, 0);
	tb_end_writer(b);
}

/* Code in no module, named by the trace's JIT_CODE records: its frames
 * go to the pseudo-module of the process's JIT map, which has no build id
 * (the ASan/UBSan build checks that nothing reads one). */
TEST(jit_code_names_frames)
{
	static const uint64_t pcs[] = { 0x5000010, 0x401300 };
	struct tb b;
	tb_begin(&b, 4243, 1, "/usr/bin/app");
	t_module(&b, 0, 0, 0x400000, 0x500000, "/usr/bin/app");
	t_stack(&b, 1, pcs, 2);
	t_alloc(&b, 7, 1000, 0x10000, 100, 1);
	struct kp_rec r = { .type = KP_REC_JIT_CODE, .ts = 1500 };
	r.u.jit.lo = 0x5000000;
	r.u.jit.size = 0x100;
	r.u.jit.name = "jitted_fn";
	r.u.jit.name_len = 9;
	tb_add(&b, &r);
	t_end(&b, 2000, KP_END_EXIT, 0);
	tb_end_writer(&b);
	struct kp_opts o = test_opts;
	o.no_symbols = 0; /* (a JIT map is read only with symbols) */
	struct kp_analysis *an = kp_analysis_new(&o);
	CHECK(an_add(an, "jit.kpz", b.m.p, b.m.len) == 0);
	kp_analysis_finish(an);
	const struct kp_site *const *l;
	REQUIRE(kp_mem_leaks(an, &l) == 1);
	char *js = render(an, 1);
	CHECK(strstr(js, "\"function\": \"jitted_fn\""));
	CHECK(strstr(js, "[perf-4243.map]"));
	free(js);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

TEST(leak23_exact)
{
	struct tb b;
	build_leak23(&b);
	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->alloc_calls, 46);
	CHECK_EQ_U(m->free_calls, 23);
	CHECK_EQ_U(m->realloc_calls, 0);
	CHECK_EQ_U(m->bytes_allocated, 23 * 1000 + 23 * 64);
	CHECK_EQ_U(m->bytes_freed, 23 * 64);
	CHECK_EQ_U(m->live_bytes, 23000);
	CHECK_EQ_U(m->live_blocks, 23);
	CHECK_EQ_U(m->peak_bytes, 23000 + 64);
	CHECK_EQ_U(m->unmatched_frees, 0);
	CHECK_EQ_U(m->peak_pid, 4242);

	const struct kp_site *const *l;
	size_t nl = kp_mem_leaks(an, &l);
	REQUIRE(nl == 1);
	CHECK_EQ_U(l[0]->leaked_blocks, 23);
	CHECK_EQ_U(l[0]->leaked_bytes, 23000);
	CHECK_EQ_U(l[0]->allocs, 23);
	CHECK_EQ_U(l[0]->frees, 0);
	CHECK(l[0]->conf == KP_CONF_HIGH);
	CHECK(!strcmp(l[0]->reason,
		      "this site never frees (0 of 23 blocks freed)"));
	CHECK_EQ_U(l[0]->npids, 1);
	/* The stack is the canonical one: module-relative offsets. */
	const struct kp_gstack *g = &an->gstacks[l[0]->gstack];
	REQUIRE(g->depth == 3);
	CHECK_EQ_U(kp_gframe(an, g, 0)->offset, 0x401010);
	CHECK(!strcmp(an->modules[kp_gframe(an, g, 0)->module].path,
		      "/usr/bin/app"));

	const struct kp_site *const *t;
	size_t nt = kp_mem_top_calls(an, &t);
	REQUIRE(nt == 2);
	CHECK_EQ_U(t[0]->allocs, 23);
	CHECK_EQ_U(t[0]->bytes, 23000); /* tie on calls: more bytes first */
	nt = kp_mem_top_bytes(an, &t);
	CHECK_EQ_U(t[0]->bytes, 23000);
	CHECK_EQ_U(t[1]->bytes, 23 * 64);

	const struct kp_proc *p = an->procs[0];
	CHECK(!p->truncated);
	CHECK(p->ended);
	CHECK_EQ_U(p->threads, 1);
	CHECK_EQ_U(p->argc, 3);

	char *txt = render(an, 0);
	CHECK(strstr(txt, "in use at exit    23,000 bytes in 23 blocks"));
	CHECK(strstr(txt, "[confidence: high]"));
	CHECK(!strstr(txt, "TRUNCATED"));
	/* Under 80 columns. */
	for (char *s = txt, *e; *s; s = e + 1) {
		e = strchr(s, '\n');
		if (!e)
			break;
		CHECK(e - s < 80);
	}
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

TEST(realloc_chain)
{
	struct tb b;
	tb_begin(&b, 10, 1, "/bin/r");
	t_stack(&b, 1, pcs_leak, 3);
	t_stack(&b, 2, pcs_tmp, 2);
	t_alloc(&b, 1, 100, 0x1000, 100, 1);
	t_realloc(&b, 1, 200, 0x1000, 0x2000, 200, 2, 5);
	t_realloc(&b, 1, 300, 0x2000, 0x3000, 300, 1, 5);
	/* in place */
	t_realloc(&b, 1, 400, 0x3000, 0x3000, 350, 2, 5);
	/* realloc(NULL, n) arrives as an ALLOC of kind REALLOC */
	struct kp_rec r = { .type = KP_REC_ALLOC, .tid = 1, .ts = 500,
			    .kind = KP_ALLOC_REALLOC };
	r.u.alloc.ptr = 0x5000;
	r.u.alloc.size = 10;
	r.u.alloc.stack = 2;
	tb_add(&b, &r);
	t_free(&b, 1, 600, 0x5000);
	t_end(&b, 1000, KP_END_EXIT, 3);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->alloc_calls, 5);
	CHECK_EQ_U(m->realloc_calls, 3);
	CHECK_EQ_U(m->free_calls, 4);
	CHECK_EQ_U(m->bytes_allocated, 100 + 200 + 300 + 350 + 10);
	CHECK_EQ_U(m->bytes_freed, 100 + 200 + 300 + 10);
	CHECK_EQ_U(m->live_bytes, 350);
	CHECK_EQ_U(m->live_blocks, 1);
	CHECK_EQ_U(m->peak_bytes, 360);
	CHECK_EQ_U(m->peak_time_ns, 500);
	CHECK_EQ_U(m->unmatched_frees, 0);
	const struct kp_site *const *l;
	REQUIRE(kp_mem_leaks(an, &l) == 1);
	/* The survivor came from the last realloc, at stack 2. */
	CHECK_EQ_U(l[0]->leaked_bytes, 350);
	CHECK_EQ_U(l[0]->allocs, 3); /* 0x2000, 0x3000 in place, 0x5000 */
	CHECK_EQ_U(l[0]->frees, 2);
	CHECK(l[0]->conf == KP_CONF_MEDIUM);
	CHECK(!strcmp(l[0]->reason, "2 of 3 blocks from this site were freed"));
	CHECK_EQ_U(an->procs[0]->exit_status, 3);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/*
 * Temporary allocations, per thread: a block freed (or realloc'ed) by its
 * thread before that thread allocates or frees anything else. Thread 2's
 * allocation between thread 1's malloc and free does not count; free(NULL)
 * is no call and breaks nothing.
 */
TEST(temporary_per_thread)
{
	struct tb b;
	tb_begin(&b, 12, 1, "/bin/t");
	t_stack(&b, 1, pcs_leak, 3);
	t_stack(&b, 2, pcs_tmp, 2);
	t_alloc(&b, 1, 10, 0x1000, 8, 1);
	t_alloc(&b, 2, 11, 0x2000, 8, 2);
	t_free(&b, 1, 12, 0x1000);		/* temporary (site 1) */
	t_free(&b, 2, 13, 0x2000);		/* temporary (site 2) */
	t_alloc(&b, 1, 20, 0x3000, 8, 1);
	t_alloc(&b, 1, 21, 0x3100, 8, 1);
	t_free(&b, 1, 22, 0x3000);		/* not: an alloc in between */
	t_free(&b, 1, 23, 0x3100);		/* not: a free in between */
	t_alloc(&b, 1, 30, 0x4000, 8, 1);
	t_realloc(&b, 1, 31, 0x4000, 0x5000, 16, 2, 1); /* temporary (1) */
	t_free(&b, 1, 32, 0x5000);		/* temporary (site 2) */
	t_alloc(&b, 1, 40, 0x6000, 8, 1);
	t_free(&b, 1, 41, 0);			/* free(NULL): no call */
	t_free(&b, 1, 42, 0x6000);		/* temporary (site 1) */
	t_alloc(&b, 1, 50, 0x7000, 8, 1);
	t_realloc(&b, 1, 51, 0x7000, 0x7000, 9, 1, 1); /* temporary, in place */
	t_end(&b, 100, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->temporary, 6);
	CHECK_EQ_U(kp_mem_proc_totals(an, an->procs[0])->temporary, 6);
	const struct kp_site *const *t;
	REQUIRE(kp_mem_top_temporary(an, &t) == 2);
	CHECK_EQ_U(t[0]->temporary, 4); /* 0x1000, 0x4000, 0x6000, 0x7000 */
	CHECK_EQ_U(t[0]->allocs, 7);
	CHECK_EQ_U(t[1]->temporary, 2); /* 0x2000, 0x5000 */
	char *txt = render(an, 0);
	CHECK(strstr(txt, "temporary         6 (66.7 % of allocation calls"));
	CHECK(strstr(txt, "  1. 4 temporary of 7 calls"));
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/*
 * Thread 2 frees p at ts 10, but its FREE is only written in the next
 * frame; thread 3 got p back from malloc at ts 20 in this frame. The free
 * must hit the old block, not the new one.
 */
TEST(cross_thread_reuse)
{
	struct tb b;
	tb_begin(&b, 11, 1, "/bin/x");
	t_stack(&b, 1, pcs_leak, 3);
	t_stack(&b, 2, pcs_tmp, 2);
	t_alloc(&b, 2, 5, 0xabc0, 10, 1);
	t_alloc(&b, 3, 20, 0xabc0, 50, 2);
	tb_flush(&b);
	t_free(&b, 2, 10, 0xabc0);
	t_thread_start(&b, 60, 4); /* a thread with no events still counts */
	tb_flush(&b);
	t_end(&b, 100, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->live_blocks, 1);
	CHECK_EQ_U(m->live_bytes, 50);
	CHECK_EQ_U(m->bytes_freed, 10);
	CHECK_EQ_U(m->unmatched_frees, 0);
	const struct kp_site *const *l;
	REQUIRE(kp_mem_leaks(an, &l) == 1);
	CHECK_EQ_U(l[0]->leaked_bytes, 50);
	CHECK_EQ_U(an->procs[0]->threads, 3);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/*
 * Inside one frame, thread batches interleave in file order; the pass must
 * see them in time order. Thread 9's batch (ts 50) is written before thread
 * 8's (ts 10, 20): merged, the peak is 1000 at ts 10, not 2000.
 */
TEST(frame_merge_order)
{
	struct tb b;
	tb_begin(&b, 12, 1, "/bin/m");
	t_stack(&b, 1, pcs_leak, 3);
	t_alloc(&b, 9, 50, 0x7000, 1000, 1);
	t_alloc(&b, 8, 10, 0x8000, 1000, 1);
	t_free(&b, 8, 20, 0x8000);
	t_free(&b, 9, 60, 0x7000);
	t_end(&b, 100, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->peak_bytes, 1000);
	CHECK_EQ_U(m->peak_time_ns, 10);
	CHECK_EQ_U(m->live_blocks, 0);
	const struct kp_site *const *l;
	CHECK(kp_mem_leaks(an, &l) == 0);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/*
 * Time going backwards inside one thread's block (a hostile or confused
 * trace) starts a new run there, so the events are still merged in time
 * order: taken in file order the peak would be 4000 bytes, not 3000.
 * Also with a realloc's two halves around the step back.
 */
TEST(frame_time_backwards)
{
	struct tb b;
	tb_begin(&b, 14, 1, "/bin/back");
	t_stack(&b, 1, pcs_leak, 3);
	t_alloc(&b, 7, 50, 0x1000, 1000, 1);
	t_alloc(&b, 7, 20, 0x2000, 3000, 1);
	t_free(&b, 7, 30, 0x2000);
	t_free(&b, 7, 60, 0x1000);
	t_realloc(&b, 7, 80, 0, 0x3000, 100, 1, 5);
	t_alloc(&b, 7, 70, 0x4000, 5000, 1);
	t_free(&b, 7, 75, 0x4000);
	t_free(&b, 7, 90, 0x3000);
	t_end(&b, 100, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->peak_bytes, 5000);
	CHECK_EQ_U(m->peak_time_ns, 70);
	CHECK_EQ_U(m->live_blocks, 0);
	CHECK_EQ_U(m->alloc_calls, 4);
	CHECK_EQ_U(m->unmatched_frees, 0);
	kp_analysis_free(an);
	membuf_free(&b.m);

	/* the same without the last step back: 3000 is the peak */
	tb_begin(&b, 15, 1, "/bin/back");
	t_stack(&b, 1, pcs_leak, 3);
	t_alloc(&b, 7, 50, 0x1000, 1000, 1);
	t_alloc(&b, 7, 20, 0x2000, 3000, 1);
	t_free(&b, 7, 30, 0x2000);
	t_free(&b, 7, 60, 0x1000);
	t_end(&b, 100, KP_END_EXIT, 0);
	tb_end_writer(&b);
	an = analyze1(&b);
	m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->peak_bytes, 3000);
	CHECK_EQ_U(m->peak_time_ns, 20);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/*
 * One frame, many threads, each writing its (sorted) events in several
 * batches that interleave in the file: 2 runs, a few (the linear merge),
 * many (the heap merge), more than one merge chunk, and frames of more
 * events than a read-ahead chunk holds (8,192: the merge stops when one
 * is full and goes on in the next). Each thread holds
 * one block at a time; merged wrongly, a FREE would come before its ALLOC
 * or the peak would differ from the model's.
 */
static void merge_case(int *kp_failed_, unsigned nthreads,
		       unsigned per_thread, unsigned max_batch)
{
	enum { MAXT = 40, MAXE = 12000 };
	static struct { uint64_t ts; uint32_t tid; int alloc; uint64_t size; }
		evs[MAXT][MAXE];
	static unsigned pos[MAXT];
	uint64_t seed = 99 + nthreads, live = 0, peak = 0, peak_ts = 0;
	struct tb b;

	REQUIRE(nthreads <= MAXT && per_thread * 2 <= MAXE);
	/* Thread t's events: alloc/free pairs at distinct times (ts % MAXT
	 * is t), sizes distinct enough to make the peak tell the order. */
	for (unsigned t = 0; t < nthreads; t++) {
		uint64_t now = 1;
		for (unsigned i = 0; i < per_thread; i++) {
			seed = seed * 6364136223846793005ULL +
			       1442695040888963407ULL;
			uint64_t size = 1 + (seed >> 40) % 1000;
			now += 1 + (seed >> 20) % 7;
			evs[t][2 * i].ts = now * MAXT + t;
			evs[t][2 * i].alloc = 1;
			evs[t][2 * i].size = size;
			now += 1 + (seed >> 30) % 7;
			evs[t][2 * i + 1].ts = now * MAXT + t;
			evs[t][2 * i + 1].alloc = 0;
			evs[t][2 * i + 1].size = size;
		}
		pos[t] = 0;
	}
	/* The model: all events in time order. */
	for (;;) {
		int m = -1;
		for (unsigned t = 0; t < nthreads; t++)
			if (pos[t] < per_thread * 2 &&
			    (m < 0 || evs[t][pos[t]].ts < evs[m][pos[m]].ts))
				m = (int)t;
		if (m < 0)
			break;
		if (evs[m][pos[m]].alloc) {
			live += evs[m][pos[m]].size;
			if (live > peak) {
				peak = live;
				peak_ts = evs[m][pos[m]].ts;
			}
		} else {
			live -= evs[m][pos[m]].size;
		}
		pos[m]++;
	}
	/* The file: batches of 1..max_batch events from threads picked at
	 * random (each batch is a run, or part of one). */
	tb_begin(&b, 20, 1, "/bin/merge");
	t_stack(&b, 1, pcs_leak, 3);
	memset(pos, 0, sizeof(pos));
	for (unsigned left = nthreads * per_thread * 2; left;) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		unsigned t = (unsigned)(seed >> 33) % nthreads;
		unsigned k = 1 + (unsigned)(seed >> 20) % max_batch;
		for (; k && pos[t] < per_thread * 2; k--, left--, pos[t]++) {
			uint64_t ptr = 0x10000 + (uint64_t)t * 0x100;
			if (evs[t][pos[t]].alloc)
				t_alloc(&b, 100 + t, evs[t][pos[t]].ts, ptr,
					evs[t][pos[t]].size, 1);
			else
				t_free(&b, 100 + t, evs[t][pos[t]].ts, ptr);
		}
	}
	t_end(&b, (uint64_t)1 << 40, KP_END_EXIT, 0);
	tb_end_writer(&b);

	/* The frame ordered by the read-ahead thread, by the driver's (lent
	 * to it), and by whichever is idle. */
	uint64_t threads = 0;
	for (int lend = 0; lend <= 2; lend++) {
		uint64_t lent = kp_ra_lent;
		kp_ra_lend = lend < 2 ? lend : -1;
		struct kp_analysis *an = analyze1(&b);
		const struct kp_mem_totals *m = kp_mem_totals(an);
		REQUIRE(m);
		CHECK_EQ_U(an->procs[0]->frames, 1);
		CHECK_EQ_U(m->unmatched_frees, 0);
		CHECK_EQ_U(m->live_blocks, 0);
		CHECK_EQ_U(m->peak_bytes, peak);
		CHECK_EQ_U(m->peak_time_ns, peak_ts);
		/* each thread's records counted as its own */
		if (!lend)
			threads = an->procs[0]->threads;
		CHECK(threads >= nthreads);
		CHECK_EQ_U(an->procs[0]->threads, threads);
		if (lend < 2 && t_cpus() > 1)
			CHECK_EQ_U(kp_ra_lent > lent, (uint64_t)lend);
		kp_analysis_free(an);
	}
	kp_ra_lend = -1;
	membuf_free(&b.m);
}

TEST(frame_merge_many_runs)
{
	if (t_cpus() < 2)
		printf("# one CPU: frames are not lent to the driver here\n");
	/* whole threads at once: exactly 2, 5, 8 (linear merge), 9 runs */
	merge_case(kp_failed_, 2, 700, 100000);
	merge_case(kp_failed_, 5, 300, 100000);
	merge_case(kp_failed_, 8, 200, 100000);
	merge_case(kp_failed_, 9, 100, 100000);
	/* a few long batches, then many short ones */
	merge_case(kp_failed_, 2, 400, 500);
	merge_case(kp_failed_, 40, 60, 16);
	/* frames of 18,000 to 20,000 events: 2, 3 and 12 runs, and many */
	merge_case(kp_failed_, 2, 5000, 100000);
	merge_case(kp_failed_, 3, 3000, 100000);
	merge_case(kp_failed_, 12, 800, 100000);
	merge_case(kp_failed_, 2, 5000, 300);
}

TEST(unknown_frees)
{
	struct tb b;
	tb_begin(&b, 13, 1, "/bin/u");
	t_free(&b, 1, 1, 0x1111);
	t_free(&b, 1, 2, 0x2222);
	t_free(&b, 1, 3, 0); /* free(NULL): not a call */
	t_realloc(&b, 1, 4, 0x3333, 0x4444, 8, 0, 1);
	t_free(&b, 1, 6, 0x4444);
	t_end(&b, 10, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->unmatched_frees, 3);
	CHECK_EQ_U(m->free_calls, 4);
	CHECK_EQ_U(m->alloc_calls, 1);
	CHECK_EQ_U(m->live_blocks, 0);
	CHECK_EQ_U(m->bytes_freed, 8);
	char *txt = render(an, 0);
	CHECK(strstr(txt, "unmatched frees   3"));
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* A FREE stamped up to 1 us before another thread's ALLOC of its block
 * (struct kp_early) frees that block; on the same thread, or later than
 * that, it stays an unmatched free. */
TEST(early_frees)
{
	struct tb b;
	tb_begin(&b, 14, 1, "/bin/e");
	t_free(&b, 2, 1000, 0xa000); /* early: thread 1 allocates it next */
	t_alloc(&b, 1, 1050, 0xa000, 64, 0);
	t_free(&b, 1, 2000, 0xb000); /* the same thread: not its block */
	t_alloc(&b, 1, 2010, 0xb000, 32, 0);
	t_free(&b, 2, 3000, 0xc000); /* more than 1 us before */
	t_alloc(&b, 1, 4001, 0xc000, 16, 0);
	t_alloc(&b, 1, 4900, 0xe000, 8, 0);
	t_free(&b, 2, 5000, 0xd000); /* a realloc's allocation half at 5010 */
	t_realloc(&b, 1, 4990, 0xe000, 0xd000, 48, 0, 20);
	t_end(&b, 10000, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->alloc_calls, 5);
	CHECK_EQ_U(m->free_calls, 5);
	CHECK_EQ_U(m->unmatched_frees, 2);
	CHECK_EQ_U(m->reordered_frees, 2);
	CHECK_EQ_U(m->live_blocks, 2);
	CHECK_EQ_U(m->live_bytes, 48);
	CHECK_EQ_U(m->bytes_freed, 64 + 8 + 48);
	char *txt = render(an, 0);
	CHECK(strstr(txt, "unmatched frees   2"));
	CHECK(strstr(txt, "reordered frees   2"));
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

TEST(truncated_trace)
{
	struct tb b;
	tb_begin(&b, 14, 1, "/bin/t");
	t_stack(&b, 1, pcs_leak, 3);
	for (int i = 0; i < 10; i++)
		t_alloc(&b, 1, 10 + (uint64_t)i, 0x1000 + (uint64_t)i * 16, 100,
			1);
	tb_flush(&b);
	size_t whole = b.m.len;
	for (int i = 0; i < 200; i++)
		t_alloc(&b, 1, 100 + (uint64_t)i, 0x9000 + (uint64_t)i * 16,
			7 + (uint64_t)i * 13, 1);
	t_end(&b, 1000, KP_END_EXIT, 0);
	tb_end_writer(&b);
	REQUIRE(b.m.len > whole + 8);

	/* Each with the frames ordered by the read-ahead thread, by the
	 * driver's (lent to it: the cut comes while one is), and by either. */
	for (int lend = 0; lend <= 2; lend++) {
		kp_ra_lend = lend < 2 ? lend : -1;
		/* Cut inside the second frame: the first one still counts. */
		struct kp_analysis *an = kp_analysis_new(&test_opts);
		CHECK(an_add(an, "cut.kpz", b.m.p,
			     whole + (b.m.len - whole) / 2) == 0);
		kp_analysis_finish(an);
		const struct kp_mem_totals *m = kp_mem_totals(an);
		REQUIRE(m);
		CHECK(an->truncated);
		CHECK(an->procs[0]->truncated);
		CHECK(!an->procs[0]->ended);
		CHECK_EQ_U(m->alloc_calls, 10);
		CHECK_EQ_U(m->live_bytes, 1000);
		char *txt = render(an, 0);
		CHECK(strstr(txt, "TRUNCATED"));
		free(txt);
		char *js = render(an, 1);
		CHECK(strstr(js, "\"truncated\": true"));
		CHECK(strstr(js, "\"end_reason\": null"));
		free(js);
		kp_analysis_free(an);

		/* Cut right after the first frame: clean EOF but no END
		 * record. */
		an = kp_analysis_new(&test_opts);
		CHECK(an_add(an, "eof.kpz", b.m.p, whole) == 0);
		kp_analysis_finish(an);
		CHECK(an->procs[0]->truncated);
		CHECK_EQ_U(kp_mem_totals(an)->alloc_calls, 10);
		kp_analysis_free(an);
	}
	kp_ra_lend = -1;

	/* The whole file is not truncated. */
	struct kp_analysis *an = kp_analysis_new(&test_opts);
	CHECK(an_add(an, "whole.kpz", b.m.p, b.m.len) == 0);
	kp_analysis_finish(an);
	CHECK(!an->truncated);
	CHECK_EQ_U(kp_mem_totals(an)->alloc_calls, 210);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* A forked child: same executable, library at another address; its leaks
 * land in the parent's group. */
TEST(two_processes_merged)
{
	struct tb p, c;
	const uint64_t pp[] = { 0x7f0000001100, 0x7f0000002200 };
	const uint64_t cp[] = { 0x7e0000001100, 0x7e0000002200 };

	tb_begin(&p, 100, 1, "/usr/bin/app");
	t_module(&p, 0, 0x7f0000000000, 0x7f0000000000, 0x7f0000100000,
		 "/usr/lib/libfoo.so");
	t_stack(&p, 1, pp, 2);
	for (int i = 0; i < 5; i++)
		t_alloc(&p, 100, 10 + (uint64_t)i, 0x1000 + (uint64_t)i * 64,
			100, 1);
	t_alloc(&p, 100, 20, 0x9000, 5000, 1);
	t_free(&p, 100, 30, 0x9000);
	t_end(&p, 1000, KP_END_EXIT, 0);
	tb_end_writer(&p);

	tb_begin(&c, 101, 100, "/usr/bin/app");
	t_module(&c, 0, 0x7e0000000000, 0x7e0000000000, 0x7e0000100000,
		 "/usr/lib/libfoo.so");
	t_stack(&c, 5, cp, 2);
	for (int i = 0; i < 3; i++)
		t_alloc(&c, 101, 10 + (uint64_t)i, 0x1000 + (uint64_t)i * 64,
			100, 5);
	t_alloc(&c, 101, 40, 0x8000, 9000, 0);
	t_free(&c, 101, 50, 0x8000);
	t_end(&c, 2000, KP_END__EXIT, 1);
	tb_end_writer(&c);

	int ok;
	struct kp_analysis *an = analyze2("p.kpz", &p, "c.kpz", &c, &ok);
	CHECK(ok);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(an->nprocs, 2);
	CHECK_EQ_U(m->alloc_calls, 10);
	CHECK_EQ_U(m->free_calls, 2);
	CHECK_EQ_U(m->live_blocks, 8);
	CHECK_EQ_U(m->live_bytes, 800);
	CHECK_EQ_U(m->peak_bytes, 9300); /* child: 300 + 9000 */
	CHECK_EQ_U(m->peak_pid, 101);
	CHECK_EQ_U(m->peak_time_ns, 40);
	CHECK_EQ_U(kp_mem_proc_totals(an, an->procs[0])->peak_bytes, 5500);
	const struct kp_site *const *l;
	REQUIRE(kp_mem_leaks(an, &l) == 1);
	CHECK_EQ_U(l[0]->leaked_blocks, 8);
	CHECK_EQ_U(l[0]->allocs, 9);
	CHECK_EQ_U(l[0]->frees, 1);
	REQUIRE(l[0]->npids == 2);
	CHECK(l[0]->pids[0] == 100 && l[0]->pids[1] == 101);
	CHECK(l[0]->conf == KP_CONF_MEDIUM);
	const struct kp_gstack *g = &an->gstacks[l[0]->gstack];
	REQUIRE(g->depth == 2);
	CHECK_EQ_U(kp_gframe(an, g, 0)->offset, 0x1100);
	CHECK_EQ_U(kp_gframe(an, g, 1)->offset, 0x2200);
	CHECK_EQ_U(an->procs[1]->ppid, 100);
	CHECK_EQ_U(an->procs[1]->end_reason, KP_END__EXIT);

	if (have_python()) {
		char *js = render(an, 1);
		CHECK(python_check(js,
			"m = d[\"memory\"]; "
			"assert d[\"schema\"] == \"kprof-report/1\"; "
			"assert m[\"peak_pid\"] == 101 and m[\"peak_bytes\"] == 9300; "
			"assert m[\"leaks\"][0][\"pids\"] == [100, 101]; "
			"assert m[\"leaks\"][0][\"blocks\"] == 8; "
			"assert m[\"leaks\"][0][\"stack\"][0][\"offset\"] == 0x1100; "
			"assert m[\"leaks\"][0][\"stack\"][0][\"module\"] == \"/usr/lib/libfoo.so\"; "
			"assert m[\"leaks\"][0][\"stack\"][0][\"function\"] is None; "
			"ps = d[\"trace\"][\"processes\"]; "
			"assert [p[\"pid\"] for p in ps] == [100, 101]; "
			"assert ps[1][\"end_reason\"] == \"_exit\"; "
			"assert ps[1][\"exit_status\"] == 1; "
			"assert ps[0][\"memory\"][\"in_use_at_exit\"] == {\"bytes\": 500, \"blocks\": 5}; "
			"assert d[\"trace\"][\"files\"] == [\"p.kpz\", \"c.kpz\"]") == 0);
		free(js);
	}
	kp_analysis_free(an);
	membuf_free(&p.m);
	membuf_free(&c.m);
}

/* A recording that took no allocations says so (memory=0 in its
 * header's config, and why: malloc_owner), in a set with one that did. */
TEST(memory_not_recorded)
{
	static const char *const keys[] = { "memory", "malloc_owner" };
	static const char *const vals[] = { "0", "/usr/lib/libtcmalloc.so.4" };
	struct tb off, on;
	tb_config(keys, vals, 2);
	tb_begin(&off, 20, 1, "/usr/bin/app");
	t_end(&off, 10, KP_END_EXIT, 0);
	tb_end_writer(&off);
	tb_begin(&on, 21, 1, "/usr/bin/app");
	t_alloc(&on, 21, 5, 0x1000, 64, 0);
	t_end(&on, 10, KP_END_EXIT, 0);
	tb_end_writer(&on);

	int ok;
	struct kp_analysis *an = analyze2("off.kpz", &off, "on.kpz", &on, &ok);
	CHECK(ok);
	char *txt = render(an, 0);
	CHECK(strstr(txt, "  memory   not recorded (the program's malloc was "
			  "the one in /usr/lib/libtcmalloc.so.4, ahead of "
			  "libkprof.so)\n"));
	CHECK(strstr(txt, "HEAP SUMMARY\n  not recorded in 1 of 2 processes "
			  "(pid 20: the program's malloc was"));
	CHECK(strstr(txt, "  allocation calls  1\n"));
	free(txt);
	if (have_python()) {
		char *js = render(an, 1);
		CHECK(python_check(js,
			"m = d[\"memory\"]; assert m[\"recorded\"] is True; "
			"p = [x[\"memory\"] for x in d[\"trace\"][\"processes\"]]; "
			"assert [(x[\"recorded\"], x[\"malloc_owner\"]) for x in p] "
			"== [(False, \"/usr/lib/libtcmalloc.so.4\"), (True, None)], p") == 0);
		free(js);
	}
	kp_analysis_free(an);

	/* alone, and from KOTOBA_PROFILE_MEMORY=0 */
	static const char *const k0[] = { "memory" }, *const v0[] = { "0" };
	membuf_free(&off.m);
	tb_config(k0, v0, 1);
	tb_begin(&off, 22, 1, "/usr/bin/app");
	t_end(&off, 10, KP_END_EXIT, 0);
	tb_end_writer(&off);
	an = analyze1(&off);
	txt = render(an, 0);
	CHECK(strstr(txt, "HEAP SUMMARY\n  not recorded "
			  "(KOTOBA_PROFILE_MEMORY=0)\n\n"));
	CHECK(!strstr(txt, "LEAKS"));
	free(txt);
	if (have_python()) {
		char *js = render(an, 1);
		CHECK(python_check(js, "assert d[\"memory\"][\"recorded\"] is "
					"False") == 0);
		free(js);
	}
	kp_analysis_free(an);
	membuf_free(&off.m);
	membuf_free(&on.m);
}

/* Only allocations lost: every figure is a lower bound. */
TEST(lost_allocs_only)
{
	struct tb b;
	tb_begin(&b, 15, 1, "/bin/l");
	t_lost(&b, KP_REC_ALLOC, 3);
	t_end(&b, 10, KP_END_EXIT, 0);
	tb_end_writer(&b);
	struct kp_analysis *an = analyze1(&b);
	char *txt = render(an, 0);
	CHECK(strstr(txt, "WARNING: 3 events were lost (alloc 3);\n"
			  "         the figures below are lower bounds\n"));
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

TEST(lost_records)
{
	struct tb b;
	tb_begin(&b, 15, 1, "/bin/l");
	t_lost(&b, KP_REC_ALLOC, 5);
	t_lost(&b, KP_REC_FREE, 2);
	tb_flush(&b);
	t_lost(&b, KP_REC_ALLOC, 7); /* cumulative: replaces 5 */
	t_lost(&b, 99, 1);
	t_end(&b, 10, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	CHECK_EQ_U(an->lost_total, 10);
	CHECK_EQ_U(an->lost[KP_REC_ALLOC], 7);
	CHECK_EQ_U(an->lost[KP_REC_FREE], 2);
	char *txt = render(an, 0);
	CHECK(strstr(txt, "WARNING: 10 events were lost (alloc 7, free 2, "
			  "type_99 1);\n         counts and totals are lower "
			  "bounds; a block whose free was lost stays\n"
			  "         in use, so in use, peak and leaks may be "
			  "too high\n"));
	free(txt);
	if (have_python()) {
		char *js = render(an, 1);
		CHECK(python_check(js,
			"t = d[\"trace\"]; assert t[\"events_lost\"] == 10; "
			"assert t[\"events_lost_by_type\"] == "
			"{\"alloc\": 7, \"free\": 2, \"type_99\": 1}") == 0);
		free(js);
	}
	kp_analysis_free(an);
	membuf_free(&b.m);
}

TEST(confidence_classes)
{
	struct tb b;
	const uint64_t s1[] = { 0x1 }, s2[] = { 0x2 }, s3[] = { 0x3 },
		       s4[] = { 0x4 };
	uint64_t ptr = 0x100000;

	tb_begin(&b, 16, 1, "/bin/c");
	t_stack(&b, 1, s1, 1);
	t_stack(&b, 2, s2, 1);
	t_stack(&b, 3, s3, 1);
	t_stack(&b, 4, s4, 1);
	/* a singleton, at start-up */
	t_alloc(&b, 1, 1, 0x10, 4096, 1);
	/* 100 allocations, 99 freed */
	for (int i = 0; i < 100; i++) {
		t_alloc(&b, 1, 100 + (uint64_t)i * 10, ptr += 16, 32, 2);
		if (i < 99)
			t_free(&b, 1, 105 + (uint64_t)i * 10, ptr);
	}
	/* 10 allocations, 5 freed */
	for (int i = 0; i < 10; i++) {
		t_alloc(&b, 1, 5000 + (uint64_t)i * 10, ptr += 16, 16, 3);
		if (i % 2)
			t_free(&b, 1, 5005 + (uint64_t)i * 10, ptr);
	}
	/* allocated once, late */
	t_alloc(&b, 1, 9000, ptr += 16, 8, 4);
	t_end(&b, 10000, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_site *const *l;
	size_t n = kp_mem_leaks(an, &l);
	REQUIRE(n == 4);
	CHECK_EQ_U(l[0]->leaked_bytes, 4096);
	CHECK(l[0]->conf == KP_CONF_LOW);
	CHECK(!strcmp(l[0]->reason,
		      "allocated once at start-up (likely a singleton/cache)"));
	CHECK_EQ_U(l[1]->leaked_bytes, 80);
	CHECK(l[1]->conf == KP_CONF_MEDIUM);
	CHECK(!strcmp(l[1]->reason, "5 of 10 blocks from this site were freed"));
	CHECK_EQ_U(l[2]->leaked_bytes, 32);
	CHECK(l[2]->conf == KP_CONF_LOW);
	CHECK(!strcmp(l[2]->reason, "99% of this site's blocks were freed; "
				    "these are the last few"));
	CHECK_EQ_U(l[3]->leaked_bytes, 8);
	CHECK(l[3]->conf == KP_CONF_MEDIUM);
	CHECK(!strcmp(l[3]->reason, "allocated once and never freed"));
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* ---- the leak scan at exit (LEAK, LEAK_SCAN records) --------------------- */

static void t_leak(struct tb *b, uint64_t ts, int cls, int64_t ptr,
		   int64_t size)
{
	struct kp_rec r = { .type = KP_REC_LEAK, .tid = 1, .ts = ts };
	r.kind = (uint8_t)cls;
	r.u.ext.v[KP_LEAK_PTR] = ptr;
	r.u.ext.v[KP_LEAK_SIZE] = size;
	tb_add(b, &r);
}

/* A LEAK_SCAN of status st; values as a scan that ran would give them
 * for build_scan()'s blocks, all 0 but dur when it did not run. */
static void t_leak_scan(struct tb *b, uint64_t ts, int st, int64_t roots)
{
	static const int64_t done[KP_LS_NV] = {
		[KP_LS_BLOCKS] = 9, [KP_LS_BYTES] = 480,
		[KP_LS_DEF_BLOCKS] = 2, [KP_LS_DEF_BYTES] = 200,
		[KP_LS_IND_BLOCKS] = 1, [KP_LS_IND_BYTES] = 100,
		[KP_LS_POS_BLOCKS] = 1, [KP_LS_POS_BYTES] = 50,
	};
	struct kp_rec r = { .type = KP_REC_LEAK_SCAN, .tid = 1, .ts = ts };
	r.kind = (uint8_t)st;
	if (st == KP_LS_DONE) {
		memcpy(r.u.ext.v, done, sizeof(done));
		r.u.ext.v[KP_LS_ROOT_BYTES] = roots;
	}
	r.u.ext.v[KP_LS_DUR] = 12345;
	tb_add(b, &r);
}

/*
 * Four sites and a leak scan at exit (ts 5000) of status st: site 1 (100
 * bytes a block) frees one of four blocks and loses the other three, two
 * definitely and one indirectly; site 2 (50) has one block possibly lost
 * and one reachable; site 3 (10) three reachable; site 4 (7) allocates
 * once after the scan. The LEAK records are there whatever st says.
 */
static void build_scan(struct tb *b, int64_t pid, int st)
{
	static const uint64_t s1[] = { 0x11 }, s2[] = { 0x12 },
			      s3[] = { 0x13 }, s4[] = { 0x14 };
	uint64_t ts = 1000;

	tb_begin(b, pid, 1, "/bin/scan");
	t_stack(b, 1, s1, 1);
	t_stack(b, 2, s2, 1);
	t_stack(b, 3, s3, 1);
	t_stack(b, 4, s4, 1);
	for (uint64_t i = 0; i < 4; i++)
		t_alloc(b, 1, ts += 10, 0x1000 + i * 0x100, 100, 1);
	t_free(b, 1, ts += 10, 0x1000);
	for (uint64_t i = 0; i < 2; i++)
		t_alloc(b, 1, ts += 10, 0x2000 + i * 0x100, 50, 2);
	for (uint64_t i = 0; i < 3; i++)
		t_alloc(b, 1, ts += 10, 0x3000 + i * 0x100, 10, 3);
	tb_flush(b);
	t_leak(b, 5000, KP_LEAK_DEFINITE, 0x1100, 100);
	t_leak(b, 5000, KP_LEAK_DEFINITE, 0x1200, 100);
	t_leak(b, 5000, KP_LEAK_INDIRECT, 0x1300, 100);
	t_leak(b, 5000, KP_LEAK_POSSIBLE, 0x2000, 50);
	t_leak_scan(b, 5001, st, 4096);
	t_alloc(b, 1, 6000, 0x4000, 7, 4);
	t_end(b, 7000, KP_END_EXIT, 0);
	tb_end_writer(b);
}

/* The blocks of r by class: definitely, indirectly, possibly lost, still
 * reachable. */
static int reach_is(const struct kp_reach *r, uint64_t def, uint64_t ind,
		    uint64_t pos, uint64_t reach)
{
	return r && r->blocks[KP_LEAK_DEFINITE] == def &&
	       r->blocks[KP_LEAK_INDIRECT] == ind &&
	       r->blocks[KP_LEAK_POSSIBLE] == pos &&
	       r->blocks[KP_LEAK_REACHABLE] == reach;
}

TEST(leak_scan_classes)
{
	struct tb b;
	build_scan(&b, 300, KP_LS_DONE);
	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	const struct kp_leak_scan *sc = &m->scan;
	CHECK(sc->status == KP_LS_DONE);
	CHECK_EQ_U(sc->scanned, 1);
	CHECK_EQ_U(sc->not_scanned, 0);
	CHECK(reach_is(&sc->reach, 2, 1, 1, 4));
	CHECK_EQ_U(sc->reach.bytes[KP_LEAK_DEFINITE], 200);
	CHECK_EQ_U(sc->reach.bytes[KP_LEAK_INDIRECT], 100);
	CHECK_EQ_U(sc->reach.bytes[KP_LEAK_POSSIBLE], 50);
	CHECK_EQ_U(sc->reach.bytes[KP_LEAK_REACHABLE], 50 + 30);
	CHECK_EQ_U(sc->after_blocks, 1);
	CHECK_EQ_U(sc->after_bytes, 7);
	CHECK_EQ_U(sc->root_bytes, 4096);
	CHECK_EQ_U(sc->dur_ns, 12345);
	CHECK(kp_mem_proc_totals(an, an->procs[0])->scan.status ==
	      KP_LS_DONE);

	const struct kp_site *const *l;
	REQUIRE(kp_mem_leaks(an, &l) == 4);
	CHECK_EQ_U(l[0]->leaked_bytes, 300);
	CHECK(reach_is(kp_site_reach(l[0]), 2, 1, 0, 0));
	CHECK(l[0]->conf == KP_CONF_HIGH); /* its history said medium */
	CHECK(!strcmp(l[0]->reason, "3 of 3 blocks unreachable at exit (no "
				    "pointer to them was left)"));
	CHECK_EQ_U(l[1]->leaked_bytes, 100);
	CHECK(reach_is(kp_site_reach(l[1]), 0, 0, 1, 1));
	CHECK(l[1]->conf == KP_CONF_MEDIUM); /* its history said high */
	CHECK(!strcmp(l[1]->reason, "only pointers into the middle of 1 "
				    "block were left at exit"));
	CHECK_EQ_U(l[2]->leaked_bytes, 30);
	CHECK(reach_is(kp_site_reach(l[2]), 0, 0, 0, 3));
	CHECK(l[2]->conf == KP_CONF_MEDIUM); /* high, at most medium */
	CHECK(!strcmp(l[2]->reason, "this site never frees (0 of 3 blocks "
				    "freed); every block still reachable at "
				    "exit"));
	CHECK_EQ_U(l[3]->leaked_bytes, 7); /* not seen by the scan */
	CHECK(!kp_site_reach(l[3]));
	CHECK(l[3]->conf == KP_CONF_MEDIUM);
	CHECK(!strcmp(l[3]->reason, "allocated once and never freed"));

	char *txt = render(an, 0);
	CHECK(strstr(txt, "  leak scan at exit:\n"
			  "    definitely lost: 200 B in 2 blocks\n"
			  "    indirectly lost: 100 B in 1 block\n"
			  "      possibly lost: 50 B in 1 block\n"
			  "    still reachable: 80 B in 4 blocks\n"
			  "    allocated after the scan (not seen by it): 7 B "
			  "in 1 block\n"
			  "  1. 300 bytes in 3 blocks  [confidence: high]\n"
			  "     3 of 3 blocks unreachable at exit (no pointer to "
			  "them was left)\n"
			  "     leak scan: 2 definitely lost, 1 indirectly lost\n"));
	CHECK(strstr(txt, "  2. 100 bytes in 2 blocks  [confidence: medium]\n"
			  "     only pointers into the middle of 1 block were "
			  "left at exit\n"
			  "     leak scan: 1 possibly lost, 1 still reachable\n"));
	CHECK(strstr(txt, "     leak scan: 3 still reachable\n"));
	CHECK(strstr(txt, "  4. 7 bytes in 1 block  [confidence: medium]\n"
			  "     allocated once and never freed\n       at "));
	CHECK(!strstr(txt, "not run"));
	free(txt);
	if (have_python()) {
		char *js = render(an, 1);
		CHECK(python_check(js,
			"m = d[\"memory\"]; L = m[\"leaks\"]; "
			"bb = lambda x, n: {\"bytes\": x, \"blocks\": n}; "
			"r = lambda a, b, c, e: {\"definitely_lost\": a, "
			"\"indirectly_lost\": b, \"possibly_lost\": c, "
			"\"still_reachable\": e}; z = bb(0, 0); "
			"s = dict(r(bb(200, 2), bb(100, 1), bb(50, 1), "
			"bb(80, 4)), after_scan=bb(7, 1), root_bytes=4096, "
			"duration_ns=12345, status=\"done\"); "
			"p = d[\"trace\"][\"processes\"][0][\"memory\"]; "
			"assert p[\"leak_scan\"] == s, p; "
			"s.update(processes_scanned=1, processes_not_scanned=0); "
			"assert m[\"leak_scan\"] == s, m[\"leak_scan\"]; "
			"assert [x[\"reachability\"] for x in L] == ["
			"r(bb(200, 2), bb(100, 1), z, z), "
			"r(z, z, bb(50, 1), bb(50, 1)), r(z, z, z, bb(30, 3)), "
			"None], L; "
			"assert [x[\"confidence\"] for x in L] == "
			"[\"high\", \"medium\", \"medium\", \"medium\"]") == 0);
		free(js);
	}
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* A scan that did not run (a fork child's) changes nothing: the LEAK
 * records are ignored, the confidences are those of a trace without a
 * scan, and the report says why. With a process whose scan ran, the
 * totals are that one's, and a site of both has no reachability. */
TEST(leak_scan_not_run)
{
	struct tb b, c;
	build_scan(&b, 301, KP_LS_FORKED);
	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK(m->scan.status == KP_LS_FORKED);
	CHECK_EQ_U(m->scan.scanned, 0);
	CHECK_EQ_U(m->scan.not_scanned, 1);
	CHECK(reach_is(&m->scan.reach, 0, 0, 0, 0));
	CHECK_EQ_U(m->scan.after_blocks, 0);
	const struct kp_site *const *l;
	REQUIRE(kp_mem_leaks(an, &l) == 4);
	static const char *const reasons[] = {
		"1 of 4 blocks from this site were freed",
		"this site never frees (0 of 2 blocks freed)",
		"this site never frees (0 of 3 blocks freed)",
		"allocated once and never freed",
	};
	static const enum kp_confidence confs[] = {
		KP_CONF_MEDIUM, KP_CONF_HIGH, KP_CONF_HIGH, KP_CONF_MEDIUM
	};
	for (int i = 0; i < 4; i++) {
		CHECK(!kp_site_reach(l[i]));
		CHECK(l[i]->conf == confs[i]);
		CHECK(!strcmp(l[i]->reason, reasons[i]));
	}
	char *txt = render(an, 0);
	CHECK(strstr(txt, "\n  leak scan at exit: not run (a fork child "
			  "whose ancestors' traces were not read)\n"
			  "  1. 300 bytes in 3 blocks  [confidence: medium]\n"));
	CHECK(!strstr(txt, "definitely lost"));
	free(txt);
	if (have_python()) {
		char *js = render(an, 1);
		CHECK(python_check(js,
			"m = d[\"memory\"]; s = m[\"leak_scan\"]; "
			"assert s[\"status\"] == \"forked\", s; "
			"assert (s[\"processes_scanned\"], "
			"s[\"processes_not_scanned\"]) == (0, 1), s; "
			"assert s[\"definitely_lost\"] == {\"bytes\": 0, "
			"\"blocks\": 0}, s; "
			"assert s[\"duration_ns\"] == 12345, s; "
			"assert all(x[\"reachability\"] is None "
			"for x in m[\"leaks\"])") == 0);
		free(js);
	}
	kp_analysis_free(an);

	/* The same trace without LEAK_SCAN: the same leaks, no scan. */
	struct tb n;
	tb_begin(&n, 302, 1, "/bin/scan");
	t_alloc(&n, 1, 10, 0x1000, 8, 0);
	t_leak(&n, 20, KP_LEAK_DEFINITE, 0x1000, 8);
	t_end(&n, 30, KP_END_EXIT, 0);
	tb_end_writer(&n);
	an = analyze1(&n);
	m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK(m->scan.status == -1);
	CHECK_EQ_U(m->scan.not_scanned, 1);
	REQUIRE(kp_mem_leaks(an, &l) == 1);
	CHECK(!kp_site_reach(l[0]));
	txt = render(an, 0);
	CHECK(!strstr(txt, "leak scan"));
	free(txt);
	if (have_python()) {
		char *js = render(an, 1);
		CHECK(python_check(js,
			"m = d[\"memory\"]; assert m[\"leak_scan\"] is None; "
			"assert d[\"trace\"][\"processes\"][0][\"memory\"]"
			"[\"leak_scan\"] is None; "
			"assert m[\"leaks\"][0][\"reachability\"] is None") == 0);
		free(js);
	}
	kp_analysis_free(an);
	membuf_free(&n.m);

	/* A parent whose scan ran, and its fork child's that did not. */
	build_scan(&c, 300, KP_LS_DONE);
	int ok;
	an = analyze2("parent.kpz", &c, "child.kpz", &b, &ok);
	CHECK(ok);
	m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK(m->scan.status == KP_LS_FORKED);
	CHECK_EQ_U(m->scan.scanned, 1);
	CHECK_EQ_U(m->scan.not_scanned, 1);
	CHECK(reach_is(&m->scan.reach, 2, 1, 1, 4));
	REQUIRE(kp_mem_leaks(an, &l) == 4);
	for (int i = 0; i < 4; i++)
		CHECK(!kp_site_reach(l[i])); /* half of each was not seen */
	CHECK(!strcmp(l[0]->reason, "2 of 8 blocks from this site were freed"));
	txt = render(an, 0);
	CHECK(strstr(txt, "  leak scan at exit (1 of 2 processes):\n"
			  "    definitely lost: 200 B in 2 blocks\n"));
	CHECK(strstr(txt, "  leak scan at exit: not run in 1 of 2 processes "
			  "(the first, pid 301:\n    a fork child whose "
			  "ancestors' traces were not read)\n"));
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b.m);
	membuf_free(&c.m);
}

/* A hostile trace's LEAK and LEAK_SCAN records: for pointers not in use
 * (freed, never allocated, 0, all ones), of classes out of range, for a
 * block allocated after them, repeated (the last wins), a status out of
 * range, then one that ran (the last wins), negative values: ignored or
 * taken as 0, never a crash. */
TEST(leak_scan_hostile)
{
	static const uint64_t s1[] = { 0x11 };
	struct tb b;
	tb_begin(&b, 303, 1, "/bin/h");
	t_stack(&b, 1, s1, 1);
	t_alloc(&b, 1, 10, 0x1000, 16, 0);
	t_alloc(&b, 1, 11, 0x2000, 16, 0);
	t_free(&b, 1, 12, 0x2000);
	t_alloc(&b, 1, 13, 0x3000, 16, 0);
	t_alloc(&b, 1, 15, 0x5000, 16, 0);
	/* 0x5000 again (the first's free lost): the LEAK stamped before
	 * this one names the first */
	t_alloc(&b, 2, 120, 0x5000, 32, 0);
	/* stamped after the scan, and after the LEAK that names it */
	t_alloc(&b, 1, 150, 0x4000, 16, 1);
	tb_flush(&b);
	t_leak(&b, 100, KP_LEAK_DEFINITE, 0x2000, 16);  /* freed */
	t_leak(&b, 100, KP_LEAK_DEFINITE, 0x9000, 16);  /* never allocated */
	t_leak(&b, 100, KP_LEAK_DEFINITE, 0, 16);
	t_leak(&b, 100, KP_LEAK_DEFINITE, -1, -1);
	t_leak(&b, 100, KP_LEAK_REACHABLE, 0x1000, 16);
	t_leak(&b, 100, KP_LEAK_CLASS_MAX + 1, 0x1000, 16);
	t_leak(&b, 100, 255, 0x1000, 16);
	t_leak(&b, 100, KP_LEAK_DEFINITE, 0x4000, 16);
	t_leak(&b, 100, KP_LEAK_DEFINITE, 0x3000, 16);
	t_leak(&b, 101, KP_LEAK_POSSIBLE, 0x3000, 16);  /* the last wins */
	t_leak(&b, 101, KP_LEAK_INDIRECT, 0x5000, 16);
	t_leak_scan(&b, 129, KP_LS_STATUS_MAX + 7, 0);
	t_leak_scan(&b, 130, KP_LS_DONE, -5);
	t_end(&b, 200, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK(m->scan.status == KP_LS_DONE);
	CHECK_EQ_U(m->scan.root_bytes, 0);
	CHECK_EQ_U(m->live_blocks, 5);
	/* 0x1000 and the second 0x5000 reachable, 0x3000 possibly lost,
	 * the first 0x5000 indirectly; 0x4000 came after the scan */
	CHECK(reach_is(&m->scan.reach, 0, 1, 1, 2));
	CHECK_EQ_U(m->scan.reach.bytes[KP_LEAK_INDIRECT], 16);
	CHECK_EQ_U(m->scan.reach.bytes[KP_LEAK_REACHABLE], 16 + 32);
	CHECK_EQ_U(m->scan.after_blocks, 1);
	CHECK_EQ_U(m->scan.after_bytes, 16);
	const struct kp_site *const *l;
	REQUIRE(kp_mem_leaks(an, &l) == 2);
	CHECK_EQ_U(l[0]->leaked_bytes, 80);
	CHECK(reach_is(kp_site_reach(l[0]), 0, 1, 1, 2));
	CHECK(l[0]->conf == KP_CONF_HIGH);
	CHECK(!strcmp(l[0]->reason, "1 of 4 blocks unreachable at exit (no "
				    "pointer to it was left)"));
	CHECK(!kp_site_reach(l[1]));
	kp_analysis_free(an);
	membuf_free(&b.m);

	/* a status this kprof does not know */
	tb_begin(&b, 304, 1, "/bin/h");
	t_alloc(&b, 1, 10, 0x1000, 16, 0);
	t_leak_scan(&b, 20, 200, 0);
	t_end(&b, 30, KP_END_EXIT, 0);
	tb_end_writer(&b);
	an = analyze1(&b);
	m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK(m->scan.status == 200);
	CHECK(!strcmp(kp_leak_scan_name(m->scan.status), "unknown"));
	char *txt = render(an, 0);
	CHECK(strstr(txt, "leak scan at exit: not run (a status this kprof "
			  "does not know)\n"));
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* A hostile trace: one pointer allocated again and again. Bounded work,
 * bounded incarnations, consistent totals. */
TEST(many_incarnations)
{
	struct tb b;
	tb_begin(&b, 17, 1, "/bin/h");
	for (int i = 0; i < 20000; i++)
		t_alloc(&b, 1, (uint64_t)i, 0x4000, 10, 0);
	t_free(&b, 1, 30000, 0x4000);
	t_alloc(&b, 1, 30001, 0x5000, UINT64_MAX, 0);
	t_alloc(&b, 1, 30002, 0x6000, UINT64_MAX, 0);
	t_end(&b, 40000, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->alloc_calls, 20002);
	CHECK_EQ_U(m->evicted, 20000 - 8);
	CHECK_EQ_U(m->live_blocks, 7 + 2);
	CHECK_EQ_U(m->bytes_allocated, UINT64_MAX); /* saturated */
	CHECK_EQ_U(m->live_bytes, UINT64_MAX);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* The pointer map against a plain model, through growth and deletions. */
TEST(pointer_map_model)
{
	enum { N = 5000 };
	static uint64_t live[N];
	struct tb b;
	uint64_t seed = 12345, ts = 0, want_bytes = 0, want_blocks = 0;

	memset(live, 0, sizeof(live));
	tb_begin(&b, 18, 1, "/bin/p");
	for (int i = 0; i < 100000; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		unsigned k = (unsigned)(seed >> 33) % N;
		uint64_t ptr = 0x10000000 + (uint64_t)k * 48;
		if (live[k]) {
			t_free(&b, 1, ++ts, ptr);
			want_bytes -= live[k];
			want_blocks--;
			live[k] = 0;
		} else {
			live[k] = 1 + (seed >> 50);
			t_alloc(&b, 1, ++ts, ptr, live[k], 0);
			want_bytes += live[k];
			want_blocks++;
		}
	}
	t_end(&b, ++ts, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK_EQ_U(m->live_bytes, want_bytes);
	CHECK_EQ_U(m->live_blocks, want_blocks);
	CHECK_EQ_U(m->unmatched_frees, 0);
	CHECK_EQ_U(m->evicted, 0);
	CHECK_EQ_U(m->alloc_calls + m->free_calls, 100000);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/*
 * Several live incarnations of the same pointers, frees that arrive a frame
 * late with an earlier time, evictions at the cap: the map against a plain
 * model of the rule (a free takes the newest incarnation allocated at or
 * before it, else the oldest; past 8 the oldest is evicted). Every ts is
 * distinct, so the rule picks one block and the byte counts tell which.
 */
TEST(incarnations_model)
{
	enum { NP = 12, NF = 60, PER = 200, CAP = 8 };
	static struct { uint64_t ts, size; } live[NP][CAP];
	int nlive[NP] = { 0 };
	uint64_t seed = 777, want_freed = 0, want_bytes = 0, want_blocks = 0;
	uint64_t want_evicted = 0, want_unmatched = 0, frees = 0;
	struct tb b;

	tb_begin(&b, 19, 1, "/bin/i");
	for (int f = 0; f < NF; f++) {
		/* Frames overlap in time: a frame may start before the
		 * previous one ended. */
		uint64_t start = (uint64_t)f * PER * 3 + 1000 -
				 (seed >> 40) % (PER * 2);
		for (int k = 0; k < PER; k++) {
			seed = seed * 6364136223846793005ULL +
			       1442695040888963407ULL;
			unsigned p = (unsigned)(seed >> 33) % NP;
			uint32_t tid = 1 + (uint32_t)(seed >> 20) % 3;
			/* distinct, and more than KP_EARLY_NS apart: no
			 * free here is early (TEST(early_frees) is) */
			uint64_t ts = ((start + (uint64_t)k * 3) * NF +
				       (uint64_t)f) * (KP_EARLY_NS + 1);
			uint64_t ptr = 0x7f0000001000ULL + (uint64_t)p * 64;
			if ((seed >> 50) % 10 < 6) {
				uint64_t size = 1 + (seed >> 8) % 100000;
				t_alloc(&b, tid, ts, ptr, size, 0);
				if (nlive[p] == CAP) {
					int o = 0;
					for (int i = 1; i < CAP; i++)
						if (live[p][i].ts < live[p][o].ts)
							o = i;
					want_bytes -= live[p][o].size;
					want_blocks--;
					want_evicted++;
					live[p][o] = live[p][--nlive[p]];
				}
				live[p][nlive[p]].ts = ts;
				live[p][nlive[p]++].size = size;
				want_bytes += size;
				want_blocks++;
			} else {
				t_free(&b, tid, ts, ptr);
				frees++;
				if (!nlive[p]) {
					want_unmatched++;
					continue;
				}
				int best = -1, o = 0;
				for (int i = 0; i < nlive[p]; i++) {
					if (live[p][i].ts <= ts &&
					    (best < 0 ||
					     live[p][i].ts > live[p][best].ts))
						best = i;
					if (live[p][i].ts < live[p][o].ts)
						o = i;
				}
				if (best < 0)
					best = o;
				want_freed += live[p][best].size;
				want_bytes -= live[p][best].size;
				want_blocks--;
				live[p][best] = live[p][--nlive[p]];
			}
		}
		tb_flush(&b);
	}
	t_end(&b, (uint64_t)NF * PER * 3 * NF * 2 * (KP_EARLY_NS + 1),
	      KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	CHECK(want_evicted > 0);
	CHECK_EQ_U(m->reordered_frees, 0);
	CHECK_EQ_U(m->evicted, want_evicted);
	CHECK_EQ_U(m->unmatched_frees, want_unmatched);
	CHECK_EQ_U(m->free_calls, frees);
	CHECK_EQ_U(m->bytes_freed, want_freed);
	CHECK_EQ_U(m->live_bytes, want_bytes);
	CHECK_EQ_U(m->live_blocks, want_blocks);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

TEST(bad_input)
{
	struct kp_analysis *an = kp_analysis_new(&test_opts);
	CHECK(an_add(an, "empty", "", 0) < 0);
	CHECK(an_add(an, "text", "hello, world\n", 13) < 0);
	/* A valid header followed by garbage where a frame should be. */
	struct tb b;
	build_leak23(&b);
	size_t hdr = 16 + ((size_t)(unsigned char)b.m.p[12] |
			   (size_t)(unsigned char)b.m.p[13] << 8);
	char *bad = malloc(hdr + 64);
	memcpy(bad, b.m.p, hdr);
	for (int i = 0; i < 64; i++)
		bad[hdr + (size_t)i] = (char)(i * 37 + 11);
	CHECK(an_add(an, "garbage", bad, hdr + 64) < 0);
	/* Flip bytes inside the frames: an error or a truncation, never a
	 * crash. */
	for (size_t i = hdr; i < b.m.len; i += 7) {
		char *c = malloc(b.m.len);
		memcpy(c, b.m.p, b.m.len);
		c[i] ^= 0x5a;
		struct kp_analysis *a2 = kp_analysis_new(&test_opts);
		(void)an_add(a2, "flip", c, b.m.len);
		kp_analysis_finish(a2);
		char *txt = render(a2, 0);
		free(txt);
		kp_analysis_free(a2);
		free(c);
	}
	/* Newer major version. */
	char *v = malloc(b.m.len);
	memcpy(v, b.m.p, b.m.len);
	v[8] = KP_FORMAT_MAJOR + 1;
	CHECK(an_add(an, "future", v, b.m.len) < 0);
	free(v);
	free(bad);
	membuf_free(&b.m);
	kp_analysis_free(an);
}

TEST(json_escaping)
{
	static const char *const argv[] = { "a\"b\\c", "\n\t\x01",
					    "caf\xc3\xa9", "\xff\xfe bad",
					    "\xed\xa0\x80 surrogate",
					    "\xe2\x82" };
	struct tb b;
	tb_begin_argv(&b, 19, 0, "/tmp/\xe9t\xe9/app \x1b[31m", argv, 6);
	t_end(&b, 1, KP_END_ABORT, 134);
	tb_end_writer(&b);
	struct kp_analysis *an = analyze1(&b);
	char *js = render(an, 1);
	CHECK(strstr(js, "\"caf\xc3\xa9\""));
	CHECK(strstr(js, "\"\\u00ff\\u00fe bad\""));
	CHECK(strstr(js, "\"a\\\"b\\\\c\""));
	CHECK(strstr(js, "\"\\n\\t\\u0001\""));
	CHECK(strstr(js, "\"end_reason\": \"abort\""));
	CHECK(strstr(js, "\"leaks\": []"));
	if (have_python())
		CHECK(python_check(js,
			"a = d[\"trace\"][\"processes\"][0][\"argv\"]; "
			"assert a[0] == \"a\\\"b\\\\c\"; "
			"assert a[2] == \"caf\\u00e9\"; "
			"assert a[3] == \"\\u00ff\\u00fe bad\"; "
			"assert a[5] == \"\\u00e2\\u0082\"") == 0);
	char *txt = render(an, 0);
	CHECK(!strchr(txt, '\x1b')); /* no terminal escapes */
	free(txt);
	free(js);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* ---- symbols: look up a function of this very test binary ------------------- */

static __attribute__((noinline)) void symbol_target(void)
{
	__asm__ volatile("");
}

struct self_map {
	uint64_t bias, lo, hi;
};

static int find_self(struct dl_phdr_info *info, size_t size, void *data)
{
	struct self_map *m = data;

	(void)size;
	m->bias = info->dlpi_addr;
	m->lo = UINT64_MAX;
	m->hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t a = info->dlpi_addr + ph->p_vaddr;
		if (a < m->lo)
			m->lo = a;
		if (a + ph->p_memsz > m->hi)
			m->hi = a + ph->p_memsz;
	}
	return 1; /* the first entry is the main program */
}

TEST(symbolize_self)
{
	struct self_map sm;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	REQUIRE(n > 0);
	exe[n] = '\0';
	dl_iterate_phdr(find_self, &sm);

	/* A return address just past the function's first byte, under an
	 * allocator wrapper frame that must be trimmed... if it symbolizes;
	 * here the wrapper pc lies in no module, so it stays. */
	uint64_t pcs[] = { (uint64_t)(uintptr_t)symbol_target + 1 };
	struct tb b;
	tb_begin(&b, 20, 1, exe);
	struct kp_rec r = { .type = KP_REC_MODULE };
	r.u.module.bias = sm.bias;
	r.u.module.lo = sm.lo;
	r.u.module.hi = sm.hi;
	r.u.module.path = exe;
	r.u.module.path_len = (uint32_t)strlen(exe);
	tb_add(&b, &r);
	t_stack(&b, 1, pcs, 1);
	t_alloc(&b, 1, 1, 0x1000, 1, 1);
	t_end(&b, 100, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_opts o = test_opts;
	o.no_symbols = 0;
	struct kp_analysis *an = kp_analysis_new(&o);
	CHECK(an_add(an, "self", b.m.p, b.m.len) == 0);
	kp_analysis_finish(an);
	const struct kp_site *const *l;
	REQUIRE(kp_mem_leaks(an, &l) == 1);
	const struct kp_symframe *f[4];
	size_t first;
	size_t k = kp_symbolize_stack(kp_analysis_symbols(an), l[0]->gstack,
				      f, 4, &first);
	REQUIRE(k == 1);
	CHECK(f[0]->function && !strcmp(f[0]->function, "symbol_target"));
	CHECK(f[0]->file && strstr(f[0]->file, "t_analyze_memory.c"));
	CHECK(f[0]->line > 0);
	CHECK_EQ_U(f[0]->offset, pcs[0] - sm.bias);
	kp_analysis_free(an);
	membuf_free(&b.m);
	symbol_target();
}

/* Do two files hold the same bytes? */
static int same_bytes(int a, int b)
{
	struct stat sa, sb;
	if (fstat(a, &sa) || fstat(b, &sb) || sa.st_size != sb.st_size)
		return 0;
	size_t n = (size_t)sa.st_size;
	char *x = malloc(n + 1), *y = malloc(n + 1);
	int same = x && y && pread(a, x, n, 0) == (ssize_t)n &&
		   pread(b, y, n, 0) == (ssize_t)n && !memcmp(x, y, n);
	free(x);
	free(y);
	return same;
}

/*
 * A debug file with compressed sections (as libc6-dbg ships them) is given
 * to libdw inflated: this test binary, its DWARF compressed by objcopy,
 * comes back with every section as the uncompressed original has it
 * (location lists left empty), and libdw finds a line in it.
 */
TEST(inflate_debug_sections)
{
	struct self_map sm;
	char exe[4096], dir[] = "/tmp/kp-inflate-XXXXXX", z[4200], cmd[8500];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	REQUIRE(n > 0);
	exe[n] = '\0';
	dl_iterate_phdr(find_self, &sm);
	REQUIRE(mkdtemp(dir) != NULL);
	snprintf(z, sizeof(z), "%s/z", dir);
	snprintf(cmd, sizeof(cmd), "objcopy --compress-debug-sections=zlib "
		 "'%s' '%s'", exe, z);
	REQUIRE(system(cmd) == 0);
	elf_version(EV_CURRENT);

	/* the original has nothing to inflate: it comes back as it is */
	int ofd = open(exe, O_RDONLY);
	REQUIRE(ofd >= 0);
	CHECK(kp_debug_inflate(ofd) == ofd);

	int zfd = open(z, O_RDONLY);
	REQUIRE(zfd >= 0);
	Elf *ze = elf_begin(zfd, ELF_C_READ, NULL);
	REQUIRE(ze != NULL);
	int compressed = 0;
	for (Elf_Scn *sc = NULL; (sc = elf_nextscn(ze, sc));) {
		GElf_Shdr h;
		REQUIRE(gelf_getshdr(sc, &h) != NULL);
		compressed += (h.sh_flags & SHF_COMPRESSED) != 0;
	}
	elf_end(ze);
	REQUIRE(compressed > 0); /* else this tests nothing */
	int mfd = kp_debug_inflate(zfd);
	REQUIRE(mfd >= 0 && mfd != zfd);

	Elf *oe = elf_begin(ofd, ELF_C_READ, NULL), *me = elf_begin(mfd,
							    ELF_C_READ, NULL);
	REQUIRE(oe && me);
	size_t on = 0, mn = 0, ostr, mstr;
	REQUIRE(elf_getshdrnum(oe, &on) == 0 && elf_getshdrnum(me, &mn) == 0);
	CHECK_EQ_U(mn, on);
	REQUIRE(elf_getshdrstrndx(oe, &ostr) == 0);
	REQUIRE(elf_getshdrstrndx(me, &mstr) == 0);
	int same = 1, emptied = 0;
	for (size_t i = 1; i < on && i < mn; i++) {
		Elf_Scn *os = elf_getscn(oe, i), *ms = elf_getscn(me, i);
		GElf_Shdr oh, mh;
		REQUIRE(gelf_getshdr(os, &oh) && gelf_getshdr(ms, &mh));
		const char *name = elf_strptr(oe, ostr, oh.sh_name);
		const char *mname = elf_strptr(me, mstr, mh.sh_name);
		REQUIRE(name && mname);
		if (strcmp(name, mname) || oh.sh_type != mh.sh_type ||
		    oh.sh_flags != mh.sh_flags || oh.sh_addr != mh.sh_addr ||
		    oh.sh_link != mh.sh_link || oh.sh_info != mh.sh_info) {
			printf("#   section %zu (%s) differs\n", i, name);
			same = 0;
			continue;
		}
		if (oh.sh_type == SHT_NOBITS)
			continue;
		if (!strcmp(name, ".debug_loc") ||
		    !strcmp(name, ".debug_loclists")) {
			emptied++;
			CHECK_EQ_U(mh.sh_size, 0);
			continue;
		}
		Elf_Data *od = elf_rawdata(os, NULL), *md = elf_rawdata(ms, NULL);
		if (!od || !md || od->d_size != md->d_size ||
		    (od->d_size && memcmp(od->d_buf, md->d_buf, od->d_size))) {
			printf("#   section %zu (%s): other bytes\n", i, name);
			same = 0;
		}
	}
	CHECK(same);
	CHECK(emptied <= 2);

	/* libdw reads it: the line of a function of this file */
	Dwarf *dw = dwarf_begin_elf(me, DWARF_C_READ, NULL);
	REQUIRE(dw != NULL);
	Dwarf_Die cu;
	Dwarf_Addr a = (uintptr_t)symbol_target - sm.bias;
	REQUIRE(dwarf_addrdie(dw, a, &cu) != NULL);
	Dwarf_Line *line = dwarf_getsrc_die(&cu, a);
	REQUIRE(line != NULL);
	const char *src = dwarf_linesrc(line, NULL, NULL);
	CHECK(src && strstr(src, "t_analyze_memory.c"));
	dwarf_end(dw);
	elf_end(me);
	elf_end(oe);

	/* Inflated ahead, on the thread: the same bytes, taken once; a file
	 * with nothing to inflate, a missing one, one never asked for: -1. */
	char none[4300];
	snprintf(none, sizeof(none), "%s/none", dir);
	kp_debug_ahead(z);
	kp_debug_ahead(exe);
	kp_debug_ahead(none);
	kp_debug_ahead(z); /* asked for again: nothing more to do */
	kp_debug_ahead_wait();
	int afd = kp_debug_ahead_take(z);
	REQUIRE(afd >= 0);
	CHECK(same_bytes(afd, mfd));
	close(afd);
	CHECK(kp_debug_ahead_take(z) == -1);
	CHECK(kp_debug_ahead_take(exe) == -1);
	CHECK(kp_debug_ahead_take(none) == -1);
	CHECK(kp_debug_ahead_take("/kp-never-asked") == -1);
	kp_debug_ahead_end();
	/* what is not taken is closed at the end; it starts again after */
	kp_debug_ahead(z);
	kp_debug_ahead_end();
	kp_debug_ahead(z);
	kp_debug_ahead_wait();
	afd = kp_debug_ahead_take(z);
	CHECK(afd >= 0 && same_bytes(afd, mfd));
	if (afd >= 0)
		close(afd);
	kp_debug_ahead_end();
	close(mfd);
	close(ofd);

	/* Damaged files come back as they are, for libdw to judge: cut
	 * short, a flipped byte in every compressed section, not ELF. */
	int zr = open(z, O_RDWR);
	REQUIRE(zr >= 0);
	ze = elf_begin(zr, ELF_C_READ, NULL);
	REQUIRE(ze != NULL);
	off_t flip[64];
	size_t nflip = 0;
	for (Elf_Scn *sc = NULL; (sc = elf_nextscn(ze, sc)) && nflip < 64;) {
		GElf_Shdr h;
		REQUIRE(gelf_getshdr(sc, &h) != NULL);
		if (h.sh_flags & SHF_COMPRESSED)
			flip[nflip++] = (off_t)(h.sh_offset + h.sh_size / 2);
	}
	elf_end(ze);
	for (size_t i = 0; i < nflip; i++) {
		unsigned char c;
		REQUIRE(pread(zr, &c, 1, flip[i]) == 1);
		c ^= 0x5a;
		REQUIRE(pwrite(zr, &c, 1, flip[i]) == 1);
	}
	CHECK(kp_debug_inflate(zr) == zr);
	struct stat zst;
	REQUIRE(fstat(zr, &zst) == 0);
	REQUIRE(ftruncate(zr, zst.st_size / 2) == 0);
	CHECK(kp_debug_inflate(zr) == zr);
	REQUIRE(ftruncate(zr, 10) == 0);
	CHECK(kp_debug_inflate(zr) == zr);
	REQUIRE(ftruncate(zr, 0) == 0);
	CHECK(kp_debug_inflate(zr) == zr);
	close(zr);
	unlink(z);
	rmdir(dir);
}

/* The number of files in dir whose name ends in suffix. */
static int count_files(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	size_t sl = strlen(suffix);
	while (d && (e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		n += l >= sl && !strcmp(e->d_name + l - sl, suffix);
	}
	if (d)
		closedir(d);
	return n;
}

/* The one copy in the cache directory dir: its path in path, its stat. */
static int the_copy(const char *dir, char *path, size_t size, struct stat *st)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l > 6 && !strcmp(e->d_name + l - 6, ".debug")) {
			snprintf(path, size, "%s/%s", dir, e->d_name);
			n++;
		}
	}
	if (d)
		closedir(d);
	return n == 1 && stat(path, st) == 0 ? 0 : -1;
}

/*
 * The inflated copies kept on disk (KOTOBA_REPORT_CACHE): made once, 0600
 * in a 0700 directory made for them, then used (the same file, marked
 * used) with the same bytes as a memory file's; a damaged copy (cut
 * short, a section header changed) made again; the copies least recently
 * used removed past the bound, and a dead writer's temporary file an hour
 * old, but no file the cache did not make; "off", or a directory others
 * may write to, keep nothing.
 */
TEST(debug_file_cache)
{
	char exe[4096], dir[] = "/tmp/kp-dcache-XXXXXX", z[4200], cache[4200];
	char cmd[30000], path[8500];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	REQUIRE(n > 0);
	exe[n] = '\0';
	REQUIRE(mkdtemp(dir) != NULL);
	snprintf(z, sizeof(z), "%s/z", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	snprintf(cmd, sizeof(cmd), "objcopy --compress-debug-sections=zlib "
		 "'%s' '%s'", exe, z);
	REQUIRE(system(cmd) == 0);

	/* no cache: a memory file, the reference */
	kp_debug_cache_init("off", 0);
	int mfd = kp_debug_inflate(open(z, O_RDONLY));
	REQUIRE(mfd >= 0);
	struct stat mst;
	REQUIRE(fstat(mfd, &mst) == 0);
	CHECK(mst.st_nlink == 0 && access(cache, F_OK) != 0);

	kp_debug_cache_init(cache, 0);
	int zfd = open(z, O_RDONLY);
	int c1 = kp_debug_inflate(zfd);
	REQUIRE(c1 >= 0 && c1 != zfd);
	struct stat cst, st1, dst;
	REQUIRE(the_copy(cache, path, sizeof(path), &cst) == 0);
	REQUIRE(fstat(c1, &st1) == 0 && stat(cache, &dst) == 0);
	CHECK(st1.st_ino == cst.st_ino); /* what it gave is the copy */
	CHECK((cst.st_mode & 0777) == 0600 && (dst.st_mode & 0777) == 0700);
	CHECK(same_bytes(c1, mfd));
	close(c1);

	/* used: the same file, its time set to now */
	struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	REQUIRE(utimensat(AT_FDCWD, path, old, 0) == 0);
	int c2 = kp_debug_inflate(open(z, O_RDONLY));
	struct stat st2;
	REQUIRE(c2 >= 0 && fstat(c2, &st2) == 0);
	CHECK(st2.st_ino == cst.st_ino && st2.st_mtime > 1000000000);
	CHECK(same_bytes(c2, mfd));
	close(c2);

	/* damaged: cut short, then a section header changed; made again */
	for (int damage = 0; damage < 2; damage++) {
		int w = open(path, O_RDWR);
		REQUIRE(w >= 0);
		if (damage == 0) {
			REQUIRE(ftruncate(w, cst.st_size - 1) == 0);
		} else {
			unsigned char c;
			off_t at = cst.st_size - 20; /* the last header */
			REQUIRE(pread(w, &c, 1, at) == 1);
			c ^= 1;
			REQUIRE(pwrite(w, &c, 1, at) == 1);
		}
		close(w);
		int c3 = kp_debug_inflate(open(z, O_RDONLY));
		struct stat st3;
		REQUIRE(c3 >= 0 && fstat(c3, &st3) == 0);
		CHECK(same_bytes(c3, mfd));
		close(c3);
		REQUIRE(the_copy(cache, path, sizeof(path), &st3) == 0);
		CHECK(st3.st_size == cst.st_size);
	}

	/* the bound: an older copy and a dead writer's file go; the new
	 * copy (z changed: another name) stays, and so does a file the
	 * cache did not make, however old */
	char stale[4300], tmp[4300], foreign[4300];
	snprintf(stale, sizeof(stale), "%s/0-0-0-0.0.debug", cache);
	snprintf(tmp, sizeof(tmp), "%s/.tmp-1-1", cache);
	snprintf(foreign, sizeof(foreign), "%s/libfoo.so.debug", cache);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && cp '%s' '%s' && : > '%s'",
		 path, stale, path, foreign, tmp);
	REQUIRE(system(cmd) == 0);
	REQUIRE(utimensat(AT_FDCWD, stale, old, 0) == 0);
	REQUIRE(utimensat(AT_FDCWD, tmp, old, 0) == 0);
	REQUIRE(utimensat(AT_FDCWD, foreign, old, 0) == 0);
	CHECK(count_files(cache, ".debug") == 3);
	struct timespec later[2] = { { 0, UTIME_OMIT }, { 2000000000, 0 } };
	REQUIRE(utimensat(AT_FDCWD, z, later, 0) == 0);
	kp_debug_cache_init(cache, (uint64_t)(2 * (cst.st_size + 8192)));
	int c4 = kp_debug_inflate(open(z, O_RDONLY));
	REQUIRE(c4 >= 0);
	CHECK(same_bytes(c4, mfd));
	close(c4);
	CHECK(access(stale, F_OK) != 0 && access(tmp, F_OK) != 0);
	CHECK(access(foreign, F_OK) == 0);
	CHECK(count_files(cache, ".debug") == 3); /* the two of z, foreign */

	/* a directory others may write to is not used (one warning) */
	REQUIRE(chmod(cache, 0777) == 0);
	kp_debug_cache_init(cache, 0);
	REQUIRE(utimensat(AT_FDCWD, z, old, 0) == 0); /* another name again */
	int c5 = kp_debug_inflate(open(z, O_RDONLY));
	struct stat st5;
	REQUIRE(c5 >= 0 && fstat(c5, &st5) == 0);
	CHECK(st5.st_nlink == 0 && same_bytes(c5, mfd));
	CHECK(count_files(cache, ".debug") == 3);
	close(c5);

	kp_debug_cache_init("off", 0);
	close(mfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	REQUIRE(system(cmd) == 0);
}

TEST(alloc_wrappers)
{
	CHECK(kp_is_alloc_wrapper("operator new(unsigned long)"));
	CHECK(kp_is_alloc_wrapper("operator new[](unsigned long)"));
	CHECK(kp_is_alloc_wrapper("__gnu_cxx::new_allocator<int>::allocate"
				  "(unsigned long, void const*)"));
	CHECK(kp_is_alloc_wrapper("std::allocator_traits<std::allocator<int> >"
				  "::allocate"));
	CHECK(kp_is_alloc_wrapper("__libc_malloc"));
	CHECK(kp_is_alloc_wrapper("strdup"));
	CHECK(!kp_is_alloc_wrapper("main"));
	CHECK(!kp_is_alloc_wrapper("strdup_like"));
	CHECK(!kp_is_alloc_wrapper(NULL));
}

/*
 * The heap over time (memory.c's slices): a ramp of allocations over
 * 300 ms then frees over 100 ms, a pause, and a late event at 5 s. The
 * slices must be the most in use in each [i * slice_ns, (i + 1) *
 * slice_ns), computed here from the same events, after the doublings that
 * 5 s takes (1 ms -> 64 ms for at most 128 slices).
 */
TEST(heap_slices)
{
	enum { N = 3000 };
	static uint64_t ev_ts[2 * N + 2];
	static int64_t ev_d[2 * N + 2];
	size_t ne = 0;
	struct tb b;
	tb_begin(&b, 14, 1, "/bin/t");
	t_stack(&b, 1, pcs_leak, 3);
	for (uint64_t i = 0; i < N; i++) { /* every 100 us, 16 bytes more */
		uint64_t ts = 1000 + i * 100000;
		t_alloc(&b, 1, ts, 0x100000 + i * 64, 16 + i, 1);
		ev_ts[ne] = ts;
		ev_d[ne++] = (int64_t)(16 + i);
	}
	for (uint64_t i = 0; i < N; i++) { /* every 33 us, the same back */
		uint64_t ts = 300001000 + i * 33333;
		t_free(&b, 1, ts, 0x100000 + i * 64);
		ev_ts[ne] = ts;
		ev_d[ne++] = -(int64_t)(16 + i);
	}
	t_alloc(&b, 1, 5000000000ULL, 0x900000, 100, 1);
	ev_ts[ne] = 5000000000ULL;
	ev_d[ne++] = 100;
	t_end(&b, 5000000500ULL, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_proc_totals(an, an->procs[0]);
	REQUIRE(m);
	CHECK_EQ_U(m->slice_ns, 64000000);
	CHECK_EQ_U(m->nslices, 5000000500ULL / 64000000 + 1);
	/* the model: per slice, the most in use at any moment in it (what
	 * was in use as it began, or after an event in it) */
	uint64_t live = 0, want[KP_HEAP_SLICES] = { 0 };
	size_t k = 0;
	int bad = 0;
	for (uint32_t sl = 0; sl < m->nslices; sl++) {
		uint64_t hi = (uint64_t)(sl + 1) * m->slice_ns, mx = live;
		for (; k < ne && ev_ts[k] < hi; k++) {
			live = (uint64_t)((int64_t)live + ev_d[k]);
			if (live > mx)
				mx = live;
		}
		want[sl] = mx;
		if (m->heap[sl] != mx) {
			printf("#   slice %u: %llu, want %llu\n", sl,
			       (unsigned long long)m->heap[sl],
			       (unsigned long long)mx);
			bad = 1;
		}
	}
	CHECK(!bad);
	CHECK_EQ_U(want[4], m->peak_bytes); /* 256-320 ms: the top */
	char *txt = render(an, 0);
	CHECK(strstr(txt, "HEAP OVER TIME, the most in use in each 448.0 ms"));
	free(txt);
	txt = render(an, 1);
	CHECK(python_check(txt, "t = d[\"trace\"][\"processes\"][0]"
			   "[\"memory\"][\"timeline\"]; "
			   "assert t[\"slice_ns\"] == 64000000; "
			   "assert len(t[\"max_in_use\"]) == 79; "
			   "assert max(t[\"max_in_use\"]) == "
			   "d[\"memory\"][\"peak_bytes\"]") == 0);
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/*
 * Peak consumers: the most each site held at one time. Site 1 holds three
 * blocks of 100 at once, frees them, then one (peak 300); site 2 holds
 * 1000, then a realloc moves its block to site 1's stack with 700 bytes
 * (site 2 down to 0, site 1 up to 800 with one of its own); a second
 * process of the same executable takes site 2 to 1500 at once, and the
 * largest of one process counts.
 */
static void build_peaks(struct tb *b, int64_t pid, uint64_t two)
{
	tb_begin(b, pid, 1, "/bin/peaks");
	t_stack(b, 1, pcs_leak, 3);
	t_stack(b, 2, pcs_tmp, 2);
	t_alloc(b, 1, 10, 0x1000, 100, 1);
	t_alloc(b, 1, 11, 0x1100, 100, 1);
	t_alloc(b, 1, 12, 0x1200, 100, 1);
	t_free(b, 1, 13, 0x1000);
	t_free(b, 1, 14, 0x1100);
	t_free(b, 1, 15, 0x1200);
	t_alloc(b, 1, 20, 0x2000, two, 2);
	t_alloc(b, 1, 21, 0x1000, 100, 1);
	t_realloc(b, 1, 22, 0x2000, 0x3000, 700, 1, 1);
	t_end(b, 100, KP_END_EXIT, 0);
	tb_end_writer(b);
}

TEST(peak_consumers)
{
	struct tb b1, b2;
	build_peaks(&b1, 31, 1000);
	build_peaks(&b2, 32, 1500);
	int ok;
	struct kp_analysis *an = analyze2("a.kpz", &b1, "b.kpz", &b2, &ok);
	REQUIRE(ok);
	const struct kp_site *const *s;
	REQUIRE(kp_mem_top_peak(an, &s) == 2);
	CHECK_EQ_U(s[0]->peak_bytes, 1500); /* site 2, in the second */
	CHECK_EQ_U(s[0]->allocs, 2);
	CHECK_EQ_U(s[1]->peak_bytes, 800);  /* site 1: 100 + 700 */
	CHECK_EQ_U(s[1]->allocs, 10);       /* 4 + the realloc, twice */
	char *txt = render(an, 0);
	CHECK(strstr(txt, "PEAK MEMORY CONSUMERS (the most each site held at "
			  "once)\n  1. 1,500 bytes (1.5 KiB) at once, of 2 "
			  "calls\n"));
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b1.m);
	membuf_free(&b2.m);
}

/* Stacks share their frames: [a b c], [a b d] and [e b c] (innermost
 * first) are three canonical stacks of five distinct frames, each read
 * back in order; the same stack in a second trace is the same one. */
TEST(frames_shared)
{
	static const uint64_t s1[] = { 0x401010, 0x402020, 0x403030 },
			      s2[] = { 0x401010, 0x402020, 0x404040 },
			      s3[] = { 0x405050, 0x402020, 0x403030 };
	struct tb b[2];
	for (int k = 0; k < 2; k++) {
		tb_begin(&b[k], 20 + k, 1, "/usr/bin/app");
		t_module(&b[k], 0, 0, 0x400000, 0x500000, "/usr/bin/app");
		t_stack(&b[k], 1, s1, 3);
		t_stack(&b[k], 2, s2, 3);
		t_stack(&b[k], 3, s3, 3);
		for (uint32_t i = 1; i <= 3; i++)
			t_alloc(&b[k], 1, 10 * i, 0x1000 * i, 8, i);
		t_end(&b[k], 100, KP_END_EXIT, 0);
		tb_end_writer(&b[k]);
	}
	int ok;
	struct kp_analysis *an = analyze2("a.kpz", &b[0], "b.kpz", &b[1], &ok);
	REQUIRE(ok);
	CHECK_EQ_U(an->ngstacks, 4); /* and the empty stack */
	CHECK_EQ_U(an->nframes, 5);
	CHECK_EQ_U(an->nfids, 9);
	const uint64_t *want[] = { s1, s2, s3 };
	for (uint32_t g = 1; g <= 3; g++) {
		REQUIRE(an->gstacks[g].depth == 3);
		for (uint32_t d = 0; d < 3; d++)
			CHECK_EQ_U(kp_gframe(an, &an->gstacks[g], d)->offset,
				   want[g - 1][d]);
	}
	const struct kp_site *const *s;
	REQUIRE(kp_mem_top_calls(an, &s) == 3);
	for (int i = 0; i < 3; i++)
		CHECK_EQ_U(s[i]->allocs, 2); /* one in each trace */
	kp_analysis_free(an);
	membuf_free(&b[0].m);
	membuf_free(&b[1].m);
}

/* A stack's outer frames shared with the stack before it are reused
 * (stacks.c, canon_pcs): the result must be what resolving each alone
 * gives. kprof's own frame is left out below an app frame (stack 1) but
 * kept at the leaf (2, after 1, which shares everything but that frame),
 * and left out again below an app frame (3, after 2); a longer (4) and a
 * shorter (5) stack share a suffix; a pc in no module (6) resolves into
 * a library mapped after it (7). Site i allocates 100 * i bytes from
 * stack i. */
static const struct kp_site *site_of_bytes(struct kp_analysis *an,
					   uint64_t bytes)
{
	const struct kp_site *const *s;
	size_t n = kp_mem_top_bytes(an, &s);
	for (size_t i = 0; i < n; i++)
		if (s[i]->bytes == bytes)
			return s[i];
	return NULL;
}

TEST(stack_suffix_reuse)
{
	static const uint64_t st[][6] = {
		{ 0x401000, 0x701000, 0x402000, 0x403000 },
		{ 0x701000, 0x402000, 0x403000 },
		{ 0x40a000, 0x701000, 0x402000, 0x403000 },
		{ 0x404000, 0x405000, 0x406000, 0x402000, 0x403000 },
		{ 0x407000, 0x403000 },
		{ 0x408000, 0x900010 },
		{ 0x409000, 0x900010 },
	};
	static const uint32_t depth[] = { 4, 3, 4, 5, 2, 2, 2 };
	/* the canonical frames: module (1 app, 2 kprof, 3 late.so, 0 none)
	 * and offset */
	static const uint64_t want[][6][2] = {
		{ { 1, 0x401000 }, { 1, 0x402000 }, { 1, 0x403000 } },
		{ { 2, 0x1000 }, { 1, 0x402000 }, { 1, 0x403000 } },
		{ { 1, 0x40a000 }, { 1, 0x402000 }, { 1, 0x403000 } },
		{ { 1, 0x404000 }, { 1, 0x405000 }, { 1, 0x406000 },
		  { 1, 0x402000 }, { 1, 0x403000 } },
		{ { 1, 0x407000 }, { 1, 0x403000 } },
		{ { 1, 0x408000 }, { 0, 0x900010 } },
		{ { 1, 0x409000 }, { 3, 0x10 } },
	};
	static const uint32_t want_depth[] = { 3, 3, 3, 5, 2, 2, 2 };
	struct tb b;
	tb_begin(&b, 17, 1, "/usr/bin/app");
	t_module(&b, 0, 0, 0x400000, 0x500000, "/usr/bin/app");
	t_module(&b, 0, 0x700000, 0x700000, 0x800000, "/usr/lib/libkprof.so");
	for (uint32_t i = 0; i < 7; i++) {
		if (i == 6)
			t_module(&b, 5, 0x900000, 0x900000, 0xa00000,
				 "/usr/lib/late.so");
		t_stack(&b, i + 1, st[i], depth[i]);
		t_alloc(&b, 1, 10 + i, 0x10000 * (i + 1), 100 * (i + 1), i + 1);
	}
	t_end(&b, 100, KP_END_EXIT, 0);
	tb_end_writer(&b);
	struct kp_analysis *an = analyze1(&b);
	for (uint32_t i = 0; i < 7; i++) {
		const struct kp_site *site = site_of_bytes(an, 100 * (i + 1));
		REQUIRE(site);
		const struct kp_gstack *g = &an->gstacks[site->gstack];
		CHECK_EQ_U(g->depth, want_depth[i]);
		for (uint32_t d = 0; d < g->depth && d < want_depth[i]; d++) {
			const struct kp_frame *f = kp_gframe(an, g, d);
			const char *path = an->modules[f->module].path;
			uint64_t mod = !strcmp(path, "/usr/bin/app") ? 1 :
				       strstr(path, "libkprof") ? 2 :
				       strstr(path, "late.so") ? 3 : 0;
			CHECK_EQ_U(mod, want[i][d][0]);
			CHECK_EQ_U(f->offset, want[i][d][1]);
		}
	}
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* The rankings of many sites (more than rank() sorts whole): the first
 * --top of each in order, none of the rest ahead of them, and every site
 * in each. 600 sites: site i makes 1 + (i * 7919) % 601 allocations of
 * (i * 104729) % 997 + 1 bytes, frees one if i is odd (temporary) and
 * keeps the others; ties on calls fall to bytes, then creation order. */
/* A site's place in a ranking as one number: primary key, then secondary
 * (both well under 2^32 here); greater ranks first. */
static uint64_t key_calls(const struct kp_site *x)
{
	return x->allocs << 32 | x->bytes;
}

static uint64_t key_bytes(const struct kp_site *x)
{
	return x->bytes << 32 | x->allocs;
}

static uint64_t key_temp(const struct kp_site *x)
{
	return x->temporary << 32 | x->allocs;
}

static uint64_t key_peak(const struct kp_site *x)
{
	return x->peak_bytes << 32 | x->bytes;
}

static int by_ptr(const void *a, const void *b)
{
	const void *x = *(const void *const *)a, *y = *(const void *const *)b;
	return x < y ? -1 : x > y;
}

/* got[0, top) in order by key, none of got[top, n) ahead of its last,
 * and n different sites. */
static int ranked_as(const struct kp_site *const *got, size_t n,
		     unsigned top, uint64_t (*key)(const struct kp_site *))
{
	int ok = 1;
	for (size_t i = 1; i < n; i++)
		ok &= key(got[i < top ? i - 1 : top - 1]) >= key(got[i]);
	const struct kp_site **a = malloc(n * sizeof(*a));
	memcpy(a, got, n * sizeof(*a));
	qsort(a, n, sizeof(*a), by_ptr);
	for (size_t i = 1; i < n; i++)
		ok &= a[i - 1] != a[i];
	free(a);
	return ok;
}

TEST(rankings_many_sites)
{
	struct tb b;
	tb_begin(&b, 16, 1, "/bin/t");
	uint64_t ts = 10, ptr = 0x100000;
	for (uint32_t i = 1; i <= 600; i++) {
		uint64_t pcs[3] = { 0x401000 + i * 16, 0x402000, 0x403000 };
		t_stack(&b, i, pcs, 3);
		unsigned n = 1 + (i * 7919u) % 601;
		for (unsigned k = 0; k < n; k++) {
			t_alloc(&b, 1, ts++, ptr, (i * 104729u) % 997 + 1, i);
			if (i % 2 && k == 0)
				t_free(&b, 1, ts++, ptr);
			ptr += 0x1000;
		}
		if (i % 50 == 0)
			tb_flush(&b);
	}
	t_end(&b, ts + 100, KP_END_EXIT, 0);
	tb_end_writer(&b);
	struct kp_analysis *an = analyze1(&b);
	const struct kp_site *const *s;
	size_t n = kp_mem_top_calls(an, &s);
	CHECK_EQ_U(n, 600);
	CHECK(ranked_as(s, n, test_opts.top, key_calls));
	n = kp_mem_top_bytes(an, &s);
	CHECK_EQ_U(n, 600);
	CHECK(ranked_as(s, n, test_opts.top, key_bytes));
	n = kp_mem_top_temporary(an, &s);
	CHECK_EQ_U(n, 300);
	CHECK(ranked_as(s, n, test_opts.top, key_temp));
	n = kp_mem_top_peak(an, &s);
	CHECK_EQ_U(n, 600);
	CHECK(ranked_as(s, n, test_opts.top, key_peak));
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* Allocation sizes by class [n, 2n): malloc(0), the edges of classes,
 * a failed allocation (counted: a call), a realloc's new size. */
TEST(size_classes)
{
	static const uint64_t sizes[] = { 0, 1, 2, 3, 4, 7, 8, 1000, 1023,
					  1024, 1ull << 40 };
	struct tb b;
	tb_begin(&b, 15, 1, "/bin/t");
	t_stack(&b, 1, pcs_leak, 3);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		t_alloc(&b, 1, 10 + i, i == 10 ? 0 : 0x1000 + i * 64,
			sizes[i], 1);
	t_realloc(&b, 1, 30, 0x1000 + 64, 0x9000, 5000, 1, 1);
	t_end(&b, 100, KP_END_EXIT, 0);
	tb_end_writer(&b);

	struct kp_analysis *an = analyze1(&b);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	REQUIRE(m);
	/* classes: 0 | 1 | 2-3 | 4-7 | 8-15 | 512-1023 | 1024-2047 |
	 * 4096-8191 | 2^40 */
	static const struct { unsigned c; uint64_t calls, bytes; } want[] = {
		{ 0, 1, 0 }, { 1, 1, 1 }, { 2, 2, 5 }, { 3, 2, 11 },
		{ 4, 1, 8 }, { 10, 2, 2023 }, { 11, 1, 1024 },
		{ 13, 1, 5000 }, { 41, 1, 1ull << 40 },
	};
	uint64_t calls = 0;
	for (unsigned c = 0; c < KP_SIZE_CLASSES; c++)
		calls += m->size_calls[c];
	CHECK_EQ_U(calls, m->alloc_calls);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		CHECK_EQ_U(m->size_calls[want[i].c], want[i].calls);
		CHECK_EQ_U(m->size_bytes[want[i].c], want[i].bytes);
	}
	char *txt = render(an, 0);
	CHECK(strstr(txt, "ALLOCATION SIZES, calls by size class [n, 2n)\n"
			  "         0 B            1    8.3 %  "));
	CHECK(strstr(txt, "\n     1.0 TiB            1    8.3 %  ####"));
	free(txt);
	txt = render(an, 1);
	CHECK(python_check(txt, "z = d[\"memory\"][\"sizes\"]; "
			   "assert [(x[\"min\"], x[\"calls\"]) for x in z] "
			   "== [(0, 1), (1, 1), (2, 2), (4, 2), (8, 1), "
			   "(512, 2), (1024, 1), (4096, 1), (1 << 40, 1)]") ==
	      0);
	free(txt);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

/* Up to three truncated traces get a warning each, more get one line
 * naming the first eight pids. */
TEST(truncated_warnings)
{
	for (int n = 3; n <= 10; n += 7) {
		struct kp_analysis *an = kp_analysis_new(&test_opts);
		struct tb b[10];
		for (int i = 0; i < n; i++) { /* no END record */
			tb_begin(&b[i], 100 + i, 1, "/bin/t");
			t_alloc(&b[i], 1, 10, 0x1000, 8, 0);
			tb_end_writer(&b[i]);
			CHECK(an_add(an, "cut.kpz", b[i].m.p, b[i].m.len) == 0);
		}
		kp_analysis_finish(an);
		char *txt = render(an, 0);
		if (n == 3) {
			CHECK(strstr(txt, "WARNING: trace of pid 102 is "
					  "TRUNCATED (no END record)"));
			CHECK(!strstr(txt, "traces are TRUNCATED"));
		} else {
			CHECK(strstr(txt, "WARNING: 10 traces are TRUNCATED (pids "
					  "100, 101, 102, 103, 104, 105, 106, "
					  "107, ...); figures cover what was\n"));
			CHECK(!strstr(txt, "WARNING: trace of pid"));
		}
		free(txt);
		kp_analysis_free(an);
		for (int i = 0; i < n; i++)
			membuf_free(&b[i].m);
	}
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(jit_code_names_frames), T(leak23_exact), T(realloc_chain), T(temporary_per_thread),
			 T(cross_thread_reuse), T(frame_merge_order),
			 T(frame_merge_many_runs), T(frame_time_backwards),
			 T(unknown_frees), T(truncated_trace),
			 T(two_processes_merged), T(lost_records),
			 T(lost_allocs_only), T(memory_not_recorded),
			 T(confidence_classes), T(leak_scan_classes),
			 T(leak_scan_not_run), T(leak_scan_hostile),
			 T(early_frees), T(many_incarnations),
			 T(incarnations_model), T(pointer_map_model),
			 T(bad_input), T(json_escaping),
			 T(symbolize_self), T(inflate_debug_sections), T(debug_file_cache),
			 T(alloc_wrappers), T(heap_slices),
			 T(peak_consumers), T(size_classes), T(rankings_many_sites),
			 T(frames_shared), T(stack_suffix_reuse),
			 T(truncated_warnings));
}
