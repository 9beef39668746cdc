/* SPDX-License-Identifier: MIT */
/*
 * Small portability and annotation macros shared by every part of kprof.
 * Must stay header-only and depend on nothing but the compiler.
 */
#ifndef KP_COMPAT_H
#define KP_COMPAT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#define KP_LIKELY(x) __builtin_expect(!!(x), 1)
#define KP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define KP_UNUSED __attribute__((unused))
#define KP_ALWAYS_INLINE inline __attribute__((always_inline))
#define KP_HIDDEN __attribute__((visibility("hidden")))
#define KP_EXPORT __attribute__((visibility("default")))
#define KP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define KP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
