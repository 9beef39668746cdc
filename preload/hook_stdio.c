/* SPDX-License-Identifier: MIT */
/*
 * The stdio layer of the I/O profiler (lib/io.h): fopen, fdopen, freopen,
 * fclose, fflush, fread, fwrite, fgets, fputs, getline, getdelim,
 * fprintf, vfprintf and their _FORTIFY_SOURCE forms. glibc's stdio does
 * its own reads and writes through internal calls that no interposer sees,
 * so these events are the only record of buffered I/O, and nothing is
 * counted twice: an fwrite is one FWRITE event of the bytes the app handed
 * over, whenever stdio flushes them.
 *
 * Streams on a terminal are not recorded (their bytes still count as seen
 * in the blind-spot summary). Offsets are not tracked on this layer (that
 * would need ftell, which takes the stream's lock): KP_IO_NO_OFF.
 */
#include "iohook.h"

#include <fcntl.h>
#include <string.h>

size_t __fread_chk(void *p, size_t plen, size_t size, size_t n, FILE *f);
char *__fgets_chk(char *s, size_t size, int n, FILE *f);
int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap);
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...);

static int stream_fd(FILE *f)
{
	return f ? fileno(f) : -1;
}

/* Record a stdio call: ret bytes moved; failed: errno says why. */
static void srec(uint8_t op, FILE *f, uint64_t req, int64_t ret, int failed,
		 uint64_t t0)
{
	uint64_t t1 = kp_ticks();
	int saved = errno;
	struct kp_tls *t = &kp_tls;
	t->busy = 1;
	int fd = stream_fd(f);
	int err = failed ? (saved ? saved : EIO) : 0;
	if (ret > 0)
		kp_io_count(op, (uint64_t)ret);
	struct kp_fdent *e = fd >= 0 ? kp_fd_get(fd, t0) : NULL;
	if (!e || e->kind != KP_FDK_TTY) {
		int64_t v[KP_IO_NV];
		v[KP_IO_FD] = fd;
		v[KP_IO_REQ] = (int64_t)req;
		/* a failed call: -errno (the bytes of a partial fwrite
		 * before an error are not kept) */
		v[KP_IO_RET] = err ? -(int64_t)err : ret;
		v[KP_IO_OFF] = KP_IO_NO_OFF;
		v[KP_IO_DUR] = (int64_t)(t1 - t0);
		kp_ring_push_ext(t1, KP_REC_IO, op, kp_io_stack(), v, NULL, 0);
	}
	kp_busy_leave();
	errno = saved;
}

static int mode_flags(const char *mode)
{
	int fl = 0;
	if (mode && strchr(mode, 'a'))
		fl |= O_APPEND;
	if (mode && strchr(mode, '+'))
		fl |= O_RDWR;
	else if (mode && (mode[0] == 'w' || mode[0] == 'a'))
		fl |= O_WRONLY;
	return fl;
}

static void stream_opened(FILE *f, uint8_t how, const char *path,
			  const char *mode, uint64_t t0, int src)
{
	int saved = errno;
	kp_tls.busy = 1;
	int fd = f ? stream_fd(f) : -1;
	kp_fd_opened(fd, how, AT_FDCWD, path, mode_flags(mode), t0,
		     f ? 0 : saved, src,
		     kp_io_stack());
	kp_busy_leave();
	errno = saved;
}

/* ---- open and close ------------------------------------------------------- */

static FILE *do_fopen(const char *path, const char *mode)
{
	IO_REAL(fopen);
	kp_app_counts_threads(AT_FDCWD, path, "/stat");
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fopen(path, mode);
	uint64_t t0 = kp_ticks();
	FILE *f = kp_io_real.fopen(path, mode);
	stream_opened(f, KP_FDH_FOPEN, path, mode, t0, -1);
	return f;
}

KP_EXPORT FILE *fopen(const char *path, const char *mode)
{
	return do_fopen(path, mode);
}

KP_EXPORT FILE *fopen64(const char *path, const char *mode)
{
	return do_fopen(path, mode);
}

KP_EXPORT FILE *fdopen(int fd, const char *mode)
{
	IO_REAL(fdopen);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fdopen(fd, mode);
	uint64_t t0 = kp_ticks();
	FILE *f = kp_io_real.fdopen(fd, mode);
	stream_opened(f, KP_FDH_FDOPEN, "", mode, t0, fd);
	return f;
}

static FILE *do_freopen(const char *path, const char *mode, FILE *old)
{
	IO_REAL(freopen);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.freopen(path, mode, old);
	uint64_t t0 = kp_ticks();
	FILE *f = kp_io_real.freopen(path, mode, old);
	stream_opened(f, KP_FDH_FOPEN, path ? path : "", mode, t0, -1);
	return f;
}

KP_EXPORT FILE *freopen(const char *path, const char *mode, FILE *old)
{
	return do_freopen(path, mode, old);
}

KP_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *old)
{
	return do_freopen(path, mode, old);
}

KP_EXPORT int fclose(FILE *f)
{
	IO_REAL(fclose);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fclose(f);
	int saved0 = errno; /* fileno sets EBADF on a stream without an fd */
	int fd = stream_fd(f);
	errno = saved0;
	uint64_t t0 = kp_ticks();
	int rc = kp_io_real.fclose(f);
	int saved = errno;
	if (fd >= 0) {
		t->busy = 1;
		kp_fd_closed(fd, KP_FDCH_FCLOSE, t0, rc ? saved : 0,
			     kp_io_stack());
		kp_busy_leave();
	}
	errno = saved;
	return rc;
}

KP_EXPORT int fflush(FILE *f)
{
	IO_REAL(fflush);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fflush(f);
	uint64_t t0 = kp_ticks();
	int rc = kp_io_real.fflush(f);
	srec(KP_IO_OP_FFLUSH, f, 0, rc == 0 ? 0 : -1, rc != 0, t0);
	return rc;
}

/* ---- data ------------------------------------------------------------------- */

KP_EXPORT size_t fread(void *p, size_t size, size_t n, FILE *f)
{
	IO_REAL(fread);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fread(p, size, n, f);
	uint64_t t0 = kp_ticks();
	size_t r = kp_io_real.fread(p, size, n, f);
	srec(KP_IO_OP_FREAD, f, (uint64_t)size * n, (int64_t)(r * size),
	     r < n && ferror(f), t0);
	return r;
}

KP_EXPORT size_t __fread_chk(void *p, size_t plen, size_t size, size_t n,
			     FILE *f)
{
	IO_REAL(fread_chk);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fread_chk(p, plen, size, n, f);
	uint64_t t0 = kp_ticks();
	size_t r = kp_io_real.fread_chk(p, plen, size, n, f);
	srec(KP_IO_OP_FREAD, f, (uint64_t)size * n, (int64_t)(r * size),
	     r < n && ferror(f), t0);
	return r;
}

KP_EXPORT size_t fwrite(const void *p, size_t size, size_t n, FILE *f)
{
	IO_REAL(fwrite);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fwrite(p, size, n, f);
	uint64_t t0 = kp_ticks();
	size_t r = kp_io_real.fwrite(p, size, n, f);
	srec(KP_IO_OP_FWRITE, f, (uint64_t)size * n, (int64_t)(r * size),
	     r < n, t0);
	return r;
}

KP_EXPORT char *fgets(char *s, int n, FILE *f)
{
	IO_REAL(fgets);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fgets(s, n, f);
	uint64_t t0 = kp_ticks();
	char *r = kp_io_real.fgets(s, n, f);
	srec(KP_IO_OP_FGETS, f, n > 0 ? (uint64_t)n : 0,
	     r ? (int64_t)strlen(r) : 0, !r && ferror(f), t0);
	return r;
}

KP_EXPORT char *__fgets_chk(char *s, size_t size, int n, FILE *f)
{
	IO_REAL(fgets_chk);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fgets_chk(s, size, n, f);
	uint64_t t0 = kp_ticks();
	char *r = kp_io_real.fgets_chk(s, size, n, f);
	srec(KP_IO_OP_FGETS, f, n > 0 ? (uint64_t)n : 0,
	     r ? (int64_t)strlen(r) : 0, !r && ferror(f), t0);
	return r;
}

KP_EXPORT int fputs(const char *s, FILE *f)
{
	IO_REAL(fputs);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.fputs(s, f);
	uint64_t t0 = kp_ticks();
	int r = kp_io_real.fputs(s, f);
	uint64_t len = strlen(s);
	srec(KP_IO_OP_FPUTS, f, len, r >= 0 ? (int64_t)len : -1, r < 0, t0);
	return r;
}

KP_EXPORT ssize_t getdelim(char **line, size_t *n, int delim, FILE *f)
{
	IO_REAL(getdelim);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.getdelim(line, n, delim, f);
	uint64_t t0 = kp_ticks();
	ssize_t r = kp_io_real.getdelim(line, n, delim, f);
	int failed = r < 0 && f && ferror(f);
	srec(KP_IO_OP_GETDELIM, f, 0, r > 0 ? r : (failed ? -1 : 0), failed,
	     t0);
	return r;
}

KP_EXPORT ssize_t getline(char **line, size_t *n, FILE *f)
{
	IO_REAL(getline);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.getline(line, n, f);
	uint64_t t0 = kp_ticks();
	ssize_t r = kp_io_real.getline(line, n, f);
	int failed = r < 0 && f && ferror(f);
	srec(KP_IO_OP_GETDELIM, f, 0, r > 0 ? r : (failed ? -1 : 0), failed,
	     t0);
	return r;
}

static int do_vfprintf(FILE *f, const char *fmt, va_list ap)
{
	IO_REAL(vfprintf);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.vfprintf(f, fmt, ap);
	uint64_t t0 = kp_ticks();
	int r = kp_io_real.vfprintf(f, fmt, ap);
	srec(KP_IO_OP_FPRINTF, f, r > 0 ? (uint64_t)r : 0, r, r < 0, t0);
	return r;
}

static int do_vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap)
{
	IO_REAL(vfprintf_chk);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.vfprintf_chk(f, flag, fmt, ap);
	uint64_t t0 = kp_ticks();
	int r = kp_io_real.vfprintf_chk(f, flag, fmt, ap);
	srec(KP_IO_OP_FPRINTF, f, r > 0 ? (uint64_t)r : 0, r, r < 0, t0);
	return r;
}

KP_EXPORT int vfprintf(FILE *f, const char *fmt, va_list ap)
{
	return do_vfprintf(f, fmt, ap);
}

KP_EXPORT int fprintf(FILE *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = do_vfprintf(f, fmt, ap);
	va_end(ap);
	return r;
}

KP_EXPORT int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap)
{
	return do_vfprintf_chk(f, flag, fmt, ap);
}

KP_EXPORT int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = do_vfprintf_chk(f, flag, fmt, ap);
	va_end(ap);
	return r;
}
