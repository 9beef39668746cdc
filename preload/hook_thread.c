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
#include <string.h>
#include <sys/prctl.h>

/*
 * The name each thread has, known without asking the kernel: a thread
 * starts with its creator's (Linux copies it), and renames itself with
 * pthread_setname_np or prctl(PR_SET_NAME), which kprof sees. A program
 * that has put itself in a seccomp sandbox may refuse
 * prctl(PR_GET_NAME), and Firefox's content processes report every such
 * call as a violation: kprof asks the kernel only for a name it does
 * not know. A name is known while no thread has renamed another since it
 * was learned (names_gen): such a rename changes a name kprof cannot
 * follow to its thread, so each thread asks again. A rename by a write
 * to /proc/self/task/TID/comm is not seen: a thread that another renamed
 * that way before its first event starts with the name it had before.
 */
static _Atomic uint32_t names_gen = 1;
static __thread char tname[16] __attribute__((tls_model("initial-exec")));
static __thread uint32_t tname_gen __attribute__((tls_model("initial-exec")));

void kp_thread_name_take(const char *name, uint32_t gen)
{
	strncpy(tname, name, sizeof(tname) - 1);
	tname[sizeof(tname) - 1] = 0;
	tname_gen = gen;
}

void kp_thread_name_self(char *out)
{
	uint32_t gen = atomic_load_explicit(&names_gen, memory_order_acquire);
	if (tname_gen != gen) {
		char name[17] = { 0 };
		prctl(PR_GET_NAME, name, 0, 0, 0);
		kp_thread_name_take(name, gen);
	}
	memcpy(out, tname, sizeof(tname));
}

int kp_thread_name_inherit(char *out, uint32_t *gen)
{
	*gen = atomic_load_explicit(&names_gen, memory_order_acquire);
	if (tname_gen != *gen)
		return 0;
	memcpy(out, tname, sizeof(tname));
	return 1;
}

void kp_thread_named(pthread_t th, const char *name)
{
	if (pthread_equal(th, pthread_self()))
		kp_thread_name_take(name, atomic_load_explicit(&names_gen,
						    memory_order_acquire));
	else
		atomic_fetch_add_explicit(&names_gen, 1, memory_order_acq_rel);
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
