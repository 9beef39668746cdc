/* SPDX-License-Identifier: MIT */
/*
 * Lock waits the client can see (issue 4's slow-query split): the sleeps
 * of a database engine's busy handler. When SQLite finds its database
 * locked it calls the busy handler (sqlite3_busy_timeout's default one, or
 * the app's), which sleeps and retries (unixSleep: usleep, sleep, or
 * nanosleep in newer versions); WAL readers sleep too between retries.
 * Each sleep a thread takes while inside a database call (kp_tls.db_call,
 * set around sqlite3_step by hook_sqlite.c) is recorded as an IO event
 * of op KP_IO_OP_SLEEP (fd -1, req = the ns asked): a lock wait of the
 * query running. Sleeps anywhere else are not recorded (they are not I/O
 * and may be many).
 *
 * The locks themselves (fcntl F_SETLK/F_SETLKW) are recorded by fcntl's
 * interposer in hook_fd.c as KP_IO_OP_LOCK.
 */
#include "iohook.h"

#include <time.h>
#include <unistd.h>

static inline int sleep_want(const struct kp_tls *t)
{
	return t->db_call && kp_io_want(t);
}

static uint64_t ts_ns(const struct timespec *ts)
{
	if (!ts || ts->tv_sec < 0 || ts->tv_nsec < 0)
		return 0;
	if ((uint64_t)ts->tv_sec > UINT64_MAX / 1000000000u - 1)
		return UINT64_MAX;
	return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

KP_EXPORT int usleep(useconds_t us)
{
	kp_real_resolve();
	struct kp_tls *t = &kp_tls;
	if (KP_LIKELY(!sleep_want(t)))
		return kp_real.usleep(us);
	uint64_t t0 = kp_ticks();
	int rc = kp_real.usleep(us);
	kp_io_record(KP_IO_OP_SLEEP, -1, (uint64_t)us * 1000, rc, KP_IO_NO_OFF,
		     t0);
	return rc;
}

KP_EXPORT unsigned sleep(unsigned s)
{
	kp_real_resolve();
	struct kp_tls *t = &kp_tls;
	if (KP_LIKELY(!sleep_want(t)))
		return kp_real.sleep(s);
	uint64_t t0 = kp_ticks();
	unsigned left = kp_real.sleep(s);
	kp_io_record(KP_IO_OP_SLEEP, -1, (uint64_t)s * 1000000000u, 0,
		     KP_IO_NO_OFF, t0);
	return left;
}

KP_EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
	kp_real_resolve();
	struct kp_tls *t = &kp_tls;
	if (KP_LIKELY(!sleep_want(t)))
		return kp_real.nanosleep(req, rem);
	uint64_t t0 = kp_ticks();
	int rc = kp_real.nanosleep(req, rem);
	int saved = errno;
	uint64_t ns = rc == 0 || saved != EFAULT ? ts_ns(req) : 0;
	errno = saved;
	kp_io_record(KP_IO_OP_SLEEP, -1, ns, rc, KP_IO_NO_OFF, t0);
	return rc;
}

/* Returns the error number and leaves errno alone: recorded as ret -1
 * with that error, as posix_fallocate. An absolute wake-up time is
 * recorded with req 0 (the ns asked are not known). */
KP_EXPORT int clock_nanosleep(clockid_t clk, int flags,
			      const struct timespec *req, struct timespec *rem)
{
	kp_real_resolve();
	struct kp_tls *t = &kp_tls;
	if (KP_LIKELY(!sleep_want(t)))
		return kp_real.clock_nanosleep(clk, flags, req, rem);
	uint64_t t0 = kp_ticks();
	int rc = kp_real.clock_nanosleep(clk, flags, req, rem);
	int saved = errno;
	uint64_t ns = (flags & TIMER_ABSTIME) || rc == EFAULT ? 0 : ts_ns(req);
	if (rc)
		errno = rc;
	kp_io_record(KP_IO_OP_SLEEP, -1, ns, rc ? -1 : 0, KP_IO_NO_OFF, t0);
	errno = saved;
	return rc;
}
