/* SPDX-License-Identifier: MIT */
/*
 * kp_strerror(): names for the KP_E* codes and -errno values. Returns only
 * static strings; must not allocate or touch errno-dependent state (it is
 * called from the preload's diagnostics path too), so no strerror(3).
 */
#include <errno.h>

#include "err.h"

const char *kp_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case KP_EFORMAT:
		return "not a kprof trace";
	case KP_EVERSION:
		return "trace format version not supported";
	case KP_ETRUNC:
		return "trace is truncated";
	case KP_ECORRUPT:
		return "trace is corrupt";
	case KP_ENOMEM:
		return "out of memory";
	case KP_ELIMIT:
		return "trace exceeds a format limit";
	case KP_EIO:
		return "i/o error";
	/*
	 * The -errno values a sink or source is likely to hand back. A fixed
	 * list rather than strerror(): that one is locale-dependent and not
	 * guaranteed to be free of allocation.
	 */
	case -EINVAL:
		return "invalid argument";
	case -ENOMEM:
		return "out of memory";
	case -EIO:
		return "i/o error";
	case -ENOSPC:
		return "no space left on device";
	case -EDQUOT:
		return "disk quota exceeded";
	case -EFBIG:
		return "file too large";
	case -EPIPE:
		return "broken pipe";
	case -EBADF:
		return "bad file descriptor";
	case -EINTR:
		return "interrupted system call";
	case -EAGAIN:
		return "resource temporarily unavailable";
	case -EACCES:
		return "permission denied";
	case -ENOENT:
		return "no such file or directory";
	case -EROFS:
		return "read-only file system";
	default:
		return err < 0 ? "unknown error" : "success";
	}
}
