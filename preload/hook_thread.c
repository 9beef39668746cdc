/* SPDX-License-Identifier: MIT */
/*
 * Thread names. A thread's THREAD_START record has the name it had at its
 * first event, which is mostly the name it inherited from the thread that
 * made it: programs name their threads afterwards (redis's bio and io
 * threads, memcached's workers, a JVM's, Rust's), with
 * pthread_setname_np, or prctl(PR_SET_NAME) on themselves (hook_creds.c).
 * Each rename that succeeds is a THREAD_NAME record, which the reports
 * use for the thread from then on.
 */
#include "state.h"

#include <errno.h>
#include <pthread.h>

void kp_thread_named(pthread_t th, const char *name)
{
	if (!kp_recording() || kp_tls.busy)
		return;
	int saved = errno;
	kp_tls.busy = 1;
	kp_ring_thread_name(th, name);
	kp_busy_leave();
	errno = saved;
}

KP_EXPORT int pthread_setname_np(pthread_t th, const char *name)
{
	kp_real_resolve();
	int (*real)(pthread_t, const char *) =
		(int (*)(pthread_t, const char *))kp_real.pthread_setname_np;
	if (!real)
		return ENOSYS;
	int rc = real(th, name);
	if (rc == 0)
		kp_thread_named(th, name);
	return rc;
}
