/* SPDX-License-Identifier: MIT */
/*
 * The public kprof_* API declared in kprof.h.
 */
#include "state.h"

#include <string.h>

/* kprof.h declares these weak for the app's sake; here they are strong. */
const char *kprof_version(void);
int kprof_flush(void);
uint64_t kprof_span_begin(const char *name);
void kprof_span_end(uint64_t id);
void kprof_record_event(const char *name, int kind, int64_t value);

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
	kp_busy_leave();
	return 0;
}

/*
 * Open spans of this thread, innermost last, so kprof_span_end() can give
 * the span's duration. Deeper nesting still records begin and end; only
 * the duration of the spans past the depth is left to the analyzer.
 */
#define SPAN_DEPTH 32
static __thread struct {
	uint64_t id, tsc;
} open_spans[SPAN_DEPTH];
static __thread unsigned n_open_spans;
static _Atomic uint64_t span_seq;

static size_t name_len(const char *name)
{
	return name ? strnlen(name, KP_MAX_STR_LEN) : 0;
}

KP_EXPORT uint64_t kprof_span_begin(const char *name)
{
	if (!kp_enter())
		return 0;
	uint64_t id = atomic_fetch_add(&span_seq, 1) + 1;
	uint64_t now = kp_ticks();
	int64_t v[KP_SPAN_NV] = { [KP_SPAN_ID] = (int64_t)id };
	if (n_open_spans < SPAN_DEPTH) {
		open_spans[n_open_spans].id = id;
		open_spans[n_open_spans].tsc = now;
	}
	n_open_spans++;
	kp_ring_push_ext(now, KP_REC_SPAN, 0, kp_stack_capture(), v, name,
			 name_len(name));
	kp_busy_leave();
	return id;
}

KP_EXPORT void kprof_span_end(uint64_t id)
{
	if (!id || !kp_enter())
		return;
	uint64_t now = kp_ticks();
	int64_t v[KP_SPAN_NV] = { [KP_SPAN_ID] = (int64_t)id };
	unsigned n = n_open_spans < SPAN_DEPTH ? n_open_spans : SPAN_DEPTH;
	unsigned i = n;
	while (i-- > 0 && open_spans[i].id != id)
		;
	if (i < n) {
		/* spans still open inside this one end with it, innermost
		 * first, so every begin in the trace gets its end */
		for (unsigned k = n; k-- > i;) {
			int64_t vk[KP_SPAN_NV] = {
				[KP_SPAN_ID] = (int64_t)open_spans[k].id,
				[KP_SPAN_DUR] =
					(int64_t)(now - open_spans[k].tsc),
			};
			kp_ring_push_ext(now, KP_REC_SPAN, 1, 0, vk, NULL, 0);
		}
		n_open_spans = i;
	} else {
		/* not among the tracked ones (nested too deep, or already
		 * ended): an end without a duration */
		kp_ring_push_ext(now, KP_REC_SPAN, 1, 0, v, NULL, 0);
	}
	kp_busy_leave();
}

KP_EXPORT void kprof_record_event(const char *name, int kind, int64_t value)
{
	/* kprof.h's enum kprof_event_kind: counter 0, gauge 1, duration 2
	 * (not included here: its weak declarations would make these weak) */
	if (kind < 0 || kind > 2 || !kp_enter())
		return;
	int64_t v[KP_CUSTOM_NV] = { [KP_CUSTOM_VALUE] = value };
	kp_ring_push_ext(0, KP_REC_CUSTOM, (uint8_t)kind, kp_stack_capture(),
			 v, name, name_len(name));
	kp_busy_leave();
}
