/* SPDX-License-Identifier: MIT */
/*
 * Query texts, interned: each distinct text (a fingerprint, or the full
 * text with KOTOBA_PROFILE_QUERY_TEXT=full) gets a small dense id the
 * first time it is seen, and the writer writes it once per trace as a
 * QUERY_TEXT record (record.h, format 2.1). A QUERY then carries the id,
 * not the text: the app thread copies no string into its ring, and the
 * writer encodes and compresses none, per query. The SQLite hook interns
 * a statement's text at prepare time; other sources when the query ends.
 *
 * The scheme is the stack table's (stacktab.c): lookups take no lock and
 * probe (64-bit hash, id) slots, here comparing the stored bytes too; an
 * insert takes a spin lock, re-probes, appends the text to the store,
 * publishes the id count (release) and then the slot's hash (release), so
 * whoever sees the slot sees the text and a count that includes its id,
 * and the writer, which reads the count after the rings' heads, has the
 * text of every id an event it drains refers to. Texts are never removed.
 *
 * Bounded: at most QT_MAX texts in QT_STORE bytes (the slots at most
 * half full). A text that does not fit gets id 0 and its QUERY carries
 * it inline, as before 2.1.
 */
#include "state.h"

#include <string.h>
#include <sys/mman.h>

#define QT_BITS 17                   /* hash slots */
#define QT_MAX (1u << (QT_BITS - 1)) /* texts: half the slots */
#define QT_STORE ((size_t)16 << 20)  /* bytes of text (NUL-terminated) */

struct qt_slot {
	_Atomic uint64_t hash; /* 0 = empty */
	uint32_t id;
};

struct qt_ent {
	uint32_t off, len; /* in store */
};

static struct qt_slot *_Atomic slots; /* NULL until the first insert */
static struct qt_ent *ents;          /* id -> text, ids 1..count */
static char *store;
static size_t store_used;            /* under lock */
static _Atomic uint32_t count;       /* ids 1..count are published */
static _Atomic int lock;

void kp_qtext_lock(void)
{
	kp_spin_lock(&lock);
}

void kp_qtext_unlock(void)
{
	kp_spin_unlock(&lock);
}

/* The maps, once (lock held). @return the slots or NULL. */
static struct qt_slot *qt_map(void)
{
	struct qt_slot *t = atomic_load_explicit(&slots, memory_order_relaxed);
	if (t)
		return t;
	ents = kp_map_noreserve((QT_MAX + 1) * sizeof(*ents));
	store = kp_map_noreserve(QT_STORE);
	t = kp_map_noreserve(((size_t)1 << QT_BITS) * sizeof(*t));
	if (!ents || !store || !t) {
		/* leave nothing half made: the next insert tries again */
		if (ents)
			munmap(ents, (QT_MAX + 1) * sizeof(*ents));
		if (store)
			munmap(store, QT_STORE);
		if (t)
			munmap(t, ((size_t)1 << QT_BITS) * sizeof(*t));
		ents = NULL;
		store = NULL;
		return NULL;
	}
	atomic_store_explicit(&slots, t, memory_order_release);
	return t;
}

/* The id of s[0..n) (hash h, not 0) in t, or 0 with *at = the empty slot
 * where it would go. */
static uint32_t probe(const struct qt_slot *t, uint64_t h, const char *s,
		      size_t n, size_t *at)
{
	size_t mask = ((size_t)1 << QT_BITS) - 1;
	size_t i = (size_t)((h ^ h >> 31) * 0x9e3779b97f4a7c15ull >>
			    (64 - QT_BITS));
	for (;;) {
		uint64_t v = atomic_load_explicit(&t[i].hash,
						  memory_order_acquire);
		if (!v) {
			*at = i;
			return 0;
		}
		if (v == h) {
			const struct qt_ent *e = &ents[t[i].id];
			if (e->len == n && memcmp(store + e->off, s, n) == 0)
				return t[i].id;
		}
		i = (i + 1) & mask;
	}
}

uint32_t kp_qtext_intern(const char *s, size_t n, uint64_t h)
{
	if (n > KP_MAX_STR_LEN || (n && !s))
		return 0;
	h = h ? h : 1;
	size_t at;
	struct qt_slot *t = atomic_load_explicit(&slots, memory_order_acquire);
	if (t) {
		uint32_t id = probe(t, h, s, n, &at);
		if (id)
			return id;
	}
	kp_spin_lock(&lock);
	uint32_t id = 0;
	t = qt_map();
	if (!t)
		goto out;
	id = probe(t, h, s, n, &at);
	if (id)
		goto out;
	uint32_t c = atomic_load_explicit(&count, memory_order_relaxed);
	if (c >= QT_MAX || store_used + n + 1 > QT_STORE)
		goto out; /* full: the text goes inline */
	id = c + 1;
	if (n)
		memcpy(store + store_used, s, n);
	store[store_used + n] = '\0';
	ents[id].off = (uint32_t)store_used;
	ents[id].len = (uint32_t)n;
	store_used += n + 1;
	atomic_store_explicit(&count, id, memory_order_release);
	t[at].id = id;
	atomic_store_explicit(&t[at].hash, h, memory_order_release);
out:
	kp_spin_unlock(&lock);
	return id;
}

uint32_t kp_qtext_count(void)
{
	return atomic_load_explicit(&count, memory_order_acquire);
}

const char *kp_qtext_get(uint32_t id, uint32_t *len)
{
	if (!id || id > atomic_load_explicit(&count, memory_order_acquire)) {
		*len = 0;
		return "";
	}
	*len = ents[id].len;
	return store + ents[id].off;
}
