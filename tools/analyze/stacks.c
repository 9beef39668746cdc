/* SPDX-License-Identifier: MIT */
/*
 * Stacks and modules.
 *
 * Per trace: STACK records (id -> return addresses) and MODULE records (the
 * memory map). Stack ids are only meaningful inside one trace and pcs only
 * inside one address space, so at the end of a trace every stack that a pass
 * asks for is resolved into a canonical stack of (module, offset) frames,
 * interned across all traces: that is what lets leaks of a forked child and
 * its parent, or of two runs of one executable, land in the same group.
 *
 * Every table is hashed with a per-run seed and bounded (KP_MAX_*), since
 * the ids, counts and addresses come from an untrusted file.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"

/* ---- kp_idmap ------------------------------------------------------------ */

void kp_idmap_init(struct kp_idmap *m)
{
	memset(m, 0, sizeof(*m));
	m->seed = kp_random_seed();
}

void kp_idmap_free(struct kp_idmap *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = m->n = 0;
}

uint32_t kp_idmap_get(const struct kp_idmap *m, uint64_t key)
{
	if (!m->cap)
		return UINT32_MAX;
	size_t mask = m->cap - 1;
	for (size_t i = kp_mix64(key, m->seed) & mask;; i = (i + 1) & mask) {
		if (m->keys[i] == key)
			return m->vals[i];
		if (m->keys[i] == KP_IDMAP_EMPTY)
			return UINT32_MAX;
	}
}

static void idmap_insert(struct kp_idmap *m, uint64_t key, uint32_t val)
{
	size_t mask = m->cap - 1;
	size_t i = kp_mix64(key, m->seed) & mask;

	while (m->keys[i] != KP_IDMAP_EMPTY)
		i = (i + 1) & mask;
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
}

void kp_idmap_put(struct kp_idmap *m, uint64_t key, uint32_t val)
{
	/* Keep the load under 1/2 so probe sequences stay short. */
	if ((m->n + 1) * 2 > m->cap) {
		struct kp_idmap old = *m;
		m->cap = old.cap ? old.cap * 2 : 64;
		m->keys = xrealloc_array(NULL, m->cap, sizeof(*m->keys));
		m->vals = xrealloc_array(NULL, m->cap, sizeof(*m->vals));
		memset(m->keys, 0xff, m->cap * sizeof(*m->keys));
		m->n = 0;
		for (size_t i = 0; i < old.cap; i++)
			if (old.keys[i] != KP_IDMAP_EMPTY)
				idmap_insert(m, old.keys[i], old.vals[i]);
		free(old.keys);
		free(old.vals);
	}
	idmap_insert(m, key, val);
}

int kp_idmap_del(struct kp_idmap *m, uint64_t key)
{
	if (!m->cap || key == KP_IDMAP_EMPTY)
		return 0;
	size_t mask = m->cap - 1;
	size_t i = kp_mix64(key, m->seed) & mask;
	while (m->keys[i] != key) {
		if (m->keys[i] == KP_IDMAP_EMPTY)
			return 0;
		i = (i + 1) & mask;
	}
	/* Backward shift: pull each later key of the probe run into the hole
	 * unless its home slot lies cyclically in (hole, its slot]. */
	for (size_t j = i;;) {
		j = (j + 1) & mask;
		if (m->keys[j] == KP_IDMAP_EMPTY)
			break;
		size_t h = kp_mix64(m->keys[j], m->seed) & mask;
		int stays = i < j ? (h > i && h <= j) : (h > i || h <= j);
		if (!stays) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = KP_IDMAP_EMPTY;
	m->n--;
	return 1;
}

/*
 * Content-hashed tables (modules, stacks, exes) map the hash to the first
 * index with that hash and chain the rest through a next field, so a
 * collision costs a comparison, never a wrong answer.
 */
static uint64_t hash_key(uint64_t h)
{
	return h == KP_IDMAP_EMPTY ? h - 1 : h;
}

/* Link idx into the chain of hash h whose head is first (UINT32_MAX: none). */
static void chain_add(struct kp_idmap *map, uint64_t h, uint32_t first,
		      uint32_t idx, uint32_t *new_next, uint32_t *head_next)
{
	if (first == UINT32_MAX) {
		kp_idmap_put(map, h, idx);
		return;
	}
	*new_next = *head_next;
	*head_next = idx;
}

#define GROW(arr, n, cap)                                                   \
	do {                                                                \
		if ((n) >= (cap)) {                                         \
			(cap) = (cap) ? (cap) * 2 : 16;                     \
			(arr) = xrealloc_array((arr), (cap), sizeof(*(arr))); \
		}                                                           \
	} while (0)

/* ---- global tables ------------------------------------------------------- */

uint32_t kp_module_intern(struct kp_analysis *an, const char *path,
			  size_t path_len, const uint8_t *bid, size_t bid_len)
{
	/* An embedded NUL would make the name ambiguous; cut there. */
	path_len = strnlen(path, path_len);
	uint64_t h = hash_key(kp_hash_bytes(path, path_len, an->seed) ^
			      kp_hash_bytes(bid, bid_len, ~an->seed));
	uint32_t first = kp_idmap_get(&an->module_ids, h);

	for (uint32_t i = first; i != UINT32_MAX; i = an->modules[i].next) {
		struct kp_module *m = &an->modules[i];
		if (strlen(m->path) == path_len &&
		    !memcmp(m->path, path, path_len) &&
		    m->build_id_len == bid_len &&
		    (!bid_len || !memcmp(m->build_id, bid, bid_len)))
			return i;
	}
	GROW(an->modules, an->nmodules, an->modules_cap);
	struct kp_module *m = &an->modules[an->nmodules];
	memset(m, 0, sizeof(*m));
	m->path = xstrndup(path, path_len);
	if (bid_len) {
		m->build_id = xmalloc(bid_len);
		memcpy(m->build_id, bid, bid_len);
	}
	m->build_id_len = (uint32_t)bid_len;
	const char *base = strrchr(m->path, '/');
	m->self = !strncmp(base ? base + 1 : m->path, "libkprof.so", 11);
	m->hash = h;
	m->next = UINT32_MAX;
	uint32_t idx = (uint32_t)an->nmodules++;
	chain_add(&an->module_ids, h, first, idx, &m->next,
		  first == UINT32_MAX ? NULL : &an->modules[first].next);
	return idx;
}

uint32_t kp_exe_intern(struct kp_analysis *an, const char *exe)
{
	size_t len = strlen(exe);
	uint64_t h = hash_key(kp_hash_bytes(exe, len, an->seed));
	uint32_t first = kp_idmap_get(&an->exe_ids, h);

	for (uint32_t i = first; i != UINT32_MAX; i = an->exe_next[i])
		if (!strcmp(an->exes[i], exe))
			return i;
	if (an->nexes >= an->exes_cap) {
		an->exes_cap = an->exes_cap ? an->exes_cap * 2 : 8;
		an->exes = xrealloc_array(an->exes, an->exes_cap,
					  sizeof(*an->exes));
		an->exe_next = xrealloc_array(an->exe_next, an->exes_cap,
					      sizeof(*an->exe_next));
	}
	uint32_t idx = (uint32_t)an->nexes++;
	an->exes[idx] = xstrdup(exe);
	an->exe_next[idx] = UINT32_MAX;
	chain_add(&an->exe_ids, h, first, idx, &an->exe_next[idx],
		  first == UINT32_MAX ? NULL : &an->exe_next[first]);
	return idx;
}

/* The index of frame f in an->frames, added if it is new. */
static uint32_t frame_intern(struct kp_analysis *an, const struct kp_frame *f)
{
	uint64_t h = hash_key(kp_mix64(f->offset, f->module ^ an->seed));
	uint32_t first = kp_idmap_get(&an->frame_ids, h);

	for (uint32_t i = first; i != UINT32_MAX; i = an->frames[i].next)
		if (an->frames[i].offset == f->offset &&
		    an->frames[i].module == f->module)
			return i;
	GROW(an->frames, an->nframes, an->frames_cap);
	uint32_t idx = (uint32_t)an->nframes++;
	an->frames[idx] = *f;
	an->frames[idx].next = UINT32_MAX;
	chain_add(&an->frame_ids, h, first, idx, &an->frames[idx].next,
		  first == UINT32_MAX ? NULL : &an->frames[first].next);
	return idx;
}

/*
 * A stack is interned as the indexes of its frames: where each stack kept
 * its frames whole (24 bytes each), a compiler's stacks (cc1plus: 79,000
 * of up to 64 frames) took 96 MiB; its distinct frames are a small part.
 */
static uint32_t gstack_of_ids(struct kp_analysis *an, const uint32_t *id,
			      uint32_t depth)
{
	if (depth == 0)
		return 0; /* gstacks[0] is the empty stack */
	uint64_t h = an->seed ^ depth;
	for (uint32_t i = 0; i < depth; i++)
		h = kp_mix64(h ^ id[i], an->seed);
	h = hash_key(h);
	uint32_t first = kp_idmap_get(&an->gstack_ids, h);

	for (uint32_t i = first; i != UINT32_MAX; i = an->gstacks[i].next) {
		const struct kp_gstack *g = &an->gstacks[i];
		if (g->hash == h && g->depth == depth &&
		    !memcmp(an->fids + g->off, id, depth * sizeof(*id)))
			return i;
	}
	while (an->nfids + depth > an->fids_cap) {
		an->fids_cap = an->fids_cap ? an->fids_cap * 2 : 1024;
		an->fids = xrealloc_array(an->fids, an->fids_cap,
					  sizeof(*an->fids));
	}
	GROW(an->gstacks, an->ngstacks, an->gstacks_cap);
	struct kp_gstack *g = &an->gstacks[an->ngstacks];
	g->off = an->nfids;
	g->depth = depth;
	g->hash = h;
	g->next = UINT32_MAX;
	memcpy(an->fids + an->nfids, id, depth * sizeof(*id));
	an->nfids += depth;
	uint32_t idx = (uint32_t)an->ngstacks++;
	chain_add(&an->gstack_ids, h, first, idx, &g->next,
		  first == UINT32_MAX ? NULL : &an->gstacks[first].next);
	return idx;
}

uint32_t kp_gstack_intern(struct kp_analysis *an, const struct kp_frame *f,
			  uint32_t depth)
{
	uint32_t id[KP_MAX_STACK_DEPTH];
	if (depth > KP_MAX_STACK_DEPTH)
		depth = KP_MAX_STACK_DEPTH;
	for (uint32_t i = 0; i < depth; i++)
		id[i] = frame_intern(an, &f[i]);
	return gstack_of_ids(an, id, depth);
}

/* ---- per-trace stacks ------------------------------------------------------ */

/*
 * The last stack a trace resolved, by position: a STACK record shares
 * most of its outer frames with the one before it (cc1plus: 61 % of 3.1 M
 * frames), which are then not looked up again. fid is UINT32_MAX where
 * the frame is not to be reused: left out, or kprof's own (whether that
 * is kept depends on the frames nearer the leaf). Forgotten when the
 * trace's modules change.
 */
struct kp_prev_stack {
	uint32_t depth;
	uint64_t pcs[KP_MAX_STACK_DEPTH];
	uint32_t fid[KP_MAX_STACK_DEPTH];
	uint8_t nomod[KP_MAX_STACK_DEPTH]; /* in no module */
};


static uint32_t trace_new_stack(struct kp_trace *t, uint32_t id)
{
	GROW(t->stacks, t->nstacks, t->stacks_cap);
	struct kp_tstack *s = &t->stacks[t->nstacks];
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->gstack = UINT32_MAX;
	uint32_t local = (uint32_t)t->nstacks++;
	if (id < KP_STACK_DIRECT_MAX) {
		if (id >= t->stack_direct_cap) {
			size_t n = t->stack_direct_cap ? t->stack_direct_cap : 1024;
			while (n <= id)
				n *= 2;
			t->stack_direct = xrealloc_array(t->stack_direct, n,
							 sizeof(*t->stack_direct));
			memset(t->stack_direct + t->stack_direct_cap, 0,
			       (n - t->stack_direct_cap) *
				       sizeof(*t->stack_direct));
			t->stack_direct_cap = n;
		}
		t->stack_direct[id] = local + 1;
	} else {
		kp_idmap_put(&t->stack_ids, id, local);
	}
	return local;
}

uint32_t kp_trace_stack(struct kp_trace *t, uint32_t id)
{
	if (KP_LIKELY(id < t->stack_direct_cap) && t->stack_direct[id])
		return t->stack_direct[id] - 1;
	uint32_t local = id < KP_STACK_DIRECT_MAX
				 ? UINT32_MAX
				 : kp_idmap_get(&t->stack_ids, id);

	return local != UINT32_MAX ? local : trace_new_stack(t, id);
}

static uint32_t canon_pcs(struct kp_trace *t, struct kp_tstack *s,
			  const uint64_t *pcs);

void kp_trace_define_stack(struct kp_trace *t, uint32_t id,
			   const uint64_t *pcs, uint32_t depth)
{
	if (id == 0)
		return; /* 0 is "no stack" by definition */
	uint32_t local = kp_trace_stack(t, id);
	struct kp_tstack *s = &t->stacks[local];
	if (s->defined || s->gstack != UINT32_MAX)
		return; /* first definition wins; late ones change nothing */
	s->defined = 1;
	if (depth > KP_MAX_STACK_DEPTH)
		depth = KP_MAX_STACK_DEPTH;
	if (t->npcs + depth > KP_MAX_TRACE_PCS) {
		t->stacks_dropped++;
		return;
	}
	s->depth = depth;
	t->npcs += depth;
	/* Resolve against the modules mapped now: the recorder writes a
	 * stack after the modules it runs through, and before a dlclose'd
	 * library's address can be reused by another. At the end of the
	 * trace, both would cover the address. The pcs are not kept: the
	 * canonical stack is what the passes use. */
	canon_pcs(t, s, pcs);
}

/* ---- per-trace modules ----------------------------------------------------- */

void kp_trace_add_module(struct kp_trace *t, const struct kp_rec *rec)
{
	if (t->nmods >= KP_MAX_TRACE_MODULES)
		return;
	if (rec->u.module.hi <= rec->u.module.lo)
		return; /* an empty span can contain no pc */
	GROW(t->mods, t->nmods, t->mods_cap);
	struct kp_tmodule *m = &t->mods[t->nmods];
	m->bias = rec->u.module.bias;
	m->lo = rec->u.module.lo;
	m->hi = rec->u.module.hi;
	m->seq = (uint32_t)t->nmods;
	m->mapped = 1;
	m->gmod = kp_module_intern(t->an, rec->u.module.path ?
					  rec->u.module.path : "",
				   rec->u.module.path ?
					  rec->u.module.path_len : 0,
				   rec->u.module.build_id,
				   rec->u.module.build_id ?
					  rec->u.module.build_id_len : 0);
	t->nmods++;
	free(t->mods_sorted);
	t->mods_sorted = NULL;
	if (t->prev)
		t->prev->depth = 0; /* a pc may now resolve otherwise */
}

void kp_trace_unmap_module(struct kp_trace *t, const struct kp_rec *rec)
{
	/* UNMODULE carries bias and path; the latest mapping with that bias
	 * is the one going away. */
	for (size_t i = t->nmods; i-- > 0;) {
		if (t->mods[i].mapped && t->mods[i].bias == rec->u.module.bias) {
			t->mods[i].mapped = 0;
			break;
		}
	}
	free(t->mods_sorted);
	t->mods_sorted = NULL;
	if (t->prev)
		t->prev->depth = 0;
}

static int cmp_tmodule(const void *a, const void *b)
{
	const struct kp_tmodule *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * The module containing pc. Stacks are resolved when their STACK record is
 * read, so the mapping current at that point wins: prefer a module still
 * mapped, then the most recent (an unmapped one only for stacks whose
 * module record is missing). The backward scan is
 * bounded so overlapping hostile maps cannot make it quadratic.
 */
static const struct kp_tmodule *trace_find_module(struct kp_trace *t,
						  uint64_t pc)
{
	if (!t->nmods)
		return NULL;
	if (!t->mods_sorted) {
		t->mods_sorted = xrealloc_array(NULL, t->nmods,
						sizeof(*t->mods_sorted));
		memcpy(t->mods_sorted, t->mods, t->nmods * sizeof(*t->mods));
		qsort(t->mods_sorted, t->nmods, sizeof(*t->mods_sorted),
		      cmp_tmodule);
	}
	size_t lo = 0, hi = t->nmods; /* first index with m.lo > pc */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->mods_sorted[mid].lo <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	const struct kp_tmodule *best = NULL;
	for (size_t i = lo, steps = 0; i-- > 0 && steps < 64; steps++) {
		const struct kp_tmodule *m = &t->mods_sorted[i];
		if (pc >= m->hi)
			continue;
		if (!best || (m->mapped && !best->mapped) ||
		    (m->mapped == best->mapped && m->seq > best->seq))
			best = m;
	}
	return best;
}

/* Was the trace recorded on this machine? Else its pid's map in this
 * machine's /tmp is another process's. */
static int same_host(const struct kp_trace *t)
{
	char h[256];
	if (!t->hdr || !t->hdr->hostname || gethostname(h, sizeof(h)) != 0)
		return 0;
	h[sizeof(h) - 1] = 0;
	return !strcmp(h, t->hdr->hostname);
}

/*
 * The pseudo-module of the process's JIT map, looked for once per trace,
 * at its end: the map the trace carries (its JIT_CODE records, which come
 * last), named "[perf-<pid>.map]"; else the file <dir>/perf-<pid>.map,
 * dir from --perf-map-dir, else /tmp (where perf looks) if the trace was
 * recorded on this machine. One module per
 * name, so traces of one pid (an exec chain) share it and its map.
 * @return 0 when there is none.
 */
static int trace_jit_module(struct kp_trace *t, uint32_t *mod)
{
	if (!t->jit_state) {
		const struct kp_opts *o = t->an->opts;
		char path[4096];
		int n = -1;
		struct kp_perfmap *map = NULL;
		t->jit_state = -1;
		if (!o || o->no_symbols || !t->proc || t->proc->pid <= 0)
			return 0;
		if (t->jit_rec && kp_perfmap_finish(t->jit_rec) == 0) {
			map = t->jit_rec;
			t->jit_rec = NULL;
			n = snprintf(path, sizeof(path), "[perf-%lld.map]",
				     (long long)t->proc->pid);
		} else if (o->perf_map_dir || same_host(t)) {
			n = snprintf(path, sizeof(path), "%s/perf-%lld.map",
				     o->perf_map_dir ? o->perf_map_dir : "/tmp",
				     (long long)t->proc->pid);
			if (n > 0 && (size_t)n < sizeof(path))
				map = kp_perfmap_load(path);
		}
		if (!map || n < 0 || (size_t)n >= sizeof(path)) {
			kp_perfmap_free(map);
			return 0;
		}
		t->jit_mod = kp_module_intern(t->an, path, (size_t)n, NULL, 0);
		struct kp_module *km = &t->an->modules[t->jit_mod];
		if (km->jit) /* the same pid's map, loaded for an earlier trace */
			kp_perfmap_free(map);
		else
			km->jit = map;
		t->jit_state = 1;
	}
	*mod = t->jit_mod;
	return t->jit_state == 1;
}

/* Stack s of trace t, of s->depth frames pcs, as a canonical stack. */
static uint32_t canon_pcs(struct kp_trace *t, struct kp_tstack *s,
			  const uint64_t *pcs)
{
	struct kp_analysis *an = t->an;
	struct kp_prev_stack *pv = t->prev;
	uint32_t depth = s->depth, k = 0, n = 0;
	uint32_t ids[KP_MAX_STACK_DEPTH];

	if (!depth)
		return s->gstack = 0; /* the empty stack */
	if (!pv) {
		pv = t->prev = xmalloc(sizeof(*pv));
		pv->depth = 0;
	}
	while (k < depth && k < pv->depth &&
	       pcs[depth - 1 - k] == pv->pcs[pv->depth - 1 - k] &&
	       pv->fid[pv->depth - 1 - k] != UINT32_MAX)
		k++;
	/* the shared part to its place in this stack, before the rest is
	 * written over the old one */
	uint32_t base = pv->depth - k;
	if (k && base != depth - k) {
		memmove(pv->fid + depth - k, pv->fid + base,
			k * sizeof(*pv->fid));
		memmove(pv->nomod + depth - k, pv->nomod + base, k);
	}
	int app_seen = 0; /* a frame outside kprof, nearer the leaf */
	for (uint32_t i = 0; i < depth - k; i++) {
		uint64_t pc = pcs[i];
		const struct kp_tmodule *m = trace_find_module(t, pc);
		if (m && KP_UNLIKELY(!an->modules[m->gmod].ahead))
			kp_symbols_ahead(an, m->gmod);
		int self = m && an->modules[m->gmod].self;
		pv->nomod[i] = !m;
		pv->fid[i] = UINT32_MAX;
		/* kprof's interposers between the app and the function they
		 * wrap (its fopen, sqlite3_step) are not the app's code: left
		 * out below the app's frames; only a stack that starts in
		 * kprof (its own work, in a CPU sample) keeps them */
		if (self && app_seen)
			continue;
		struct kp_frame f = { .module = m ? m->gmod : 0,
				      .next = UINT32_MAX,
				      .offset = m ? pc - m->bias : pc,
				      .address = pc };
		s->jit |= !m; /* code in no module: a JIT's? (kp_trace_name_jit) */
		app_seen |= !self;
		ids[n] = frame_intern(an, &f);
		if (!self)
			pv->fid[i] = ids[n];
		n++;
	}
	/* the shared outer frames, none of them kprof's, as they were */
	for (uint32_t i = depth - k; i < depth; i++) {
		ids[n++] = pv->fid[i];
		s->jit |= pv->nomod[i];
	}
	memcpy(pv->pcs, pcs, depth * sizeof(*pcs));
	pv->depth = depth;
	s->gstack = gstack_of_ids(an, ids, n);
	return s->gstack;
}

uint32_t kp_trace_canon_stack(struct kp_trace *t, uint32_t local)
{
	struct kp_tstack *s = &t->stacks[local];

	if (s->gstack != UINT32_MAX)
		return s->gstack;
	/* never defined (or dropped): no frames */
	s->depth = 0;
	return canon_pcs(t, s, NULL);
}

void kp_trace_name_jit(struct kp_trace *t)
{
	struct kp_analysis *an = t->an;
	struct kp_frame f[KP_MAX_STACK_DEPTH];
	uint32_t jm;
	int have = -1; /* the map, looked for at the first candidate */

	for (size_t i = 0; i < t->nstacks; i++) {
		struct kp_tstack *s = &t->stacks[i];
		if (!s->jit || s->gstack == UINT32_MAX || !s->gstack)
			continue;
		if (have < 0)
			have = trace_jit_module(t, &jm);
		if (!have)
			return;
		const struct kp_gstack *g = &an->gstacks[s->gstack];
		const struct kp_perfmap *map = an->modules[jm].jit;
		int named = 0;
		for (uint32_t k = 0; k < g->depth; k++)
			f[k] = *kp_gframe(an, g, k);
		for (uint32_t k = 0; k < g->depth; k++)
			if (!f[k].module &&
			    (kp_perfmap_find(map, f[k].offset) ||
			     kp_perfmap_find(map, f[k].offset - 1))) {
				f[k].module = jm;
				named = 1;
			}
		if (named)
			s->gstack = kp_gstack_intern(an, f, g->depth);
	}
}

void kp_trace_release(struct kp_trace *t)
{
	kp_idmap_free(&t->stack_ids);
	free(t->stack_direct);
	t->stack_direct = NULL;
	t->stack_direct_cap = 0;
	kp_idmap_free(&t->tids);
	kp_idmap_free(&t->tname_ids);
	for (size_t i = 0; i < t->ntnames; i++)
		free(t->tnames[i]);
	free(t->tnames);
	t->tnames = NULL;
	t->ntnames = 0;
	free(t->stacks);
	free(t->prev);
	t->prev = NULL;
	free(t->mods);
	free(t->mods_sorted);
	kp_perfmap_free(t->jit_rec);
	t->jit_rec = NULL;
	t->stacks = NULL;
	t->mods = t->mods_sorted = NULL;
}
