/* SPDX-License-Identifier: MIT */
/*
 * kprof.h — the public API of libkprof.so, the one installed header.
 *
 * An app may call these whether or not it runs under kprof: they are
 * declared weak, so when libkprof.so is not preloaded the symbols are NULL
 * and the kprof_*_if_loaded() wrappers below do nothing. Link nothing.
 * Query hooks, spans and custom events will join this header.
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

static inline int kprof_loaded(void)
{
	return kprof_version != NULL;
}

static inline int kprof_flush_if_loaded(void)
{
	return kprof_flush ? kprof_flush() : -1;
}

#ifdef __cplusplus
}
#endif

#endif
