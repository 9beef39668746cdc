/* SPDX-License-Identifier: MIT */
/*
 * The I/O pass: per file (pipes, sockets, terminals grouped by kind) and
 * per operation, calls, bytes, errors, time and latency quantiles (hist.h:
 * relative error <= KP_HIST_REL_ERROR, exact merges across threads and
 * processes); access patterns with Darshan's rules; access sizes; re-read
 * bytes; fsyncs; the blind spot from IO_SUMMARY; findings.
 *
 * Access pattern (Darshan, darshan-posix.c POSIX_RECORD_READ/WRITE), per
 * process and file, for syscall-layer reads and writes that moved data
 * (ret > 0) at a known offset:
 *   sequential   offset > last byte accessed before in that direction,
 *   consecutive  offset == last byte + 1 (a subset of sequential),
 *   random       all others (Drishti: total - sequential).
 * One deliberate difference: Darshan starts "last byte" at 0, so a first
 * access at offset 0 is neither sequential nor consecutive there; here it
 * starts at -1 (before the file), so reading a file from its start is
 * consecutive from the first call.
 *
 * Byte totals add up the syscall layer and the stdio layer separately
 * (lib/io.h: the two never see the same bytes in glibc).
 */
#include "analyze.h"
#include "hist.h"
#include "io.h"
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Pseudo ops after the real ones: fd lifecycle. */
#define OP_OPEN (KP_IO_OP_MAX + 1)
#define OP_CLOSE (KP_IO_OP_MAX + 2)
#define NOPS (KP_IO_OP_MAX + 3)

#define NSIZE 10 /* Darshan's access size buckets */
static const uint64_t size_hi[NSIZE] = {
	100, 1024, 10240, 102400, 1048576, 4194304, 10485760, 104857600,
	1073741824, UINT64_MAX };
static const char *const size_name[NSIZE] = {
	"0_100", "100_1K", "1K_10K", "10K_100K", "100K_1M", "1M_4M",
	"4M_10M", "10M_100M", "100M_1G", "1G_PLUS" };

#define SMALL_IO 4096        /* a read or write under this is small */
#define MAX_FILES (1u << 20) /* then everything goes to "<other>" */
#define MAX_INTERVALS 1024   /* re-read tracking per process and file:
			      * bounds the work per read (a memmove) */
#define MAX_FDS (1u << 20)
#define NERR 4               /* errnos named in a file's evidence */

static const char *op_name(unsigned op)
{
	if (op == OP_OPEN)
		return "open";
	if (op == OP_CLOSE)
		return "close";
	return kp_io_op_name(op);
}

struct opstat {
	uint64_t calls, bytes, errors, total_ns;
	struct kp_hist lat;
};

struct file {
	char *path;
	uint8_t kind;
	uint32_t next;  /* hash chain */
	uint64_t hash;
	struct opstat ops[NOPS];
	uint64_t total_ns;
	uint64_t classified[2], seq[2], consec[2]; /* [0] read, [1] write */
	uint64_t sizes[2][NSIZE];
	uint64_t small[2], rw_calls[2];            /* syscall layer */
	uint64_t reread_bytes;
	int reread_capped;
	uint64_t extent;                           /* highest byte + 1 */
	uint64_t syncs;
	/* failed opens that answer a question (find_answers()): of a path
	 * that does not exist (IO06), or an exclusive create of one that
	 * does (IO10) */
	struct answers {
		uint64_t n, ns;
	} missing, exists;
	/* calls that would have blocked (EAGAIN, on a non-blocking fd) and
	 * calls a signal interrupted (EINTR): outcomes an event loop or a
	 * signal handler expects, counted apart (find(): IO07, not IO05) */
	uint64_t would_block, interrupted;
	/* closes of an fd that was not open (EBADF), never seen open or met
	 * again by a loop closing every fd number in turn, or close(-1)
	 * (find_unopened(): IO09, not IO05); another second close of an fd
	 * is its file's error */
	uint64_t unopened_closes;
	/* calls the fd's kind answers with an error that is no failure: an
	 * lseek of a pipe (ESPIPE: gnulib's close_stdin and stdio ask it of
	 * stdin at exit), a sync of a pipe, socket, terminal or device
	 * (EINVAL: script(1) syncs its output, whatever it is), a read of a
	 * terminal that fails with EIO (a pty's other side closed: its end
	 * of file, as tmux and script meet it); no finding */
	uint64_t unsupported;
	/* calls of at least PEER_WAIT_NS on a pipe, socket or terminal:
	 * time spent waiting for the other end (find_peer_waits(): IO08,
	 * not IO04) */
	uint64_t peer_waits, peer_wait_ns, peer_wait_max;
	/* the errnos of its failed calls but those opens: the first
	 * NERR - 1 seen by name, then err_n[NERR - 1] counts all others */
	uint16_t err_no[NERR];
	uint64_t err_n[NERR];
};

/* Per process and file: Darshan's last bytes and the read intervals. */
struct pfile {
	int64_t last[2];
	uint64_t *iv;    /* pairs [lo, hi) sorted, disjoint */
	uint32_t niv, cap;
	int used;
};

struct io_proc {
	uint64_t calls, errors, total_ns;
	uint64_t bytes[2][2]; /* [layer][read/write] */
	int has_summary;
	int64_t sum[KP_IOS_NV];
	uint64_t unseen_read, unseen_write;
};

/* Time in I/O per (file, stack): per trace by the trace's local stack,
 * then merged by canonical stack at the end of the trace. */
struct sstat {
	uint32_t file, stack;
	uint64_t calls, ns;
};

struct smap {
	struct kp_idmap ids; /* file << 32 | stack -> index */
	struct sstat *v;
	size_t n, cap;
};

static struct sstat *smap_get(struct smap *m, uint32_t file, uint32_t stack)
{
	uint64_t key = (uint64_t)file << 32 | stack;
	uint32_t i = kp_idmap_get(&m->ids, key);
	if (i != UINT32_MAX)
		return &m->v[i];
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->v = xrealloc_array(m->v, m->cap, sizeof(*m->v));
	}
	struct sstat *x = &m->v[m->n];
	x->file = file;
	x->stack = stack;
	x->calls = x->ns = 0;
	kp_idmap_put(&m->ids, key, (uint32_t)m->n++);
	return x;
}

static void smap_free(struct smap *m)
{
	kp_idmap_free(&m->ids);
	free(m->v);
}

#define TOP_STACKS 3 /* per file in the report */

struct io_trace {
	struct smap stacks; /* by the trace's local stack index */
	uint32_t *fdmap; /* fd -> file + 1, 0 = none; | FD_CLOSED: the
			  * file it named until it was closed */
	size_t nfd;
	int64_t last_close; /* the fd of the trace's last close, or -1 */
	struct pfile *pf;
	size_t npf;
	struct io_proc *proc;
};

struct finding {
	const char *code, *severity, *title;
	uint32_t file;
	char evidence[256];
	const char *recommendation;
	uint64_t ns; /* the time at stake (kp_io_advise), 0 unmeasured */
};

struct io_state {
	unsigned slot;
	struct kp_analysis *an;
	struct file *files;
	size_t nfiles, cap;
	struct kp_idmap ids;
	struct io_proc total;
	uint64_t wall_ns;
	struct io_trace *cur;
	struct finding *fnd;
	size_t nfnd, fcap;
	uint32_t *order; /* files by time */
	struct smap stacks; /* by canonical stack, all traces */
	size_t *top;       /* per file: first of its entries in stacks.v
			    * (sorted by file, then time), or SIZE_MAX */
};

/* ---- files -------------------------------------------------------------- */

static const char *group_name(uint8_t kind)
{
	switch (kind) {
	case KP_FDK_PIPE: return "<pipe>";
	case KP_FDK_SOCKET: return "<socket>";
	case KP_FDK_TTY: return "<tty>";
	case KP_FDK_ANON: return "<anon>";
	default: return NULL;
	}
}

static uint32_t file_intern(struct io_state *s, const char *path, size_t len,
			    uint8_t kind)
{
	const char *g = group_name(kind);
	if (g) {
		path = g;
		len = strlen(g);
	}
	if (s->nfiles >= MAX_FILES) {
		path = "<other>";
		len = 7;
		kind = KP_FDK_UNKNOWN;
	}
	uint64_t h = kp_hash_bytes(path, len, s->an->seed) ^ kind;
	if (h == KP_IDMAP_EMPTY)
		h = 0;
	uint32_t i = kp_idmap_get(&s->ids, h);
	for (uint32_t j = i; j != UINT32_MAX; j = s->files[j].next)
		if (s->files[j].hash == h && s->files[j].kind == kind &&
		    strlen(s->files[j].path) == len &&
		    memcmp(s->files[j].path, path, len) == 0)
			return j;
	if (s->nfiles == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->files = xrealloc_array(s->files, s->cap, sizeof(*s->files));
	}
	struct file *f = &s->files[s->nfiles];
	memset(f, 0, sizeof(*f));
	f->path = xstrndup(path, len);
	f->kind = kind;
	f->hash = h;
	for (unsigned k = 0; k < NOPS; k++)
		kp_hist_init(&f->ops[k].lat);
	uint32_t idx = (uint32_t)s->nfiles++;
	if (i == UINT32_MAX) {
		f->next = UINT32_MAX;
		kp_idmap_put(&s->ids, h, idx);
	} else {
		/* chain behind the head */
		f->next = s->files[i].next;
		s->files[i].next = idx;
	}
	return idx;
}

static uint32_t named(struct io_state *s, const char *name)
{
	return file_intern(s, name, strlen(name), KP_FDK_UNKNOWN);
}

/* ---- per trace --------------------------------------------------------------- */

static void *io_init(struct kp_analysis *an, unsigned slot)
{
	struct io_state *s = xcalloc(1, sizeof(*s));
	s->slot = slot;
	s->an = an;
	kp_idmap_init(&s->ids);
	kp_idmap_init(&s->stacks.ids);
	return s;
}

static void io_begin_trace(void *state, struct kp_trace *t)
{
	struct io_state *s = state;
	s->cur = xcalloc(1, sizeof(*s->cur));
	s->cur->last_close = -1;
	kp_idmap_init(&s->cur->stacks.ids);
	s->cur->proc = xcalloc(1, sizeof(struct io_proc));
	t->proc->pass_data[s->slot] = s->cur->proc;
}

#define FD_CLOSED 0x80000000u /* above file + 1 (MAX_FILES) */

static void fdmap_set(struct io_trace *tr, int64_t fd, uint32_t file)
{
	if (fd < 0 || fd >= MAX_FDS)
		return;
	if ((size_t)fd >= tr->nfd) {
		size_t n = tr->nfd ? tr->nfd : 64;
		while (n <= (size_t)fd)
			n *= 2;
		tr->fdmap = xrealloc_array(tr->fdmap, n, sizeof(uint32_t));
		memset(tr->fdmap + tr->nfd, 0,
		       (n - tr->nfd) * sizeof(uint32_t));
		tr->nfd = n;
	}
	tr->fdmap[fd] = file == UINT32_MAX ? 0 : file + 1;
}

static uint32_t fdmap_get(struct io_state *s, int64_t fd)
{
	struct io_trace *tr = s->cur;
	if (fd >= 0 && (size_t)fd < tr->nfd && tr->fdmap[fd] &&
	    !(tr->fdmap[fd] & FD_CLOSED))
		return tr->fdmap[fd] - 1;
	return named(s, fd < 0 ? "<no fd>" : "<unknown fd>");
}

static struct pfile *pfile(struct io_trace *tr, uint32_t file)
{
	if (file >= tr->npf) {
		size_t n = tr->npf ? tr->npf : 16;
		while (n <= file)
			n *= 2;
		tr->pf = xrealloc_array(tr->pf, n, sizeof(*tr->pf));
		memset(tr->pf + tr->npf, 0, (n - tr->npf) * sizeof(*tr->pf));
		tr->npf = n;
	}
	struct pfile *p = &tr->pf[file];
	if (!p->used) {
		p->used = 1;
		p->last[0] = p->last[1] = -1;
	}
	return p;
}

/* One failed call of f with errno e (> 0; an unknown one counts as
 * "other"). */
static void note_errno(struct file *f, int e)
{
	unsigned i = 0;
	while (i < NERR - 1 && f->err_n[i] && f->err_no[i] != e)
		i++;
	if (e <= 0 || e > UINT16_MAX)
		i = NERR - 1;
	if (i < NERR - 1)
		f->err_no[i] = (uint16_t)e;
	f->err_n[i]++;
}

/*
 * A pipe, socket or terminal has another end: a program, a client, a
 * server, a user. A call on it that takes long (a read before the peer
 * writes, a write into a full pipe, an accept before a client comes)
 * waits for that end rather than for a device, so its latency says what
 * the peer does: find() gives it IO08 instead of IO04's device advice.
 */
#define PEER_WAIT_NS 1000000u         /* a call this long waited: 1 ms */
#define PEER_WAIT_REPORT_NS 10000000u /* IO08 from this much waiting */

static int is_peer(uint8_t kind)
{
	return kind == KP_FDK_PIPE || kind == KP_FDK_SOCKET ||
	       kind == KP_FDK_TTY;
}

/* An error of op that says what a file of this kind does not do (struct
 * file, unsupported), not that the call failed it. */
static int unsupported(uint8_t kind, unsigned op, int err)
{
	char dir = kp_io_op_dir(op);
	return (op == KP_IO_OP_LSEEK && err == ESPIPE) ||
	       (dir == 's' && err == EINVAL && kind != KP_FDK_FILE &&
		kind != KP_FDK_DIR && kind != KP_FDK_UNKNOWN) ||
	       (dir == 'r' && err == EIO && kind == KP_FDK_TTY);
}

/* op_add's err for a close that failed with EBADF on an fd never seen
 * open, or met again by a close-all loop (on_close) */
#define ERR_UNOPENED (-2)

/* A call of op on f: err is its errno, 0 if it succeeded. An open that
 * found no such path (ENOENT, ENOTDIR) is a lookup more than an error:
 * counted apart too (find(): IO06, not IO05); so is a call that would
 * have blocked or that a signal interrupted (IO07), but for a wait's (a
 * refused lock is the wait's own outcome). */
static void op_add(struct file *f, unsigned op, uint64_t bytes, int err,
		   uint64_t dur)
{
	struct opstat *o = &f->ops[op];
	o->calls++;
	o->bytes = kp_sat_add(o->bytes, bytes);
	if (err) {
		o->errors++;
		if (op == OP_OPEN && (err == ENOENT || err == ENOTDIR)) {
			f->missing.n++;
			f->missing.ns = kp_sat_add(f->missing.ns, dur);
		} else if (op == OP_OPEN && err == EEXIST) {
			f->exists.n++;
			f->exists.ns = kp_sat_add(f->exists.ns, dur);
		} else if (err == EAGAIN && !kp_io_op_is_wait(op)) {
			f->would_block++;
		} else if (err == EINTR && !kp_io_op_is_wait(op)) {
			f->interrupted++;
		} else if (err == ERR_UNOPENED) {
			f->unopened_closes++;
		} else if (unsupported(f->kind, op, err)) {
			f->unsupported++;
		} else {
			note_errno(f, err);
		}
	}
	o->total_ns = kp_sat_add(o->total_ns, dur);
	kp_hist_add(&o->lat, dur);
	f->total_ns = kp_sat_add(f->total_ns, dur);
	if (dur >= PEER_WAIT_NS && is_peer(f->kind) && !kp_io_op_is_wait(op)) {
		f->peer_waits++;
		f->peer_wait_ns = kp_sat_add(f->peer_wait_ns, dur);
		if (dur > f->peer_wait_max)
			f->peer_wait_max = dur;
	}
}

/* Add [lo, hi) to the read intervals; returns the bytes already in. */
static uint64_t reread(struct file *f, struct pfile *p, uint64_t lo,
		       uint64_t hi)
{
	uint64_t seen = 0;
	/* first interval whose end reaches lo (binary search) */
	uint32_t i = 0, n = p->niv;
	while (n) {
		uint32_t half = n / 2;
		if (p->iv[2 * (i + half) + 1] < lo) {
			i += half + 1;
			n -= half + 1;
		} else {
			n = half;
		}
	}
	uint32_t j = i;
	uint64_t nlo = lo, nhi = hi;
	while (j < p->niv && p->iv[2 * j] <= hi) {
		uint64_t a = p->iv[2 * j], b = p->iv[2 * j + 1];
		uint64_t ol = a > lo ? a : lo, oh = b < hi ? b : hi;
		if (oh > ol)
			seen += oh - ol;
		if (a < nlo)
			nlo = a;
		if (b > nhi)
			nhi = b;
		j++;
	}
	/* replace intervals i..j-1 by [nlo, nhi) */
	if (j == i) {
		if (p->niv >= MAX_INTERVALS) {
			f->reread_capped = 1;
			return seen;
		}
		if (p->niv == p->cap) {
			p->cap = p->cap ? 2 * p->cap : 16;
			p->iv = xrealloc_array(p->iv, 2 * (size_t)p->cap,
					       sizeof(uint64_t));
		}
		memmove(p->iv + 2 * (i + 1), p->iv + 2 * i,
			(p->niv - i) * 2 * sizeof(uint64_t));
		p->niv++;
	} else if (j > i + 1) {
		memmove(p->iv + 2 * (i + 1), p->iv + 2 * j,
			(p->niv - j) * 2 * sizeof(uint64_t));
		p->niv -= j - i - 1;
	}
	p->iv[2 * i] = nlo;
	p->iv[2 * i + 1] = nhi;
	return seen;
}

static unsigned size_bucket(uint64_t n)
{
	unsigned b = 0;
	while (b < NSIZE - 1 && n >= size_hi[b])
		b++;
	return b;
}

static void on_io(struct io_state *s, struct kp_trace *t,
		  const struct kp_event *e, const struct kp_rec *r)
{
	unsigned op = e->kind;
	if (!op_name(op) || op >= NOPS || op == KP_IO_OP_SLEEP)
		return; /* a sleep is no file's: only the queries pass uses it */
	const int64_t *v = r->u.ext.v;
	struct io_proc *pr = s->cur->proc;
	uint32_t fi = op == KP_IO_OP_MSYNC ? named(s, "<mmap>")
					   : fdmap_get(s, v[KP_IO_FD]);
	struct file *f = &s->files[fi];
	int64_t ret = v[KP_IO_RET];
	if (op == KP_IO_OP_LOCK) {
		/* the file's lock waits, apart: not time in I/O, and a
		 * refused non-blocking lock is contention, not an error */
		struct opstat *o = &f->ops[op];
		uint64_t d = v[KP_IO_DUR] > 0 ? (uint64_t)v[KP_IO_DUR] : 0;
		o->calls++;
		o->errors += ret < 0;
		o->total_ns = kp_sat_add(o->total_ns, d);
		kp_hist_add(&o->lat, d);
		return;
	}
	char dir = kp_io_op_dir(op);
	uint64_t moved = ret > 0 && (dir == 'r' || dir == 'w') ?
		(uint64_t)ret : 0;
	uint64_t dur = v[KP_IO_DUR] > 0 ? (uint64_t)v[KP_IO_DUR] : 0;
	int failed = ret < 0; /* -errno */
	op_add(f, op, moved, failed ? (ret < -65535 ? -1 : (int)-ret) : 0,
	       dur);
	if (e->stack) {
		struct sstat *x = smap_get(&s->cur->stacks, fi,
					   kp_trace_stack(t, e->stack));
		x->calls++;
		x->ns = kp_sat_add(x->ns, dur);
	}
	pr->calls++;
	pr->errors += failed;
	pr->total_ns = kp_sat_add(pr->total_ns, dur);
	int layer = kp_io_op_layer(op);
	int d = dir == 'w';
	if (moved)
		pr->bytes[layer][d] = kp_sat_add(pr->bytes[layer][d], moved);
	if (dir == 's')
		f->syncs++;
	if (dir != 'r' && dir != 'w')
		return;
	if (op == KP_IO_OP_COPY_FILE_RANGE || op == KP_IO_OP_SENDFILE)
		return;
	if (!layer) {
		f->rw_calls[d]++;
		uint64_t req = (uint64_t)v[KP_IO_REQ];
		if (req < SMALL_IO)
			f->small[d]++;
	}
	if (ret > 0)
		f->sizes[d][size_bucket((uint64_t)ret)]++;
	int64_t off = v[KP_IO_OFF];
	int64_t last;
	/* a hostile trace may hold offsets near INT64_MAX: skip those */
	if (layer || ret <= 0 || off < 0 ||
	    __builtin_add_overflow(off, ret - 1, &last))
		return;
	struct pfile *p = pfile(s->cur, fi);
	f->classified[d]++;
	if (off > p->last[d])
		f->seq[d]++;
	if (p->last[d] != INT64_MAX && off == p->last[d] + 1)
		f->consec[d]++;
	p->last[d] = last;
	uint64_t end = (uint64_t)last + 1;
	if (end > f->extent)
		f->extent = end;
	if (!d)
		f->reread_bytes += reread(f, p, (uint64_t)off, end);
}

/* A record's errno value as op_add's err: 0, the errno, or -1 (none
 * that fits). */
static int errno_of(int64_t e)
{
	return e == 0 ? 0 : e > 0 && e <= 65535 ? (int)e : -1;
}

static void on_open(struct io_state *s, const struct kp_rec *r)
{
	const int64_t *v = r->u.ext.v;
	unsigned how = r->kind;
	int64_t fd = v[KP_FDO_FD];
	uint32_t fi;
	if (how == KP_FDH_DUP && r->u.ext.str_len == 0 && v[KP_FDO_SRC] >= 0)
		fi = fdmap_get(s, v[KP_FDO_SRC]);
	else if (how == KP_FDH_ACCEPT && fd < 0 && v[KP_FDO_SRC] >= 0)
		fi = fdmap_get(s, v[KP_FDO_SRC]); /* the listening socket's */
	else if (r->u.ext.str_len == 0 && !group_name((uint8_t)v[KP_FDO_FDKIND]))
		fi = named(s, "<unnamed>");
	else
		fi = file_intern(s, r->u.ext.str ? r->u.ext.str : "",
				 r->u.ext.str_len, (uint8_t)v[KP_FDO_FDKIND]);
	if (fd >= 0)
		fdmap_set(s->cur, fd, fi);
	if (how != KP_FDH_LAZY && how != KP_FDH_FDOPEN) {
		uint64_t dur = v[KP_FDO_DUR] > 0 ? (uint64_t)v[KP_FDO_DUR] : 0;
		op_add(&s->files[fi], OP_OPEN, 0, errno_of(v[KP_FDO_ERR]),
		       dur);
		s->cur->proc->calls++;
		s->cur->proc->errors += v[KP_FDO_ERR] != 0;
		s->cur->proc->total_ns =
			kp_sat_add(s->cur->proc->total_ns, dur);
	}
}

static void on_close(struct io_state *s, const struct kp_rec *r)
{
	const int64_t *v = r->u.ext.v;
	int64_t fd = v[KP_FDC_FD];
	uint32_t fi = fdmap_get(s, fd);
	uint64_t dur = v[KP_FDC_DUR] > 0 ? (uint64_t)v[KP_FDC_DUR] : 0;
	int err = errno_of(v[KP_FDC_ERR]);
	struct io_trace *tr = s->cur;
	if (err == EBADF) {
		/* closed twice: the second close is its file's error (it
		 * could have closed another thread's new file); else an fd
		 * this trace never saw open, or one a loop closing every fd
		 * number in turn meets again (the fd after the last closed) */
		uint32_t m = fd >= 0 && (size_t)fd < tr->nfd ? tr->fdmap[fd] : 0;
		if ((m & FD_CLOSED) && fd != tr->last_close + 1)
			fi = (m & ~FD_CLOSED) - 1;
		else
			err = ERR_UNOPENED;
	}
	tr->last_close = fd;
	op_add(&s->files[fi], OP_CLOSE, 0, err, dur);
	tr->proc->calls++;
	tr->proc->errors += v[KP_FDC_ERR] != 0;
	tr->proc->total_ns = kp_sat_add(tr->proc->total_ns, dur);
	if (!v[KP_FDC_ERR] && fd >= 0 && fd < MAX_FDS) {
		fdmap_set(tr, fd, fi);
		tr->fdmap[fd] |= FD_CLOSED;
	}
}

static void on_summary(struct io_state *s, const struct kp_rec *r)
{
	struct io_proc *p = s->cur->proc;
	const int64_t *v = r->u.ext.v;
	p->has_summary = 1;
	for (unsigned i = 0; i < KP_IOS_NV; i++)
		p->sum[i] = v[i];
	int64_t rd;
	if (v[KP_IOS_RCHAR] >= 0 &&
	    !__builtin_sub_overflow(v[KP_IOS_RCHAR], v[KP_IOS_SEEN_READ], &rd) &&
	    !__builtin_sub_overflow(rd, v[KP_IOS_SELF_READ], &rd) && rd > 0)
		p->unseen_read = (uint64_t)rd;
	int64_t w;
	if (v[KP_IOS_WCHAR] >= 0 &&
	    !__builtin_sub_overflow(v[KP_IOS_WCHAR], v[KP_IOS_SELF_WRITE], &w) &&
	    !__builtin_sub_overflow(w, v[KP_IOS_SEEN_WRITE], &w) && w > 0)
		p->unseen_write = (uint64_t)w;
}

static void io_events(void *state, struct kp_trace *t,
		      const struct kp_batch *b)
{
	struct io_state *s = state;
	if (!b->nx)
		return; /* allocations only */
	for (size_t i = 0; i < b->nxev; i++) {
		const struct kp_event *e = &b->ev[b->xev[i]];
		switch (e->type) {
		case KP_REC_IO:
			on_io(s, t, e, kp_batch_rec(b, e));
			break;
		case KP_REC_FD_OPEN:
			on_open(s, kp_batch_rec(b, e));
			break;
		case KP_REC_FD_CLOSE:
			on_close(s, kp_batch_rec(b, e));
			break;
		case KP_REC_IO_SUMMARY:
			on_summary(s, kp_batch_rec(b, e));
			break;
		default:
			break;
		}
	}
}

static void io_end_trace(void *state, struct kp_trace *t)
{
	struct io_state *s = state;
	struct io_trace *tr = s->cur;
	struct io_proc *p = tr->proc;
	struct io_proc *g = &s->total;
	g->calls += p->calls;
	g->errors += p->errors;
	g->total_ns = kp_sat_add(g->total_ns, p->total_ns);
	for (int l = 0; l < 2; l++)
		for (int d = 0; d < 2; d++)
			g->bytes[l][d] = kp_sat_add(g->bytes[l][d],
						    p->bytes[l][d]);
	g->has_summary |= p->has_summary;
	g->unseen_read = kp_sat_add(g->unseen_read, p->unseen_read);
	g->unseen_write = kp_sat_add(g->unseen_write, p->unseen_write);
	for (unsigned i = 0; i < KP_IOS_NV; i++)
		if (p->sum[i] > 0)
			g->sum[i] = (int64_t)kp_sat_add((uint64_t)g->sum[i],
							(uint64_t)p->sum[i]);
	s->wall_ns = kp_sat_add(s->wall_ns, t->proc->duration_ns);
	for (size_t i = 0; i < tr->stacks.n; i++) {
		const struct sstat *x = &tr->stacks.v[i];
		struct sstat *y = smap_get(&s->stacks, x->file,
					   kp_trace_canon_stack(t, x->stack));
		y->calls = kp_sat_add(y->calls, x->calls);
		y->ns = kp_sat_add(y->ns, x->ns);
	}
	smap_free(&tr->stacks);
	for (size_t i = 0; i < tr->npf; i++)
		free(tr->pf[i].iv);
	free(tr->pf);
	free(tr->fdmap);
	free(tr);
	s->cur = NULL;
}

/* ---- findings ------------------------------------------------------------- */

static struct finding *add_finding(struct io_state *s, const char *code,
				   const char *sev, const char *title,
				   uint32_t file, const char *rec)
{
	if (s->nfnd == s->fcap) {
		s->fcap = s->fcap ? 2 * s->fcap : 16;
		s->fnd = xrealloc_array(s->fnd, s->fcap, sizeof(*s->fnd));
	}
	struct finding *f = &s->fnd[s->nfnd++];
	f->code = code;
	f->severity = sev;
	f->title = title;
	f->file = file;
	f->recommendation = rec;
	f->evidence[0] = '\0';
	f->ns = 0;
	return f;
}

/* Time in f's calls of direction dir ('r', 'w', 's'; kp_io_op_dir()). */
static uint64_t dir_ns(const struct file *f, char dir)
{
	uint64_t ns = 0;
	for (unsigned op = 0; op <= KP_IO_OP_MAX; op++)
		if (kp_io_op_name(op) && kp_io_op_dir(op) == dir)
			ns = kp_sat_add(ns, f->ops[op].total_ns);
	return ns;
}

static uint64_t dir_calls(const struct file *f, char dir, int syscall_only)
{
	uint64_t n = 0;
	for (unsigned op = 0; op <= KP_IO_OP_MAX; op++)
		if (kp_io_op_name(op) && kp_io_op_dir(op) == dir &&
		    (!syscall_only || !kp_io_op_layer(op)))
			n += f->ops[op].calls;
	return n;
}

/* " EBADF 3, ENOSPC 1" into buf: f's errnos (note_errno) by name. */
static void errno_list(const struct file *f, char *buf, size_t cap)
{
	size_t at = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < NERR && at < cap; i++) {
		if (!f->err_n[i])
			continue;
		const char *name =
			i < NERR - 1 ? strerrorname_np(f->err_no[i]) : NULL;
		int k = snprintf(buf + at, cap - at, "%s %s %llu",
				 at ? "," : "", name ? name : "other",
				 (unsigned long long)f->err_n[i]);
		if (k < 0)
			break;
		at += (size_t)k;
	}
}

/*
 * IO06 and IO10, once for all files: failed opens that are answers more
 * than errors. Programs look for files along search paths (include
 * directories, PYTHONPATH, plugin and locale directories), and a missing
 * file is a normal answer; an open with O_CREAT | O_EXCL asks whether
 * the file is new (a lock file, tar that will not overwrite, mkstemp's
 * names), and EEXIST answers no. As one finding each, with the count, the
 * time and the path tried most, they make no IO05 of every path tried.
 */
static void find_answers(struct io_state *s, size_t field, const char *code,
			 const char *title, const char *errs, const char *advice)
{
	uint64_t n = 0, ns = 0, paths = 0;
	const struct answers *m = NULL; /* of files[most] */
	uint32_t most = 0;
	for (uint32_t i = 0; i < s->nfiles; i++) {
		const struct answers *a =
			(const void *)((const char *)&s->files[i] + field);
		if (!a->n)
			continue;
		n += a->n;
		ns = kp_sat_add(ns, a->ns);
		paths++;
		if (!m || a->n > m->n ||
		    (a->n == m->n &&
		     strcmp(s->files[i].path, s->files[most].path) < 0)) {
			most = i;
			m = a;
		}
	}
	if (!m)
		return;
	struct finding *x = add_finding(s, code, n >= 10000 ? "warn" : "info",
					title, most, advice);
	char d[32];
	snprintf(x->evidence, sizeof(x->evidence),
		 "%llu opens of %llu paths failed with %s, %s in all; this "
		 "path the most, %llu time%s",
		 (unsigned long long)n, (unsigned long long)paths, errs,
		 kp_fmt_ns(d, sizeof(d), ns), (unsigned long long)m->n,
		 m->n == 1 ? "" : "s");
	x->ns = ns;
}

/*
 * IO07, for file i (calls: its calls but waits and missing paths): calls
 * that would have blocked (EAGAIN) or that a signal interrupted (EINTR).
 * A server's event loop reads and accepts until EAGAIN, and a signal
 * handler interrupts slow calls: info, as answers more than errors. But a
 * file most of whose many calls would block is being polled by retrying,
 * a loop that burns a CPU: warn.
 */
static void find_unready(struct io_state *s, uint32_t i, uint64_t calls)
{
	const struct file *f = &s->files[i];
	uint64_t n = f->would_block + f->interrupted;
	if (!n)
		return;
	int spin = f->would_block >= 1000 && f->would_block * 2 > calls;
	struct finding *x = add_finding(s, "IO07", spin ? "warn" : "info",
		"calls that would block or were interrupted", i,
		spin ? "the file is polled by calling until a call succeeds, "
		       "which keeps a CPU busy: wait for it to be ready with "
		       "poll, epoll or select, or make the fd blocking" :
		       "normal for non-blocking I/O (a call returns EAGAIN "
		       "when nothing is ready) and for calls a signal "
		       "interrupts (EINTR); they are retried, not lost");
	int k = snprintf(x->evidence, sizeof(x->evidence),
			 "%llu of %llu calls:", (unsigned long long)n,
			 (unsigned long long)calls);
	if (k < 0 || (size_t)k >= sizeof(x->evidence))
		return;
	if (f->would_block)
		k += snprintf(x->evidence + k, sizeof(x->evidence) - k,
			      " EAGAIN %llu", (unsigned long long)f->would_block);
	if (f->interrupted && (size_t)k < sizeof(x->evidence))
		snprintf(x->evidence + k, sizeof(x->evidence) - k, "%s EINTR %llu",
			 f->would_block ? "," : "",
			 (unsigned long long)f->interrupted);
}

/* IO08, for file i: its calls that waited for the other end. */
static void find_peer_waits(struct io_state *s, uint32_t i)
{
	const struct file *f = &s->files[i];
	if (f->peer_wait_ns < PEER_WAIT_REPORT_NS)
		return;
	struct finding *x = add_finding(s, "IO08", "info",
		"calls waited for the other end", i,
		"the time is the peer's (the program, client or server at the "
		"other end, or the user): profile the peer, or overlap the "
		"wait with other work");
	char all[32], max[32];
	snprintf(x->evidence, sizeof(x->evidence),
		 "%llu calls took 1 ms or more, %s in all, the longest %s",
		 (unsigned long long)f->peer_waits,
		 kp_fmt_ns(all, sizeof(all), f->peer_wait_ns),
		 kp_fmt_ns(max, sizeof(max), f->peer_wait_max));
	x->ns = f->peer_wait_ns;
}

/* IO09, for file i (<unknown fd>, <no fd>): closes that found nothing
 * open, when there are 100 or more: a loop over every fd number. */
static void find_unopened(struct io_state *s, uint32_t i)
{
	const struct file *f = &s->files[i];
	if (f->unopened_closes < 100)
		return;
	struct finding *x = add_finding(s, "IO09", "info",
		"closes of descriptors that were not open", i,
		"a loop that closes every descriptor number (before an exec, "
		"in a daemon) makes a system call for each: close_range(2) or "
		"closefrom(3) closes them in one, and O_CLOEXEC on every open "
		"makes it unneeded before an exec");
	snprintf(x->evidence, sizeof(x->evidence),
		 "%llu closes failed with EBADF on descriptors not open",
		 (unsigned long long)f->unopened_closes);
}

static void find(struct io_state *s)
{
	for (uint32_t i = 0; i < s->nfiles; i++) {
		struct file *f = &s->files[i];
		uint64_t w = f->rw_calls[1];
		if (w >= 1000 && f->small[1] * 2 > w) {
			/* on a socket each write is also a message (a packet
			 * of its own over TCP, without MSG_MORE or TCP_CORK):
			 * what can be put together are the pieces of one
			 * reply, or the replies of pipelined requests */
			struct finding *x = add_finding(s, "IO01",
				f->small[1] >= 100000 ? "high" : "warn",
				"many small writes", i,
				f->kind == KP_FDK_SOCKET ?
				"send each reply in one call (gather its "
				"pieces with writev or sendmsg, or cork the "
				"socket with MSG_MORE or TCP_CORK while it is "
				"built), and the replies to pipelined requests "
				"together; one small write per request and "
				"reply is what a request/response protocol "
				"costs" :
				"buffer the writes (a larger stdio buffer with "
				"setvbuf, or an application buffer flushed in "
				"blocks of 64 KiB or more) or gather them with "
				"writev");
			snprintf(x->evidence, sizeof(x->evidence),
				 "%llu of %llu writes are under %d bytes",
				 (unsigned long long)f->small[1],
				 (unsigned long long)w, SMALL_IO);
			x->ns = dir_ns(f, 'w');
		}
		uint64_t writes = dir_calls(f, 'w', 0);
		/* (a directory is synced for its entries: no writes) */
		if (f->syncs >= 10 && writes && writes <= 2 * f->syncs) {
			struct finding *x = add_finding(s, "IO02", "high",
				"fsync after (nearly) every write", i,
				"batch several writes per fsync (group commit), "
				"use fdatasync when metadata need not be "
				"durable, or a write-ahead log (SQLite: "
				"PRAGMA journal_mode=WAL; synchronous=NORMAL)");
			snprintf(x->evidence, sizeof(x->evidence),
				 "%llu syncs for %llu writes (%.2f writes per "
				 "sync)", (unsigned long long)f->syncs,
				 (unsigned long long)writes,
				 (double)writes / (double)f->syncs);
			x->ns = dir_ns(f, 's');
		}
		uint64_t rc = f->classified[0];
		uint64_t rnd = rc - f->seq[0];
		if (rc >= 100 && rnd * 5 > rc && f->extent >= (1u << 20)) {
			struct finding *x = add_finding(s, "IO03", "warn",
				"random reads on a large file", i,
				"read in larger blocks, sort the offsets, "
				"prefetch with posix_fadvise(POSIX_FADV_WILLNEED) "
				"or readahead, or mmap the file");
			snprintf(x->evidence, sizeof(x->evidence),
				 "%llu of %llu reads random (%.1f %%), file "
				 "extent %llu bytes", (unsigned long long)rnd,
				 (unsigned long long)rc,
				 100.0 * (double)rnd / (double)rc,
				 (unsigned long long)f->extent);
			x->ns = dir_ns(f, 'r');
		}
		for (unsigned op = 0; op < NOPS; op++) {
			const struct opstat *o = &f->ops[op];
			if (o->calls < 100 || kp_io_op_is_wait(op) ||
			    is_peer(f->kind))
				continue;
			uint64_t p50 = kp_hist_quantile(&o->lat, 0.5);
			uint64_t p99 = kp_hist_quantile(&o->lat, 0.99);
			if (p99 >= 1000000 && p99 > 10 * p50) {
				struct finding *x = add_finding(s, "IO04",
					"warn", "p99 latency far above p50", i,
					"look at what the slow calls share "
					"(their stacks, concurrent fsyncs or "
					"writeback, a contended device); move "
					"the slow operation off the latency-"
					"critical path");
				snprintf(x->evidence, sizeof(x->evidence),
					 "%s: p50 %llu ns, p99 %llu ns over "
					 "%llu calls", op_name(op),
					 (unsigned long long)p50,
					 (unsigned long long)p99,
					 (unsigned long long)o->calls);
				/* what the calls over the median took */
				x->ns = kp_sat_sub(o->total_ns,
						   kp_sat_mul(p50, o->calls));
			}
		}
		uint64_t errs = 0, calls = 0;
		for (unsigned op = 0; op < NOPS; op++) {
			if (kp_io_op_is_wait(op))
				continue;
			errs += f->ops[op].errors;
			calls += f->ops[op].calls;
		}
		/* lookups: IO06 and IO10; would block, interrupted: IO07;
		 * closes of fds not open: IO09; what the kind does not do
		 * (unsupported()): none */
		errs -= f->missing.n + f->exists.n + f->would_block +
			f->interrupted + f->unopened_closes + f->unsupported;
		calls -= f->missing.n + f->exists.n;
		if (errs) {
			struct finding *x = add_finding(s, "IO05",
				errs * 10 >= calls ? "warn" : "info",
				"I/O calls failed", i,
				"check the errors: EBADF is a bug; ENOSPC, EIO "
				"and EDQUOT lose data unless handled");
			int k = snprintf(x->evidence, sizeof(x->evidence),
					 "%llu of %llu calls failed:",
					 (unsigned long long)errs,
					 (unsigned long long)calls);
			errno_list(f, x->evidence + k, sizeof(x->evidence) - k);
		}
		find_unready(s, i, calls);
		find_peer_waits(s, i);
		find_unopened(s, i);
	}
	find_answers(s, offsetof(struct file, missing), "IO06",
		     "opens of paths that do not exist", "ENOENT or ENOTDIR",
		     "normal for a program that searches for its files; if "
		     "there are many, shorten the search path (include "
		     "directories, PYTHONPATH, LD_LIBRARY_PATH, plugin "
		     "directories) or remember what was found");
	find_answers(s, offsetof(struct file, exists), "IO10",
		     "exclusive creates of files that exist", "EEXIST",
		     "normal for a lock file or a program that will not "
		     "overwrite; if there are many, remove the old files "
		     "first, or open without O_EXCL where overwriting is meant");
}

static int by_time(const void *a, const void *b, void *ctx)
{
	const struct io_state *s = ctx;
	const struct file *x = &s->files[*(const uint32_t *)a];
	const struct file *y = &s->files[*(const uint32_t *)b];
	if (x->total_ns != y->total_ns)
		return x->total_ns < y->total_ns ? 1 : -1;
	return strcmp(x->path, y->path);
}

static int by_file_time(const void *a, const void *b)
{
	const struct sstat *x = a, *y = b;
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->ns != y->ns)
		return x->ns < y->ns ? 1 : -1;
	if (x->calls != y->calls)
		return x->calls < y->calls ? 1 : -1;
	return x->stack < y->stack ? -1 : x->stack > y->stack;
}

/* The i-th stack of file (by time), or NULL. */
static const struct sstat *file_stack(const struct io_state *s, uint32_t file,
				      size_t i)
{
	if (!s->top || s->top[file] == SIZE_MAX ||
	    s->top[file] + i >= s->stacks.n ||
	    s->stacks.v[s->top[file] + i].file != file)
		return NULL;
	return &s->stacks.v[s->top[file] + i];
}

static void io_finish(void *state, struct kp_analysis *an)
{
	struct io_state *s = state;
	(void)an;
	s->order = xmalloc((s->nfiles + 1) * sizeof(uint32_t));
	for (uint32_t i = 0; i < s->nfiles; i++)
		s->order[i] = i;
	qsort_r(s->order, s->nfiles, sizeof(uint32_t), by_time, s);
	/* the id map is no longer needed: sort the entries in place */
	if (s->stacks.n)
		qsort(s->stacks.v, s->stacks.n, sizeof(*s->stacks.v),
		      by_file_time);
	s->top = xmalloc((s->nfiles + 1) * sizeof(size_t));
	for (size_t i = 0; i <= s->nfiles; i++)
		s->top[i] = SIZE_MAX;
	for (size_t i = s->stacks.n; i-- > 0;)
		s->top[s->stacks.v[i].file] = i;
	find(s);
}

/* ---- text ---------------------------------------------------------------- */

static double share(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

static void text_file(struct io_state *s, const struct file *f, FILE *out,
		      int full)
{
	char a[32], b[32];
	double pct = 100.0 * share(f->total_ns, s->wall_ns);
	/* threads summed, as the total's line says: above 100 % when
	 * several wait on this file at once */
	fprintf(out, "  %s (%s): %s in I/O, %.1f %% of wall%s\n", f->path,
		kp_fd_kind_name(f->kind), kp_fmt_ns(a, sizeof(a), f->total_ns),
		pct, pct > 100.0 ? ", threads summed" : "");
	if (!full)
		return;
	fprintf(out, "    %-16s %9s %12s %6s %10s %10s %10s %10s %10s "
		"%10s\n", "op", "calls", "bytes", "errors", "total", "p50",
		"p90", "p99", "p99.9", "max");
	for (unsigned op = 0; op < NOPS; op++) {
		const struct opstat *o = &f->ops[op];
		char t[32], p50[32], p90[32], p99[32], p999[32], mx[32];
		if (!o->calls)
			continue;
		fprintf(out, "    %-16s %9s %12llu %6llu %10s %10s %10s %10s "
			"%10s %10s\n", op_name(op),
			kp_fmt_count(b, sizeof(b), o->calls),
			(unsigned long long)o->bytes,
			(unsigned long long)o->errors,
			kp_fmt_ns(t, sizeof(t), o->total_ns),
			kp_fmt_ns(p50, sizeof(p50), kp_hist_quantile(&o->lat, .5)),
			kp_fmt_ns(p90, sizeof(p90), kp_hist_quantile(&o->lat, .9)),
			kp_fmt_ns(p99, sizeof(p99),
			       kp_hist_quantile(&o->lat, .99)),
			kp_fmt_ns(p999, sizeof(p999),
			       kp_hist_quantile(&o->lat, .999)),
			kp_fmt_ns(mx, sizeof(mx), o->lat.count ? o->lat.max : 0));
	}
	for (int d = 0; d < 2; d++) {
		uint64_t c = f->classified[d];
		if (!c)
			continue;
		/* consecutive is a part of sequential */
		fprintf(out, "    %s pattern: %.1f %% sequential (%.1f %% "
			"consecutive), %.1f %% random, of %llu with offsets\n",
			d ? "write" : "read", 100.0 * share(f->seq[d], c),
			100.0 * share(f->consec[d], c),
			100.0 * share(c - f->seq[d], c),
			(unsigned long long)c);
	}
	for (int d = 0; d < 2; d++) {
		int any = 0;
		for (unsigned k = 0; k < NSIZE; k++) {
			if (!f->sizes[d][k])
				continue;
			if (!any)
				fprintf(out, "    %s sizes:",
					d ? "write" : "read");
			any = 1;
			fprintf(out, " %s:%llu", size_name[k],
				(unsigned long long)f->sizes[d][k]);
		}
		/* the sizes (bytes moved) count stdio calls too; the share
		 * of small requests (bytes asked for) only system calls, as
		 * a stdio call is buffered: say so, and nothing when there
		 * were none */
		if (any && f->rw_calls[d])
			fprintf(out, "; small requests (< %d B) %.1f %% of "
				"%llu syscalls\n", SMALL_IO,
				100.0 * share(f->small[d], f->rw_calls[d]),
				(unsigned long long)f->rw_calls[d]);
		else if (any)
			fputc('\n', out);
	}
	if (f->reread_bytes)
		fprintf(out, "    re-read bytes: %llu%s\n",
			(unsigned long long)f->reread_bytes,
			f->reread_capped ? " (at least)" : "");
	if (f->syncs)
		fprintf(out, "    syncs: %llu, %.2f writes per sync\n",
			(unsigned long long)f->syncs,
			share(dir_calls(f, 'w', 0), f->syncs));
	uint32_t fi = (uint32_t)(f - s->files);
	for (size_t i = 0; i < TOP_STACKS; i++) {
		const struct sstat *x = file_stack(s, fi, i);
		if (!x)
			break;
		fprintf(out, "    %s in %llu call%s (%.1f %% of the file's "
			"time) from\n", kp_fmt_ns(a, sizeof(a), x->ns),
			(unsigned long long)x->calls, x->calls == 1 ? "" : "s",
			100.0 * share(x->ns, f->total_ns));
		kp_text_stack(s->an, out, x->stack, 5, "      ");
	}
}

static void io_report_text(void *state, struct kp_analysis *an, FILE *out)
{
	struct io_state *s = state;
	int full = kp_command_is(an, "io");
	if (!full && !kp_command_is(an, "summary"))
		return;
	const struct io_proc *g = &s->total;
	char a[32], b[32];
	if (!full && !g->calls && !g->has_summary)
		return; /* nothing recorded (KOTOBA_PROFILE_IO=0, old trace) */
	fprintf(out, "I/O\n");
	/* threads summed: above 100 % when they wait on I/O together */
	fprintf(out, "  calls %llu (%llu failed), %s in I/O (%.1f %% of "
		"wall, threads summed)\n", (unsigned long long)g->calls,
		(unsigned long long)g->errors,
		kp_fmt_ns(a, sizeof(a), g->total_ns),
		100.0 * share(g->total_ns, s->wall_ns));
	fprintf(out, "  syscalls: %s read, %s written; stdio: %s read, %s "
		"written\n", kp_fmt_bytes(a, sizeof(a), g->bytes[0][0]),
		kp_fmt_bytes(b, sizeof(b), g->bytes[0][1]),
		kp_fmt_bytes((char[32]){ 0 }, 32, g->bytes[1][0]),
		kp_fmt_bytes((char[32]){ 0 }, 32, g->bytes[1][1]));
	if (g->has_summary)
		fprintf(out, "  not seen by kprof (raw syscalls, mmap, static "
			"code, stdio buffering): %llu bytes read, %llu "
			"written\n", (unsigned long long)g->unseen_read,
			(unsigned long long)g->unseen_write);
	if (full)
		fprintf(out, "  latency quantiles: log-linear histogram, "
			"relative error <= %.2f %%\n",
			100.0 * KP_HIST_REL_ERROR);
	size_t n = s->nfiles, top = an->opts->top ? an->opts->top : 10;
	if (!full && n > 5)
		n = 5;
	else if (full && n > top)
		n = top;
	for (size_t i = 0; i < n; i++)
		text_file(s, &s->files[s->order[i]], out, full);
	if (n < s->nfiles)
		fprintf(out, "  ... %zu more file%s\n", s->nfiles - n,
			s->nfiles - n == 1 ? "" : "s");
	for (size_t i = 0; i < s->nfnd; i++) {
		const struct finding *x = &s->fnd[i];
		fprintf(out, "  [%s] %s %s: %s (%s)\n", x->severity, x->code,
			x->title, s->files[x->file].path, x->evidence);
		if (full)
			fprintf(out, "      recommendation: %s\n",
				x->recommendation);
	}
	fputc('\n', out);
}

static void io_proc_text(void *state, struct kp_analysis *an,
			 const struct kp_proc *p, FILE *out)
{
	struct io_state *s = state;
	const struct io_proc *pr = p->pass_data[s->slot];
	char a[32], b[32];
	(void)an;
	if (!pr || !pr->calls)
		return;
	fprintf(out, "  io       %llu calls, %s read, %s written\n",
		(unsigned long long)pr->calls,
		kp_fmt_bytes(a, sizeof(a), pr->bytes[0][0] + pr->bytes[1][0]),
		kp_fmt_bytes(b, sizeof(b), pr->bytes[0][1] + pr->bytes[1][1]));
}

/* ---- JSON ------------------------------------------------------------------ */

static void jkey_u64(struct kp_json *j, const char *k, uint64_t v)
{
	kp_json_key(j, k);
	kp_json_u64(j, v);
}

static void json_num(struct kp_json *j, const char *k, double v)
{
	kp_json_key(j, k);
	kp_json_f64(j, v);
}

static void json_ops(const struct file *f, struct kp_json *j)
{
	kp_json_key(j, "ops");
	kp_json_begin_object(j);
	for (unsigned op = 0; op < NOPS; op++) {
		const struct opstat *o = &f->ops[op];
		if (!o->calls)
			continue;
		kp_json_key(j, op_name(op));
		kp_json_begin_object(j);
		jkey_u64(j, "calls", o->calls);
		jkey_u64(j, "bytes", o->bytes);
		jkey_u64(j, "errors", o->errors);
		jkey_u64(j, "total_ns", o->total_ns);
		jkey_u64(j, "p50_ns", kp_hist_quantile(&o->lat, .5));
		jkey_u64(j, "p90_ns", kp_hist_quantile(&o->lat, .9));
		jkey_u64(j, "p99_ns", kp_hist_quantile(&o->lat, .99));
		jkey_u64(j, "p999_ns", kp_hist_quantile(&o->lat, .999));
		jkey_u64(j, "max_ns", o->lat.count ? o->lat.max : 0);
		kp_json_end_object(j);
	}
	kp_json_end_object(j);
}

static void json_file(struct io_state *s, const struct file *f,
		      struct kp_json *j)
{
	kp_json_begin_object(j);
	kp_json_key(j, "path");
	kp_json_str(j, f->path);
	kp_json_key(j, "kind");
	kp_json_str(j, kp_fd_kind_name(f->kind));
	jkey_u64(j, "total_ns", f->total_ns);
	json_num(j, "wall_share", share(f->total_ns, s->wall_ns));
	uint64_t moved = 0;
	for (unsigned op = 0; op < NOPS; op++)
		moved = kp_sat_add(moved, f->ops[op].bytes);
	jkey_u64(j, "bytes", moved);
	json_num(j, "bytes_per_io_second", f->total_ns ?
		 (double)moved * 1e9 / (double)f->total_ns : 0);
	json_num(j, "bytes_per_wall_second", s->wall_ns ?
		 (double)moved * 1e9 / (double)s->wall_ns : 0);
	json_ops(f, j);
	uint64_t c = f->classified[0] + f->classified[1];
	uint64_t seq = f->seq[0] + f->seq[1];
	uint64_t con = f->consec[0] + f->consec[1];
	json_num(j, "sequential_share", share(seq, c));
	json_num(j, "consecutive_share", share(con, c));
	json_num(j, "random_share", share(c - seq, c));
	kp_json_key(j, "pattern");
	kp_json_begin_object(j);
	for (int d = 0; d < 2; d++) {
		kp_json_key(j, d ? "write" : "read");
		kp_json_begin_object(j);
		jkey_u64(j, "with_offset", f->classified[d]);
		jkey_u64(j, "sequential", f->seq[d]);
		jkey_u64(j, "consecutive", f->consec[d]);
		jkey_u64(j, "random", f->classified[d] - f->seq[d]);
		kp_json_key(j, "sizes");
		kp_json_begin_object(j);
		for (unsigned k = 0; k < NSIZE; k++)
			if (f->sizes[d][k])
				jkey_u64(j, size_name[k], f->sizes[d][k]);
		kp_json_end_object(j);
		jkey_u64(j, "syscalls", f->rw_calls[d]);
		jkey_u64(j, "small", f->small[d]);
		kp_json_end_object(j);
	}
	kp_json_end_object(j);
	jkey_u64(j, "reread_bytes", f->reread_bytes);
	kp_json_key(j, "reread_capped");
	kp_json_bool(j, f->reread_capped);
	jkey_u64(j, "extent", f->extent);
	jkey_u64(j, "syncs", f->syncs);
	json_num(j, "writes_per_sync",
		 f->syncs ? share(dir_calls(f, 'w', 0), f->syncs) : 0);
	kp_json_key(j, "stacks");
	kp_json_begin_array(j);
	for (size_t i = 0; i < TOP_STACKS; i++) {
		const struct sstat *x = file_stack(s, (uint32_t)(f - s->files),
						   i);
		if (!x)
			break;
		kp_json_begin_object(j);
		jkey_u64(j, "calls", x->calls);
		jkey_u64(j, "total_ns", x->ns);
		kp_json_key(j, "frames");
		kp_json_stack(s->an, j, x->stack);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	kp_json_end_object(j);
}

static void io_report_json(void *state, struct kp_analysis *an,
			   struct kp_json *j)
{
	struct io_state *s = state;
	const struct io_proc *g = &s->total;
	(void)an;
	kp_json_key(j, "io");
	kp_json_begin_object(j);
	json_num(j, "histogram_relative_error", KP_HIST_REL_ERROR);
	kp_json_key(j, "totals");
	kp_json_begin_object(j);
	jkey_u64(j, "calls", g->calls);
	jkey_u64(j, "errors", g->errors);
	jkey_u64(j, "total_ns", g->total_ns);
	jkey_u64(j, "wall_ns", s->wall_ns);
	json_num(j, "wall_share", share(g->total_ns, s->wall_ns));
	jkey_u64(j, "bytes_read", g->bytes[0][0]);
	jkey_u64(j, "bytes_written", g->bytes[0][1]);
	jkey_u64(j, "stdio_bytes_read", g->bytes[1][0]);
	jkey_u64(j, "stdio_bytes_written", g->bytes[1][1]);
	uint64_t all = g->bytes[0][0] + g->bytes[0][1] + g->bytes[1][0] +
		       g->bytes[1][1];
	json_num(j, "bytes_per_io_second",
		 g->total_ns ? (double)all * 1e9 / (double)g->total_ns : 0);
	json_num(j, "bytes_per_wall_second",
		 s->wall_ns ? (double)all * 1e9 / (double)s->wall_ns : 0);
	kp_json_end_object(j);
	kp_json_key(j, "unseen_bytes");
	if (g->has_summary)
		kp_json_u64(j, kp_sat_add(g->unseen_read, g->unseen_write));
	else
		kp_json_null(j);
	kp_json_key(j, "blind_spot");
	kp_json_begin_object(j);
	jkey_u64(j, "unseen_read", g->unseen_read);
	jkey_u64(j, "unseen_write", g->unseen_write);
	jkey_u64(j, "rchar", (uint64_t)g->sum[KP_IOS_RCHAR]);
	jkey_u64(j, "wchar", (uint64_t)g->sum[KP_IOS_WCHAR]);
	jkey_u64(j, "disk_read_bytes", (uint64_t)g->sum[KP_IOS_READ_BYTES]);
	jkey_u64(j, "disk_write_bytes",
		 (uint64_t)g->sum[KP_IOS_WRITE_BYTES]);
	jkey_u64(j, "seen_read", (uint64_t)g->sum[KP_IOS_SEEN_READ]);
	jkey_u64(j, "seen_write", (uint64_t)g->sum[KP_IOS_SEEN_WRITE]);
	jkey_u64(j, "kprof_write", (uint64_t)g->sum[KP_IOS_SELF_WRITE]);
	jkey_u64(j, "kprof_read", (uint64_t)g->sum[KP_IOS_SELF_READ]);
	kp_json_end_object(j);
	kp_json_key(j, "files");
	kp_json_begin_array(j);
	for (size_t i = 0; i < s->nfiles; i++)
		json_file(s, &s->files[s->order[i]], j);
	kp_json_end_array(j);
	kp_json_key(j, "findings");
	kp_json_begin_array(j);
	for (size_t i = 0; i < s->nfnd; i++) {
		const struct finding *x = &s->fnd[i];
		kp_json_begin_object(j);
		kp_json_key(j, "code");
		kp_json_str(j, x->code);
		kp_json_key(j, "severity");
		kp_json_str(j, x->severity);
		kp_json_key(j, "title");
		kp_json_str(j, x->title);
		kp_json_key(j, "path");
		kp_json_str(j, s->files[x->file].path);
		kp_json_key(j, "evidence");
		kp_json_str(j, x->evidence);
		kp_json_key(j, "recommendation");
		kp_json_str(j, x->recommendation);
		const struct sstat *st = file_stack(s, x->file, 0);
		kp_json_key(j, "stack"); /* the file's costliest stack */
		if (st)
			kp_json_stack(s->an, j, st->stack);
		else
			kp_json_null(j);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	kp_json_end_object(j);
}

static void io_proc_json(void *state, struct kp_analysis *an,
			 const struct kp_proc *p, struct kp_json *j)
{
	struct io_state *s = state;
	const struct io_proc *pr = p->pass_data[s->slot];
	(void)an;
	if (!pr)
		return;
	kp_json_key(j, "io");
	kp_json_begin_object(j);
	jkey_u64(j, "calls", pr->calls);
	jkey_u64(j, "errors", pr->errors);
	jkey_u64(j, "total_ns", pr->total_ns);
	jkey_u64(j, "bytes_read", pr->bytes[0][0]);
	jkey_u64(j, "bytes_written", pr->bytes[0][1]);
	jkey_u64(j, "stdio_bytes_read", pr->bytes[1][0]);
	jkey_u64(j, "stdio_bytes_written", pr->bytes[1][1]);
	kp_json_key(j, "unseen_bytes");
	if (pr->has_summary)
		kp_json_u64(j, pr->unseen_read + pr->unseen_write);
	else
		kp_json_null(j);
	kp_json_end_object(j);
}

static void io_free(void *state, struct kp_analysis *an)
{
	struct io_state *s = state;
	(void)an;
	for (size_t i = 0; i < s->nfiles; i++) {
		free(s->files[i].path);
		for (unsigned k = 0; k < NOPS; k++)
			kp_hist_free(&s->files[i].ops[k].lat);
	}
	for (size_t i = 0; i < an->nprocs; i++) {
		free(an->procs[i]->pass_data[s->slot]);
		an->procs[i]->pass_data[s->slot] = NULL;
	}
	free(s->files);
	free(s->fnd);
	free(s->order);
	free(s->top);
	smap_free(&s->stacks);
	kp_idmap_free(&s->ids);
	free(s);
}

size_t kp_io_files(const struct kp_analysis *an)
{
	const struct io_state *s = kp_pass_state(an, &kp_pass_io);
	return s && s->order ? s->nfiles : 0;
}

void kp_io_file(const struct kp_analysis *an, size_t r, struct kp_io_file *out)
{
	const struct io_state *s = kp_pass_state(an, &kp_pass_io);
	const struct file *f = &s->files[s->order[r]];
	memset(out, 0, sizeof(*out));
	out->path = f->path;
	out->total_ns = f->total_ns;
	out->syncs = f->syncs;
	for (unsigned op = 0; op < NOPS; op++) {
		if (kp_io_op_is_wait(op))
			continue;
		out->calls += f->ops[op].calls;
		char dir = kp_io_op_dir(op); /* 0 for OP_OPEN, OP_CLOSE */
		if (dir == 'r')
			out->bytes_read += f->ops[op].bytes;
		else if (dir == 'w')
			out->bytes_written += f->ops[op].bytes;
	}
}

uint64_t kp_io_sync_ns(const struct kp_analysis *an)
{
	const struct io_state *s = kp_pass_state(an, &kp_pass_io);
	uint64_t ns = 0;
	for (size_t i = 0; s && i < s->nfiles; i++)
		ns = kp_sat_add(ns, dir_ns(&s->files[i], 's'));
	return ns;
}

void kp_io_advise(struct kp_analysis *an, struct kp_advice_list *l)
{
	const struct io_state *s = kp_pass_state(an, &kp_pass_io);
	for (size_t i = 0; s && i < s->nfnd; i++) {
		const struct finding *x = &s->fnd[i];
		int sev = kp_severity_parse(x->severity);
		struct kp_advice *a = kp_advice_add(l, "io", x->code,
			sev < 0 ? KP_SEV_INFO : (enum kp_severity)sev);
		char p[200];
		snprintf(a->title, sizeof(a->title), "%s: %s", x->title,
			 kp_disp(p, sizeof(p), s->files[x->file].path, 160));
		snprintf(a->evidence, sizeof(a->evidence), "%s", x->evidence);
		a->action = x->recommendation;
		a->time_ns = x->ns;
		/* a file's name: its directory may be another run's */
		snprintf(a->key, sizeof(a->key), "%s",
			 kp_base_name(s->files[x->file].path));
		const struct sstat *top = file_stack(s, x->file, 0);
		a->gstack = top ? top->stack : 0;
	}
}

const struct kp_pass kp_pass_io = {
	.name = "io",
	.command = "io",
	.xInit = io_init,
	.xBeginTrace = io_begin_trace,
	.xEvents = io_events,
	.xEndTrace = io_end_trace,
	.xFinish = io_finish,
	.xProcText = io_proc_text,
	.xProcJson = io_proc_json,
	.xReportText = io_report_text,
	.xReportJson = io_report_json,
	.xFree = io_free,
};
