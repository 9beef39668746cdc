/* SPDX-License-Identifier: MIT */
/*
 * kprof's messages to the user: one line on fd 2, prefixed "kprof: ",
 * formatted into a stack buffer and written with a raw syscall. No stdio
 * (the app may hold its locks), no allocation.
 *
 * The writer thread's fd table is its own (writer.c): it keeps a copy of
 * stderr only when that is a terminal, a file or a device. A pipe or a
 * socket it may not keep (the app closing its end must still give the
 * reader EOF), so its messages then wait here, and the app thread that
 * ends the trace (exit, exec) prints them.
 *
 * fd 2 is written only while it is the file it was when kprof started
 * (its device and inode, kp_warn_init): a program that closed its
 * stderr may have opened a file of its own as fd 2 since (a daemon's log,
 * a database), and a message there would change what the program wrote.
 * Where fd 2 is no longer that file, the message is dropped.
 */
#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int kp_warn_deferred; /* the writer thread has no stderr */

/* fd 2 at the start: 0 not looked at yet, 1 open (err_id), -1 not open
 * (nothing is written). */
static _Atomic int err_state;
static struct kp_file_id err_id;

void kp_warn_init(void)
{
	atomic_store(&err_state, kp_file_id(2, &err_id) == 0 ? 1 : -1);
}

/* Is fd 2 (of the calling thread's fd table) the stderr kprof started
 * with? (A message before kp_warn_init takes fd 2 as it is.) */
static int err_same(void)
{
	if (!atomic_load(&err_state))
		kp_warn_init();
	return atomic_load(&err_state) > 0 && kp_fd_is(2, &err_id);
}
static pthread_mutex_t deferred_lock = PTHREAD_MUTEX_INITIALIZER;
static char deferred[2048];
static size_t n_deferred;

static void defer(const char *line, size_t n)
{
	pthread_mutex_lock(&deferred_lock);
	if (n <= sizeof(deferred) - n_deferred) {
		memcpy(deferred + n_deferred, line, n);
		n_deferred += n;
	}
	pthread_mutex_unlock(&deferred_lock);
}

void kp_warn_flush(void)
{
	pthread_mutex_lock(&deferred_lock);
	if (n_deferred && err_same())
		kp_sys_write(2, deferred, n_deferred);
	n_deferred = 0;
	pthread_mutex_unlock(&deferred_lock);
}

/* A forked child: the parent prints what its writer left. */
void kp_warn_after_fork_child(void)
{
	pthread_mutex_init(&deferred_lock, NULL);
	n_deferred = 0;
	kp_warn_deferred = 0;
}

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
	if (kp_tls.writer && kp_warn_deferred)
		defer(buf, (size_t)n);
	else if (err_same())
		kp_sys_write(2, buf, (size_t)n);
	errno = saved;
}
