/* SPDX-License-Identifier: MIT */
/*
 * pprof export: a gzipped profile.proto (github.com/google/pprof,
 * proto/profile.proto) for `go tool pprof`, Pyroscope, Parca.
 *
 *   --what cpu (default)  sample types samples/count, cpu/nanoseconds;
 *                         period_type cpu/nanoseconds
 *   --what alloc|live     heap: alloc_objects/count, alloc_space/bytes,
 *                         inuse_objects/count, inuse_space/bytes (in use =
 *                         still allocated when the process ended; with
 *                         live: at each process's heap peak)
 *
 * One mapping per module (file name and build-id as hex), one location per
 * distinct (module, offset), one function per name, with file and line
 * when debug info has them; has_functions is set so pprof does not try to
 * symbolize again. Modules are canonical across processes, so each gets a
 * synthetic address range (module index << 40) and a location's address
 * is range start + file offset (address - memory_start + file_offset is the
 * module-relative address pprof expects; the low 40 bits of it where the
 * offset is an absolute pc: code in no module, a JIT's code).
 *
 * The protobuf encoder and the gzip container (stored deflate blocks with
 * CRC-32, RFC 1951/1952) are written here: no zlib or protobuf dependency.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "cpu.h"

/* ---- a growable byte buffer and protobuf wire encoding ----------------- */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void b_put(struct buf *b, const void *src, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, src, n);
	b->n += n;
}

static void b_varint(struct buf *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;
	do {
		tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	b_put(b, tmp, n);
}

static void pb_int(struct buf *b, unsigned field, uint64_t v)
{
	if (!v)
		return; /* proto3 default */
	b_varint(b, (uint64_t)field << 3);
	b_varint(b, v);
}

static void pb_bytes(struct buf *b, unsigned field, const void *p, size_t n)
{
	b_varint(b, (uint64_t)field << 3 | 2);
	b_varint(b, n);
	b_put(b, p, n);
}

static void pb_msg(struct buf *b, unsigned field, struct buf *m)
{
	pb_bytes(b, field, m->p, m->n);
	m->n = 0;
}

static void pb_packed(struct buf *b, unsigned field, const uint64_t *v,
		      size_t n)
{
	struct buf t = { 0 };
	for (size_t i = 0; i < n; i++)
		b_varint(&t, v[i]);
	pb_bytes(b, field, t.p, t.n);
	free(t.p);
}

/* ---- interning: strings, functions, locations ------------------------------ */

struct tab {
	struct kp_idmap map; /* hash -> index (probing on collision) */
	size_t n;
};

struct strs {
	struct tab t;
	char **s;
};

static uint32_t str_id(struct strs *st, const char *s)
{
	uint64_t h = kp_hash_bytes(s, strlen(s), 11);
	for (uint64_t k = h;; k++) {
		if (k == KP_IDMAP_EMPTY)
			k = 0;
		uint32_t i = kp_idmap_get(&st->t.map, k);
		if (i == UINT32_MAX) {
			st->s = xrealloc_array(st->s, st->t.n + 1,
					       sizeof(*st->s));
			st->s[st->t.n] = xstrdup(s);
			kp_idmap_put(&st->t.map, k, (uint32_t)st->t.n);
			return (uint32_t)st->t.n++;
		}
		if (!strcmp(st->s[i], s))
			return i;
	}
}

struct loc {
	uint32_t module, func;
	uint64_t offset;
	int line;
};

struct func {
	uint32_t name, file;
};

struct pp {
	struct kp_analysis *an;
	struct strs strs;
	struct tab ltab, ftab;
	struct loc *locs;   /* id = index + 1 */
	struct func *funcs; /* id = index + 1 */
	uint8_t *mod_used;
};

static uint32_t func_id(struct pp *p, const char *name, const char *file)
{
	uint32_t n = str_id(&p->strs, name), f = str_id(&p->strs, file);
	uint64_t h = kp_mix64(n, f);
	for (uint64_t k = h;; k++) {
		if (k == KP_IDMAP_EMPTY)
			k = 0;
		uint32_t i = kp_idmap_get(&p->ftab.map, k);
		if (i == UINT32_MAX) {
			p->funcs = xrealloc_array(p->funcs, p->ftab.n + 1,
						  sizeof(*p->funcs));
			p->funcs[p->ftab.n] = (struct func){ n, f };
			kp_idmap_put(&p->ftab.map, k, (uint32_t)p->ftab.n);
			return (uint32_t)++p->ftab.n;
		}
		if (p->funcs[i].name == n && p->funcs[i].file == f)
			return i + 1;
	}
}

static uint32_t loc_id(struct pp *p, const struct kp_frame *f)
{
	uint64_t k = kp_mix64(f->offset, f->module);
	for (;; k++) {
		if (k == KP_IDMAP_EMPTY)
			k = 0;
		uint32_t i = kp_idmap_get(&p->ltab.map, k);
		if (i == UINT32_MAX)
			break; /* k: the free key */
		if (p->locs[i].module == f->module &&
		    p->locs[i].offset == f->offset)
			return i + 1;
	}
	char buf[256];
	const char *name = kp_frame_name(p->an, f, 0, buf, sizeof(buf));
	const struct kp_symframe *sf =
		kp_symbolize(kp_analysis_symbols(p->an), f, 1);
	uint32_t fn = func_id(p, name, sf && sf->file ? sf->file : "");
	uint32_t mod = f->module < p->an->nmodules ? f->module : 0;
	p->locs = xrealloc_array(p->locs, p->ltab.n + 1, sizeof(*p->locs));
	p->locs[p->ltab.n] = (struct loc){ mod, fn, f->offset,
					   sf ? sf->line : 0 };
	kp_idmap_put(&p->ltab.map, k, (uint32_t)p->ltab.n);
	p->mod_used[mod] = 1;
	return (uint32_t)++p->ltab.n;
}

static uint64_t mod_start(uint32_t m)
{
	return ((uint64_t)m + 1) << 40;
}

/* ---- the profile -------------------------------------------------------- */

static void value_type(struct pp *p, struct buf *out, unsigned field,
		       const char *type, const char *unit)
{
	struct buf m = { 0 };
	pb_int(&m, 1, str_id(&p->strs, type));
	pb_int(&m, 2, str_id(&p->strs, unit));
	pb_msg(out, field, &m);
	free(m.p);
}

static void build(struct pp *p, struct buf *out, int heap)
{
	struct kp_analysis *an = p->an;
	str_id(&p->strs, ""); /* string 0 */
	if (heap) {
		value_type(p, out, 1, "alloc_objects", "count");
		value_type(p, out, 1, "alloc_space", "bytes");
		value_type(p, out, 1, "inuse_objects", "count");
		value_type(p, out, 1, "inuse_space", "bytes");
	} else {
		value_type(p, out, 1, "samples", "count");
		value_type(p, out, 1, "cpu", "nanoseconds");
	}

	struct buf m = { 0 };
	uint64_t ids[KP_MAX_STACK_DEPTH + 1], vals[4];
	if (heap) {
		/* --what live: in-use values at the heap peak (peak.c), as
		 * samples of their own; else in use at exit (the sites) */
		int at_peak = heap == 2;
		const struct kp_wstack *pk;
		size_t np = at_peak ? kp_peak_stacks(an, &pk) : 0;
		for (size_t i = 0; i < np; i++) {
			const struct kp_gstack *g = &an->gstacks[pk[i].gstack];
			size_t d = 0, skip = kp_alloc_skip(an, pk[i].gstack);
			for (; skip + d < g->depth && d < KP_MAX_STACK_DEPTH;
			     d++)
				ids[d] = loc_id(p, kp_gframe(an, g,
						(uint32_t)(skip + d)));
			vals[0] = vals[1] = 0;
			vals[2] = pk[i].count;
			vals[3] = pk[i].value;
			if (d)
				pb_packed(&m, 1, ids, d);
			pb_packed(&m, 2, vals, 4);
			pb_msg(out, 2, &m);
		}
		const struct kp_site *const *sites;
		size_t ns = kp_mem_top_bytes(an, &sites);
		for (size_t i = 0; i < ns; i++) {
			const struct kp_gstack *g =
				&an->gstacks[sites[i]->gstack];
			size_t d = 0, skip = kp_alloc_skip(an,
							     sites[i]->gstack);
			for (; skip + d < g->depth && d < KP_MAX_STACK_DEPTH;
			     d++)
				ids[d] = loc_id(p, kp_gframe(an, g,
						(uint32_t)(skip + d)));
			vals[0] = sites[i]->allocs;
			vals[1] = sites[i]->bytes;
			vals[2] = at_peak ? 0 : sites[i]->leaked_blocks;
			vals[3] = at_peak ? 0 : sites[i]->leaked_bytes;
			if (d)
				pb_packed(&m, 1, ids, d);
			pb_packed(&m, 2, vals, 4);
			pb_msg(out, 2, &m);
		}
	} else {
		const struct kp_wstack *ws;
		size_t ns = kp_cpu_stacks(an, &ws);
		for (size_t i = 0; i < ns; i++) {
			const struct kp_gstack *g = &an->gstacks[ws[i].gstack];
			size_t d = 0;
			for (; d < g->depth && d < KP_MAX_STACK_DEPTH; d++)
				ids[d] = loc_id(p, kp_gframe(an, g,
							   (uint32_t)d));
			vals[0] = ws[i].count;
			vals[1] = ws[i].value;
			if (d)
				pb_packed(&m, 1, ids, d);
			pb_packed(&m, 2, vals, 2);
			pb_msg(out, 2, &m);
		}
	}

	/* mappings */
	for (uint32_t i = 0; i < an->nmodules; i++) {
		if (!p->mod_used[i])
			continue;
		const struct kp_module *md = &an->modules[i];
		char hex[2 * 64 + 1] = "";
		for (uint32_t k = 0; k < md->build_id_len && k < 64; k++)
			snprintf(hex + 2 * k, 3, "%02x", md->build_id[k]);
		pb_int(&m, 1, i + 1);
		pb_int(&m, 2, mod_start(i));
		pb_int(&m, 3, mod_start(i) + ((uint64_t)1 << 40));
		pb_int(&m, 5, str_id(&p->strs, md->path && md->path[0] ?
					       md->path : "[unknown]"));
		pb_int(&m, 6, str_id(&p->strs, hex));
		pb_int(&m, 7, 1);
		pb_int(&m, 8, 1);
		pb_int(&m, 9, 1);
		pb_msg(out, 3, &m);
	}
	/* locations */
	struct buf line = { 0 };
	for (size_t i = 0; i < p->ltab.n; i++) {
		const struct loc *l = &p->locs[i];
		pb_int(&m, 1, i + 1);
		pb_int(&m, 2, p->mod_used[l->module] ? l->module + 1 : 0);
		/* inside the range: a pc in no module, or in a JIT's map,
		 * is its own offset, up to 2^47 */
		uint64_t off = l->offset & (((uint64_t)1 << 40) - 1);
		pb_int(&m, 3, mod_start(l->module) + off - (off ? 1 : 0));
		pb_int(&line, 1, l->func);
		pb_int(&line, 2, (uint64_t)(l->line > 0 ? l->line : 0));
		pb_msg(&m, 4, &line);
		pb_msg(out, 4, &m);
	}
	free(line.p);
	/* functions */
	for (size_t i = 0; i < p->ftab.n; i++) {
		pb_int(&m, 1, i + 1);
		pb_int(&m, 2, p->funcs[i].name);
		pb_int(&m, 3, p->funcs[i].name);
		pb_int(&m, 4, p->funcs[i].file);
		pb_msg(out, 5, &m);
	}
	free(m.p);
	/* time, duration, period */
	uint64_t t0 = 0, dur = 0;
	for (size_t i = 0; i < an->nprocs; i++) {
		if (!t0 || an->procs[i]->start_wall_ns < t0)
			t0 = an->procs[i]->start_wall_ns;
		if (an->procs[i]->duration_ns > dur)
			dur = an->procs[i]->duration_ns;
	}
	/* the string table last: every string is interned by now */
	for (size_t i = 0; i < p->strs.t.n; i++)
		pb_bytes(out, 6, p->strs.s[i], strlen(p->strs.s[i]));
	pb_int(out, 9, t0);
	pb_int(out, 10, dur);
	if (!heap) {
		struct buf pt = { 0 };
		/* period_type refers to strings already in the table */
		pb_int(&pt, 1, str_id(&p->strs, "cpu"));
		pb_int(&pt, 2, str_id(&p->strs, "nanoseconds"));
		pb_msg(out, 11, &pt);
		free(pt.p);
		pb_int(out, 12, kp_cpu_period_ns(an));
	} else {
		pb_int(out, 14, str_id(&p->strs, "inuse_space"));
	}
}

/* ---- gzip with stored deflate blocks ------------------------------------- */

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
	static uint32_t table[256];
	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static int write_gzip(FILE *f, const uint8_t *p, size_t n)
{
	static const uint8_t hdr[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0,
					 0xff };
	fwrite(hdr, 1, sizeof(hdr), f);
	size_t off = 0;
	do {
		size_t len = n - off > 65535 ? 65535 : n - off;
		uint8_t bh[5] = { off + len == n ? 1 : 0, (uint8_t)len,
				  (uint8_t)(len >> 8), (uint8_t)~len,
				  (uint8_t)(~len >> 8) };
		fwrite(bh, 1, 5, f);
		fwrite(p + off, 1, len, f);
		off += len;
	} while (off < n);
	uint32_t crc = crc32_update(0, p, n), sz = (uint32_t)n;
	uint8_t tr[8] = { (uint8_t)crc, (uint8_t)(crc >> 8),
			  (uint8_t)(crc >> 16), (uint8_t)(crc >> 24),
			  (uint8_t)sz, (uint8_t)(sz >> 8), (uint8_t)(sz >> 16),
			  (uint8_t)(sz >> 24) };
	fwrite(tr, 1, 8, f);
	return ferror(f) ? -1 : 0;
}

static int export_pprof(struct kp_analysis *an, const char *path)
{
	const char *w = an->opts->what ? an->opts->what : "cpu";
	int heap = !strcmp(w, "alloc") ? 1 : !strcmp(w, "live") ? 2 : 0;
	if (!strcmp(w, "io") || !strcmp(w, "temporary") || !strcmp(w, "lost"))
		return error("--pprof exports cpu or heap (--what alloc), "
			     "not %s", w), 2;
	struct pp p;
	memset(&p, 0, sizeof(p));
	p.an = an;
	kp_idmap_init(&p.strs.t.map);
	kp_idmap_init(&p.ltab.map);
	kp_idmap_init(&p.ftab.map);
	p.mod_used = xcalloc(an->nmodules + 1, 1);
	struct buf out = { 0 };
	build(&p, &out, heap);
	FILE *f = fopen(path, "wb");
	int rc = 0;
	if (!f) {
		error("cannot open '%s': %s", path, strerror(errno));
		rc = 1;
	} else {
		if (write_gzip(f, out.p, out.n) != 0)
			rc = 1;
		if (fclose(f) != 0)
			rc = 1;
		if (rc)
			error("cannot write '%s'", path);
	}
	free(out.p);
	for (size_t i = 0; i < p.strs.t.n; i++)
		free(p.strs.s[i]);
	free(p.strs.s);
	free(p.locs);
	free(p.funcs);
	free(p.mod_used);
	kp_idmap_free(&p.strs.t.map);
	kp_idmap_free(&p.ltab.map);
	kp_idmap_free(&p.ftab.map);
	return rc;
}

int kp_export_command(struct kp_analysis *an)
{
	const struct kp_opts *o = an->opts;
	if (!o->pprof && !o->chrome) {
		error("export wants --pprof FILE and/or --chrome FILE");
		return 2;
	}
	int rc = 0;
	if (o->pprof)
		rc = export_pprof(an, o->pprof);
	if (!rc && o->chrome)
		rc = kp_chrome_export(an, o->chrome);
	return rc;
}
