/* SPDX-License-Identifier: MIT */
/*
 * The CPU pass, folded stacks and flame graphs on synthetic traces (no
 * symbols: frames are module+offset, so a module path chosen here is a
 * frame name): sample weights per thread and stack, I/O time per stack
 * from KP_REC_IO's duration, folded output, an SVG that python's XML
 * parser accepts with a 256-frame stack and hostile strings in names, and
 * the JSON cpu section.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"
#include "cpu.h"
#include "harness.h"
#include "kpz.h"
#include "kpz_testutil.h"

struct tb {
	struct membuf m; /* the trace as written (kpz_testutil.h) */
	struct kp_writer *w;
};

static void tb_begin(struct tb *b)
{
	struct kp_sink sink = { membuf_write, &b->m, NULL };
	struct kp_header h;
	static const char *const keys[] = { "cpu_hz" }, *const vals[] = { "250" };
	memset(b, 0, sizeof(*b));
	memset(&h, 0, sizeof(h));
	h.pid = 42;
	h.exe = "/bin/app";
	h.start_wall_ns = 1700000000ULL * 1000000000ULL;
	h.clock = "clock_gettime";
	h.config_keys = keys;
	h.config_vals = vals;
	h.nconfig = 1;
	if (kp_writer_create(&b->w, &kp_allocator_libc, &sink, 1, 1 << 20) ||
	    kp_writer_header(b->w, &h))
		abort();
}

static void add(struct tb *b, const struct kp_rec *r)
{
	if (kp_writer_add(b->w, r))
		abort();
}

static void t_module(struct tb *b, uint64_t lo, uint64_t hi, const char *p)
{
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_MODULE;
	r.u.module.bias = lo;
	r.u.module.lo = lo;
	r.u.module.hi = hi;
	r.u.module.path = p;
	r.u.module.path_len = (uint32_t)strlen(p);
	add(b, &r);
}

static void t_stack(struct tb *b, uint32_t id, const uint64_t *pcs,
		    uint32_t n)
{
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_STACK;
	r.u.stack.id = id;
	r.u.stack.depth = n;
	r.u.stack.pcs = pcs;
	add(b, &r);
}

static void t_ext(struct tb *b, uint8_t type, uint32_t tid, uint64_t ts,
		  uint32_t stack, int idx, int64_t v)
{
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.type = type;
	r.tid = tid;
	r.ts = ts;
	r.u.ext.stack = stack;
	r.u.ext.v[idx] = v;
	add(b, &r);
}

/* A THREAD_START or THREAD_NAME: thread tid is called name. */
static void t_thread_name(struct tb *b, uint8_t type, uint32_t tid,
			  uint64_t ts, const char *name)
{
	struct kp_rec r = { .type = type, .tid = tid, .ts = ts };
	r.u.thread.name = name;
	r.u.thread.name_len = (uint32_t)strlen(name);
	add(b, &r);
}

static void t_end(struct tb *b, uint64_t ts)
{
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_END;
	r.ts = ts;
	add(b, &r);
	if (kp_writer_flush(b->w))
		abort();
	kp_writer_free(b->w);
}

static struct kp_analysis *analyze(struct tb *b, struct kp_opts *o)
{
	struct kp_analysis *an = kp_analysis_new(o);
	struct memsrc s = { .p = b->m.p, .len = b->m.len };
	struct kp_source src = { memsrc_read, &s };
	if (kp_analysis_add(an, "cpu.kpz", &src) < 0)
		printf("#   analysis failed\n");
	kp_analysis_finish(an);
	return an;
}

static __attribute__((noinline)) char *render(struct kp_analysis *an,
					       int what)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);
	if (what == 0)
		kp_flame_command(an, f);
	else if (what == 2)
		kp_report_text(an, f);
	else
		kp_report_json(an, f);
	fclose(f);
	return s;
}

/* python3 -c CODE < doc: 0 when the script exits 0. */
static int python(const char *doc, const char *code)
{
	char path[] = "/tmp/t_analyze_cpu_XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	size_t n = strlen(doc);
	int ok = write(fd, doc, n) == (ssize_t)n;
	close(fd);
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 -c '%s' < %s", code, path);
	int rc = ok ? system(cmd) : -1;
	unlink(path);
	return rc;
}

/*
 * Module A "/lib/<a&b>\"q'\x01\xff.so" at 0x1000..0x2000, module B "/bin/app"
 * at 0x10000..0x20000 (bias = lo). Stacks (innermost first):
 *   1: A+0x10, B+0x100            main thread 7: samples 3 x 1 ms
 *   2: A+0x20, B+0x100            thread 8: samples 1 x 4 ms
  *   3: 256 frames in B at 0x2010..           thread 8: 1 sample of 2 ms
 * I/O: stack 1 twice (5 us, 7 us), stack 2 once (11 us).
 */
static void build(struct tb *b)
{
	static const char hostile[] = "/lib/<a&b>\"q'\x01\xff.so";
	uint64_t s1[] = { 0x1010, 0x10100 }, s2[] = { 0x1020, 0x10100 };
	uint64_t s3[256];
	for (int i = 0; i < 256; i++)
		s3[i] = 0x12000 + 0x10 * (uint64_t)(i + 1);
	tb_begin(b);
	t_module(b, 0x1000, 0x2000, hostile);
	t_module(b, 0x10000, 0x20000, "/bin/app");
	t_stack(b, 1, s1, 2);
	t_stack(b, 2, s2, 2);
	t_stack(b, 3, s3, 256);
	/* thread 8 starts as app, is renamed (a control byte in it); 7 has
	 * no name */
	t_thread_name(b, KP_REC_THREAD_START, 8, 50, "app");
	t_thread_name(b, KP_REC_THREAD_NAME, 8, 60, "io\x01thd<1>");
	for (int i = 0; i < 3; i++)
		t_ext(b, KP_REC_CPU_SAMPLE, 7, 100 + (uint64_t)i, 1,
		      KP_CPU_WEIGHT, 1000000);
	t_ext(b, KP_REC_CPU_SAMPLE, 8, 200, 2, KP_CPU_WEIGHT, 4000000);
	t_ext(b, KP_REC_CPU_SAMPLE, 8, 201, 3, KP_CPU_WEIGHT, 2000000);
	t_ext(b, KP_REC_IO, 7, 300, 1, KP_IO_DUR, 5000);
	t_ext(b, KP_REC_IO, 7, 301, 1, KP_IO_DUR, 7000);
	t_ext(b, KP_REC_IO, 8, 302, 2, KP_IO_DUR, 11000);
	t_end(b, 400);
}

TEST(weights_per_stack_and_thread)
{
	struct tb b;
	struct kp_opts o = { .format = KP_FMT_JSON, .top = 10,
			     .no_symbols = 1, .command = "cpu" };
	build(&b);
	struct kp_analysis *an = analyze(&b, &o);
	const struct kp_wstack *w;
	size_t n = kp_cpu_stacks(an, &w);
	REQUIRE(n == 3);
	CHECK_EQ_U(w[0].value, 4000000); /* heaviest first */
	CHECK_EQ_U(w[1].value, 3000000);
	CHECK_EQ_U(w[1].count, 3);
	CHECK_EQ_U(w[2].value, 2000000);
	CHECK_EQ_U(kp_cpu_period_ns(an), 4000000);
	n = kp_io_stacks(an, &w);
	REQUIRE(n == 2);
	CHECK_EQ_U(w[0].value, 12000);
	CHECK_EQ_U(w[0].count, 2);
	CHECK_EQ_U(w[1].value, 11000);
	char *j = render(an, 1);
	CHECK(python(j, "import json,sys; c=json.load(sys.stdin)[\"cpu\"]; "
		     "assert c[\"samples\"]==5 and c[\"cpu_ns\"]==9000000, c; "
		     "t={x[\"tid\"]:x[\"cpu_ns\"] for x in c[\"threads\"]}; "
		     "assert t=={7:3000000,8:6000000}, t; "
		     "n={x[\"tid\"]:x[\"name\"] for x in c[\"threads\"]}; "
		     "assert n=={7:None,8:\"io\\x01thd<1>\"}, n; "
		     "f={x[\"function\"]:x for x in c[\"functions\"]}; "
		     "a=f[\"app+0x100\"]; "
		     "assert a[\"self_share\"]==0 and abs(a[\"total_share\"]-7/9)"
		     "<1e-5, a") == 0);
	free(j);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

TEST(text_counts_samples_in_words)
{
	struct tb b;
	struct kp_opts o = { .format = KP_FMT_TEXT, .top = 10,
			     .no_symbols = 1, .command = "cpu" };
	build(&b);
	struct kp_analysis *an = analyze(&b, &o);
	char *s = render(an, 2);
	CHECK(strstr(s, "9.0 ms of CPU in 5 samples\n") != NULL);
	CHECK(strstr(s, "tid 7                        3.0 ms   33.3 %  "
			"3 samples\n") != NULL);
	/* the last name, its control byte shown as '?' */
	CHECK(strstr(s, "tid 8  io?thd<1>             6.0 ms   66.7 %  "
			"2 samples\n") != NULL);
	/* stack 3's one sample of 2 ms, and none says "1 samples" */
	CHECK(strstr(s, "2.0 ms  1 sample\n") != NULL);
	CHECK(strstr(s, " 1 samples") == NULL);
	if (!strstr(s, "2.0 ms  1 sample\n"))
		printf("#   got: %s\n", s);
	free(s);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

TEST(folded_io_and_cpu)
{
	struct tb b;
	struct kp_opts o = { .format = KP_FMT_TEXT, .top = 10,
			     .no_symbols = 1, .command = "flame", .folded = 1,
			     .what = "io" };
	build(&b);
	struct kp_analysis *an = analyze(&b, &o);
	char *s = render(an, 0);
	/* root first; ';' never inside a name; control bytes as '?' */
	CHECK(strstr(s, "app+0x100;<a&b>\"q'?\xff.so+0x10 12000\n") != NULL);
	CHECK(strstr(s, "app+0x100;<a&b>\"q'?\xff.so+0x20 11000\n") != NULL);
	if (!strstr(s, "app+0x100;"))
		printf("#   got: %s\n", s);
	free(s);
	kp_analysis_free(an);
	o.what = "cpu";
	an = analyze(&b, &o);
	char *c = render(an, 0);
	size_t lines = 0, depth3 = 0;
	for (size_t i = 0; c[i]; i++)
		lines += c[i] == '\n';
	const char *deep = strstr(c, "app+0x3000;");
	for (size_t i = 0; deep && deep[i] && deep[i] != '\n'; i++)
		depth3 += deep[i] == ';';
	CHECK_EQ_U(lines, 3);
	CHECK_EQ_U(depth3, 255); /* 256 frames, root first */
	free(c);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

TEST(svg_is_well_formed)
{
	struct tb b;
	struct kp_opts o = { .format = KP_FMT_TEXT, .top = 10,
			     .no_symbols = 1, .command = "flame",
			     .what = "cpu" };
	build(&b);
	struct kp_analysis *an = analyze(&b, &o);
	char *s = render(an, 0);
	CHECK(python(s, "import sys,xml.dom.minidom as m; "
		     "d=m.parseString(sys.stdin.buffer.read()); "
		     "t=[n.firstChild.data for n in "
		     "d.getElementsByTagName(\"title\")]; "
		     "assert len(t)==1+1+2+256, len(t); "
		     "assert any(x.startswith(\"<a&b>\\\"q\\x27?\") "
		     "for x in t), t[:5]") == 0);
	CHECK(strstr(s, "&lt;a&amp;b&gt;&quot;q&#39;??.so") != NULL);
	free(s);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

static void t_mem(struct tb *b, uint8_t type, uint64_t ts, uint64_t ptr,
		  uint64_t size, uint32_t stack)
{
	struct kp_rec r;
	memset(&r, 0, sizeof(r));
	r.type = type;
	r.tid = 7;
	r.ts = ts;
	if (type == KP_REC_ALLOC) {
		r.u.alloc.ptr = ptr;
		r.u.alloc.size = size;
		r.u.alloc.stack = stack;
	} else {
		r.u.free.ptr = ptr;
	}
	add(b, &r);
}

/* Live at the peak: the journal after the last peak is undone. */
TEST(live_at_peak)
{
	struct tb b;
	struct kp_opts o = { .format = KP_FMT_TEXT, .top = 10,
			     .no_symbols = 1, .command = "flame",
			     .folded = 1, .what = "live" };
	uint64_t s1[] = { 0x1010 }, s2[] = { 0x1020 };
	tb_begin(&b);
	t_module(&b, 0x1000, 0x2000, "/lib/m.so");
	t_stack(&b, 1, s1, 1);
	t_stack(&b, 2, s2, 1);
	t_mem(&b, KP_REC_ALLOC, 10, 0xa0, 100, 1);
	t_mem(&b, KP_REC_ALLOC, 11, 0xb0, 50, 2);   /* 150 */
	t_mem(&b, KP_REC_FREE, 12, 0xa0, 0, 0);     /* 50 */
	t_mem(&b, KP_REC_ALLOC, 13, 0xc0, 120, 1);  /* 170: the peak */
	t_mem(&b, KP_REC_FREE, 14, 0xc0, 0, 0);     /* 50 */
	t_mem(&b, KP_REC_ALLOC, 15, 0xd0, 10, 2);   /* 60 */
	t_mem(&b, KP_REC_FREE, 16, 0xb0, 0, 0);     /* 10 */
	t_end(&b, 20);
	struct kp_analysis *an = analyze(&b, &o);
	const struct kp_wstack *w;
	size_t n = kp_peak_stacks(an, &w);
	REQUIRE(n == 2);
	uint64_t v1 = 0, v2 = 0;
	for (size_t i = 0; i < n; i++) {
		const struct kp_gstack *g = &an->gstacks[w[i].gstack];
		REQUIRE(g->depth == 1);
		if (kp_gframe(an, g, 0)->offset == 0x10)
			v1 = w[i].value;
		else
			v2 = w[i].value;
	}
	CHECK_EQ_U(v1, 120);
	CHECK_EQ_U(v2, 50);
	char *f = render(an, 0);
	CHECK(strstr(f, "m.so+0x10 120\n") && strstr(f, "m.so+0x20 50\n"));
	free(f);
	kp_analysis_free(an);
	membuf_free(&b.m);
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(weights_per_stack_and_thread),
			 T(text_counts_samples_in_words),
			 T(folded_io_and_cpu), T(svg_is_well_formed),
			 T(live_at_peak));
}
