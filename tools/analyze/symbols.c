/* SPDX-License-Identifier: MIT */
/*
 * Offline symbolization with elfutils' libdwfl.
 *
 * Frames are (module, offset) with offset = pc - load bias, the address the
 * ELF file itself uses. Each module file gets its own Dwfl with the file
 * reported at bias 0, so the same module seen in many processes (or at many
 * addresses) is opened once and every lookup is done in file addresses.
 *
 * The file on disk must be the one that ran: its GNU build-id is compared
 * with the one recorded in the MODULE record. A mismatch or a missing file
 * falls back to module+offset, with one warning per module.
 *
 * Each (module, offset) is symbolized once; results are cached for the run.
 *
 * Separate debug files with compressed DWARF sections (Debian's
 * libc6-dbg, for one) are given to libdw inflated, from a cache on disk,
 * and made ready while the trace is still being read (debugfile.c): the
 * debug file of a module is asked for as soon as a stack goes through the
 * module (kp_symbols_ahead()), and find_debuginfo() later takes it ready
 * (kp_debug_ahead_take()).
 */
#include <elf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyze.h"

/* From libstdc++ (tools link -lstdc++): the Itanium C++ ABI demangler. */
extern char *__cxa_demangle(const char *mangled, char *buf, size_t *len,
			    int *status);

/* A compile unit's address range, for the line lookup fallback. */
struct cu_range {
	Dwarf_Addr lo, hi; /* module addresses, [lo, hi) */
	Dwarf_Die cu;
};

/* A function symbol, for the name lookup index. */
struct fn_sym {
	GElf_Addr lo, hi;  /* module addresses, [lo, hi); hi = lo if no size */
	const char *name;  /* in the ELF string table (lives with the Dwfl) */
	int global;
};

struct sym_module {
	Dwfl *dwfl;
	Dwfl_Module *mod;
	struct cu_range *cus; /* sorted by lo; built on first need */
	size_t ncus;
	int cus_built;
	struct fn_sym *fns;   /* sorted by lo; built on first need */
	size_t nfns;
	int fns_built;
};

struct sym_entry {
	uint32_t module;
	int ret_addr;
	uint64_t offset;
	uint32_t next;        /* hash chain */
	struct kp_symframe f; /* function and file are owned */
};

struct kp_symbols {
	struct kp_analysis *an;
	int enabled;
	struct kp_idmap ids;  /* hash -> first entry */
	struct sym_entry **e; /* each entry allocated once: callers keep
			       * pointers to entry->f across lookups */
	size_t n, cap;
};

static char *debuginfo_path;

/*
 * The path of the debug file of build-id bits[0 .. len) under
 * /usr/lib/debug/.build-id (the default debuginfo path's one absolute
 * directory). @return 0, or -1 for a length no build-id has.
 */
static int debug_path(const unsigned char *bits, int len, char *path,
		      size_t size)
{
	static const char dir[] = "/usr/lib/debug/.build-id/";

	if (len < 2 || len > 64 || size < sizeof(dir) + 2 * 64 + 8)
		return -1;
	size_t k = (size_t)snprintf(path, size, "%s%02x/", dir, bits[0]);
	for (int i = 1; i < len; i++)
		k += (size_t)snprintf(path + k, size - k, "%02x", bits[i]);
	snprintf(path + k, size - k, ".debug");
	return 0;
}

void kp_symbols_ahead(struct kp_analysis *an, uint32_t module)
{
	struct kp_module *m = &an->modules[module];
	char path[128 + 2 * 64];

	m->ahead = 1;
	if (!an->opts || an->opts->no_symbols ||
	    debug_path(m->build_id, (int)m->build_id_len, path,
		       sizeof(path)) < 0)
		return;
	kp_debug_ahead(path);
}

/*
 * The module's debug file where libdw looks first, by build-id under
 * /usr/lib/debug (the default debuginfo path's one absolute directory),
 * if it carries the module's build-id. @return an fd, or -1.
 */
static int open_by_build_id(Dwfl_Module *mod, char **name)
{
	const unsigned char *bits;
	GElf_Addr vaddr;
	int len = dwfl_module_build_id(mod, &bits, &vaddr);
	char path[128 + 2 * 64];

	if (debug_path(bits, len, path, sizeof(path)) < 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	const void *id = NULL;
	ssize_t n = elf ? dwelf_elf_gnu_build_id(elf, &id) : -1;
	int same = n == len && memcmp(id, bits, (size_t)len) == 0;
	if (elf)
		elf_end(elf);
	if (!same) {
		close(fd);
		return -1;
	}
	*name = xstrdup(path);
	return fd;
}

/* Does a file exist at a + b + c (any of them may be "")? */
static int exists3(const char *a, const char *b, const char *c)
{
	char path[4096];
	struct stat st;

	if ((size_t)snprintf(path, sizeof(path), "%s%s%s", a, b, c) >=
	    sizeof(path))
		return 1; /* cannot tell: say yes */
	return stat(path, &st) == 0;
}

/*
 * Could libdw's standard search find a debug file on this machine? It
 * looks (default debuginfo path "-:.debug:/usr/lib/debug") by build-id
 * under /usr/lib/debug/.build-id, then for the debuglink name, or the
 * file's name with ".debug", in the file's directory, its .debug
 * subdirectory and the same directory under /usr/lib/debug, as the file
 * is named and as its links resolve. Each of those places, and a few
 * more, is looked at here: 0 only when none holds anything, and 1 when
 * in doubt (a name this does not take apart).
 *
 * When nothing is found, libdw's last resort is its debuginfod client,
 * which it loads the first time (libdebuginfod, libcurl and some 30
 * libraries: ~10 ms) and which, without DEBUGINFOD_URLS, asks no server
 * and finds nothing. So with no such file and no DEBUGINFOD_URLS, the
 * search is not started at all: the result is the same, without the load.
 */
static int local_debug_file(Dwfl_Module *mod, const char *file_name,
			    const char *debuglink)
{
	static const char root[] = "/usr/lib/debug";
	const unsigned char *bits;
	GElf_Addr vaddr;
	char path[128 + 2 * 64];
	int len = dwfl_module_build_id(mod, &bits, &vaddr);

	if (len > 0 && (debug_path(bits, len, path, sizeof(path)) < 0 ||
			exists3(path, "", "")))
		return 1;
	if (!file_name || file_name[0] != '/' ||
	    (debuglink && (!debuglink[0] || strchr(debuglink, '/'))))
		return 1;
	char *real = realpath(file_name, NULL);
	const char *names[2] = { file_name, real ? real : file_name };
	int found = 0;
	for (int k = 0; k < 2 && !found; k++) {
		const char *slash = strrchr(names[k], '/');
		char dir[4096], base[4096];
		size_t dl = (size_t)(slash - names[k]);
		if (dl >= sizeof(dir) ||
		    (size_t)snprintf(base, sizeof(base), "%s.debug",
				     slash + 1) >= sizeof(base)) {
			found = 1;
			break;
		}
		memcpy(dir, names[k], dl);
		dir[dl] = '\0';
		char rdir[sizeof(root) + sizeof(dir)];
		snprintf(rdir, sizeof(rdir), "%s%s", root, dir);
		const char *cand[2] = { debuglink ? debuglink : base, base };
		for (int c = 0; c < 2 && !found; c++)
			found = exists3(dir, "/", cand[c]) ||
				exists3(dir, "/.debug/", cand[c]) ||
				exists3(rdir, "/", cand[c]) ||
				exists3(root, "/", cand[c]) ||
				exists3(root, "/.debug/", cand[c]);
	}
	free(real);
	return found;
}

/*
 * libdw's search for a module's debug file, its first result given as the
 * inflated copy. libdw's own search by build-id keeps the Elf it opened to
 * check the file, so an fd returned after it would go unused: the file it
 * finds that way is looked up here first. Later calls for the module (a
 * dwz file of shared DWARF) go to libdw's search as they are.
 */
static int find_debuginfo(Dwfl_Module *mod, void **userdata,
			  const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *debuglink_file,
			  GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	static char looked;

	if (!*userdata) {
		*userdata = &looked;
		int fd = open_by_build_id(mod, debuginfo_file_name);
		if (fd >= 0) {
			/* the same file, inflated ahead if it was */
			int mfd = kp_debug_ahead_take(*debuginfo_file_name);
			if (mfd >= 0) {
				close(fd);
				return mfd;
			}
			return kp_debug_inflate(fd);
		}
	}
	const char *urls = getenv("DEBUGINFOD_URLS");
	if ((!urls || !urls[0]) &&
	    !local_debug_file(mod, file_name, debuglink_file)) {
		errno = ENOENT; /* what the search leaves without debuginfod */
		return -1;
	}
	return dwfl_standard_find_debuginfo(mod, userdata, modname, base,
					    file_name, debuglink_file,
					    debuglink_crc,
					    debuginfo_file_name);
}

static const Dwfl_Callbacks offline_callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = find_debuginfo,
	.section_address = dwfl_offline_section_address,
	.debuginfo_path = &debuginfo_path,
};

struct kp_symbols *kp_symbols_new(struct kp_analysis *an, int enabled)
{
	struct kp_symbols *s = xcalloc(1, sizeof(*s));

	s->an = an;
	s->enabled = enabled;
	kp_idmap_init(&s->ids);
	elf_version(EV_CURRENT);
	return s;
}

void kp_symbols_free(struct kp_symbols *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free((char *)s->e[i]->f.function);
		free((char *)s->e[i]->f.file);
		free(s->e[i]);
	}
	free(s->e);
	kp_idmap_free(&s->ids);
	for (size_t i = 0; i < s->an->nmodules; i++) {
		struct sym_module *sm = s->an->modules[i].sym;
		if (sm) {
			dwfl_end(sm->dwfl);
			free(sm->cus);
			free(sm->fns);
			free(sm);
			s->an->modules[i].sym = NULL;
		}
	}
	free(s);
}

static void hex(char *out, size_t outlen, const uint8_t *b, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k + 3 <= outlen; i++)
		k += (size_t)snprintf(out + k, outlen - k, "%02x", b[i]);
	if (outlen)
		out[k < outlen ? k : outlen - 1] = '\0';
}

/* The kernel's vDSO, as the dynamic linker names it in the trace. */
static int is_vdso(const char *path)
{
	return !strcmp(path, "linux-vdso.so.1") ||
	       !strcmp(path, "linux-gate.so.1");
}

/*
 * The vDSO has no file. This analyzer's own is the traced one when both
 * ran on the same kernel, which sym_open's build-id check tells: a copy of
 * it in a memory file stands in for the file, so that the time a program
 * spends in clock_gettime() shows as that, not as linux-vdso.so.1+0x9f1.
 * @return an fd at offset 0, or -1.
 */
static int vdso_fd(void)
{
	const unsigned char *p = (const void *)getauxval(AT_SYSINFO_EHDR);
	if (!p || memcmp(p, ELFMAG, SELFMAG) || p[EI_CLASS] != ELFCLASS64)
		return -1;
	const Elf64_Ehdr *eh = (const void *)p;
	const Elf64_Phdr *ph = (const void *)(p + eh->e_phoff);
	/* the image is the whole ELF file, section headers last */
	size_t len = eh->e_shoff + (size_t)eh->e_shnum * eh->e_shentsize;
	for (unsigned i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD &&
		    ph[i].p_offset + ph[i].p_filesz > len)
			len = ph[i].p_offset + ph[i].p_filesz;
	if (len < sizeof(*eh) || len > (1u << 20))
		return -1;
	int fd = memfd_create("vdso", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (kp_write_at(fd, p, len, 0) != 0) { /* pwrite: the offset stays 0 */
		close(fd);
		return -1;
	}
	return fd;
}

/* Open module m for lookups, once. @return NULL when it cannot be used. */
static struct sym_module *sym_open(struct kp_symbols *s, struct kp_module *m)
{
	if (m->sym)
		return m->sym;
	if (m->sym_failed || !s->enabled)
		return NULL;
	m->sym_failed = 1; /* until proven usable */
	/* "[vdso]" and other pseudo paths name no file. */
	if (!m->path[0] || m->path[0] == '[')
		return NULL;

	/* the vDSO of another kernel (the trace made elsewhere) is nowhere:
	 * module+offset without a warning */
	int vdso = is_vdso(m->path);
	int fd = vdso ? vdso_fd() : open(m->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (!vdso)
			warning("%s: cannot open, showing module+offset",
				m->path);
		return NULL;
	}
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		if (elf)
			elf_end(elf);
		close(fd);
		warning("%s: not an ELF file, showing module+offset", m->path);
		return NULL;
	}
	if (m->build_id_len) {
		const void *id = NULL;
		ssize_t n = dwelf_elf_gnu_build_id(elf, &id);
		if (n != (ssize_t)m->build_id_len ||
		    memcmp(id, m->build_id, m->build_id_len)) {
			char want[2 * 64 + 1];
			hex(want, sizeof(want), m->build_id, m->build_id_len);
			elf_end(elf);
			close(fd);
			if (!vdso)
				warning("%s: build-id differs from the traced "
					"one (%s), showing module+offset",
					m->path, want);
			return NULL;
		}
	}
	elf_end(elf);

	Dwfl *d = dwfl_begin(&offline_callbacks);
	if (!d) {
		close(fd);
		return NULL;
	}
	dwfl_report_begin(d);
	/* Base 0 relative to p_vaddr: the module's addresses are the file's
	 * own, so offset = pc - bias can be looked up directly. On success
	 * the Dwfl owns fd. */
	Dwfl_Module *mod = dwfl_report_elf(d, m->path, m->path, fd, 0, true);
	if (!mod) {
		close(fd);
		dwfl_end(d);
		warning("%s: %s, showing module+offset", m->path,
			dwfl_errmsg(-1));
		return NULL;
	}
	dwfl_report_end(d, NULL, NULL);
	struct sym_module *sm = xcalloc(1, sizeof(*sm));
	sm->dwfl = d;
	sm->mod = mod;
	m->sym = sm;
	m->sym_failed = 0;
	return sm;
}

/* Demangle, and drop a symbol version ("memcpy@@GLIBC_2.14"): the
 * version says nothing about where the program was. */
static char *demangle(const char *name)
{
	const char *at = strchr(name, '@');
	char *plain = at && at > name ? xstrndup(name, (size_t)(at - name))
				      : xstrdup(name);

	if (plain[0] == '_' && plain[1] == 'Z') {
		int status = 0;
		char *d = __cxa_demangle(plain, NULL, NULL, &status);
		if (d && status == 0) {
			free(plain);
			return d;
		}
		free(d);
	}
	return plain;
}

static int cmp_fn(const void *a, const void *b)
{
	const struct fn_sym *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return y->global - x->global; /* globals first among aliases */
}

/*
 * The module's function symbols, sorted, built once. libdw's
 * dwfl_module_addrname costs a scan of the symbol table per address, which
 * for a large stripped program (gcc's cc1plus: thousands of leak groups)
 * made a report take seconds; this index makes each lookup a binary search.
 */
static void build_fn_index(struct sym_module *sm)
{
	size_t cap = 0;
	int n = dwfl_module_getsymtab(sm->mod);
	sm->fns_built = 1;
	for (int i = 1; i < n; i++) {
		GElf_Sym sym;
		GElf_Addr addr;
		GElf_Word shndx = SHN_UNDEF;
		const char *name = dwfl_module_getsym_info(sm->mod, i, &sym, &addr,
							   &shndx, NULL, NULL);
		int type = GELF_ST_TYPE(sym.st_info);
		/* Undefined symbols can carry a PLT address (non-PIE
		 * programs): they name no code of this module. */
		if (!name || !name[0] || !addr || shndx == SHN_UNDEF ||
		    (type != STT_FUNC && type != STT_GNU_IFUNC))
			continue;
		if (sm->nfns == cap) {
			cap = cap ? cap * 2 : 1024;
			sm->fns = xrealloc_array(sm->fns, cap, sizeof(*sm->fns));
		}
		sm->fns[sm->nfns++] = (struct fn_sym){
			addr, addr + sym.st_size, name,
			GELF_ST_BIND(sym.st_info) != STB_LOCAL
		};
	}
	if (sm->nfns)
		qsort(sm->fns, sm->nfns, sizeof(*sm->fns), cmp_fn);
}

/* The function containing module address a, or NULL. A symbol without a
 * size covers up to the next symbol (as libdw treats it). */
static const char *fn_name(struct sym_module *sm, GElf_Addr a)
{
	if (!sm->fns_built)
		build_fn_index(sm);
	size_t lo = 0, hi = sm->nfns;
	while (lo < hi) { /* first symbol starting after a */
		size_t mid = lo + (hi - lo) / 2;
		if (sm->fns[mid].lo <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	/* The nearest start at or below a; among symbols starting there
	 * (sorted globals first), the first that covers a. */
	GElf_Addr start = sm->fns[lo - 1].lo;
	size_t i = lo - 1;
	while (i > 0 && sm->fns[i - 1].lo == start)
		i--;
	for (; i < lo; i++) {
		const struct fn_sym *f = &sm->fns[i];
		if (a < f->hi || (f->hi == f->lo && (lo == sm->nfns ||
						    a < sm->fns[lo].lo)))
			return f->name;
	}
	/* Nested or overlapping sizes: a bounded look further back. */
	for (size_t k = 0, j = (i > 0 ? i - 1 : 0); k < 8 && j < i; k++, j--) {
		if (a >= sm->fns[j].lo && a < sm->fns[j].hi)
			return sm->fns[j].name;
		if (j == 0)
			break;
	}
	return NULL;
}

/*
 * A vDSO address no symbol covers. Newer kernels' vDSOs call out-of-line
 * helpers with no symbol of their own (6.18's clock read, called from
 * clock_gettime and gettimeofday), where a clock-reading program spends
 * most of its time. Named after the functions that call it:
 * "(vDSO helper of __vdso_clock_gettime, __vdso_gettimeofday)". Its start
 * comes from the vDSO's .eh_frame, its callers from the direct calls
 * (e8 rel32) to that start in the vDSO's code, which is a few KiB.
 * @return a malloc'ed name, or NULL.
 */
static char *vdso_helper_name(struct sym_module *sm, GElf_Addr a)
{
	Dwarf_Addr bias = 0;
	Dwarf_CFI *cfi = dwfl_module_eh_cfi(sm->mod, &bias);
	Dwarf_Frame *fr = NULL;
	if (!cfi || dwarf_cfi_addrframe(cfi, a, &fr) != 0)
		return NULL;
	Dwarf_Addr start = 0, end = 0;
	dwarf_frame_info(fr, &start, &end, NULL);
	free(fr);
	Elf *elf = dwfl_module_getelf(sm->mod, &bias);
	if (!elf)
		return NULL;
	const char *callers[8];
	size_t n = 0;
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn)) != NULL;) {
		GElf_Shdr sh;
		Elf_Data *d;
		if (!gelf_getshdr(scn, &sh) || !(sh.sh_flags & SHF_EXECINSTR) ||
		    sh.sh_type != SHT_PROGBITS ||
		    !(d = elf_getdata(scn, NULL)) || d->d_size < 5)
			continue;
		const unsigned char *b = d->d_buf;
		for (size_t i = 0; i + 5 <= d->d_size; i++) {
			int32_t rel;
			if (b[i] != 0xe8)
				continue;
			memcpy(&rel, b + i + 1, 4);
			if (sh.sh_addr + i + 5 + (int64_t)rel != start)
				continue;
			const char *c = fn_name(sm, sh.sh_addr + i);
			size_t k = 0;
			while (c && k < n && strcmp(callers[k], c))
				k++;
			if (c && k == n && n < KP_ARRAY_SIZE(callers))
				callers[n++] = c;
		}
	}
	if (!n)
		return NULL;
	char *plain[KP_ARRAY_SIZE(callers)]; /* without their versions */
	size_t len = 32;
	for (size_t k = 0; k < n; k++) {
		plain[k] = demangle(callers[k]);
		len += strlen(plain[k]) + 2;
	}
	char *name = xmalloc(len), *p = name;
	p += sprintf(p, "(vDSO helper of ");
	for (size_t k = 0; k < n; k++) {
		p += sprintf(p, "%s%s", k ? ", " : "", plain[k]);
		free(plain[k]);
	}
	strcpy(p, ")");
	return name;
}

static int cmp_cu(const void *a, const void *b)
{
	const struct cu_range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/*
 * The ranges of every compile unit of the module, sorted. libdw finds a
 * line through .debug_aranges, which clang does not emit by default; this
 * index finds the unit from the units' own DW_AT_ranges/low_pc instead.
 * Built once per module, on the first address libdw could not place.
 */
static void build_cu_index(struct sym_module *sm)
{
	size_t cap = 0;
	Dwarf_Die *cu = NULL;
	Dwarf_Addr bias;
	sm->cus_built = 1;
	while ((cu = dwfl_module_nextcu(sm->mod, cu, &bias)) != NULL) {
		Dwarf_Addr base, lo, hi;
		ptrdiff_t off = 0;
		while ((off = dwarf_ranges(cu, off, &base, &lo, &hi)) > 0) {
			if (hi <= lo)
				continue;
			if (sm->ncus == cap) {
				cap = cap ? cap * 2 : 64;
				sm->cus = xrealloc_array(sm->cus, cap,
							 sizeof(*sm->cus));
			}
			sm->cus[sm->ncus++] = (struct cu_range){ lo + bias,
								 hi + bias,
								 *cu };
		}
	}
	if (sm->ncus) /* qsort wants a non-NULL array even for 0 items */
		qsort(sm->cus, sm->ncus, sizeof(*sm->cus), cmp_cu);
}

/* The line of address a by the compile-unit index, or NULL; *comp_dir
 * is the unit's compilation directory (or NULL). */
static Dwarf_Line *line_by_cu(struct sym_module *sm, Dwarf_Addr a,
			      const char **comp_dir)
{
	if (!sm->cus_built)
		build_cu_index(sm);
	size_t lo = 0, hi = sm->ncus;
	while (lo < hi) { /* last range with start <= a */
		size_t mid = lo + (hi - lo) / 2;
		if (sm->cus[mid].lo <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Ranges may nest or overlap (inlined units): look back a little. */
	for (size_t i = lo, k = 0; i > 0 && k < 8; i--, k++) {
		struct cu_range *r = &sm->cus[i - 1];
		if (a >= r->lo && a < r->hi) {
			Dwarf_Addr bias = 0;
			Dwarf_Attribute attr;
			dwfl_module_getdwarf(sm->mod, &bias);
			*comp_dir = dwarf_formstring(
				dwarf_attr(&r->cu, DW_AT_comp_dir, &attr));
			return dwarf_getsrc_die(&r->cu, a - bias);
		}
	}
	return NULL;
}

/*
 * A JIT name as a frame: "py::QUALNAME:FILE" (python3.12's -X perf map) or
 * "py::QUALNAME:FILE:LINE" (the Python frames kprof reads itself,
 * preload/pystack.c, whose module is then "[python]": they are no JIT's
 * code) is the function QUALNAME at FILE, line LINE; any other name is the
 * function's whole.
 */
static void jit_frame(struct kp_symframe *f, const char *name)
{
	const char *q = name + 4, *c;
	if (strncmp(name, "py::", 4) != 0 || !(c = strchr(q, ':')) || c == q ||
	    !c[1]) {
		f->function = xstrdup(name);
		return;
	}
	const char *file = c + 1, *end = file + strlen(file), *l = end;
	while (l > file && l[-1] >= '0' && l[-1] <= '9')
		l--;
	if (l < end && l - 1 > file && l[-1] == ':' && end - l < 10) {
		f->line = atoi(l);
		end = l - 1;
		f->module = "[python]";
	}
	f->function = xstrndup(q, (size_t)(c - q));
	f->file = xstrndup(file, (size_t)(end - file));
}

static void sym_lookup(struct kp_symbols *s, struct sym_entry *e)
{
	struct kp_module *m = &s->an->modules[e->module];
	e->f.module = m->path;
	if (m->jit) { /* a JIT's code, named by its perf map */
		if (!s->enabled)
			return;
		const char *name = kp_perfmap_find(m->jit, e->offset -
						   (e->ret_addr && e->offset));
		if (!name) /* a leaf pc at the start of its code */
			name = kp_perfmap_find(m->jit, e->offset);
		if (name)
			jit_frame(&e->f, name);
		return;
	}
	struct sym_module *sm = sym_open(s, m);

	if (!sm)
		return;
	/* A return address points after the call; the call is what
	 * belongs to the caller's line. */
	Dwarf_Addr a = e->offset;
	if (e->ret_addr && a)
		a--;
	const char *name = fn_name(sm, a);
	if (name && name[0])
		e->f.function = demangle(name);
	else if (is_vdso(m->path))
		e->f.function = vdso_helper_name(sm, a);
	Dwfl_Line *line = dwfl_module_getsrc(sm->mod, a);
	const char *cu_dir = NULL;
	Dwarf_Line *dline = line ? NULL : line_by_cu(sm, a, &cu_dir);
	if (line || dline) {
		int lineno = 0;
		const char *file =
			line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL,
					     NULL)
			     : dwarf_linesrc(dline, NULL, NULL);
		if (dline)
			dwarf_lineno(dline, &lineno);
		if (file && file[0]) {
			/* Relative names are relative to the compilation
			 * directory; make them usable from anywhere. */
			const char *cd = file[0] == '/' ? NULL :
					 line ? dwfl_line_comp_dir(line) :
						cu_dir;
			if (cd && cd[0]) {
				size_t n = strlen(cd) + strlen(file) + 2;
				char *p = xmalloc(n);
				snprintf(p, n, "%s/%s", cd, file);
				e->f.file = p;
			} else {
				e->f.file = xstrdup(file);
			}
			e->f.line = lineno > 0 ? lineno : 0;
		}
	}
}

const struct kp_symframe *kp_symbolize(struct kp_symbols *s,
				       const struct kp_frame *f, int ret_addr)
{
	uint64_t h = kp_mix64(f->offset, ((uint64_t)f->module << 1) |
					 (ret_addr ? 1 : 0));
	if (h == KP_IDMAP_EMPTY)
		h--;
	uint32_t first = kp_idmap_get(&s->ids, h);

	for (uint32_t i = first; i != UINT32_MAX; i = s->e[i]->next) {
		struct sym_entry *e = s->e[i];
		if (e->module == f->module && e->offset == f->offset &&
		    e->ret_addr == !!ret_addr)
			return &e->f;
	}
	if (s->n >= s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->e = xrealloc_array(s->e, s->cap, sizeof(*s->e));
	}
	uint32_t idx = (uint32_t)s->n++;
	struct sym_entry *e = xcalloc(1, sizeof(*e));
	s->e[idx] = e;
	e->module = f->module < s->an->nmodules ? f->module : 0;
	e->offset = f->offset;
	e->ret_addr = !!ret_addr;
	e->f.offset = f->offset;
	e->f.address = f->address;
	e->next = UINT32_MAX;
	sym_lookup(s, e);
	e->module = f->module;
	if (first == UINT32_MAX) {
		kp_idmap_put(&s->ids, h, idx);
	} else {
		e->next = s->e[first]->next;
		s->e[first]->next = idx;
	}
	return &e->f;
}

int kp_is_alloc_wrapper(const char *fn)
{
	static const char *const exact[] = {
		"malloc", "calloc", "realloc", "reallocarray", "free",
		"posix_memalign", "aligned_alloc", "memalign", "valloc",
		"pvalloc", "strdup", "strndup", "__strdup", "__strndup",
		"wcsdup",
	};
	static const char *const prefix[] = {
		"operator new", "__libc_", "__GI___libc_", "std::allocator",
		"std::__new_allocator", "std::allocator_traits",
		"__gnu_cxx::new_allocator", "__gnu_cxx::__new_allocator",
		"__gnu_cxx::__alloc_traits", "__gnu_cxx::malloc_allocator",
		"__gnu_cxx::__pool_alloc", "__gnu_cxx::bitmap_allocator",
		"__gnu_cxx::__mt_alloc", "__gnu_cxx::throw_allocator",
	};

	if (!fn)
		return 0;
	for (size_t i = 0; i < KP_ARRAY_SIZE(exact); i++)
		if (!strcmp(fn, exact[i]))
			return 1;
	for (size_t i = 0; i < KP_ARRAY_SIZE(prefix); i++)
		if (kp_has_prefix(fn, prefix[i]))
			return 1;
	return 0;
}

size_t kp_symbolize_stack(struct kp_symbols *s, uint32_t gstack,
			  const struct kp_symframe **out, size_t max,
			  size_t *first)
{
	struct kp_analysis *an = s->an;

	*first = 0;
	if (gstack >= an->ngstacks || !max || !an->gstacks[gstack].depth)
		return 0; /* no frames (an->frames may be NULL) */
	const struct kp_gstack *g = &an->gstacks[gstack];
	size_t skip = 0;

	/*
	 * Every pc of an allocation stack is a return address: kprof's own
	 * frames (including the interposed malloc) are gone, so even the
	 * innermost one points after a call.
	 */
	while (skip + 1 < g->depth &&
	       kp_is_alloc_wrapper(kp_symbolize(
		       s, kp_gframe(an, g, (uint32_t)skip), 1)->function))
		skip++;
	*first = skip;
	return kp_symbolize_frames(s, gstack, skip, out, max);
}

size_t kp_symbolize_frames(struct kp_symbols *s, uint32_t gstack, size_t skip,
			   const struct kp_symframe **out, size_t max)
{
	struct kp_analysis *an = s->an;
	if (gstack >= an->ngstacks)
		return 0;
	const struct kp_gstack *g = &an->gstacks[gstack];
	size_t n = 0;
	for (size_t i = skip; i < g->depth && n < max; i++)
		out[n++] = kp_symbolize(s, kp_gframe(an, g, (uint32_t)i), 1);
	return n;
}
