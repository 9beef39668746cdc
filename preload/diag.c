/* SPDX-License-Identifier: MIT */
/*
 * kprof's messages to the user: one line on fd 2, prefixed "kprof: ",
 * formatted into a stack buffer and written with a raw syscall. No stdio
 * (the app may hold its locks), no allocation.
 */
#include "state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

void kp_warn(const char *fmt, ...)
{
	int saved = errno;
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "kprof: ");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	kp_sys_write(2, buf, (size_t)n);
	errno = saved;
}
