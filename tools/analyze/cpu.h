/* SPDX-License-Identifier: MIT */
/*
 * Weighted stacks of the CPU pass (cpu.c), for flame graphs, folded
 * stacks and pprof export (flame.c, pprof.c): CPU samples and I/O time
 * per canonical stack, plus a frame's display name.
 */
#ifndef KP_CPU_H
#define KP_CPU_H

#include "analyze.h"

/* One canonical stack with a weight (ns) and a count (samples, calls). */
struct kp_wstack {
	uint32_t gstack;
	uint32_t skip;   /* innermost frames not to show (allocator wrappers) */
	uint64_t value;
	uint64_t count;
};

/* What a profile measures. */
enum kp_what { KP_WHAT_CPU, KP_WHAT_ALLOC, KP_WHAT_LIVE, KP_WHAT_IO, KP_WHAT_TEMP,
	       KP_WHAT_LOST };

/* CPU samples (value = CPU ns) or I/O calls (value = ns in the call) by
 * stack, heaviest first; valid until the analysis is freed. */
size_t kp_cpu_stacks(const struct kp_analysis *an,
		     const struct kp_wstack **out);
size_t kp_io_stacks(const struct kp_analysis *an,
		    const struct kp_wstack **out);
/* Live bytes (value) and blocks (count) per allocation stack at each
 * process's heap peak (peak.c; only computed for flame/export --what live). */
size_t kp_peak_stacks(const struct kp_analysis *an,
		      const struct kp_wstack **out);
/* The functions of the CPU samples (diff.c): how many, and the r-th by
 * self time, with its self and total CPU ns (name owned by the pass). */
size_t kp_cpu_funcs(const struct kp_analysis *an);
const char *kp_cpu_func(const struct kp_analysis *an, size_t r,
			uint64_t *self_ns, uint64_t *total_ns);
/* The sampling period in ns (from the first trace's header), 0 unknown. */
uint64_t kp_cpu_period_ns(const struct kp_analysis *an);

/* The stacks of a "what" in a fresh array (caller frees); alloc: bytes and
 * calls per allocation site; live: bytes and blocks in use at the peak. */
size_t kp_what_stacks(struct kp_analysis *an, enum kp_what what,
		      struct kp_wstack **out);

/* Frames to skip at the top of an allocation stack: the allocator
 * wrappers the reports trim too (kp_symbolize_stack). */
uint32_t kp_alloc_skip(struct kp_analysis *an, uint32_t gstack);

/* A frame's display name into buf: the function, else module+0xoffset. */
const char *kp_frame_name(struct kp_analysis *an, const struct kp_frame *f,
			  int leaf, char *buf, size_t n);

/* flame.c, pprof.c, chrome.c: the non-report commands.
 * @return the exit status. */
int kp_flame_command(struct kp_analysis *an, FILE *out);
/* The SVG flame graph of w (as `flame --what`) to out, for the HTML
 * report. @return its height in px; 0, and nothing written, without
 * data. */
unsigned kp_flame_svg(struct kp_analysis *an, enum kp_what w, FILE *out);
int kp_export_command(struct kp_analysis *an);
int kp_chrome_export(struct kp_analysis *an, const char *path);

#endif
