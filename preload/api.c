/* SPDX-License-Identifier: MIT */
/*
 * The public kprof_* API declared in kprof.h.
 */
#include "state.h"

/* kprof.h declares these weak for the app's sake; here they are strong. */
const char *kprof_version(void);
int kprof_flush(void);

KP_EXPORT const char *kprof_version(void)
{
	return KP_VERSION;
}

KP_EXPORT int kprof_flush(void)
{
	if (!kp_recording() || kp_tls.busy)
		return -1;
	kp_tls.busy = 1;
	kp_writer_sync(0, 0, 0);
	kp_tls.busy = 0;
	return 0;
}
