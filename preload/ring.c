/* SPDX-License-Identifier: MIT */
/*
 * Per-thread rings: each thread that records gets its own single-producer,
 * single-consumer ring of 32-byte slots (an event takes one or more, see
 * state.h; a run of memory events the thread encoded itself, a header
 * slot and their bytes); the writer thread is the only consumer. The producer path
 * takes no lock and never allocates: the slots are filled, then `head` is
 * published with release order.
 *
 * Rings live in their own mmap and are never unmapped: a ring whose thread
 * ended is drained by the writer, then reused by the next new thread. Events
 * a thread makes after its key destructor ran (glibc frees its TLS after
 * that) go to one shared ring under a spin lock, each event after a
 * KP_EV_TID slot naming its thread.
 *
 * When a ring is full the default policy waits for the writer (lossless);
 * KOTOBA_PROFILE_OVERFLOW=drop drops the event and counts it.
 */
#include "state.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_key_t ring_key;
static uint64_t ring_slots;

static struct kp_ring *ring_map(uint64_t slots)
{
	size_t len = sizeof(struct kp_ring) + slots * sizeof(struct kp_ev);
	len = (len + 4095) & ~(size_t)4095;
	struct kp_ring *r = kp_own_map(len, 0);
	if (!r)
		return NULL;
	r->mask = slots - 1;
	r->gmask = KP_RING_G(slots) - 1;
	atomic_store(&r->open_run, KP_NO_RUN);
	r->map_len = len;
	atomic_store(&r->state, KP_RING_ACTIVE);
	return r;
}

static void registry_push(struct kp_ring *r)
{
	struct kp_ring *old = atomic_load(&kp.rings);
	do
		r->next = old;
	while (!atomic_compare_exchange_weak(&kp.rings, &old, r));
}

static void key_destructor(void *arg)
{
	(void)arg;
	kp_ring_thread_exit();
}

int kp_ring_init(void)
{
	uint64_t want = (uint64_t)kp.cfg.buffer_kb * 1024 / sizeof(struct kp_ev);
	ring_slots = 64;
	while (ring_slots < want)
		ring_slots <<= 1;
	if (pthread_key_create(&ring_key, key_destructor) != 0)
		return -1;
	kp.shared = ring_map(ring_slots);
	if (!kp.shared)
		return -1;
	registry_push(kp.shared);
	return 0;
}

/* Keeps errno: the producers' hot paths call it between the app's call
 * and their return to the app, without saving errno themselves. */
void kp_writer_wake(void)
{
	int saved = errno;
	atomic_fetch_add(&kp.wake_seq, 1);
	syscall(SYS_futex, &kp.wake_seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	errno = saved;
}

void kp_writer_poke(void)
{
	if (atomic_load_explicit(&kp.writer_sleeping, memory_order_relaxed))
		kp_writer_wake();
}

struct kp_ring *kp_ring_self(void)
{
	struct kp_tls *t = &kp_tls;
	if (KP_LIKELY(t->ring != NULL))
		return t->ring;
	if (t->dead)
		return NULL;
	if (!t->tid)
		t->tid = (uint32_t)kp_gettid();

	struct kp_ring *r;
	for (r = atomic_load(&kp.rings); r; r = r->next) {
		int st = KP_RING_FREE;
		if (r != kp.shared &&
		    atomic_compare_exchange_strong(&r->state, &st,
						   KP_RING_ACTIVE))
			break;
	}
	if (!r) {
		r = ring_map(ring_slots);
		if (!r)
			return NULL;
		registry_push(r);
	}
	r->tid = t->tid;
	if (KP_UNLIKELY(kp_side_on) && r->pthread &&
	    r->pthread != (uintptr_t)pthread_self())
		kp_leak_thread_gone(r->pthread); /* its hint kept */
	r->pthread = (uintptr_t)pthread_self();
	t->ring = r;
	if (!atomic_load(&kp.writer_up))
		kp_ring_parked(); /* held back (harmless when not parked) */
	pthread_setspecific(ring_key, r);

	char name[16];
	kp_thread_name_self(name);
	kp_ring_push(0, KP_REC_THREAD_START, 0, 0, name, 16);
	return r;
}

/*
 * Is this process a copy of the traced one that no fork handler saw (a
 * clone by a system call no interposer catches, hook_clone.c)? It has the
 * rings but not the writer thread, so nothing will ever drain them: the
 * ring has not moved for ORPHAN_ROUNDS waits, the pid is not the traced
 * process's, and the memory is not shared with it (kcmp: a vfork child
 * shares it, and the traced process's writer drains the ring for it).
 * Then this process stops recording, says so, and goes on untraced.
 */
#define ORPHAN_ROUNDS 50 /* of 2 ms */
static int orphaned(void)
{
	long pid = syscall(SYS_getpid);
	if (pid == kp.pid ||
	    syscall(SYS_kcmp, pid, (long)kp.pid, KCMP_VM, 0, 0) == 0)
		return 0;
	atomic_store(&kp.run, KP_ST_OFF);
	atomic_store(&kp.writer_up, 0);
	kp_warn("process %ld was cloned from %d without fork's handlers (a raw "
		"clone system call): not traced", pid, (int)kp.pid);
	return 1;
}

/* tail_cache held back to let r's thread fill at most
 * KP_RING_PARKED_SLOTS slots from head h (not beyond tail t). */
static uint64_t parked_view(const struct kp_ring *r, uint64_t h, uint64_t t)
{
	uint64_t lim = h + KP_RING_PARKED_SLOTS - (r->mask + 1);
	return (int64_t)(lim - t) < 0 ? lim : t;
}

void kp_ring_parked(void)
{
	struct kp_ring *r = kp_tls.ring;
	if (r)
		r->tail_cache = parked_view(
			r, atomic_load_explicit(&r->head, memory_order_relaxed),
			r->tail_cache);
}

/* The producer's new view of r's tail (tail_cache) when the ring looks
 * full at head h: the writer's tail; held back while the writer is
 * parked, after a flush if one is due (kp_ring_parked). */
static uint64_t tail_view(struct kp_ring *r, uint64_t h)
{
	if (KP_UNLIKELY(!atomic_load_explicit(&kp.writer_up,
					      memory_order_relaxed)) &&
	    r != kp.shared && kp_writer_parked_tick())
		return parked_view(r, h, atomic_load_explicit(
						 &r->tail, memory_order_acquire));
	return atomic_load_explicit(&r->tail, memory_order_acquire);
}

/* Wait for space in a full ring, or give up (and count) when no writer
 * will ever drain it. A wait is counted with its time, for the trace's
 * SNAPSHOT records: what kprof cost the app beyond its hooks.
 *
 * The thread sleeps on the ring's space_seq until the writer has drained
 * the ring (writer.c wakes the ring's waiters after moving its tail), 2 ms
 * at most a round, so a lost wake-up costs no more. It does not spin:
 * with hundreds of threads waiting, sched_yield and 50 us sleeps kept them
 * all runnable, and the writer (SCHED_BATCH) got a few % of the CPU: 300
 * threads making 200,000 allocations each ran 58 s where they take 1 s
 * without kprof (9.5 s now).
 * By the system call, not glibc's futex wrappers or nanosleep (kprof's
 * own, which a call from here would bind to): those are cancellation
 * points, and a thread cancelled here would leave kprof's code with busy
 * set, its cleanup handlers' frees unrecorded (tests/integ/test_cancel.py).
 * @return 1 when there is space. */
static int wait_for_space(struct kp_ring *r, uint64_t h)
{
	if (!atomic_load(&kp.writer_up)) {
		/* no writer thread: this one writes, if the writer stepped
		 * out for the app (lifecycle.c) */
		if (!kp_writer_parked())
			return 0;
		kp_writer_sync(0, 0, 0);
		return h - atomic_load(&r->tail) <= r->mask;
	}
	uint64_t t0 = kp_mono_ns();
	uint64_t tail0 = atomic_load(&r->tail);
	int ok = 0, saved = errno, still = 0; /* EINTR, ETIMEDOUT, EAGAIN */
	while (atomic_load(&kp.writer_up)) {
		if (atomic_load(&r->tail) != tail0) {
			tail0 = atomic_load(&r->tail);
			still = 0;
		} else if (++still == ORPHAN_ROUNDS && orphaned()) {
			break;
		}
		uint32_t seq = atomic_load(&r->space_seq);
		/* the writer moves the tail, then reads waiters; this adds
		 * to waiters, then reads the tail (both sequentially
		 * consistent): one of the two sees the other */
		atomic_fetch_add(&r->waiters, 1);
		if (h - atomic_load(&r->tail) <= r->mask) {
			atomic_fetch_sub(&r->waiters, 1);
			ok = 1;
			break;
		}
		kp_writer_wake();
		struct timespec ts = { 0, 2000000 };
		syscall(SYS_futex, &r->space_seq, FUTEX_WAIT_PRIVATE, seq, &ts,
			NULL, 0);
		atomic_fetch_sub(&r->waiters, 1);
	}
	atomic_fetch_add_explicit(&kp.ring_waits, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&kp.ring_wait_ns, kp_mono_ns() - t0,
				  memory_order_relaxed);
	errno = saved;
	return ok;
}

/* Wait until n more slots fit at head h, or count the event as lost.
 * @return 1 when there is room. */
static int make_room(struct kp_ring *r, uint64_t h, uint64_t n, unsigned type)
{
	r->tail_cache = tail_view(r, h);
	if (h + n - r->tail_cache <= r->mask + 1)
		return 1;
	/* (held back, parked: an event of more slots fits the real room).
	 * The drop policy does not wait for a writer thread; with the
	 * writer parked, this thread writes the ring out (wait_for_space)
	 * under either policy. */
	uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (h + n - t > r->mask + 1 &&
	    ((kp.cfg.overflow == KP_OVERFLOW_DROP &&
	      atomic_load_explicit(&kp.writer_up, memory_order_relaxed)) ||
	     !wait_for_space(r, h + n - 1))) {
		atomic_fetch_add_explicit(&r->lost[type & KP_REC_TYPE_MAX], 1,
					  memory_order_relaxed);
		return 0;
	}
	r->tail_cache = tail_view(r, h);
	return 1;
}


/* The ring this thread pushes to, with its tid set; the shared ring (and
 * its lock taken) for a dying thread or when no ring could be mapped. */
static struct kp_ring *ring_for_push(uint32_t *tid)
{
	struct kp_tls *t = &kp_tls;
	struct kp_ring *r = kp_ring_self();
	if (KP_LIKELY(r != NULL)) {
		*tid = t->tid;
		return r;
	}
	if (!t->tid)
		t->tid = (uint32_t)kp_gettid();
	*tid = t->tid;
	kp_spin_lock(&kp.shared_lock);
	return kp.shared;
}

/* Where the payload of an event goes next. */
struct payload_out {
	struct kp_ring *r;
	uint64_t h;      /* the head slot */
	uint8_t *dst;    /* free bytes in the current slot ... */
	size_t room;     /* ... and how many */
	uint64_t next;   /* continuation slot to open next, from h */
	uint64_t tsc;
};

static void payload_put(struct payload_out *o, const void *src, size_t n)
{
	const uint8_t *s = src;
	while (n) {
		if (!o->room) {
			struct kp_ev_cont *c = (struct kp_ev_cont *)
				&o->r->slots[(o->h + o->next++) & o->r->mask];
			c->tsc = o->tsc;
			o->dst = c->data;
			o->room = KP_EV_CONT_PAYLOAD;
		}
		size_t take = n < o->room ? n : o->room;
		memcpy(o->dst, s, take);
		o->dst += take;
		o->room -= take;
		s += take;
		n -= take;
	}
}

/*
 * Push one event whose payload is p1[0..n1) then p2[0..n2), into this
 * thread's ring, or the shared ring after a KP_EV_TID slot; or count it
 * lost when there is no room (drop policy, no writer).
 */
static void push_event(uint64_t tsc, uint8_t type, uint8_t kind,
		       uint32_t stack, const void *p1, size_t n1,
		       const void *p2, size_t n2)
{
	uint32_t len = (uint32_t)(n1 + n2);
	uint32_t tid;
	if (KP_UNLIKELY(kp_tls.run_p != NULL))
		kp_run_close();
	struct kp_ring *r = ring_for_push(&tid);
	int shared = r == kp.shared;
	uint64_t n = 1 + kp_ev_nx(len) + (uint64_t)shared;
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	if (KP_UNLIKELY(h + n - r->tail_cache > r->mask + 1) &&
	    !make_room(r, h, n, type))
		goto out;

	uint64_t u = h;
	if (shared) {
		struct kp_ev *m = &r->slots[u++ & r->mask];
		kp_ev_put_head(m, tsc, KP_EV_TID, 0, 8, 0);
		m->a = tid;
		m->b = 0;
	}
	struct kp_ev *ev = &r->slots[u & r->mask];
	kp_ev_put_head(ev, tsc, type, kind, len, stack);
	ev->a = 0;
	ev->b = 0;
	struct payload_out o = { r, u, (uint8_t *)&ev->a, KP_EV_HEAD_PAYLOAD,
				 1, tsc };
	payload_put(&o, p1, n1);
	payload_put(&o, p2, n2);
	kp_ring_publish(r, h, n);
out:
	if (KP_UNLIKELY(shared))
		kp_spin_unlock(&kp.shared_lock);
}

void kp_ring_push(uint64_t tsc, uint8_t type, uint8_t kind, uint32_t stack,
		  const void *payload, uint32_t len)
{
	if (KP_UNLIKELY(kp_qt.npending)) /* deferred QUERY_BEGINs (query.c) */
		kp_query_flush();
	push_event(tsc ? tsc : kp_ticks(), type, kind, stack, payload, len,
		   NULL, 0);
}

void kp_run_close(void)
{
	struct kp_tls *t = &kp_tls;
	struct kp_ev_run *hd = t->run;
	hd->last_tsc = t->run_tsc;
	hd->last_ptr = t->run_ptr;
	hd->nslots = (uint16_t)((t->run_end - (uint8_t *)hd) /
				sizeof(struct kp_ev));
	atomic_store_explicit(&hd->len,
			      (uint32_t)(t->run_p - (uint8_t *)(hd + 1)) |
				      t->run_n << 16 | KP_RUN_CLOSED,
			      memory_order_release);
	atomic_store_explicit(&t->ring->open_run, KP_NO_RUN,
			      memory_order_release);
	t->run_p = NULL;
}

/* Slots a run takes at a time (at open, after its header, and as it
 * grows): room for an event of KP_BLK_EVENT_MAX bytes. */
#define RUN_STEP 2
_Static_assert(RUN_STEP * sizeof(struct kp_ev) >= KP_BLK_EVENT_MAX,
	       "an event fits the slots a run takes at a time");

/*
 * Room for the next event in this thread's run, open or not: grow the
 * open run by RUN_STEP slots, or close it and open another at head with
 * tsc. Not when the slots are not free (then the event goes the classic
 * way, which waits or counts it lost, with no run open: the writer can
 * take a closed run whole and free its slots), past a block of
 * KP_RING_G slots, or past KP_RUN_MAX bytes.
 * @return 1 when the event may go into the open run.
 */
static int run_room(struct kp_tls *t, uint64_t tsc)
{
	struct kp_ring *r = t->ring;
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	if (t->run_p) {
		uint64_t h0 = h - (uint64_t)(t->run_end - (uint8_t *)t->run) /
					  sizeof(struct kp_ev);
		if (((h0 ^ (h + RUN_STEP - 1)) & ~r->gmask) == 0 &&
		    t->run_p - (uint8_t *)(t->run + 1) + KP_BLK_EVENT_MAX <=
			    KP_RUN_MAX &&
		    h + RUN_STEP - r->tail_cache <= r->mask + 1) {
			t->run_end += RUN_STEP * sizeof(struct kp_ev);
			kp_ring_publish(r, h, RUN_STEP);
			return 1;
		}
		kp_run_close();
	}
	if ((h & r->gmask) + 1 + RUN_STEP > r->gmask + 1)
		return 0; /* the block's last slots: not a run */
	if (h + 1 + RUN_STEP - r->tail_cache > r->mask + 1) {
		r->tail_cache = tail_view(r, h);
		if (h + 1 + RUN_STEP - r->tail_cache > r->mask + 1)
			return 0;
	}
	struct kp_ev_run *hd = (struct kp_ev_run *)&r->slots[h & r->mask];
	hd->tsc = tsc;
	hd->type = KP_EV_RUN;
	hd->pad = 0;
	hd->nslots = 0;
	atomic_store_explicit(&hd->len, 0, memory_order_relaxed);
	t->run = hd;
	t->run_p = (uint8_t *)(hd + 1);
	t->run_end = t->run_p + RUN_STEP * sizeof(struct kp_ev);
	t->run_n = 0;
	t->run_ns = kp_run_ns(tsc, atomic_load_explicit(&kp.run_mult,
							memory_order_relaxed));
	t->run_ptr = 0;
	atomic_store_explicit(&r->open_run, h, memory_order_relaxed);
	kp_ring_publish(r, h, 1 + RUN_STEP);
	return 1;
}

/* kp_ring_push_mem's way when the ring cannot take the event at once, or
 * the thread's run is not open or has no room. */
void kp_ring_push_mem_slow(uint8_t type, uint8_t kind, uint32_t stack,
			   uint64_t tsc, uint64_t a, uint64_t b, uint64_t c,
			   uint64_t d)
{
	int saved = errno;
	struct kp_tls *t = &kp_tls;
	/* a query's deferred QUERY_BEGIN first (the usual reason to be
	 * here: the first allocation inside a query), then the event the
	 * fast way if it now can */
	if (kp_qt.npending)
		kp_query_flush(); /* closes the run, if open */
	struct kp_ring *r = t->ring;
	if (r && atomic_load_explicit(&kp.run_mult, memory_order_relaxed) &&
	    run_room(t, tsc)) {
		kp_run_put(t, type, kind, stack, tsc, a, b, c, d);
		errno = saved;
		return;
	}
	if (!r || !kp_ring_try_push_head(r, tsc, type, kind, stack,
					 kp_mem_len(type, c), a, b, c, d, 0)) {
		uint64_t v[4] = { a, b, c, d };
		kp_ring_push(tsc, type, kind, stack, v, kp_mem_len(type, c));
	}
	errno = saved;
}

void kp_ring_push_ext(uint64_t tsc, uint8_t type, uint8_t kind,
		      uint32_t stack, const int64_t *v, const char *str,
		      size_t str_len)
{
	if (KP_UNLIKELY(kp_qt.npending) && type != KP_REC_QUERY_BEGIN)
		kp_query_flush(); /* deferred QUERY_BEGINs (query.c) */
	struct kp_ext_layout l = kp_ext_layout(type);
	if (!l.has_str || !str)
		str_len = 0;
	if (str_len > KP_MAX_STR_LEN)
		str_len = KP_MAX_STR_LEN;
	push_event(tsc ? tsc : kp_ticks(), type, kind, stack, v,
		   (size_t)l.nv * 8, str, str_len);
}

/* Thread th is called name now (pthread_setname_np): a THREAD_NAME event
 * for its tid (carried in the stack field), when the thread is the
 * caller, one with a ring or one sampled. A thread with none of these has
 * nothing to name yet: its THREAD_START will carry the name. The caller
 * has set kp_tls.busy. */
void kp_ring_thread_name(pthread_t th, const char *name)
{
	uint32_t tid = 0;
	if (pthread_equal(th, pthread_self())) {
		tid = (uint32_t)kp_gettid();
	} else {
		for (struct kp_ring *r = atomic_load(&kp.rings); r;
		     r = r->next)
			if (atomic_load(&r->state) == KP_RING_ACTIVE &&
			    r->pthread == (uintptr_t)th) {
				tid = r->tid;
				break;
			}
	}
	if (!tid)
		tid = kp_cpu_tid_of(th); /* a sampled thread without events */
	if (!tid)
		return;
	char buf[16] = { 0 };
	strncpy(buf, name, sizeof(buf) - 1);
	kp_ring_push(0, KP_REC_THREAD_NAME, 0, tid, buf, sizeof(buf));
}

void kp_ring_thread_exit(void)
{
	struct kp_tls *t = &kp_tls;
	if (!t->ring || t->writer)
		return;
	t->busy = 1;
	kp_ring_push(0, KP_REC_THREAD_END, 0, 0, NULL, 0);
	struct kp_ring *r = t->ring;
	t->ring = NULL;
	t->dead = 1;
	atomic_store_explicit(&r->state, KP_RING_CLOSED, memory_order_release);
	kp_busy_leave();
}

/*
 * In a forked child only the forking thread exists. Every ring's unwritten
 * events belong to the parent (which writes them), so all rings are emptied
 * and freed; the surviving thread attaches afresh with its new tid.
 */
void kp_ring_after_fork_child(void)
{
	for (struct kp_ring *r = atomic_load(&kp.rings); r; r = r->next) {
		atomic_store(&r->head, 0);
		atomic_store(&r->tail, 0);
		r->tail_cache = 0;
		r->run_off = r->run_cnt = 0;
		atomic_store(&r->open_run, KP_NO_RUN);
		for (int i = 0; i <= KP_REC_TYPE_MAX; i++)
			atomic_store(&r->lost[i], 0);
		atomic_store(&r->io_seen_read, 0);
		atomic_store(&r->io_seen_write, 0);
		if (r != kp.shared)
			atomic_store(&r->state, KP_RING_FREE);
	}
	kp_spin_unlock(&kp.shared_lock); /* held by a thread that is gone */
	atomic_store(&kp.ring_waits, 0); /* the child's trace counts its own */
	atomic_store(&kp.ring_wait_ns, 0);
	kp_tls.ring = NULL;
	kp_tls.run_p = NULL; /* its ring is gone */
	kp_tls.tid = (uint32_t)kp_gettid();
	kp_tls.dead = 0;
}
