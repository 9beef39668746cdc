/* SPDX-License-Identifier: MIT */
/*
 * A fast x86-64 unwinder for the allocation hooks' stacks (the nwind /
 * bytehound approach), with libunwind as the fallback and the oracle.
 *
 * kp_unwind() walks its caller's stack with the DWARF call-frame rules of
 * each return address, cut down to the form nearly all compiled code has:
 * the CFA is rsp or rbp plus a constant, the return address is at CFA-8,
 * and rbp is either unchanged or saved at a constant offset from the CFA.
 * A rule is one 31-bit value, found once per return address and kept in a
 * process-wide cache: a direct-mapped table of 64-bit words, each holding
 * the rule together with the bits of its pc that the slot index does not
 * imply, so a reader sees a whole entry or none (one load, no torn pairs).
 *
 * On a cache miss the rule comes from the object's .eh_frame: glibc's
 * _dl_find_object (lock-free) gives the object's .eh_frame_hdr, whose
 * sorted table gives the FDE; its CIE and FDE programs run up to the pc.
 * Anything outside that form (a CFA expression as in PLT stubs, a signal
 * frame, a CFA based on another register, a pc without unwind info) is
 * cached as "unsupported", and kp_unwind() returns -1: the caller then uses
 * libunwind for the whole stack. So do stack reads that would leave
 * [rsp, top of the thread's stack mapping) or go downwards.
 *
 * The values are those of libunwind's unw_backtrace (1.6): the return
 * address of each frame, innermost first, starting with
 * the caller of kp_unwind; a frame whose return address is undefined
 * (_start, clone) is the last; a walk stops at a return address below
 * 0x4000. KOTOBA_PROFILE_UNWIND=verify runs both and compares.
 *
 * Nothing here allocates from the app's heap: the cache is mmapped, the
 * thread's stack bounds come from /proc/self/maps read with raw syscalls
 * into a stack buffer. The cache is cleared when a module is unmapped
 * (dlclose interposer, and a module scan that finds one gone).
 */
#include "state.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(DLFO_STRUCT_HAS_EH_DBASE)
#define KP_FAST_UNWIND 1
#endif

/* ---- counters -------------------------------------------------------------- */

/* Stacks kp_unwind() left to libunwind (returned -1 for). */
_Atomic uint64_t kp_unwind_fallback_n;

/* ---- the rule cache ---------------------------------------------------------- */

/*
 * A word: bits 63..31 = pc >> CACHE_BITS (user pcs are below 2^47, so 33
 * bits suffice), bits 30..0 = the rule. The slot index is the pc's low
 * CACHE_BITS xor its next ones, so the word and its index together name
 * exactly one pc. 0 = empty (no pc is below 2^CACHE_BITS).
 *
 * Rule: bits 0-15 = CFA offset (8..65535); bits 16-26 = k, rbp is saved
 * at CFA - k (k = 8..2040, a multiple of 8, at most the CFA offset), 0 =
 * rbp unchanged; R_RBP: the CFA is rbp + offset, else rsp + offset; R_END:
 * the return address is undefined (the outermost frame); R_BAD: beyond
 * this unwinder; R_NOINFO (with R_BAD): no FDE covers the pc; R_FP (in
 * bit 16, which k being a multiple of 8 leaves free): the frame-pointer
 * frame, CFA = rbp + 16 with rbp saved at CFA - 16 (R_RBP, 16, k = 16
 * too), which the walk takes in fewer steps.
 */
#define CACHE_BITS 14
#define CACHE_SLOTS (1u << CACHE_BITS)
#define CACHE_MASK (CACHE_SLOTS - 1)

#define R_RBP (1u << 27)
#define R_END (1u << 28)
#define R_BAD (1u << 29)
#define R_NOINFO (1u << 30)
#define R_FP (1u << 16)

static _Atomic uint64_t *cache;
/* Bumped by kp_unwind_flush: a walk remembered before (kp_unwind_memo) may
 * have used a rule that is gone. */
static _Atomic uint64_t flush_gen;

static inline uint64_t slot_of(uint64_t pc)
{
	return (pc ^ (pc >> CACHE_BITS)) & CACHE_MASK;
}

static inline uint32_t mk_rule(uint32_t flags, unsigned cfa_off,
			       unsigned rbp_n)
{
	return flags | cfa_off | rbp_n << 19; /* bits 16-26 hold 8 * n */
}

void kp_unwind_flush(void)
{
	if (!cache)
		return;
	atomic_fetch_add(&flush_gen, 1);
	for (uint32_t i = 0; i < CACHE_SLOTS; i++)
		atomic_store_explicit(&cache[i], 0, memory_order_relaxed);
}

/* ---- per-thread stack bounds --------------------------------------------------- */

struct ustk {
	uintptr_t lo, hi;   /* the mapping that holds the stack */
	uint32_t lookups;   /* maps reads by this thread */
};
static __thread struct ustk ustk __attribute__((tls_model("initial-exec")));

#define MAX_LOOKUPS 64 /* then the thread stays with libunwind */

/* The mapping of /proc/self/maps that holds addr. @return 0 when found. */
static int find_mapping(uintptr_t addr, uintptr_t *lo, uintptr_t *hi)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps",
			      O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[4096];
	size_t have = 0;
	int found = -1, done = 0;
	while (!done) {
		long r = syscall(SYS_read, fd, buf + have, sizeof(buf) - have);
		if (r <= 0)
			break;
		atomic_fetch_add_explicit(&kp_self_rchar, (uint64_t)r,
					  memory_order_relaxed);
		have += (size_t)r;
		const char *p = buf, *end = buf + have;
		for (;;) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			if (!nl)
				break;
			const char *s = p;
			uintptr_t a = kp_parse_hex(&s, nl);
			uintptr_t b = 0;
			if (s < nl && *s == '-') {
				s++;
				b = kp_parse_hex(&s, nl);
			}
			p = nl + 1;
			if (a > addr) {
				done = 1;
				break;
			}
			if (addr < b) {
				*lo = a;
				*hi = b;
				found = 0;
				done = 1;
				break;
			}
		}
		size_t left = (size_t)(end - p);
		if (left == sizeof(buf))
			break; /* a line longer than the buffer: give up */
		memmove(buf, p, left);
		have = left;
	}
	syscall(SYS_close, fd);
	return found;
}

static __attribute__((noinline)) int stack_bounds_slow(uintptr_t sp,
							uintptr_t *hi)
{
	struct ustk *u = &ustk;
	if (u->lookups >= MAX_LOOKUPS)
		return -1;
	u->lookups++;
	uintptr_t lo, h;
	/* the walk keeps errno (kp_stack_capture_at: an allocation hook's
	 * common path does not save it); syscall() sets it on failure */
	int saved = errno;
	int rc = find_mapping(sp, &lo, &h);
	errno = saved;
	if (rc != 0)
		return -1;
	/* A CPU sample's handler may run between these stores and use the
	 * bounds: never let it see one old and one new. */
	u->hi = 0;
	atomic_signal_fence(memory_order_seq_cst);
	u->lo = lo;
	atomic_signal_fence(memory_order_seq_cst);
	u->hi = h;
	*hi = h;
	return 0;
}

/* The top of the thread's stack mapping that holds sp. @return 0, -1 when
 * not known (then the fast unwinder is not used). */
static KP_ALWAYS_INLINE int stack_bounds(uintptr_t sp, uintptr_t *hi)
{
	struct ustk *u = &ustk;
	if (KP_LIKELY(sp >= u->lo && sp < u->hi)) {
		*hi = u->hi;
		return 0;
	}
	return stack_bounds_slow(sp, hi);
}

#ifdef KP_FAST_UNWIND

/* ---- DWARF call-frame information ------------------------------------------- */

#define DW_EH_PE_omit 0xff
#define DW_EH_PE_absptr 0x00
#define DW_EH_PE_uleb128 0x01
#define DW_EH_PE_udata2 0x02
#define DW_EH_PE_udata4 0x03
#define DW_EH_PE_udata8 0x04
#define DW_EH_PE_sleb128 0x09
#define DW_EH_PE_sdata2 0x0a
#define DW_EH_PE_sdata4 0x0b
#define DW_EH_PE_sdata8 0x0c
#define DW_EH_PE_pcrel 0x10
#define DW_EH_PE_datarel 0x30
#define DW_EH_PE_indirect 0x80

/* DWARF register numbers (x86-64 psABI) */
#define DWREG_RBP 6
#define DWREG_RSP 7
#define DWREG_RA 16

struct rd {
	const uint8_t *p, *end;
	int bad;
};

static uint64_t uleb(struct rd *r)
{
	uint64_t v = 0;
	unsigned shift = 0;
	while (r->p < r->end) {
		uint8_t b = *r->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return v;
	}
	r->bad = 1;
	return 0;
}

static int64_t sleb(struct rd *r)
{
	int64_t v = 0;
	unsigned shift = 0;
	while (r->p < r->end) {
		uint8_t b = *r->p++;
		if (shift < 64)
			v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
		shift += 7;
		if (!(b & 0x80)) {
			if (shift < 64 && (b & 0x40))
				v |= -((int64_t)1 << shift);
			return v;
		}
	}
	r->bad = 1;
	return 0;
}

static uint64_t fixed(struct rd *r, unsigned n)
{
	if ((size_t)(r->end - r->p) < n) {
		r->bad = 1;
		return 0;
	}
	uint64_t v = 0;
	memcpy(&v, r->p, n); /* little-endian */
	r->p += n;
	return v;
}

/* A pointer in encoding enc; datarel is relative to dbase. */
static uint64_t enc_ptr(struct rd *r, uint8_t enc, uint64_t dbase)
{
	if (enc == DW_EH_PE_omit)
		return 0;
	uint64_t here = (uint64_t)(uintptr_t)r->p, v;
	switch (enc & 0x0f) {
	case DW_EH_PE_absptr: v = fixed(r, 8); break;
	case DW_EH_PE_uleb128: v = uleb(r); break;
	case DW_EH_PE_udata2: v = fixed(r, 2); break;
	case DW_EH_PE_udata4: v = fixed(r, 4); break;
	case DW_EH_PE_udata8: v = fixed(r, 8); break;
	case DW_EH_PE_sleb128: v = (uint64_t)sleb(r); break;
	case DW_EH_PE_sdata2: v = (uint64_t)(int64_t)(int16_t)fixed(r, 2); break;
	case DW_EH_PE_sdata4: v = (uint64_t)(int64_t)(int32_t)fixed(r, 4); break;
	case DW_EH_PE_sdata8: v = fixed(r, 8); break;
	default: r->bad = 1; return 0;
	}
	switch (enc & 0x70) {
	case 0: break;
	case DW_EH_PE_pcrel: v += here; break;
	case DW_EH_PE_datarel: v += dbase; break;
	default: r->bad = 1; return 0;
	}
	if (enc & DW_EH_PE_indirect) {
		/* Only personality pointers are indirect; their value is not
		 * needed, and reading it could touch memory we don't know. */
		return 0;
	}
	return v;
}

/* The rule of one register we track. */
enum { W_SAME = 0, W_OFF, W_UNDEF, W_OTHER };
struct regrule {
	uint8_t where;
	int64_t off; /* W_OFF: saved at CFA + off */
};

struct cfa_state {
	int cfa_reg;     /* DWARF register, -1 = expression */
	int64_t cfa_off;
	struct regrule rbp, ra;
};

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint64_t ra_reg;
	uint8_t fde_enc;
	int signal;
	int z;           /* 'z': FDEs carry an augmentation length */
	const uint8_t *insns, *insns_end;
};

static int parse_cie(const uint8_t *p, struct cie *c, uint64_t dbase)
{
	struct rd r = { p, p + 4, 0 };
	uint64_t len = fixed(&r, 4);
	if (len == 0xffffffffu || len == 0 || r.bad)
		return -1;
	r.end = r.p + len;
	if (fixed(&r, 4) != 0) /* CIE id */
		return -1;
	uint8_t version = (uint8_t)fixed(&r, 1);
	if (version != 1 && version != 3 && version != 4)
		return -1;
	const char *aug = (const char *)r.p;
	size_t alen = strnlen(aug, (size_t)(r.end - r.p));
	if (alen == (size_t)(r.end - r.p))
		return -1;
	r.p += alen + 1;
	if (version == 4) {
		fixed(&r, 1); /* address size */
		fixed(&r, 1); /* segment selector size */
	}
	c->code_align = uleb(&r);
	c->data_align = sleb(&r);
	c->ra_reg = version == 1 ? fixed(&r, 1) : uleb(&r);
	c->fde_enc = DW_EH_PE_absptr;
	c->signal = 0;
	c->z = aug[0] == 'z';
	if (c->z) {
		uint64_t alen2 = uleb(&r);
		if (r.bad || (uint64_t)(r.end - r.p) < alen2)
			return -1;
		struct rd a = { r.p, r.p + alen2, 0 };
		for (const char *s = aug + 1; *s; s++) {
			switch (*s) {
			case 'R': c->fde_enc = (uint8_t)fixed(&a, 1); break;
			case 'L': fixed(&a, 1); break;
			case 'P': {
				uint8_t e = (uint8_t)fixed(&a, 1);
				enc_ptr(&a, e, dbase);
				break;
			}
			case 'S': c->signal = 1; break;
			default: return -1;
			}
			if (a.bad)
				return -1;
		}
		r.p += alen2;
	} else if (aug[0] != '\0') {
		return -1;
	}
	if (r.bad)
		return -1;
	c->insns = r.p;
	c->insns_end = r.end;
	return 0;
}

#define MAX_REMEMBER 8

/*
 * Run the CFA program ins[..end) from loc while loc <= pc (the rows of a
 * table up to pc). init: the state after the CIE's program (for restore),
 * NULL while running the CIE's own. @return 0, -1 on what we don't follow.
 */
static int run_cfa(struct rd *r, uint64_t loc, uint64_t pc,
		   const struct cie *c, struct cfa_state *st,
		   const struct cfa_state *init, uint64_t dbase)
{
	struct cfa_state stack[MAX_REMEMBER];
	unsigned depth = 0;
	while (r->p < r->end) {
		uint8_t op = *r->p++;
		uint64_t reg, delta = 0;
		int64_t off;
		int adv = 0;
		switch (op >> 6) {
		case 1:
			delta = (op & 0x3f) * c->code_align;
			adv = 1;
			break;
		case 2:
			reg = op & 0x3f;
			off = (int64_t)uleb(r) * c->data_align;
			goto set_off;
		case 3:
			reg = op & 0x3f;
			goto restore;
		default:
			break;
		}
		if (!adv) {
			switch (op) {
			case 0x00: /* nop */
				break;
			case 0x01: { /* set_loc */
				uint64_t to = enc_ptr(r, c->fde_enc, dbase);
				if (to > pc)
					return 0;
				loc = to;
				break;
			}
			case 0x02: delta = fixed(r, 1) * c->code_align; adv = 1; break;
			case 0x03: delta = fixed(r, 2) * c->code_align; adv = 1; break;
			case 0x04: delta = fixed(r, 4) * c->code_align; adv = 1; break;
			case 0x05: /* offset_extended */
				reg = uleb(r);
				off = (int64_t)uleb(r) * c->data_align;
				goto set_off;
			case 0x06: /* restore_extended */
				reg = uleb(r);
				goto restore;
			case 0x07: /* undefined */
				reg = uleb(r);
				if (reg == DWREG_RBP)
					st->rbp.where = W_UNDEF;
				else if (reg == DWREG_RA)
					st->ra.where = W_UNDEF;
				break;
			case 0x08: /* same_value */
				reg = uleb(r);
				if (reg == DWREG_RBP)
					st->rbp.where = W_SAME;
				else if (reg == DWREG_RA)
					st->ra.where = W_OTHER;
				break;
			case 0x09: /* register */
				reg = uleb(r);
				uleb(r);
				if (reg == DWREG_RBP)
					st->rbp.where = W_OTHER;
				else if (reg == DWREG_RA)
					st->ra.where = W_OTHER;
				break;
			case 0x0a: /* remember_state */
				if (depth == MAX_REMEMBER)
					return -1;
				stack[depth++] = *st;
				break;
			case 0x0b: /* restore_state */
				if (depth == 0)
					return -1;
				*st = stack[--depth];
				break;
			case 0x0c: /* def_cfa */
				st->cfa_reg = (int)uleb(r);
				st->cfa_off = (int64_t)uleb(r);
				break;
			case 0x0d: /* def_cfa_register */
				st->cfa_reg = (int)uleb(r);
				break;
			case 0x0e: /* def_cfa_offset */
				st->cfa_off = (int64_t)uleb(r);
				break;
			case 0x0f: { /* def_cfa_expression */
				uint64_t n = uleb(r);
				if ((uint64_t)(r->end - r->p) < n)
					return -1;
				r->p += n;
				st->cfa_reg = -1;
				break;
			}
			case 0x10:   /* expression */
			case 0x16: { /* val_expression */
				reg = uleb(r);
				uint64_t n = uleb(r);
				if ((uint64_t)(r->end - r->p) < n)
					return -1;
				r->p += n;
				if (reg == DWREG_RBP)
					st->rbp.where = W_OTHER;
				else if (reg == DWREG_RA)
					st->ra.where = W_OTHER;
				break;
			}
			case 0x11: /* offset_extended_sf */
				reg = uleb(r);
				off = sleb(r) * c->data_align;
				goto set_off;
			case 0x12: /* def_cfa_sf */
				st->cfa_reg = (int)uleb(r);
				st->cfa_off = sleb(r) * c->data_align;
				break;
			case 0x13: /* def_cfa_offset_sf */
				st->cfa_off = sleb(r) * c->data_align;
				break;
			case 0x14:   /* val_offset */
			case 0x15: { /* val_offset_sf */
				reg = uleb(r);
				if (op == 0x14)
					uleb(r);
				else
					sleb(r);
				if (reg == DWREG_RBP)
					st->rbp.where = W_OTHER;
				else if (reg == DWREG_RA)
					st->ra.where = W_OTHER;
				break;
			}
			case 0x2e: /* GNU_args_size */
				uleb(r);
				break;
			case 0x2f: /* GNU_negative_offset_extended */
				reg = uleb(r);
				off = -(int64_t)uleb(r) * c->data_align;
				goto set_off;
			default:
				return -1;
			}
		}
		if (r->bad)
			return -1;
		if (adv) {
			if (loc + delta > pc)
				return 0;
			loc += delta;
		}
		continue;
	set_off:
		if (r->bad)
			return -1;
		if (reg == DWREG_RBP)
			st->rbp = (struct regrule){ W_OFF, off };
		else if (reg == DWREG_RA)
			st->ra = (struct regrule){ W_OFF, off };
		continue;
	restore:
		if (!init) /* restore inside a CIE */
			return -1;
		if (reg == DWREG_RBP)
			st->rbp = init->rbp;
		else if (reg == DWREG_RA)
			st->ra = init->ra;
	}
	return r->bad ? -1 : 0;
}

#define NO_FDE ((const uint8_t *)1)

/* The FDE of pc through .eh_frame_hdr's table: NO_FDE when no FDE covers
 * pc, NULL when the table is not one we read. */
static const uint8_t *find_fde(const uint8_t *hdr, uint64_t pc)
{
	if (hdr[0] != 1)
		return NULL;
	uint8_t fde_ptr_enc = hdr[1], count_enc = hdr[2], table_enc = hdr[3];
	uint64_t base = (uint64_t)(uintptr_t)hdr;
	struct rd r = { hdr + 4, hdr + 4 + 32, 0 };
	enc_ptr(&r, fde_ptr_enc, base); /* eh_frame_ptr */
	uint64_t count = enc_ptr(&r, count_enc, base);
	if (r.bad || count_enc == DW_EH_PE_omit ||
	    table_enc != (DW_EH_PE_datarel | DW_EH_PE_sdata4) || count == 0)
		return NULL;
	const int32_t *tab = (const int32_t *)(uintptr_t)r.p;
	uint64_t lo = 0, hi = count;
	/* The last entry whose initial location is <= pc. */
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (base + (uint64_t)(int64_t)tab[2 * mid] <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if (base + (uint64_t)(int64_t)tab[2 * lo] > pc)
		return NO_FDE;
	/* (Whether pc lies past the end of this FDE's range, the caller
	 * sees: the FDE's own encoding says where it ends.) */
	return (const uint8_t *)(uintptr_t)(base +
					    (uint64_t)(int64_t)tab[2 * lo + 1]);
}

/* The rule for return address pc + 1 (pc = the call instruction's last byte). */
static uint32_t compute_rule(uint64_t pc)
{
	struct dl_find_object fo;
	if (_dl_find_object((void *)(uintptr_t)pc, &fo) != 0 || !fo.dlfo_eh_frame)
		return R_BAD;
	uint64_t dbase = (uint64_t)(uintptr_t)fo.dlfo_eh_frame;
	const uint8_t *fde = find_fde(fo.dlfo_eh_frame, pc);
	if (fde == NO_FDE) /* e.g. ld.so's _dl_start_user */
		return R_BAD | R_NOINFO;
	if (!fde)
		return R_BAD;
	/*
	 * The object's unwind data is read as the loader maps it, trusted as
	 * libgcc's and libunwind's unwinders trust it; reads stay within the
	 * lengths it gives. (dlfo_map_start/end cannot bound them: for a
	 * non-PIE program they span its text only, not its .eh_frame.)
	 */
	struct rd r = { fde, fde + 4, 0 };
	uint64_t len = fixed(&r, 4);
	if (len < 8 || len == 0xffffffffu)
		return R_BAD;
	r.end = r.p + len;
	const uint8_t *idp = r.p;
	uint32_t cie_off = (uint32_t)fixed(&r, 4);
	const uint8_t *ciep = idp - cie_off;
	if (cie_off == 0 || cie_off > (uintptr_t)idp)
		return R_BAD;
	struct cie c;
	if (parse_cie(ciep, &c, dbase) != 0 || c.signal ||
	    c.ra_reg != DWREG_RA)
		return R_BAD;
	uint64_t start = enc_ptr(&r, c.fde_enc, dbase);
	uint64_t range = enc_ptr(&r, c.fde_enc & 0x0f, dbase);
	if (r.bad)
		return R_BAD;
	if (pc < start || pc - start >= range) /* in a gap between FDEs */
		return R_BAD | R_NOINFO;
	if (c.z) { /* the FDE's augmentation data (LSDA pointer): skip */
		uint64_t n = uleb(&r);
		if (r.bad || (uint64_t)(r.end - r.p) < n)
			return R_BAD;
		r.p += n;
	}
	struct cfa_state st = { -1, 0, { W_SAME, 0 }, { W_UNDEF, 0 } };
	struct rd ci = { c.insns, c.insns_end, 0 };
	if (run_cfa(&ci, 0, UINT64_MAX, &c, &st, NULL, dbase) != 0)
		return R_BAD;
	struct cfa_state init = st;
	if (run_cfa(&r, start, pc, &c, &st, &init, dbase) != 0)
		return R_BAD;
	if (st.ra.where == W_UNDEF)
		return R_END;
	if (st.ra.where != W_OFF || st.ra.off != -8)
		return R_BAD;
	if ((st.cfa_reg != DWREG_RSP && st.cfa_reg != DWREG_RBP) ||
	    st.cfa_off < 8 || st.cfa_off > 0xffff)
		return R_BAD;
	unsigned rbp_n = 0;
	if (st.rbp.where == W_OFF) {
		if (st.rbp.off >= 0 || (st.rbp.off & 7) || st.rbp.off < -8 * 255)
			return R_BAD;
		rbp_n = (unsigned)(-st.rbp.off / 8);
	} else if (st.rbp.where != W_SAME) {
		return R_BAD;
	}
	/* The saved rbp lies at or above the CFA's base register. */
	if (8 * (int64_t)rbp_n > st.cfa_off)
		return R_BAD;
	if (st.cfa_reg == DWREG_RBP && st.cfa_off == 16 && rbp_n == 2)
		return mk_rule(R_RBP | R_FP, 16, 2);
	return mk_rule(st.cfa_reg == DWREG_RBP ? R_RBP : 0,
		       (unsigned)st.cfa_off, rbp_n);
}

static __attribute__((noinline)) uint64_t lookup_miss(_Atomic uint64_t *c,
						     uint64_t i, uint64_t ra)
{
	int saved = errno; /* as in stack_bounds_slow */
	uint32_t rule = compute_rule(ra - 1);
	errno = saved;
	atomic_store_explicit(&c[i], (ra >> CACHE_BITS) << 31 | rule,
			      memory_order_relaxed);
	return rule;
}

/* The rule of return address ra (the cache is keyed by it; the rule is
 * that of the call, ra - 1). Only the low 31 bits of the result count. */
static KP_ALWAYS_INLINE uint64_t lookup(_Atomic uint64_t *c, uint64_t ra)
{
	uint64_t i = slot_of(ra);
	uint64_t w = atomic_load_explicit(&c[i], memory_order_relaxed);
	if (KP_LIKELY((w >> 31) == (ra >> CACHE_BITS)))
		return w;
	return lookup_miss(c, i, ra);
}

#endif /* KP_FAST_UNWIND */

int kp_unwind_init(void)
{
#ifdef KP_FAST_UNWIND
	void *p = kp_own_map(CACHE_SLOTS * sizeof(uint64_t), 0);
	if (!p)
		return -1;
	cache = p;
	return 0;
#else
	return -1;
#endif
}

#ifdef KP_FAST_UNWIND
/*
 * A walk remembered for kp_stack_capture_memo (a thread's last I/O call's,
 * a prepared statement's last run's: struct kp_unwind_memo): a walk is a
 * function of its start (rip, rsp, rbp, the stack's top), the rules of the
 * pcs it meets (the same until kp_unwind_flush) and the stack words it
 * reads (each frame's return address, and rbp where a frame saved it) and
 * uses (an rbp read matters only to a later step whose rule takes rbp). A
 * walk that would start at the same place and whose reads find the same
 * values where they matter gives the same pcs, so the same stack id:
 * kp_unwind_memo_hit checks those words (a load and a compare each)
 * instead of walking and interning again. An I/O loop calls from one
 * place over and over, and so does a statement's run (the allocation
 * hooks, whose stacks keep changing, do not use it: stacktab.c).
 *
 * The walk starts two frames below the frame the memo is keyed by, that
 * of kp_stack_capture_memo (fp: fp[0] its caller's rbp, fp[1] its return
 * address): kp_unwind_memo is called from one place in
 * capture_memo_slow, which is called from one place in
 * kp_stack_capture_memo, so the first two steps of the walk read words
 * that fp decides (capture_memo_slow's frame lies at a fixed distance
 * below it and holds fixed values, and fp[0] and fp[1] are in the key);
 * the steps after those are checked. The reads are recorded only by a
 * walk keyed like the memo's last one, so captures that never repeat pay a
 * few compares a walk.
 */
#define MEMO_STEPS KP_UNWIND_MEMO_STEPS
#define MEMO_FIXED 2  /* the steps the key decides (see above) */

/*
 * One step of a walk, from the state (*rip, *rsp, *rbp) to its caller's.
 * @return 0; 1 when the walk ends at this frame (the outermost, or one
 * without unwind info and rbp 0: libunwind ends there, and guesses
 * otherwise); -1 at a frame beyond this unwinder. *rbp_at: where rbp was
 * read, 0 when it was not; *rbp_used: whether the step depended on rbp's
 * value (a frame pointer, a CFA from rbp, the end of a walk without
 * unwind info): the value some step before read, or the walk's start.
 *
 * Every read lies in [rsp, top), this thread's stack above the frame being
 * unwound: the CFA is at least 8 above its base register, and rbp's save
 * slot no lower than that register (compute_rule guarantees both); an rbp
 * base must itself lie in [rsp, top).
 */
static KP_ALWAYS_INLINE int step(_Atomic uint64_t *c, uint64_t top,
				 uint64_t top16, uint64_t *rip, uint64_t *rsp,
				 uint64_t *rbp, uint64_t *rbp_at, int *rbp_used)
{
	uint64_t rule = lookup(c, *rip), cfa;
	*rbp_used = (rule & (R_FP | R_RBP | R_END | R_BAD)) != 0;
	if (KP_LIKELY(rule & R_FP)) {
		/* the reads are rbp[0] and rbp[1]: rbp in [rsp, top16 =
		 * top - 16] covers both, and the CFA's bound */
		uint64_t b = *rbp;
		if (KP_UNLIKELY(b < *rsp) || KP_UNLIKELY(b > top16))
			return -1;
		const uint64_t *f = (const uint64_t *)(uintptr_t)b;
		*rip = f[1];
		*rbp = f[0];
		*rsp = b + 16;
		*rbp_at = b;
		return 0;
	}
	if (KP_LIKELY(!(rule & (R_RBP | R_END | R_BAD)))) {
		cfa = *rsp + (rule & 0xffff); /* (one test for the common) */
	} else {
		if (KP_UNLIKELY(rule & (R_END | R_BAD)))
			return (rule & R_END) ||
			       ((rule & R_NOINFO) && *rbp == 0) ? 1 : -1;
		if (KP_UNLIKELY(*rbp < *rsp) || KP_UNLIKELY(*rbp >= top))
			return -1;
		cfa = *rbp + (rule & 0xffff);
	}
	if (KP_UNLIKELY(cfa > top))
		return -1;
	*rip = ((const uint64_t *)(uintptr_t)cfa)[-1];
	uint64_t k = (rule >> 16) & 0x7f8;
	*rbp_at = k ? cfa - k : 0;
	if (k)
		*rbp = *(const uint64_t *)(uintptr_t)(cfa - k);
	*rsp = cfa;
	return 0;
}

/*
 * The checks a remembered walk gets (struct kp_unwind_memo): each step's
 * return address, and the rbp a step read where a later step depends on
 * it (code built without frame pointers saves rbp like any register, and
 * no step reads it back: a walk through it is its return addresses; four
 * words checked a step before). An rbp read waits (pend) until a step
 * depends on it, or a newer read replaces it. The first MEMO_FIXED steps,
 * which the key decides, are kept only for kp_unwind_memo's test of that.
 */
struct memo_rec {
	uint32_t ns;            /* steps */
	uint64_t pend_at, pend; /* an rbp read not yet checked (0: none) */
};

/* Room: walk notes at most MEMO_STEPS steps, each past the first
 * MEMO_FIXED adding at most two checks, and its end at most one. */
_Static_assert(2 * (MEMO_STEPS - MEMO_FIXED) + 1 <= KP_UNWIND_MEMO_CHECKS,
	       "a remembered walk's checks fit check[]");

static KP_ALWAYS_INLINE void memo_check(struct kp_unwind_memo *m,
					uint64_t at, uint64_t word)
{
	m->check[m->nchecks].at = at;
	m->check[m->nchecks++].word = word;
}

/* A step depended on rbp's value (rbp_used): the read that gave it, if
 * pending, becomes a check. */
static KP_ALWAYS_INLINE void memo_rbp_used(struct kp_unwind_memo *m,
					   struct memo_rec *r, int rbp_used)
{
	if (rbp_used && r->pend_at) {
		memo_check(m, r->pend_at, r->pend);
		r->pend_at = 0;
	}
}

/* The step just counted in r->ns: it depended on rbp (rbp_used), then
 * read the return address ra at ra_at and rbp at rbp_at (0: none). */
static KP_ALWAYS_INLINE void memo_note(struct kp_unwind_memo *m,
				       struct memo_rec *r, int rbp_used,
				       uint64_t ra_at, uint64_t ra,
				       uint64_t rbp_at, uint64_t rbp)
{
	uint32_t i = r->ns - 1;
	if (i < MEMO_FIXED) {
		if (i == 0) {
			m->rbp0 = rbp;
		} else {
			m->ra_at1 = ra_at;
			m->rbp_at1 = rbp_at;
		}
		return;
	}
	memo_rbp_used(m, r, rbp_used);
	memo_check(m, ra_at, ra);
	if (rbp_at) { /* (else rbp keeps the value pending, if any) */
		r->pend_at = rbp_at;
		r->pend = rbp;
	}
}

/*
 * The walk from registers (rip = the first value stored: a return address,
 * or an interrupted pc + 1) within [rsp, top). @return the pcs stored, or
 * -1 at a frame beyond this unwinder. Async-signal-safe: the cache is
 * lock-free, a miss reads loaded objects' .eh_frame through
 * _dl_find_object, which takes no lock.
 */
static KP_ALWAYS_INLINE int walk(_Atomic uint64_t *c, uint64_t rip,
				 uint64_t rsp, uint64_t rbp, uint64_t top,
				 uint64_t *pcs, int max,
				 struct kp_unwind_memo *m, uint64_t *hash)
{
	if (max <= 0) {
		if (hash)
			*hash = kp_stack_hash_fin(KP_STACK_HASH_SEED, 0);
		return 0;
	}
	uint64_t *out = pcs, *end = pcs + max;
	/* m: the checks, recorded while there is room (more than
	 * MEMO_STEPS steps: not remembered) */
	struct memo_rec mr = { 0, 0, 0 };
	if (m)
		m->nchecks = 0;
	/* hash: kp_stack_hash of the pcs stored, as they are */
	uint64_t h = KP_STACK_HASH_SEED, top16 = top - 16;
	*out++ = rip;
	if (hash)
		h = kp_stack_hash_step(h, rip);
	while (out < end) {
		uint64_t rbp_at;
		int rbp_used;
		int st = step(c, top, top16, &rip, &rsp, &rbp, &rbp_at,
			      &rbp_used);
		if (KP_UNLIKELY(st != 0)) {
			if (st < 0)
				return -1;
			/* the end (an rbp of 0 may have decided it) */
			if (m)
				memo_rbp_used(m, &mr, rbp_used);
			break;
		}
		if (m && mr.ns++ < MEMO_STEPS)
			memo_note(m, &mr, rbp_used, rsp - 8, rip, rbp_at, rbp);
		if (rip < 0x4000)
			break;
		*out++ = rip;
		if (hash)
			h = kp_stack_hash_step(h, rip);
	}
	if (m)
		m->steps = mr.ns <= MEMO_STEPS ? mr.ns : UINT32_MAX;
	if (hash)
		*hash = kp_stack_hash_fin(h, (uint32_t)(out - pcs));
	return (int)(out - pcs);
}

/* Does memory still hold what m's walk read, past the steps the key
 * decides? (MEMO_FIXED <= m->steps <= MEMO_STEPS) Every check, with no
 * branch on the way. */
static KP_ALWAYS_INLINE int memo_same(const struct kp_unwind_memo *m)
{
	uint64_t d = 0;
#pragma GCC unroll 4
	for (uint32_t i = 0; i < m->nchecks; i++)
		d |= *(const uint64_t *)(uintptr_t)m->check[i].at ^
		     m->check[i].word;
	return d == 0;
}
#endif

__attribute__((noinline)) int kp_unwind(uint64_t *pcs, int max)
{
#ifdef KP_FAST_UNWIND
	_Atomic uint64_t *c = cache;
	if (KP_LIKELY(c != NULL)) {
		/* This function's frame (built with frame pointers): the
		 * caller's registers at the moment it called us. */
		const uintptr_t *fp = __builtin_frame_address(0);
		uint64_t rip = (uint64_t)(uintptr_t)__builtin_return_address(0);
		uint64_t rsp = (uint64_t)(uintptr_t)(fp + 2);
		uintptr_t top;
		if (stack_bounds(rsp, &top) == 0) {
			int n = walk(c, rip, rsp, fp[0], top, pcs, max,
				     NULL, NULL);
			if (KP_LIKELY(n >= 0))
				return n;
		}
	}
#else
	(void)pcs;
	(void)max;
#endif
	atomic_fetch_add_explicit(&kp_unwind_fallback_n, 1, memory_order_relaxed);
	return -1;
}

/* kp_unwind from the frame fp of a function up the caller's stack:
 * pcs[0] = fp[1]; *hash = kp_stack_hash of the pcs stored (when >= 0). */
static KP_ALWAYS_INLINE int unwind_from(const uintptr_t *fp, uint64_t *pcs,
					int max, uint64_t *hash)
{
#ifdef KP_FAST_UNWIND
	_Atomic uint64_t *c = cache;
	if (KP_LIKELY(c != NULL)) {
		/* fp's caller's registers at the moment it called fp's
		 * function: what a walk through that frame would find */
		uint64_t rsp = (uint64_t)(uintptr_t)(fp + 2);
		uintptr_t top;
		if (stack_bounds(rsp, &top) == 0) {
			uint64_t h = 0; /* a known pointer: no test a step */
			int n = walk(c, fp[1], rsp, fp[0], top, pcs, max, NULL,
				     &h);
			*hash = h;
			if (KP_LIKELY(n >= 0))
				return n;
		}
	}
#else
	(void)fp;
	(void)pcs;
	(void)max;
	(void)hash;
#endif
	atomic_fetch_add_explicit(&kp_unwind_fallback_n, 1, memory_order_relaxed);
	return -1;
}

/*
 * From the hook's frame: kprof's own frames are neither walked nor
 * skipped, and the walk stops at depth pcs, hashing them as it goes; a
 * stack seen before then costs the walk and one probe (in one frame: the
 * walk is inline here), and leaves errno alone (stack_bounds_slow and
 * lookup_miss keep it). A hook called from kprof itself (not a tail call:
 * fp[1] is kprof's), libunwind mode and verify take stacktab.c's paths.
 */
uint32_t kp_stack_capture_at(const uintptr_t *fp)
{
	int depth = kp.cfg.stack_depth;
	if (KP_UNLIKELY(kp.cfg.unwind == KP_UNWIND_LIBUNWIND) ||
	    KP_UNLIKELY(fp[1] >= kp.self_lo && fp[1] < kp.self_hi) ||
	    KP_UNLIKELY(depth <= 0))
		return kp_stack_capture_slow(NULL, 0, 0, depth);
	uint64_t buf[KP_MAX_STACK_DEPTH];
	uint64_t h = 0;
	int n = unwind_from(fp, buf, depth, &h);
	if (KP_LIKELY(n > 0) &&
	    KP_LIKELY(kp.cfg.unwind != KP_UNWIND_VERIFY)) {
		uint32_t id = kp_stacktab_find(h);
		if (KP_LIKELY(id))
			return id;
	}
	return kp_stack_capture_slow(buf, n, h, depth);
}

__attribute__((noinline)) int kp_unwind_memo(uint64_t *pcs, int max,
					     const uintptr_t *key_fp,
					     struct kp_unwind_memo *m)
{
#ifdef KP_FAST_UNWIND
	_Atomic uint64_t *c = cache;
	if (KP_LIKELY(c != NULL)) {
		/* as in kp_unwind */
		const uintptr_t *fp = __builtin_frame_address(0);
		uint64_t rip = (uint64_t)(uintptr_t)__builtin_return_address(0);
		uint64_t rsp = (uint64_t)(uintptr_t)(fp + 2);
		uint64_t rbp = fp[0];
		uintptr_t top;
		if (stack_bounds(rsp, &top) == 0) {
			uint64_t gen = atomic_load_explicit(&flush_gen,
							    memory_order_relaxed);
			uint64_t kfp = (uint64_t)(uintptr_t)key_fp;
			int n;
			if (m->fp == kfp && m->rbp == key_fp[0] &&
			    m->ra == key_fp[1] && m->top == top &&
			    m->gen == gen) {
				/* Record the reads only of a walk keyed like
				 * the last one: a loop's second call, not
				 * every call of a program whose stacks keep
				 * changing. */
				n = walk(c, rip, rsp, rbp, top, pcs, max, m, NULL);
				/* the steps the key decides read it */
				if (n >= 0 && m->steps <= MEMO_STEPS &&
				    (m->steps < MEMO_FIXED ||
				     m->ra_at1 != kfp + 8 ||
				     m->rbp_at1 != kfp || m->rbp0 != kfp))
					m->steps = UINT32_MAX;
			} else {
				m->fp = kfp;
				m->rbp = key_fp[0];
				m->ra = key_fp[1];
				m->top = top;
				m->gen = gen;
				m->steps = UINT32_MAX; /* nothing recorded */
				n = walk(c, rip, rsp, rbp, top, pcs, max,
					 NULL, NULL);
			}
			if (KP_LIKELY(n >= 0))
				return n; /* (m->id counts only with the reads) */
			m->steps = UINT32_MAX;
		}
	}
#else
	(void)pcs;
	(void)max;
	(void)key_fp;
#endif
	m->steps = UINT32_MAX;
	atomic_fetch_add_explicit(&kp_unwind_fallback_n, 1, memory_order_relaxed);
	return -1;
}

uint32_t kp_unwind_memo_hit(const uintptr_t *fp,
			    const struct kp_unwind_memo *m)
{
#ifdef KP_FAST_UNWIND
	uintptr_t top;
	if (m->id && m->fp == (uint64_t)(uintptr_t)fp && m->rbp == fp[0] &&
	    m->ra == fp[1] && m->steps <= MEMO_STEPS &&
	    m->gen == atomic_load_explicit(&flush_gen, memory_order_relaxed) &&
	    stack_bounds((uintptr_t)fp, &top) == 0 && m->top == top &&
	    memo_same(m))
		return m->id;
#else
	(void)fp;
	(void)m;
#endif
	return 0;
}

int kp_unwind_regs(uint64_t pc, uint64_t rsp, uint64_t rbp, uint64_t top,
		   uint64_t *pcs, int max)
{
#ifdef KP_FAST_UNWIND
	_Atomic uint64_t *c = cache;
	if (!c || rsp >= top)
		return -1;
	/* pc + 1: the cache holds the rule of key - 1 (return addresses) */
	return walk(c, pc + 1, rsp, rbp, top, pcs, max, NULL, NULL);
#else
	(void)pc;
	(void)rsp;
	(void)rbp;
	(void)top;
	(void)pcs;
	(void)max;
	return -1;
#endif
}

/*
 * dlclose: the module may be unmapped, and other code mapped where it was;
 * its cached rules must go. (The module list itself is rescanned lazily,
 * modules.c; a module unmapped inside libc without dlclose is caught by
 * that rescan, which flushes the cache too.)
 */
KP_EXPORT int dlclose(void *handle)
{
	kp_real_resolve();
	int rc = kp_real.dlclose(handle);
	if (rc == 0)
		kp_unwind_flush();
	return rc;
}
