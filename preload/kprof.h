/* SPDX-License-Identifier: MIT */
/*
 * kprof.h — the public API of libkprof.so, the one installed header.
 *
 * An app may call these whether or not it runs under kprof: they are
 * declared weak, so when libkprof.so is not preloaded the symbols are NULL
 * and the kprof_*_if_loaded() wrappers below do nothing. Link nothing.
 * Strings passed in are copied; none is kept after the call returns.
 */
#ifndef KPROF_H
#define KPROF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KPROF_API_VERSION 1

/* "0.1.0": the version of the loaded libkprof.so. */
extern const char *kprof_version(void) __attribute__((weak));

/* Write every event recorded so far to the trace now (normally the
 * writer does this every KOTOBA_PROFILE_FLUSH_MS). @return 0, or -1 when
 * not recording. */
extern int kprof_flush(void) __attribute__((weak));

/*
 * Spans: a named stretch of a thread's work (a request, a job, a phase).
 * Events of the thread between begin and end belong to the span; spans
 * nest. @return the span's id (never 0 when recording), 0 when not
 * recording. kprof_span_end(0) does nothing.
 */
extern uint64_t kprof_span_begin(const char *name) __attribute__((weak));
extern void kprof_span_end(uint64_t id) __attribute__((weak));

/* Custom events, on the same clock as everything else. */
enum kprof_event_kind {
	KPROF_COUNTER = 0,  /* value is added to the named counter */
	KPROF_GAUGE = 1,    /* value is the named gauge's new level */
	KPROF_DURATION = 2, /* value is a duration in ns (ended now) */
};
extern void kprof_record_event(const char *name, int kind, int64_t value)
	__attribute__((weak));

static inline int kprof_loaded(void)
{
	return kprof_version != NULL;
}

static inline int kprof_flush_if_loaded(void)
{
	return kprof_flush ? kprof_flush() : -1;
}

static inline uint64_t kprof_span_begin_if_loaded(const char *name)
{
	return kprof_span_begin ? kprof_span_begin(name) : 0;
}

static inline void kprof_span_end_if_loaded(uint64_t id)
{
	if (kprof_span_end)
		kprof_span_end(id);
}

static inline void kprof_record_event_if_loaded(const char *name, int kind,
						int64_t value)
{
	if (kprof_record_event)
		kprof_record_event(name, kind, value);
}

#ifdef __cplusplus
}
#endif

#endif
