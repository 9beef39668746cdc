/* SPDX-License-Identifier: MIT */
/*
 * Read-ahead: a trace's reader (read, zstd, decode) on a thread of its own,
 * working ahead of the analysis. On an allocation-heavy trace the reading
 * is some 40 % of the work, so with a second core free the pass runs up to
 * about 1.4 times as fast (the alloc_bench trace, tests/bench/HISTORY.md);
 * it stays one streaming pass.
 *
 * The reader's results go over in chunks, RA_CHUNKS of them in flight, so
 * memory stays bounded whatever the trace's size. A chunk holds, in the
 * order the reader produced them, the batches of kp_reader_mem(), the
 * records of kp_reader_next() (copied with everything they point at, since
 * the reader reuses its frame buffer) and, at the end, the reader's last
 * return code. The analysis thus sees exactly the calls' results in the
 * calls' order: its output is the same as reading inline, which is what
 * happens, with the same code filling one chunk at a time on demand, if
 * the process may run on one CPU only or the thread cannot be started.
 *
 * The two threads share only the chunks and the count of full ones, under
 * one mutex: a chunk is the producer's until the count says it is full
 * and the consumer's until it gives it back (the mutex orders each
 * hand-over). Nothing else of the analysis is touched by the producer:
 * the reader is used by it alone between kp_ra_start() and kp_ra_end(),
 * and its header was read before.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"

/* A hand-over costs two lock round trips and often a wake-up: a trace of
 * deep, varied stacks (g++'s, 79,000 STACK records of up to 64 frames and
 * 64,000 I/O records among 4.5 M events) filled chunks of 256 records and
 * 64 KiB after a few hundred events, and the hand-overs took 14 % of the
 * analysis; with 2,048 records and 1 MiB per chunk (~2 MiB each) the
 * analysis ran 5 to 7 % faster on that trace and on alloc_bench's.
 * The analysis takes a frame's events in one go when the frame is whole
 * (~12,000 of alloc_bench's): with 4 chunks in flight (16,384 memory
 * records) the reader filled them all meanwhile and slept, and each side
 * slept some 380 times on that trace; with 8, alloc_bench's traces ran at
 * 21.0 and 30.5 M events/s (stacks on, off) against 19.6 and 28.5
 * (medians of 11 alternating runs; 16 did no better than 8). Peak RSS:
 * 14 MB against 13. A short spin before a sleep gained a little more
 * then, and nothing once kp_dec_mem fetched its lines ahead; with another
 * job on one of the two cores it lost a third (11.3 against 13.1 M
 * events/s with stacks): it is not done. */
#define RA_CHUNKS 8
#define RA_MEM 4096     /* memory records per chunk */
#define RA_RECS 2048    /* other records per chunk */
#define RA_BYTES (1u << 20) /* what they point at */

/* The most bytes one record points at: a MODULE's path and build id (a
 * STACK's pcs take less), each rounded up for alignment. */
#define RA_REC_BYTES_MAX (2 * (KP_MAX_STR_LEN + 8))

/* n records at mem[off], or with n = 0 the record recs[off]. */
struct ra_item {
	uint32_t off, n;
};

struct ra_chunk {
	struct kp_mem_rec mem[RA_MEM];
	struct kp_rec recs[RA_RECS];
	struct ra_item items[RA_MEM + RA_RECS];
	_Alignas(8) unsigned char bytes[RA_BYTES];
	size_t nmem, nrecs, nitems, nbytes;
	int end;            /* the reader's last call is in this chunk */
	int rc;             /* its return (0, or an error) */
	uint64_t frames;    /* kp_reader_frames() then */
};

struct kp_ra {
	struct kp_reader *r;
	struct ra_chunk *chunks;
	/* the consumer's place */
	size_t rd;          /* chunk being read (index) */
	size_t pos;         /* next item in it */
	int have;           /* chunk rd is the consumer's */
	/* shared, under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a chunk filled or given back, or stop */
	size_t full;        /* chunks filled and not given back yet */
	int stop;
	int threaded;
	pthread_t thread;
	size_t wr;          /* producer: the chunk it fills next */
};

/* Copy n bytes of src into the chunk; NULL stays NULL. */
static const void *own(struct ra_chunk *c, const void *src, size_t n)
{
	if (!src)
		return NULL;
	unsigned char *p = c->bytes + c->nbytes;
	if (n)
		memcpy(p, src, n);
	c->nbytes += (n + 7) & ~(size_t)7;
	return p;
}

/* Make rec independent of the reader's buffers. */
static void own_rec(struct ra_chunk *c, struct kp_rec *rec)
{
	if (rec->type >= KP_REC_EXT_MIN) {
		rec->u.ext.str = own(c, rec->u.ext.str, rec->u.ext.str_len);
		return;
	}
	switch (rec->type) {
	case KP_REC_STACK:
		rec->u.stack.pcs = own(c, rec->u.stack.pcs,
				       rec->u.stack.pcs ?
				       rec->u.stack.depth * sizeof(uint64_t) :
				       0);
		break;
	case KP_REC_MODULE:
	case KP_REC_UNMODULE:
		rec->u.module.path = own(c, rec->u.module.path,
					 rec->u.module.path_len);
		rec->u.module.build_id = own(c, rec->u.module.build_id,
					     rec->u.module.build_id_len);
		break;
	case KP_REC_THREAD_START:
		rec->u.thread.name = own(c, rec->u.thread.name,
					 rec->u.thread.name_len);
		break;
	case KP_REC_EXEC:
		rec->u.exec.path = own(c, rec->u.exec.path,
				       rec->u.exec.path_len);
		break;
	case KP_REC_QUERY_TEXT:
		rec->u.qtext.text = own(c, rec->u.qtext.text,
					rec->u.qtext.len);
		break;
	case KP_REC_JIT_CODE:
		rec->u.jit.name = own(c, rec->u.jit.name, rec->u.jit.name_len);
		break;
	default:
		break;
	}
}

/* Fill chunk c with the reader's next results. */
static void ra_fill(struct kp_reader *r, struct ra_chunk *c)
{
	c->nmem = c->nrecs = c->nitems = c->nbytes = 0;
	c->end = 0;
	while (c->nmem < RA_MEM && c->nrecs < RA_RECS &&
	       RA_BYTES - c->nbytes >= RA_REC_BYTES_MAX) {
		size_t n = kp_reader_mem(r, &c->mem[c->nmem], RA_MEM - c->nmem);
		if (n) {
			c->items[c->nitems++] = (struct ra_item){
				(uint32_t)c->nmem, (uint32_t)n };
			c->nmem += n;
			continue;
		}
		struct kp_rec *rec = &c->recs[c->nrecs];
		int rc = kp_reader_next(r, rec);
		if (rc == 1) {
			own_rec(c, rec);
			c->items[c->nitems++] = (struct ra_item){
				(uint32_t)c->nrecs++, 0 };
			continue;
		}
		c->end = 1;
		c->rc = rc;
		c->frames = kp_reader_frames(r);
		return;
	}
}

static void *ra_main(void *arg)
{
	struct kp_ra *ra = arg;

	for (;;) {
		pthread_mutex_lock(&ra->lock);
		while (ra->full == RA_CHUNKS && !ra->stop)
			pthread_cond_wait(&ra->cond, &ra->lock);
		int stop = ra->stop;
		pthread_mutex_unlock(&ra->lock);
		if (stop)
			break;
		struct ra_chunk *c = &ra->chunks[ra->wr];
		ra_fill(ra->r, c);
		int end = c->end; /* c is the consumer's once counted */
		ra->wr = (ra->wr + 1) % RA_CHUNKS;
		pthread_mutex_lock(&ra->lock);
		ra->full++;
		pthread_cond_broadcast(&ra->cond);
		pthread_mutex_unlock(&ra->lock);
		if (end)
			break;
	}
	return NULL;
}

/* Whether this process may run on more than one CPU. */
static int several_cpus(void)
{
	cpu_set_t set;

	return sched_getaffinity(0, sizeof(set), &set) != 0 ||
	       CPU_COUNT(&set) > 1;
}

struct kp_ra *kp_ra_start(struct kp_reader *r)
{
	struct kp_ra *ra = xcalloc(1, sizeof(*ra));

	ra->r = r;
	ra->chunks = xmalloc(RA_CHUNKS * sizeof(*ra->chunks));
	pthread_mutex_init(&ra->lock, NULL);
	pthread_cond_init(&ra->cond, NULL);
	/* On one CPU the thread would only add its hand-overs (~3 %). */
	ra->threaded = several_cpus() &&
		       pthread_create(&ra->thread, NULL, ra_main, ra) == 0;
	return ra;
}

/* The consumer's next chunk, waiting for the producer (or filling it). */
static struct ra_chunk *ra_take(struct kp_ra *ra)
{
	struct ra_chunk *c = &ra->chunks[ra->rd];

	if (!ra->threaded) {
		ra_fill(ra->r, c);
	} else {
		pthread_mutex_lock(&ra->lock);
		while (!ra->full)
			pthread_cond_wait(&ra->cond, &ra->lock);
		pthread_mutex_unlock(&ra->lock);
	}
	ra->have = 1;
	ra->pos = 0;
	return c;
}

/* Give the consumer's chunk back to the producer. */
static void ra_give(struct kp_ra *ra)
{
	ra->have = 0;
	if (ra->threaded) {
		pthread_mutex_lock(&ra->lock);
		ra->full--;
		pthread_cond_broadcast(&ra->cond);
		pthread_mutex_unlock(&ra->lock);
		ra->rd = (ra->rd + 1) % RA_CHUNKS;
	}
}

int kp_ra_next(struct kp_ra *ra, const struct kp_mem_rec **m, size_t *n,
	       const struct kp_rec **rec, uint64_t *frames)
{
	for (;;) {
		struct ra_chunk *c = ra->have ? &ra->chunks[ra->rd]
					      : ra_take(ra);
		if (ra->pos < c->nitems) {
			struct ra_item it = c->items[ra->pos++];
			if (it.n) {
				*m = &c->mem[it.off];
				*n = it.n;
				return 2;
			}
			*rec = &c->recs[it.off];
			return 1;
		}
		if (c->end) {
			*frames = c->frames;
			return c->rc; /* and stays so: the chunk is kept */
		}
		ra_give(ra);
	}
}

void kp_ra_end(struct kp_ra *ra)
{
	if (!ra)
		return;
	if (ra->threaded) {
		pthread_mutex_lock(&ra->lock);
		ra->stop = 1;
		pthread_cond_broadcast(&ra->cond);
		pthread_mutex_unlock(&ra->lock);
		pthread_join(ra->thread, NULL);
	}
	pthread_mutex_destroy(&ra->lock);
	pthread_cond_destroy(&ra->cond);
	free(ra->chunks);
	free(ra);
}
