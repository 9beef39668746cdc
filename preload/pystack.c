/* SPDX-License-Identifier: MIT */
/*
 * Python's own frames in the stacks of allocations, queries, I/O calls,
 * spans, custom events and CPU samples, for python3.11 (Debian 12's
 * python3).
 *
 * python3.11 runs Python code inside _PyEval_EvalFrameDefault without a
 * machine frame per Python function, and writes no perf map (3.12's
 * "-X perf" does): the machine stack of a query a script runs says
 * "_sqlite3 ... _PyEval_EvalFrameDefault ... Py_RunMain", never which
 * line of the script ran it. So where kprof takes such a stack, it also
 * reads the interpreter's frames of the calling thread: its
 * PyThreadState (PyGILState_GetThisThreadState, which works while the
 * thread has released the GIL, as the sqlite3 module does around
 * sqlite3_step), that state's current frame, and each frame's code
 * object, last instruction and caller. Each place in the source
 * (function, file, line) gets a made-up pc in kernel space, where no user
 * code is, named
 * "py::QUALNAME:FILE:LINE" by a JIT_CODE record the writer adds
 * (kp_pystack_name); the analyzer names frames that lie in no module from
 * those records, as it does a JIT's (tools/analyze/perfmap.c). The Python
 * frames go into the machine stack just inside the
 * _PyEval_EvalFrameDefault frame that runs them: the frames from the
 * current one up to the first that entered the eval loop (is_entry)
 * belong to the innermost such machine frame, the next run of them to the
 * next one out, and so on.
 *
 * Reading the interpreter's structures is safe here because the version
 * is checked exactly (Py_Version: 3.11; the offsets below are 3.11's,
 * which tests/unit/t_pyoffsets.c checks against Python's own headers),
 * the frames read are the calling thread's own, which do not change while
 * it is inside the call kprof hooks, and every code object's type is
 * checked before its fields are read. Nothing here calls into Python but
 * PyGILState_GetThisThreadState (a thread-specific-data read; lines are
 * read from the code's location table by pylines.h), and nothing
 * allocates from the program's heap.
 *
 * The machine stack is taken as before (and remembered, kp_unwind_memo);
 * kp_pystack_adorn() turns its id into the id of the stack with the
 * Python frames in. A loop meets the same few machine stacks with the
 * same frames over and over: each thread keeps the last stacks it made
 * by their key (the machine stack and the frames' hash), so the common
 * case is the frames' walk and a compare. A remembered walk's capture (a
 * statement's run, a thread's I/O call: kp_pystack_adorn_memo) also
 * keeps the frames its place met last (struct kp_pychain) and compares
 * the frames' words with them, which skips the hash and the code
 * objects' reads: about a third of the work on a deep Python stack.
 *
 * A CPU sample is different: its signal may come while the interpreter
 * pops a frame (whose memory it may be unmapping), and its stack is
 * interned later, on the writer thread, when the code objects it saw may
 * be gone (at exit, all of them). So the handler reads the frames
 * through the kernel (sread: process_vm_readv on this process, which
 * fails where plain loads would fault) and names each place then
 * (entry_sig, which never waits for the lock), and the sample carries the
 * names' entries (kp_pystack_sample, kp_pystack_sample_stack).
 */
#include "state.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pylines.h"
#include "pyoffsets.h"

/* The made-up pcs: entry i (from 1) is [BASE + 16 i, + 16), its pc + 8,
 * so a lookup of the pc or of pc - 1 (a return address) finds it. */
#define PC_BASE 0xffffffff00000000ull
#define MAX_NAMES (1u << 16)      /* places named: frames at more are nameless */
#define NAME_STORE (8u << 20)     /* bytes of names */
#define NAME_MAX_LEN 480          /* a name is cut here */
#define TAB_BITS 17               /* (code, instruction) -> entry, and
				   * name -> entry */

int kp_pystack_enabled;

static struct {
	void *(*this_thread)(void); /* PyGILState_GetThisThreadState */
	const void *code_type;      /* &PyCode_Type */
	uint64_t eval_lo, eval_hi;  /* _PyEval_EvalFrameDefault's code */
} py;

/* (code, instruction, filename, qualname) -> entry; slots are claimed
 * under the lock and published by their tag (release), read without. */
struct pyslot {
	_Atomic uint64_t tag; /* the key's hash | 1, 0 empty */
	uint64_t code, instr, file, qual;
	uint32_t entry;
};
static struct pyslot *tab;
static uint32_t *byname;          /* name's hash -> entry (under lock) */
static _Atomic int lock;
static _Atomic uint32_t nnames;   /* entries 1..nnames are named */
static uint32_t *name_off;        /* entry -> offset in names, length */
static uint16_t *name_len;
static char *names;
static size_t names_used;         /* under lock */

/* A thread's last stacks, direct-mapped by their key: a few alternate
 * (a query's three allocations and its own stack). */
#define TLS_MEMOS 64
static __thread struct {
	uint64_t key;
	uint32_t id;
} memos[TLS_MEMOS] __attribute__((tls_model("initial-exec")));

/* A loaded object named libpython3.11*? */
static int has_libpython(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	const char *n = info->dlpi_name ? info->dlpi_name : "";
	const char *b = strrchr(n, '/');
	return !strncmp(b ? b + 1 : n, "libpython3.11", 13);
}

/*
 * Is this python3.11: the program's file is python3.11*, or it loaded
 * libpython3.11*? Asked before any dlsym, since a dlsym that fails
 * leaves a message that glibc allocates with the program's malloc and
 * frees later, a free kprof would record of a block it never saw.
 */
static int looks_like_python311(void)
{
	char exe[512];
	kp_self_exe(exe, sizeof(exe));
	if (!strncmp(kp_base_name(exe), "python3.11", 10))
		return 1;
	return dl_iterate_phdr(has_libpython, NULL);
}

void kp_pystack_init(void)
{
	if (!kp.cfg.python || kp.cfg.stack_depth <= 0 ||
	    !looks_like_python311())
		return;
	const unsigned long *ver = dlsym(RTLD_DEFAULT, "Py_Version");
	if (!ver)
		return;
	if ((*ver >> 16) != 0x030b) /* 3.11 only: the offsets are its */
		return;
	py.this_thread = (void *(*)(void))dlsym(RTLD_DEFAULT,
					       "PyGILState_GetThisThreadState");
	py.code_type = dlsym(RTLD_DEFAULT, "PyCode_Type");
	void *eval = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
	Dl_info info;
	const ElfW(Sym) *sym = NULL;
	if (!py.this_thread || !py.code_type || !eval ||
	    !dladdr1(eval, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym ||
	    !sym->st_size)
		return;
	py.eval_lo = (uint64_t)(uintptr_t)eval;
	py.eval_hi = py.eval_lo + sym->st_size;
	tab = kp_map_noreserve(sizeof(*tab) << TAB_BITS);
	byname = kp_map_noreserve(sizeof(*byname) << TAB_BITS);
	name_off = kp_map_noreserve((MAX_NAMES + 1) * sizeof(*name_off));
	name_len = kp_map_noreserve((MAX_NAMES + 1) * sizeof(*name_len));
	names = kp_map_noreserve(NAME_STORE);
	if (!tab || !byname || !name_off || !name_len || !names)
		return;
	kp_pystack_enabled = 1;
}

void kp_pystack_lock(void)
{
	kp_spin_lock(&lock);
}

void kp_pystack_unlock(void)
{
	kp_spin_unlock(&lock);
}

uint32_t kp_pystack_count(void)
{
	return atomic_load_explicit(&nnames, memory_order_acquire);
}

uint64_t kp_pystack_pc(uint32_t entry)
{
	return PC_BASE + 16 * (uint64_t)entry;
}

const char *kp_pystack_name(uint32_t entry, uint32_t *len)
{
	*len = name_len[entry];
	return names + name_off[entry];
}

static KP_ALWAYS_INLINE uint64_t ld(uint64_t p, unsigned off)
{
	uint64_t v;
	memcpy(&v, (const char *)(uintptr_t)p + off, 8);
	return v;
}

/* One frame of the thread's: its code object and its last instruction
 * (an address in the code's bytecode), and whether it entered the eval
 * loop. */
struct pyframe {
	uint64_t code, instr;
	int entry;
};

/* The calling thread's current frame, or 0 where it runs no Python code
 * (or has no Python state). */
static KP_ALWAYS_INLINE uint64_t top_frame(void)
{
	uint64_t ts = (uint64_t)(uintptr_t)py.this_thread();
	uint64_t cf = ts ? ld(ts, PY311_TSTATE_CFRAME) : 0;
	return cf ? ld(cf, PY311_CFRAME_CURRENT_FRAME) : 0;
}

/* One step of a key's hash: each spreads its bits over the word, so that
 * nearby instructions of other stacks cannot cancel out. */
static KP_ALWAYS_INLINE uint64_t spread(uint64_t h, uint64_t v)
{
	h = (h ^ v) * 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 29);
}

/*
 * The frames from fr on, innermost first, at most max of them, into f
 * (when not NULL), and *key their hash with seed. Frames still being set
 * up (their last instruction before their code's first) are left out, as
 * python does, but for one that began an eval loop, whose machine frame
 * is there: it stays as an empty run (code 0). With keep (not NULL),
 * every frame read is noted there as it was read, and keep->n set to how
 * many, more than KP_PYCHAIN_MAX when they did not fit or the walk
 * stopped at a frame it could not read. @return how many frames.
 */
static KP_ALWAYS_INLINE int frames(uint64_t fr, struct pyframe *f, int max,
				   uint64_t *key, struct kp_pychain *keep)
{
	uint64_t h = *key;
	int n = 0;
	uint32_t v = 0;
	for (int guard = 0; fr && n < max && guard < 4 * max; guard++) {
		uint64_t code = ld(fr, PY311_FRAME_F_CODE);
		if (!code || ld(code, 8) != (uint64_t)(uintptr_t)py.code_type) {
			v = UINT32_MAX;
			break; /* not what 3.11's frame holds: stop here */
		}
		uint64_t instr = ld(fr, PY311_FRAME_PREV_INSTR);
		uint8_t entry;
		memcpy(&entry, (const char *)(uintptr_t)fr +
				       PY311_FRAME_IS_ENTRY, 1);
		if (instr >= code + PY311_CODE_CO_CODE_ADAPTIVE) {
			/* the instruction's address says which code object
			 * too */
			h = spread(h, instr + entry);
			if (f) {
				f[n].code = code;
				f[n].instr = instr;
				f[n].entry = entry;
			}
			n++;
		} else if (entry) {
			/* an eval loop that has not started its frame: a run
			 * of no frame (code 0), for its machine frame */
			h = spread(h, 1);
			if (f) {
				f[n].code = 0;
				f[n].instr = 0;
				f[n].entry = 1;
			}
			n++;
		}
		fr = ld(fr, PY311_FRAME_PREVIOUS);
		if (keep) {
			if (v < KP_PYCHAIN_MAX) {
				keep->code[v] = code;
				keep->instr[v] = instr;
				keep->entry[v] = entry;
				keep->next[v] = fr;
			}
			v++;
		}
	}
	if (keep)
		keep->n = v;
	*key = h;
	return n;
}

static KP_ALWAYS_INLINE uint64_t mix(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x9e3779b97f4a7c15ull;
}

/* A Python string as bytes: compact ASCII strings as they are (nearly
 * every file name and function name), others from their cached UTF-8, if
 * any; else "?". */
static const char *py_str(uint64_t s, size_t *len)
{
	uint32_t state;
	if (!s) {
		*len = 1;
		return "?";
	}
	memcpy(&state, (const char *)(uintptr_t)s + PY311_ASCII_STATE, 4);
	uint64_t n = ld(s, PY311_ASCII_LENGTH);
	if ((state & PY311_STATE_COMPACT) && (state & PY311_STATE_ASCII)) {
		*len = n;
		return (const char *)(uintptr_t)s + PY311_ASCII_DATA;
	}
	uint64_t u = ld(s, PY311_COMPACT_UTF8);
	if ((state & PY311_STATE_COMPACT) && u) {
		*len = ld(s, PY311_COMPACT_UTF8_LENGTH);
		return (const char *)(uintptr_t)u;
	}
	*len = 1;
	return "?";
}

/* The slot of key (h, code, instr, file, qual), or the empty slot where
 * it would go; NULL when the probe found neither. */
static struct pyslot *probe(uint64_t h, const struct pyframe *f,
			    uint64_t file, uint64_t qual)
{
	const uint64_t mask = ((uint64_t)1 << TAB_BITS) - 1;
	uint64_t i = h >> (64 - TAB_BITS);
	for (uint64_t k = 0; k < 64; k++, i = (i + 1) & mask) {
		struct pyslot *s = &tab[i];
		uint64_t tag = atomic_load_explicit(&s->tag,
						    memory_order_acquire);
		if (!tag || (tag == h && s->code == f->code &&
			     s->instr == f->instr && s->file == file &&
			     s->qual == qual))
			return s;
	}
	return NULL;
}

/*
 * The entry named name (w bytes, at the end of the store), made if new:
 * one per source place, so that the instructions of one line (a call and
 * the specialised form python3.11 later runs instead) are one frame.
 * Under the lock. @return 0 when full.
 */
static uint32_t entry_named(const char *name, size_t w)
{
	uint64_t h = KP_STACK_HASH_SEED;
	for (size_t i = 0; i < w; i++)
		h = mix(h, (uint8_t)name[i]);
	const uint64_t mask = ((uint64_t)1 << TAB_BITS) - 1;
	for (uint64_t k = 0, i = h >> (64 - TAB_BITS); k < 64;
	     k++, i = (i + 1) & mask) {
		uint32_t e = byname[i];
		if (e && name_len[e] == w &&
		    !memcmp(names + name_off[e], name, w))
			return e;
		if (e)
			continue;
		e = atomic_load_explicit(&nnames, memory_order_relaxed) + 1;
		if (e > MAX_NAMES)
			return 0;
		name_off[e] = (uint32_t)names_used;
		name_len[e] = (uint16_t)w;
		names_used += w + 1;
		byname[i] = e;
		atomic_store_explicit(&nnames, e, memory_order_release);
		return e;
	}
	return 0;
}

/*
 * The line of frame f's last instruction, from its code's location table
 * (pylines.h), under the lock: the cursor stays on the code object last
 * asked about, so an import's run down a module's lines reads its table
 * once (PyCode_Addr2Line reads it from the start: most of what naming
 * the frames of a start-up cost).
 */
static int line_of(const struct pyframe *f)
{
	static uint64_t code, table;
	static struct kp_pylines cur;
	uint64_t lt = ld(f->code, PY311_CODE_CO_LINETABLE);
	if (!lt)
		return -1;
	if (f->code != code || lt != table) {
		int32_t first;
		memcpy(&first, (const char *)(uintptr_t)f->code +
				       PY311_CODE_CO_FIRSTLINENO, 4);
		kp_pylines_init(&cur,
				(const uint8_t *)(uintptr_t)lt + PY311_BYTES_DATA,
				(size_t)ld(lt, PY311_BYTES_SIZE), first);
		code = f->code;
		table = lt;
	}
	return kp_pylines_at(&cur, (int)(f->instr - (f->code +
					PY311_CODE_CO_CODE_ADAPTIVE)));
}

/* What a frame's name is made of: its function, its file, its line. */
struct pyname {
	const char *q, *fn;
	size_t ql, fl;
	int line;
};

/* The name of frame f, its code's fields read straight (the calling
 * thread's own frame: its code is alive). */
static void name_direct(const struct pyframe *f, uint64_t file,
			uint64_t qual, struct pyname *nm)
{
	nm->q = py_str(qual, &nm->ql);
	nm->fn = py_str(file, &nm->fl);
	nm->line = line_of(f);
}

/* "py::QUALNAME:FILE:LINE" at out (NAME_MAX_LEN bytes; line 0 when the
 * table has none), without snprintf: this also runs in a signal handler.
 * @return its length. */
static size_t fmt_name(char *out, const struct pyname *nm)
{
	size_t ql = nm->ql > 200 ? 200 : nm->ql, fl = nm->fl > 240 ? 240 : nm->fl;
	char *p = out;
	memcpy(p, "py::", 4);
	p += 4;
	memcpy(p, nm->q, ql);
	p += ql;
	*p++ = ':';
	memcpy(p, nm->fn, fl);
	p += fl;
	*p++ = ':';
	char d[12];
	unsigned v = nm->line > 0 ? (unsigned)nm->line : 0, k = 0;
	do
		d[k++] = (char)('0' + v % 10);
	while ((v /= 10) && k < sizeof(d));
	while (k)
		*p++ = d[--k];
	*p = 0;
	return (size_t)(p - out);
}

/* A new slot s for frame f, of the entry named "py::QUALNAME:FILE:LINE"
 * (nm, or name_direct's when NULL). Under the lock. @return 0 when
 * full. */
static uint32_t add(struct pyslot *s, uint64_t h, const struct pyframe *f,
		    uint64_t file, uint64_t qual, const struct pyname *nm)
{
	if (names_used + NAME_MAX_LEN > NAME_STORE)
		return 0;
	struct pyname direct;
	if (!nm) {
		name_direct(f, file, qual, &direct);
		nm = &direct;
	}
	size_t w = fmt_name(names + names_used, nm);
	uint32_t e = entry_named(names + names_used, w);
	if (!e)
		return 0;
	s->code = f->code;
	s->instr = f->instr;
	s->file = file;
	s->qual = qual;
	s->entry = e;
	atomic_store_explicit(&s->tag, h, memory_order_release);
	return e;
}

/* The table's tag of frame f's key (never 0: an empty slot). */
static uint64_t tag_of(const struct pyframe *f, uint64_t file, uint64_t qual)
{
	uint64_t h = mix(mix(mix(mix(0, f->code), f->instr), file), qual);
	return (h ^ (h >> 29)) | 1;
}

/* The entry of frame f, made if new. @return 0 when the table is full
 * (the frame is then a nameless pc). */
static uint32_t entry_of(const struct pyframe *f)
{
	uint64_t file = ld(f->code, PY311_CODE_CO_FILENAME);
	uint64_t qual = ld(f->code, PY311_CODE_CO_QUALNAME);
	uint64_t h = tag_of(f, file, qual);
	struct pyslot *s = probe(h, f, file, qual);
	if (s && atomic_load_explicit(&s->tag, memory_order_acquire))
		return s->entry;
	uint32_t e = 0;
	kp_spin_lock(&lock);
	s = probe(h, f, file, qual); /* again: another thread's may be in */
	if (s)
		e = atomic_load_explicit(&s->tag, memory_order_relaxed) ?
			    s->entry :
			    add(s, h, f, file, qual, NULL);
	kp_spin_unlock(&lock);
	return e;
}

#define MAX_PY 48 /* Python frames read (the stack's depth caps them too) */

/* The stack cid with f[0..n)'s frames put in (see the top), each named by
 * entry(). */
static uint32_t with_frames(uint32_t cid, const struct pyframe *f, int n,
			    uint32_t (*entry)(const struct pyframe *))
{
	uint32_t cn;
	const uint64_t *c = kp_stacktab_get(cid, &cn);
	uint64_t out[KP_MAX_STACK_DEPTH];
	uint32_t depth = (uint32_t)kp.cfg.stack_depth, k = 0;
	int j = 0; /* the next Python frame */
	for (uint32_t i = 0; i < cn && k < depth; i++) {
		/* a return address into the eval loop: its run of frames */
		if (j < n && c[i] > py.eval_lo && c[i] <= py.eval_hi) {
			for (; j < n && k < depth; j++) {
				uint32_t e = f[j].code ? entry(&f[j]) : 0;
				if (f[j].code)
					out[k++] = e ? kp_pystack_pc(e) + 8 :
						       PC_BASE + 8; /* nameless */
				if (f[j].entry) {
					j++;
					break;
				}
			}
		}
		if (k < depth)
			out[k++] = c[i];
	}
	return kp_stack_intern_pcs(out, k);
}

/* ---- CPU samples: from a signal handler, and on the writer thread ------- */

/*
 * n bytes at src into dst through the kernel (process_vm_readv on this
 * process): memory that is gone (a frame popped as the signal came, a
 * code object freed since the sample) fails instead of faulting.
 */
static int sread(void *dst, uint64_t src, size_t n)
{
	struct iovec l = { dst, n }, r = { (void *)(uintptr_t)src, n };
	return src && syscall(SYS_process_vm_readv, (long)kp.pid, &l, 1L, &r,
			      1L, 0L) == (long)n ?
		       0 :
		       -1;
}

/* A compact ASCII string read through sread into buf (cap bytes), else
 * "?". */
static const char *sstr(uint64_t s, char *buf, size_t cap, size_t *len)
{
	uint8_t hdr[PY311_ASCII_DATA];
	uint32_t state;
	uint64_t n;
	if (!sread(hdr, s, sizeof(hdr))) {
		memcpy(&state, hdr + PY311_ASCII_STATE, 4);
		memcpy(&n, hdr + PY311_ASCII_LENGTH, 8);
		if (n > cap)
			n = cap;
		if ((state & PY311_STATE_COMPACT) && (state & PY311_STATE_ASCII) &&
		    !sread(buf, s + PY311_ASCII_DATA, n)) {
			*len = n;
			return buf;
		}
	}
	*len = 1;
	return "?";
}

/* The line of frame f, its location table read through sread into a
 * buffer on the stack: -1 when it is larger (a big module's top level).
 * Out of line, as entry_sig is, so that a sample of a thread without
 * Python (whose stack may be small) does not reserve the buffers. */
static __attribute__((noinline)) int sline(const struct pyframe *f)
{
	uint8_t lines[4096];
	int32_t first;
	uint64_t lt, size;
	if (sread(&first, f->code + PY311_CODE_CO_FIRSTLINENO, 4) ||
	    sread(&lt, f->code + PY311_CODE_CO_LINETABLE, 8) ||
	    sread(&size, lt + PY311_BYTES_SIZE, 8) || size > sizeof(lines) ||
	    sread(lines, lt + PY311_BYTES_DATA, size))
		return -1;
	struct kp_pylines c;
	kp_pylines_init(&c, lines, size, first);
	return kp_pylines_at(&c, (int)(f->instr - (f->code +
					   PY311_CODE_CO_CODE_ADAPTIVE)));
}

/*
 * The entry of frame f for a CPU sample, in the signal handler: the
 * table's if it has it, else made with every field read through sread,
 * if the lock is free (a handler never waits: the thread it interrupted
 * may hold it). @return 0: a nameless frame.
 */
static __attribute__((noinline)) uint32_t entry_sig(const struct pyframe *f)
{
	uint64_t fq[3]; /* co_filename, co_name, co_qualname */
	if (sread(fq, f->code + PY311_CODE_CO_FILENAME, sizeof(fq)))
		return 0;
	uint64_t file = fq[0], qual = fq[2];
	uint64_t h = tag_of(f, file, qual);
	struct pyslot *s = probe(h, f, file, qual);
	if (s && atomic_load_explicit(&s->tag, memory_order_acquire))
		return s->entry;
	if (!s || atomic_exchange_explicit(&lock, 1, memory_order_acquire))
		return 0;
	uint32_t e = 0;
	s = probe(h, f, file, qual);
	if (s && atomic_load_explicit(&s->tag, memory_order_relaxed)) {
		e = s->entry;
	} else if (s) {
		char qb[200], fb[240];
		struct pyname nm;
		nm.q = sstr(qual, qb, sizeof(qb), &nm.ql);
		nm.fn = sstr(file, fb, sizeof(fb), &nm.fl);
		nm.line = sline(f);
		e = add(s, h, f, file, qual, &nm);
	}
	kp_spin_unlock(&lock);
	return e;
}

unsigned kp_pystack_sample(uint64_t *w, unsigned max)
{
	uint64_t ts = (uint64_t)(uintptr_t)py.this_thread(), cf, fr;
	if (!ts || sread(&cf, ts + PY311_TSTATE_CFRAME, 8) || !cf ||
	    sread(&fr, cf + PY311_CFRAME_CURRENT_FRAME, 8))
		return 0;
	unsigned n = 0;
	for (unsigned guard = 0; fr && n < max && guard < 4 * max; guard++) {
		uint8_t b[PY311_FRAME_IS_ENTRY + 1];
		struct pyframe f;
		uint64_t type;
		if (sread(b, fr, sizeof(b)))
			break;
		memcpy(&f.code, b + PY311_FRAME_F_CODE, 8);
		memcpy(&f.instr, b + PY311_FRAME_PREV_INSTR, 8);
		f.entry = b[PY311_FRAME_IS_ENTRY] != 0;
		if (!f.code || sread(&type, f.code + 8, 8) ||
		    type != (uint64_t)(uintptr_t)py.code_type)
			break;
		/* a word a frame: its entry, whether it ends its run, and
		 * whether it is an empty run (see frames()) */
		if (f.instr >= f.code + PY311_CODE_CO_CODE_ADAPTIVE)
			w[n++] = entry_sig(&f) | (uint64_t)f.entry << 32;
		else if (f.entry)
			w[n++] = (uint64_t)1 << 32 | (uint64_t)1 << 33;
		memcpy(&fr, b + PY311_FRAME_PREVIOUS, 8);
	}
	return n;
}

/* with_frames' entry() for sampled frames: code holds entry + 1. */
static uint32_t entry_given(const struct pyframe *f)
{
	return (uint32_t)(f->code - 1);
}

uint32_t kp_pystack_sample_stack(uint32_t cid, const uint64_t *w, unsigned n)
{
	struct pyframe f[MAX_PY];
	if (!cid)
		return 0;
	if (n > MAX_PY)
		n = MAX_PY;
	for (unsigned i = 0; i < n; i++) {
		f[i].code = (w[i] >> 33) & 1 ? 0 : (uint32_t)w[i] + (uint64_t)1;
		f[i].instr = 0;
		f[i].entry = (int)((w[i] >> 32) & 1);
	}
	return with_frames(cid, f, (int)n, entry_given);
}

/*
 * Would frames() from fr, the first frame, read what c's last capture's
 * walk read, and so make the same stack? Compared with the frames' own
 * words (code, last instruction, entry flag, caller), without the code
 * objects' type checks: a live frame holds its code object, so a frame
 * that points to the code it pointed to then still points to a code
 * object (the walk that c remembers checked it). Every frame read is
 * this thread's: the first, then each one the one before points to, as
 * c remembers it. @return the stack, 0 when anything differs.
 */
static KP_ALWAYS_INLINE uint32_t chain_hit(const struct kp_pychain *c,
					   uint64_t fr, uint32_t cid)
{
	if (c->cid != cid || c->top != fr || !c->id)
		return 0;
	for (uint32_t i = 0; i < c->n; i++) {
		uint8_t entry;
		memcpy(&entry, (const char *)(uintptr_t)fr +
				       PY311_FRAME_IS_ENTRY, 1);
		uint64_t next = ld(fr, PY311_FRAME_PREVIOUS);
		if ((ld(fr, PY311_FRAME_F_CODE) ^ c->code[i]) |
		    (ld(fr, PY311_FRAME_PREV_INSTR) ^ c->instr[i]) |
		    (next ^ c->next[i]) | (uint64_t)(entry ^ c->entry[i]))
			return 0;
		fr = next; /* not 0 but after the last: c->next[i] */
	}
	return c->id;
}

/* Remember in c the frames from fr as frames() reads them now, with the
 * stack id they made of cid; nothing when the walk stops at a frame it
 * cannot read or reads more than c holds. */
static __attribute__((noinline)) void chain_keep(struct kp_pychain *c,
						 uint64_t fr, uint32_t cid,
						 uint32_t id)
{
	uint64_t key = 0;
	c->id = 0;
	c->top = fr;
	frames(fr, NULL, MAX_PY, &key, c);
	if (c->n <= KP_PYCHAIN_MAX) {
		c->cid = cid;
		c->id = id;
	}
}

/* The stack for the frames from fr, whose key (key) this thread's memos
 * do not hold: the frames named (entry_of) and put into cid; into m. Out
 * of line: its frames' array is no cost to the paths that find the
 * stack. */
static __attribute__((noinline)) uint32_t adorn_new(uint32_t cid, uint64_t fr,
						   uint64_t key,
						   __typeof__(&memos[0]) m)
{
	struct pyframe f[MAX_PY];
	uint64_t again = 0;
	int n = frames(fr, f, MAX_PY, &again, NULL);
	int saved = errno; /* the allocation hooks' callers keep theirs */
	uint32_t id = with_frames(cid, f, n, entry_of);
	errno = saved;
	m->key = key;
	m->id = id;
	return id;
}

/*
 * The stack cid with the frames from fr, the first one, in, by their key:
 * mostly this thread made it before, and its memo says which. With c
 * (NULL: none), the frames of the last capture from the caller's place
 * (a statement's run, a thread's I/O call), whose frames the caller
 * compared already (hit: the stack they name, 0 when they differ): c
 * remembers the frames once the same key comes twice in a row from its
 * place, so that a place whose Python caller keeps changing pays one
 * compare for it.
 */
static KP_ALWAYS_INLINE uint32_t adorn_key(uint32_t cid, uint64_t fr,
					   struct kp_pychain *c, uint32_t hit)
{
	/* The machine stack's id, a small number, is spread first: mixed
	 * in as it is, stack 5 at one instruction and stack 7 at the
	 * instruction 2 bytes on would share a key. */
	uint64_t key = (cid + 1) * 0xc2b2ae3d27d4eb4full;
	key ^= key >> 31;
	if (!frames(fr, NULL, MAX_PY, &key, NULL))
		return cid;
	__typeof__(&memos[0]) m = &memos[key % TLS_MEMOS];
	uint32_t id = m->id;
	if (KP_UNLIKELY(m->key != key || !id)) {
		id = adorn_new(cid, fr, key, m);
		if (!id)
			return cid;
	}
	if (c) {
		if (hit) /* verify: the remembered frames against the key's */
			kp_stack_verify_memo(hit, id);
		else if (c->key == key)
			chain_keep(c, fr, cid, id);
		c->key = key;
	}
	return id;
}

uint32_t kp_pystack_adorn(uint32_t cid)
{
	if (!cid)
		return 0;
	uint64_t fr = top_frame();
	return fr ? adorn_key(cid, fr, NULL, 0) : cid;
}

uint32_t kp_pystack_adorn_memo(uint32_t cid, struct kp_pychain *c)
{
	if (!cid)
		return 0;
	uint64_t fr = top_frame();
	if (!fr)
		return cid;
	uint32_t hit = c ? chain_hit(c, fr, cid) : 0;
	if (KP_LIKELY(hit) && KP_LIKELY(kp.cfg.unwind != KP_UNWIND_VERIFY))
		return hit;
	return adorn_key(cid, fr, c, hit);
}
