/*
 * The span and custom-event API of preload/kprof.h, and extension events
 * in general (tests/integ/test_spans.py): THREADS threads each open
 * ROUNDS nested spans "outer"/"inner" and record a counter (+i), a gauge
 * (i) and a duration (1000 * i ns) in each round; names are long (cut to
 * the trace's string limit) and of every length around the ring's slot
 * size, so events cross slot and ring boundaries. At the end, "left-open"
 * is left open inside "wrap" (it ends with it) and "never-ended" is never
 * ended.
 *
 *   spans ROUNDS THREADS
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kprof.h"

static int rounds;
static char longname[6000];

static void *worker(void *arg)
{
	long t = (long)arg;
	char name[200];

	for (int i = 0; i < rounds; i++) {
		uint64_t outer = kprof_span_begin_if_loaded("outer");
		/* names of 0..199 bytes: every payload split over the slots */
		int len = (i + (int)t) % 200;
		memset(name, 'a' + (int)(t % 26), (size_t)len);
		name[len] = '\0';
		uint64_t inner = kprof_span_begin_if_loaded(name);
		kprof_record_event_if_loaded("counter", KPROF_COUNTER, i);
		kprof_record_event_if_loaded("gauge", KPROF_GAUGE, -i);
		kprof_record_event_if_loaded(i % 100 ? "duration" : longname,
					     KPROF_DURATION, 1000 * (int64_t)i);
		kprof_span_end_if_loaded(inner);
		kprof_span_end_if_loaded(outer);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	rounds = argc > 1 ? atoi(argv[1]) : 100;
	int nthreads = argc > 2 ? atoi(argv[2]) : 1;
	pthread_t th[64];

	memset(longname, 'L', sizeof(longname) - 1);
	if (nthreads > 64)
		nthreads = 64;
	for (long i = 1; i < nthreads; i++)
		pthread_create(&th[i], NULL, worker, (void *)i);
	worker((void *)0);
	for (int i = 1; i < nthreads; i++)
		pthread_join(th[i], NULL);
	/* a span left open inside another ends with it; one never ends */
	uint64_t wrap = kprof_span_begin_if_loaded("wrap");
	kprof_span_begin_if_loaded("left-open");
	kprof_span_end_if_loaded(wrap);
	kprof_span_begin_if_loaded("never-ended");
	/* unknown kinds and span id 0 are ignored */
	kprof_record_event_if_loaded("bad", 7, 1);
	kprof_span_end_if_loaded(0);
	printf("loaded=%d\n", kprof_loaded());
	return 0;
}
