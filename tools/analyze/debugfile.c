/* SPDX-License-Identifier: MIT */
/*
 * Separate debug files made ready for libdw (symbols.c).
 *
 * Separate debug files (Debian's libc6-dbg, for one) keep their DWARF
 * sections compressed. libdw inflates every one of them as it opens the
 * file, which for libc's took longer than the rest of a report; so the
 * debug file libdw is given is a copy with those sections inflated once,
 * and the ones the analyzer never reads (location lists) left out
 * (kp_debug_inflate()). They are inflated with zlib, which libdw depends
 * on already (libdeflate was 2.5 times as fast on libc's, 12 against 30 ms
 * of CPU, but would be a library more to install).
 *
 * The copy is kept on disk, in a cache directory (KOTOBA_REPORT_CACHE), so
 * that a machine pays for it once, not in each report: on the 2-core
 * machines here libc's took 40 to 70 ms of CPU, nearly all of a report on
 * a small trace.
 *
 * The work is done ahead, on a thread of its own, while the trace is still
 * being read: the debug file of a module is asked for as soon as a stack
 * goes through the module (kp_symbols_ahead()), and find_debuginfo() later
 * takes the file ready (kp_debug_ahead_take()).
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "analyze.h"

/* ---- the copy with its sections inflated ----------------------------------- */

/* Sections no lookup here reads: left empty in the copy, not inflated. */
static int unread_section(const char *name)
{
	return !strcmp(name, ".debug_loc") || !strcmp(name, ".debug_loclists");
}

static int pow2(uint64_t a)
{
	return a && !(a & (a - 1));
}

static uint64_t align_up(uint64_t off, uint64_t a)
{
	return a > 1 ? (off + a - 1) & ~(a - 1) : off;
}

int kp_write_at(int fd, const void *buf, uint64_t len, uint64_t off)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t w = pwrite(fd, p, len < (1u << 30) ? len : (1u << 30),
				   (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (uint64_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* The largest inflated section accepted (a bound for a damaged file). */
#define KP_MAX_INFLATED (1ull << 32)

/* The copy of a file, laid out (plan_make) before a byte is written. */
struct plan {
	const unsigned char *in; /* the file, mapped */
	uint64_t size;
	Elf64_Ehdr eh;           /* the copy's headers */
	Elf64_Shdr *sh;
	size_t n;                /* sections */
	uint64_t *offs;          /* section i's data in the file (compressed:
				  * after the Chdr) */
	uint64_t outlen;         /* the copy's size */
	uint64_t buflen;         /* its largest inflated section */
};

static void plan_free(struct plan *p)
{
	free(p->sh);
	free(p->offs);
	if (p->in != MAP_FAILED)
		munmap((void *)p->in, p->size);
}

/*
 * Lay out the copy of the ELF file open on fd (st its fstat): the same
 * sections in the same order, headers and data, each compressed one
 * (SHF_COMPRESSED) inflated. @return 1 with *p to write, or 0 (*p freed)
 * when the file has nothing to inflate or is not a 64-bit ELF file of this
 * machine's byte order, or anything about it is wrong.
 */
static int plan_make(int fd, const struct stat *st, struct plan *p)
{
	memset(p, 0, sizeof(*p));
	p->in = MAP_FAILED;
	if (!S_ISREG(st->st_mode) ||
	    (uint64_t)st->st_size < sizeof(Elf64_Ehdr))
		return 0;
	uint64_t size = p->size = (uint64_t)st->st_size;
	const unsigned char *in = p->in =
		mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (in == MAP_FAILED)
		return 0;
	Elf64_Ehdr eh;
	memcpy(&eh, in, sizeof(eh));
	const unsigned char host_data =
		__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB
							  : ELFDATA2MSB;
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != host_data ||
	    eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum == 0 ||
	    eh.e_shstrndx == SHN_UNDEF || eh.e_shstrndx >= eh.e_shnum ||
	    eh.e_shoff > size ||
	    (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr) > size - eh.e_shoff ||
	    eh.e_phnum >= PN_XNUM ||
	    (eh.e_phnum && (eh.e_phentsize != sizeof(Elf64_Phdr) ||
			    eh.e_phoff > size ||
			    (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) >
				    size - eh.e_phoff)))
		goto no;
	size_t n = p->n = eh.e_shnum;
	Elf64_Shdr *sh = p->sh = xmalloc(n * sizeof(*sh));
	memcpy(sh, in + eh.e_shoff, n * sizeof(*sh));
	const Elf64_Shdr *strsh = &sh[eh.e_shstrndx];
	if (strsh->sh_type == SHT_NOBITS || strsh->sh_offset > size ||
	    strsh->sh_size > size - strsh->sh_offset)
		goto no;
	const char *names = (const char *)in + strsh->sh_offset;
	uint64_t names_len = strsh->sh_size;

	/* The new layout: ELF header, program headers, each section at its
	 * alignment, section headers. */
	uint64_t *offs = p->offs = xcalloc(n, sizeof(*offs));
	int compressed = 0;
	uint64_t off = sizeof(Elf64_Ehdr);
	uint64_t phoff = 0;
	if (eh.e_phnum) {
		phoff = align_up(off, 8);
		off = phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr);
	}
	for (size_t i = 1; i < n; i++) {
		Elf64_Shdr *h = &sh[i];
		if (h->sh_type == SHT_NOBITS) {
			h->sh_offset = off;
			continue;
		}
		if (h->sh_offset > size || h->sh_size > size - h->sh_offset)
			goto no;
		offs[i] = h->sh_offset;
		uint64_t len = h->sh_size, align = h->sh_addralign;
		if (h->sh_flags & SHF_COMPRESSED) {
			Elf64_Chdr ch;
			if (h->sh_size < sizeof(ch))
				goto no;
			memcpy(&ch, in + h->sh_offset, sizeof(ch));
			if (ch.ch_type != ELFCOMPRESS_ZLIB ||
			    ch.ch_size > KP_MAX_INFLATED ||
			    (ch.ch_addralign && !pow2(ch.ch_addralign)))
				goto no;
			compressed = 1;
			offs[i] += sizeof(ch);
			h->sh_flags &= ~(uint64_t)SHF_COMPRESSED;
			h->sh_size = len = ch.ch_size;
			h->sh_addralign = align = ch.ch_addralign;
			if (h->sh_name < names_len &&
			    memchr(names + h->sh_name, '\0',
				   names_len - h->sh_name) &&
			    unread_section(names + h->sh_name))
				h->sh_size = len = 0;
			if (len > p->buflen)
				p->buflen = len;
		}
		if (align > 1 && (!pow2(align) || align > 4096))
			goto no;
		off = align_up(off, align);
		h->sh_offset = off;
		off += len;
	}
	if (!compressed)
		goto no;
	eh.e_phoff = phoff;
	eh.e_shoff = align_up(off, 8);
	p->eh = eh;
	p->outlen = eh.e_shoff + n * sizeof(Elf64_Shdr);
	return 1;
no:
	plan_free(p);
	return 0;
}

/*
 * Write the copy to fd (sized to it first). Each inflated section goes
 * from one buffer the size of the largest, with pwrite(): a memory file's
 * pages are allocated as they are written. Through a mapping they were
 * zeroed first, then written, then unmapped (11 against 5 ms for libc's
 * 8.5 MB). @return 0, or -1 on an error.
 */
static int plan_write(const struct plan *p, int fd)
{
	const Elf64_Ehdr *ieh = (const Elf64_Ehdr *)p->in;
	const Elf64_Shdr *ish = (const Elf64_Shdr *)(p->in + ieh->e_shoff);
	unsigned char *out = NULL;
	int rc = -1;

	if (ftruncate(fd, (off_t)p->outlen) < 0)
		return -1;
	if (p->buflen && !(out = malloc(p->buflen)))
		return -1;
	for (size_t i = 1; i < p->n; i++) {
		const Elf64_Shdr *h = &p->sh[i], *o = &ish[i];
		if (h->sh_type == SHT_NOBITS || !h->sh_size)
			continue;
		if (!(o->sh_flags & SHF_COMPRESSED)) {
			if (kp_write_at(fd, p->in + p->offs[i], h->sh_size,
				     h->sh_offset) < 0)
				goto out;
			continue;
		}
		/* ELFCOMPRESS_ZLIB is a zlib stream (its Adler-32 checked);
		 * anything but exactly sh_size bytes is an error. */
		uLongf got = (uLongf)h->sh_size;
		if (uncompress(out, &got, p->in + p->offs[i],
			       (uLong)(o->sh_size - sizeof(Elf64_Chdr))) !=
			    Z_OK ||
		    got != h->sh_size ||
		    kp_write_at(fd, out, h->sh_size, h->sh_offset) < 0)
			goto out;
	}
	if (kp_write_at(fd, &p->eh, sizeof(p->eh), 0) < 0 ||
	    (p->eh.e_phnum &&
	     kp_write_at(fd, p->in + ieh->e_phoff,
		      (size_t)p->eh.e_phnum * sizeof(Elf64_Phdr),
		      p->eh.e_phoff) < 0) ||
	    kp_write_at(fd, p->sh, p->n * sizeof(*p->sh), p->eh.e_shoff) < 0)
		goto out;
	rc = 0;
out:
	free(out);
	return rc;
}

/* ---- the cache of copies ----------------------------------------------------- */

/*
 * A directory of copies, one per debug file as it is on disk: its device,
 * inode, size and modification time name the copy, which is used only if
 * its size and headers are the ones plan_make() lays out (a damaged copy
 * is dropped and made again). A copy is written under a temporary name
 * and renamed, so a reader sees a whole file or none, and processes may
 * fill the directory at once. Using a copy sets its modification time:
 * when the directory holds more than KP_DEBUG_CACHE_MAX bytes of copies,
 * those used least recently go.
 */
#define KP_DEBUG_CACHE_MAX (512ull << 20)
#define KP_DEBUG_CACHE_SUFFIX ".debug"
#define KP_DEBUG_CACHE_TMP ".tmp-"

static struct {
	pthread_mutex_t lock;
	char *dir;         /* NULL: no cache */
	int is_default;    /* dir is ~/.cache/kprof: its parent may be made */
	int dfd;           /* -1: not opened yet, -2: not usable */
	uint64_t max;
} cache = { .lock = PTHREAD_MUTEX_INITIALIZER, .dfd = -1,
	    .max = KP_DEBUG_CACHE_MAX };

void kp_debug_cache_init(const char *setting, uint64_t max_bytes)
{
	pthread_mutex_lock(&cache.lock);
	if (cache.dfd >= 0)
		close(cache.dfd);
	free(cache.dir);
	cache.dir = NULL;
	cache.dfd = -1;
	cache.is_default = 0;
	cache.max = max_bytes ? max_bytes : KP_DEBUG_CACHE_MAX;
	const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
	const char *base = x && x[0] == '/' ? x : h && h[0] == '/' ? h : NULL;
	char buf[4096];
	struct stat st;
	if (setting) {
		if (setting[0] && strcmp(setting, "off"))
			cache.dir = xstrdup(setting);
	} else if (base && stat(base, &st) == 0 && st.st_uid == geteuid() &&
		   (size_t)snprintf(buf, sizeof(buf), "%s%s", base,
				    base == x ? "/kprof" : "/.cache/kprof") <
			   sizeof(buf)) {
		/* in a home of this user's only: not a root-owned directory
		 * in the home of the user who ran sudo */
		cache.dir = xstrdup(buf);
		cache.is_default = 1;
	}
	pthread_mutex_unlock(&cache.lock);
}

/* The cache directory, made if it is missing (0700); -1 if there is none
 * or it is not usable: not a directory, or not this user's alone (a
 * warning then, once, for a directory KOTOBA_REPORT_CACHE names; the
 * default is given up silently). */
static int cache_dir(void)
{
	pthread_mutex_lock(&cache.lock);
	if (cache.dfd == -1 && cache.dir) {
		cache.dfd = -2;
		if (mkdir(cache.dir, 0700) < 0 && errno == ENOENT &&
		    cache.is_default) {
			/* ~/.cache missing: make it too */
			char *slash = strrchr(cache.dir, '/');
			*slash = '\0';
			int rc = mkdir(cache.dir, 0700);
			*slash = '/';
			if (rc == 0)
				mkdir(cache.dir, 0700);
		}
		int fd = open(cache.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct stat st;
		if (fd < 0) {
			if (!cache.is_default)
				warning("debug file cache %s: %s; not cached",
					cache.dir, strerror(errno));
		} else if (fstat(fd, &st) < 0 || st.st_uid != geteuid() ||
			   (st.st_mode & 022)) {
			if (!cache.is_default)
				warning("debug file cache %s: not this user's "
					"alone; not cached", cache.dir);
			close(fd);
		} else {
			cache.dfd = fd;
		}
	}
	int fd = cache.dfd;
	pthread_mutex_unlock(&cache.lock);
	return fd;
}

static void cache_name(const struct stat *st, char *buf, size_t size)
{
	snprintf(buf, size, "%llx-%llx-%llx-%llx.%lx" KP_DEBUG_CACHE_SUFFIX,
		 (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
		 (unsigned long long)st->st_size,
		 (unsigned long long)st->st_mtim.tv_sec,
		 (unsigned long)st->st_mtim.tv_nsec);
}

/* Does fd hold p's headers where p puts them? */
static int same_headers(int fd, const struct plan *p)
{
	Elf64_Ehdr eh;
	size_t len = p->n * sizeof(*p->sh);
	Elf64_Shdr *sh = xmalloc(len);
	int same = pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) &&
		   !memcmp(&eh, &p->eh, sizeof(eh)) &&
		   pread(fd, sh, len, (off_t)p->eh.e_shoff) == (ssize_t)len &&
		   !memcmp(sh, p->sh, len);
	free(sh);
	return same;
}

/* The copy called name, if it is whole (and then marked used); else -1,
 * and a damaged one is removed. */
static int cache_get(int dfd, const char *name, const struct plan *p)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != p->outlen || !same_headers(fd, p)) {
		close(fd);
		unlinkat(dfd, name, 0);
		return -1;
	}
	futimens(fd, NULL);
	return fd;
}

struct cached {
	char name[256];
	struct timespec mtime;
	uint64_t bytes;
};

static int by_mtime(const void *a, const void *b)
{
	const struct timespec *x = &((const struct cached *)a)->mtime;
	const struct timespec *y = &((const struct cached *)b)->mtime;
	if (x->tv_sec != y->tv_sec)
		return x->tv_sec < y->tv_sec ? -1 : 1;
	return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

/* Is name one cache_name() or cached_copy() makes (copy: 0, temporary
 * file: 1), or another (-1)? Nothing else in the directory is touched:
 * it may be one that holds other files (KOTOBA_REPORT_CACHE=~/.debug). */
static int cache_file_kind(const char *name)
{
	size_t tl = strlen(KP_DEBUG_CACHE_TMP), sl = strlen(KP_DEBUG_CACHE_SUFFIX);
	size_t len = strlen(name);
	if (!strncmp(name, KP_DEBUG_CACHE_TMP, tl))
		return name[tl] && strspn(name + tl, "0123456789-") == len - tl ?
			       1 : -1;
	if (len <= sl || strcmp(name + len - sl, KP_DEBUG_CACHE_SUFFIX))
		return -1;
	int dashes = 0, dots = 0;
	for (size_t i = 0; i < len - sl; i++) {
		char ch = name[i];
		if (ch == '-')
			dashes++;
		else if (ch == '.')
			dots++;
		else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return -1;
	}
	return dashes == 3 && dots == 1 ? 0 : -1;
}

/* Keep the copies under cache.max bytes, the least recently used going
 * first; and remove temporary files an hour old (a writer that died). */
static void cache_trim(int dfd)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct cached *c = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = 0;
	time_t now = time(NULL);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		size_t len = strlen(e->d_name);
		int kind = cache_file_kind(e->d_name);
		if (kind < 0 || len >= sizeof(c->name) ||
		    fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (kind == 1) {
			if (now - st.st_mtim.tv_sec > 3600)
				unlinkat(dfd, e->d_name, 0);
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			c = xrealloc_array(c, cap, sizeof(*c));
		}
		memcpy(c[n].name, e->d_name, len + 1);
		c[n].mtime = st.st_mtim;
		c[n].bytes = (uint64_t)st.st_blocks * 512;
		total += c[n++].bytes;
	}
	closedir(d);
	if (total > cache.max) {
		qsort(c, n, sizeof(*c), by_mtime);
		for (size_t i = 0; i < n && total > cache.max; i++)
			if (unlinkat(dfd, c[i].name, 0) == 0)
				total -= c[i].bytes;
	}
	free(c);
}

/* The copy p lays out for the file st describes, from the cache or made
 * there; -1 if the cache has none and cannot take one. */
static int cached_copy(const struct stat *st, const struct plan *p)
{
	int dfd = cache_dir();
	if (dfd < 0)
		return -1;
	char name[256], tmp[64];
	cache_name(st, name, sizeof(name));
	int fd = cache_get(dfd, name, p);
	if (fd >= 0)
		return fd;
	static _Atomic unsigned seq;
	snprintf(tmp, sizeof(tmp), KP_DEBUG_CACHE_TMP "%ld-%u", (long)getpid(),
		 atomic_fetch_add(&seq, 1));
	fd = openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC |
				      O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	if (plan_write(p, fd) < 0 || renameat(dfd, tmp, dfd, name) < 0) {
		close(fd);
		unlinkat(dfd, tmp, 0);
		return -1;
	}
	cache_trim(dfd);
	return fd;
}

int kp_debug_inflate(int fd)
{
	struct stat st;
	struct plan p;

	if (fstat(fd, &st) < 0 || !plan_make(fd, &st, &p))
		return fd;
	int out = cached_copy(&st, &p);
	if (out < 0) {
		out = memfd_create("kprof-debuginfo", MFD_CLOEXEC);
		if (out >= 0 && plan_write(&p, out) < 0) {
			close(out);
			out = -1;
		}
	}
	plan_free(&p);
	if (out < 0)
		return fd;
	close(fd);
	return out;
}

/* ---- debug files inflated ahead -------------------------------------------- */

/*
 * Inflating libc's debug file costs 40 to 70 ms of CPU (zlib, and the
 * 2,000 pages of the copy), which the report used to pay at its first
 * libc frame, after the whole trace was read (with the copy cached, the
 * first report on the machine does). The debug files a report
 * can need are those of the modules the trace's stacks go through, known
 * as the stacks are read; so each is inflated then, on one thread of its
 * own, while the main thread reads on. A file no report line needs is
 * inflated for nothing (kprof stacks nearly always go through libc, and
 * files without compressed sections cost an open and a look at the
 * headers); --no-symbols asks for none.
 *
 * A file is queued (AHEAD_QUEUED), then inflated by the thread
 * (AHEAD_BUSY, AHEAD_DONE with its result) or, if the report wants it
 * before the thread started on it, taken back and inflated by the caller
 * as before (AHEAD_TAKEN).
 */
enum { AHEAD_QUEUED, AHEAD_BUSY, AHEAD_DONE, AHEAD_TAKEN };

struct ahead_file {
	char *path;
	int state;
	int fd; /* AHEAD_DONE: the inflated copy, or -1 (nothing inflated) */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a file queued, done, or stop */
	pthread_t thread;
	int started, stop;
	struct ahead_file *f; /* by index: the array may move */
	size_t n, cap;
} ahead = { .lock = PTHREAD_MUTEX_INITIALIZER,
	    .cond = PTHREAD_COND_INITIALIZER };

static void *ahead_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&ahead.lock);
	for (;;) {
		size_t i = 0;
		while (i < ahead.n && ahead.f[i].state != AHEAD_QUEUED)
			i++;
		if (i == ahead.n) {
			if (ahead.stop)
				break;
			pthread_cond_wait(&ahead.cond, &ahead.lock);
			continue;
		}
		ahead.f[i].state = AHEAD_BUSY;
		char *path = ahead.f[i].path; /* freed only after the join */
		pthread_mutex_unlock(&ahead.lock);
		int fd = open(path, O_RDONLY | O_CLOEXEC), mfd = -1;
		if (fd >= 0) {
			mfd = kp_debug_inflate(fd);
			if (mfd == fd) { /* nothing to inflate */
				close(fd);
				mfd = -1;
			}
		}
		pthread_mutex_lock(&ahead.lock);
		ahead.f[i].fd = mfd;
		ahead.f[i].state = AHEAD_DONE;
		pthread_cond_broadcast(&ahead.cond);
	}
	pthread_mutex_unlock(&ahead.lock);
	return NULL;
}

void kp_debug_ahead(const char *path)
{
	pthread_mutex_lock(&ahead.lock);
	for (size_t i = 0; i < ahead.n; i++)
		if (!strcmp(ahead.f[i].path, path))
			goto out; /* asked for already */
	if (ahead.n == ahead.cap) {
		ahead.cap = ahead.cap ? ahead.cap * 2 : 16;
		ahead.f = xrealloc_array(ahead.f, ahead.cap, sizeof(*ahead.f));
	}
	ahead.f[ahead.n++] = (struct ahead_file){ xstrdup(path), AHEAD_QUEUED,
						  -1 };
	/* Without the thread (it could not be made), a file stays queued
	 * until kp_debug_ahead_take() gives it back to its caller. */
	if (!ahead.started && !ahead.stop)
		ahead.started = pthread_create(&ahead.thread, NULL, ahead_main,
					       NULL) == 0;
	pthread_cond_broadcast(&ahead.cond);
out:
	pthread_mutex_unlock(&ahead.lock);
}

int kp_debug_ahead_take(const char *path)
{
	int fd = -1;

	pthread_mutex_lock(&ahead.lock);
	for (size_t i = 0; i < ahead.n; i++) {
		if (strcmp(ahead.f[i].path, path))
			continue;
		while (ahead.f[i].state == AHEAD_BUSY)
			pthread_cond_wait(&ahead.cond, &ahead.lock);
		if (ahead.f[i].state == AHEAD_DONE)
			fd = ahead.f[i].fd;
		ahead.f[i].state = AHEAD_TAKEN;
		break;
	}
	pthread_mutex_unlock(&ahead.lock);
	return fd;
}

void kp_debug_ahead_wait(void)
{
	pthread_mutex_lock(&ahead.lock);
	for (size_t i = 0; ahead.started && i < ahead.n; i++)
		while (ahead.f[i].state == AHEAD_QUEUED ||
		       ahead.f[i].state == AHEAD_BUSY)
			pthread_cond_wait(&ahead.cond, &ahead.lock);
	pthread_mutex_unlock(&ahead.lock);
}

void kp_debug_ahead_end(void)
{
	pthread_mutex_lock(&ahead.lock);
	ahead.stop = 1;
	for (size_t i = 0; i < ahead.n; i++)
		if (ahead.f[i].state == AHEAD_QUEUED)
			ahead.f[i].state = AHEAD_TAKEN;
	pthread_cond_broadcast(&ahead.cond);
	pthread_mutex_unlock(&ahead.lock);
	if (ahead.started)
		pthread_join(ahead.thread, NULL);
	for (size_t i = 0; i < ahead.n; i++) {
		if (ahead.f[i].state == AHEAD_DONE && ahead.f[i].fd >= 0)
			close(ahead.f[i].fd);
		free(ahead.f[i].path);
	}
	free(ahead.f);
	ahead.f = NULL;
	ahead.n = ahead.cap = 0;
	ahead.started = ahead.stop = 0;
}
