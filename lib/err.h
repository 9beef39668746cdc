/* SPDX-License-Identifier: MIT */
/*
 * Error codes of lib/. Every lib/ function that can fail returns int:
 * 0 (or a positive count) on success, a negative code on failure. Codes are
 * either -errno or one of the KP_E* values below, which sit above the errno
 * range so the two never collide.
 */
#ifndef KP_ERR_H
#define KP_ERR_H

enum kp_err {
	KP_EFORMAT = -4096,  /* not a kprof trace (bad magic) */
	KP_EVERSION = -4097, /* trace written by a newer, incompatible format */
	KP_ETRUNC = -4098,   /* input ends in the middle of a header or frame */
	KP_ECORRUPT = -4099, /* a frame or record does not decode */
	KP_ENOMEM = -4100,   /* the allocator returned NULL */
	KP_ELIMIT = -4101,   /* a length or count exceeds a documented limit */
	KP_EIO = -4102,      /* the sink or source failed */
};

/* A static, lowercase description of err (a KP_E* or -errno value). */
const char *kp_strerror(int err);

#endif
