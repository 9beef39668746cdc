# kprof — one non-recursive Makefile.
#
#   make                 build/libkprof.so, build/kprof-analyze, build/kprof
#   make test            install missing packages (as root), build, run every test
#   make bench           overhead benchmarks (ratios, side by side)
#   make demo            install, build, profile a demo program, print the report
#   make install PREFIX=/usr/local DESTDIR=
#
# Dependencies point one way: preload/ -> lib/, tools/ -> lib/. The include
# paths enforce it: lib/ sees only itself, preload/ and tools/ see lib/ and
# themselves, never each other.

CC ?= cc
CXX ?= c++
CLANG ?= clang
PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=

B := build
VERSION := 0.1.0

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wvla -Wformat=2 -Wwrite-strings -Wundef -fno-common
OPT ?= -O2 -g
ifeq ($(DEVELOPER),1)
WARN += -Werror
endif
BASE_CFLAGS := -std=gnu11 $(OPT) $(WARN) -D_GNU_SOURCE -DKP_VERSION='"$(VERSION)"'

# Recursively expanded on purpose: pkg-config runs when a recipe needs the
# flags, after `make deps` has had the chance to install the packages.
PC_CFLAGS = $(shell $(PKG_CONFIG) --cflags msgpack libzstd libunwind libdw 2>/dev/null)
PRELOAD_LIBS = $(shell $(PKG_CONFIG) --libs libzstd libunwind) -ldl -lpthread
TOOLS_LIBS = $(shell $(PKG_CONFIG) --libs msgpack libzstd libdw zlib) -lstdc++ -lm

LIB_SRC := $(wildcard lib/*.c)
PRELOAD_SRC := $(wildcard preload/*.c)
ANALYZE_SRC := $(wildcard tools/analyze/*.c)
ANALYZE_MAIN := tools/analyze/main.c
UNIT_SRC := $(wildcard tests/unit/t_*.c)
APP_C_SRC := $(wildcard tests/apps/*.c)
APP_CXX_SRC := $(wildcard tests/apps/*.cc)

LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
PRELOAD_OBJ := $(PRELOAD_SRC:%.c=$(B)/obj/%.o)
ANALYZE_OBJ := $(ANALYZE_SRC:%.c=$(B)/obj/%.o)
ANALYZE_LIB_OBJ := $(filter-out $(B)/obj/$(ANALYZE_MAIN:.c=.o),$(ANALYZE_OBJ))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
APP_BIN := $(APP_C_SRC:tests/apps/%.c=$(B)/tests/apps/%) \
	$(APP_CXX_SRC:tests/apps/%.cc=$(B)/tests/apps/%)

LIBKP := $(B)/libkp.a
LIBKPROF := $(B)/libkprof.so
ANALYZE := $(B)/kprof-analyze
LAUNCHER := $(B)/kprof

.PHONY: all deps test test-only bench demo install uninstall clean fuzz asan
all: $(LIBKPROF) $(ANALYZE) $(LAUNCHER)

deps:
	@sh tools/install-deps.sh $(DEPS_SET)

# ---- lib/: the trace format, shared by both sides -------------------------
$(B)/obj/lib/%.o: lib/%.c $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -fPIC -fvisibility=hidden -Ilib $(PC_CFLAGS) -c $< -o $@

$(LIBKP): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# ---- preload/: libkprof.so -------------------------------------------------
$(B)/obj/preload/%.o: preload/%.c $(wildcard preload/*.h lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -fPIC -fvisibility=hidden -ftls-model=initial-exec \
		-fno-omit-frame-pointer -Ilib -Ipreload $(PC_CFLAGS) -c $< -o $@

$(LIBKPROF): $(PRELOAD_OBJ) $(LIBKP) preload/libkprof.map
	$(CC) -shared -o $@ $(PRELOAD_OBJ) $(LIBKP) \
		-Wl,--version-script=preload/libkprof.map -Wl,-soname,libkprof.so \
		-Wl,-z,defs -Wl,-z,now $(PRELOAD_LIBS)

# ---- tools/: kprof-analyze and the kprof launcher --------------------------
$(B)/obj/tools/%.o: tools/%.c $(wildcard tools/analyze/*.h lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -Ilib -Itools/analyze $(PC_CFLAGS) -c $< -o $@

# report_html.c takes the script in whole (.incbin)
$(B)/obj/tools/analyze/report_html.o: tools/analyze/report_html.js

$(ANALYZE): $(ANALYZE_OBJ) $(LIBKP)
	$(CC) -o $@ $(ANALYZE_OBJ) $(LIBKP) $(TOOLS_LIBS)

$(LAUNCHER): tools/kprof.sh
	@mkdir -p $(dir $@)
	sed 's/@VERSION@/$(VERSION)/' $< > $@ && chmod +x $@

# ---- tests -----------------------------------------------------------------
$(B)/tests/t_%: tests/unit/t_%.c tests/harness.h $(LIBKP) $(ANALYZE_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -Ilib -Itools/analyze -Itests $(PC_CFLAGS) $< \
		$(ANALYZE_LIB_OBJ) $(LIBKP) -o $@ $(TOOLS_LIBS)

# python3.11's layouts that preload/pystack.c reads, against its headers
# (python3-dev): only this test includes them.
PY_CFLAGS = $(shell $(PKG_CONFIG) --cflags python3 2>/dev/null)
PY_LIBS = $(shell $(PKG_CONFIG) --libs python3-embed 2>/dev/null)
$(B)/tests/t_pyoffsets: tests/unit/t_pyoffsets.c tests/harness.h preload/pyoffsets.h \
		preload/pylines.h
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -Wall -Ipreload -Itests $(PY_CFLAGS) $< -o $@ $(PY_LIBS)

# Test apps: -O0 and frame pointers so the functions named in the tests stay
# on the stack; -rdynamic is not needed (symbols come from .symtab / DWARF).
$(B)/tests/apps/%: tests/apps/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O0 -g -fno-omit-frame-pointer -fno-inline -D_GNU_SOURCE $< -o $@ -lpthread $(APP_LDFLAGS)

# _FORTIFY_SOURCE needs optimisation: this app checks the __*_chk entry points
$(B)/tests/apps/io_fortify: tests/apps/io_fortify.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -D_FORTIFY_SOURCE=2 -g -D_GNU_SOURCE $< -o $@

# unwindcases once more as a non-PIE program (tests/integ/test_unwind.py):
# absolute addresses and another layout for the unwinder's .eh_frame reads.
APP_BIN += $(B)/tests/apps/unwindcases_nopie
$(B)/tests/apps/unwindcases_nopie: tests/apps/unwindcases.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O0 -g -fno-omit-frame-pointer -fno-inline -D_GNU_SOURCE -fno-pie -no-pie $< -o $@ -lpthread

# rawclone with a __register_atfork of its own, exported (as Firefox has it):
# kprof's handlers then run from the program's list and from its clone()
# hook both (tests/integ/test_rawclone.py).
APP_BIN += $(B)/tests/apps/rawclone_atfork
$(B)/tests/apps/rawclone_atfork: tests/apps/rawclone.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O0 -g -fno-omit-frame-pointer -fno-inline -D_GNU_SOURCE -DOWN_ATFORK -rdynamic $< -o $@ -lpthread

# ownalloc three times more, linked with an allocator of its own
# (tests/integ/test_invariants.py: kprof forwards to it), and with
# jemalloc inside the program (as rustc has it: no preload can replace it).
APP_BIN += $(B)/tests/apps/ownalloc_je $(B)/tests/apps/ownalloc_tc \
	$(B)/tests/apps/ownalloc_inside
$(B)/tests/apps/ownalloc_je: tests/apps/ownalloc.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O0 -g -fno-omit-frame-pointer -fno-inline -D_GNU_SOURCE -DOWN_JEMALLOC $< -o $@ -ljemalloc
$(B)/tests/apps/ownalloc_tc: tests/apps/ownalloc.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O0 -g -fno-omit-frame-pointer -fno-inline -D_GNU_SOURCE -DOWN_TCMALLOC $< -o $@ -ltcmalloc
$(B)/tests/apps/ownalloc_inside: tests/apps/ownalloc.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O0 -g -fno-omit-frame-pointer -fno-inline -D_GNU_SOURCE -DOWN_JEMALLOC $< -o $@ -Wl,-Bstatic -ljemalloc_pic -Wl,-Bdynamic -lstdc++ -lpthread -lm

$(B)/tests/apps/%: tests/apps/%.cc
	@mkdir -p $(dir $@)
	$(CXX) -O0 -g -fno-omit-frame-pointer -fno-inline $< -o $@ -lpthread

# Test-only preload libraries (tests/apps/preload/*.c -> .so). -O2: the
# dlsym wrapper must tail-call the real dlsym.
TEST_PRELOAD_SO := $(patsubst tests/apps/preload/%.c,$(B)/tests/apps/%.so,\
	$(wildcard tests/apps/preload/*.c))
$(B)/tests/apps/%.so: tests/apps/preload/%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -fno-stack-protector -shared -fPIC $< -o $@ -ldl

# Plugins for tests/apps/dlopener.c, which finds them through its RUNPATH.
TEST_PLUGIN_SO := $(patsubst tests/apps/plugins/%.c,$(B)/tests/apps/plugins/%.so,\
	$(wildcard tests/apps/plugins/*.c))
$(B)/tests/apps/plugins/%.so: tests/apps/plugins/%.c
	@mkdir -p $(dir $@)
	$(CC) -O0 -g -fno-omit-frame-pointer -shared -fPIC $< -o $@
$(B)/tests/apps/dlopener: APP_LDFLAGS = -Wl,-rpath,'$$ORIGIN/plugins' -ldl
# one plugin with SQLite of its own, twice: SQLCipher's and libsqlite3
# (tests/apps/sqlite_local.c loads them with RTLD_LOCAL)
SQLPLUG_SO := $(B)/tests/apps/plugins/libsqlplug_cipher.so \
	$(B)/tests/apps/plugins/libsqlplug_plain.so
TEST_PLUGIN_SO += $(SQLPLUG_SO)
$(B)/tests/apps/plugins/libsqlplug_cipher.so: tests/apps/sqlplug/sqlplug.c
	@mkdir -p $(dir $@)
	$(CC) -O0 -g -fno-omit-frame-pointer -shared -fPIC -I/usr/include/sqlcipher $< -o $@ -lsqlcipher
$(B)/tests/apps/plugins/libsqlplug_plain.so: tests/apps/sqlplug/sqlplug.c
	@mkdir -p $(dir $@)
	$(CC) -O0 -g -fno-omit-frame-pointer -shared -fPIC $< -o $@ -lsqlite3
$(B)/tests/apps/sqlite_local: APP_LDFLAGS = -Wl,-rpath,'$$ORIGIN/plugins' -ldl
# sqlite3_exec with unseen prepares (tests/apps/sqlite_exec.c links it
# before libsqlite3)
TEST_PLUGIN_SO += $(B)/tests/apps/plugins/libsqlexec.so
$(B)/tests/apps/plugins/libsqlexec.so: tests/apps/sqlplug/sqlexec.c
	@mkdir -p $(dir $@)
	$(CC) -O0 -g -fno-omit-frame-pointer -shared -fPIC $< -o $@ -lsqlite3 -ldl
$(B)/tests/apps/sqlite_exec: $(B)/tests/apps/plugins/libsqlexec.so
$(B)/tests/apps/sqlite_exec: APP_LDFLAGS = -L$(B)/tests/apps/plugins -lsqlexec \
	-lsqlite3 -Wl,-rpath,'$$ORIGIN/plugins'
$(B)/tests/apps/apiflush: APP_LDFLAGS = -Ipreload
$(B)/tests/apps/spans: APP_LDFLAGS = -Ipreload -pthread
$(B)/tests/apps/demo: APP_LDFLAGS = -Ipreload
$(B)/tests/apps/sqlite_app: APP_LDFLAGS = -lsqlite3
$(B)/tests/apps/sqlite_bench: APP_LDFLAGS = -lsqlite3
$(B)/tests/apps/sqlite_many: APP_LDFLAGS = -lsqlite3
$(B)/tests/apps/sqlite_mt: APP_LDFLAGS = -lsqlite3 -pthread
$(B)/tests/apps/sqlite_utf16: APP_LDFLAGS = -lsqlite3
$(B)/tests/apps/sqlite_counters: APP_LDFLAGS = -lsqlite3
$(B)/tests/apps/sqlite_lock: APP_LDFLAGS = -lsqlite3
# the example query plugin (kprof.h) and the library it teaches kprof
$(B)/tests/apps/plugins/kpq_minidb_plugin.so: tests/apps/plugins/kpq_minidb_plugin.c preload/kprof.h
	@mkdir -p $(dir $@)
	$(CC) -O0 -g -shared -fPIC -Ipreload $< -o $@
$(B)/tests/apps/minidb_app: $(B)/tests/apps/plugins/libkpminidb.so
$(B)/tests/apps/minidb_app: APP_LDFLAGS = -Ipreload -L$(B)/tests/apps/plugins \
	-lkpminidb -Wl,-rpath,'$$ORIGIN/plugins' -Wl,-z,now,-z,relro
$(B)/tests/apps/pq_app: APP_LDFLAGS = -I$(shell $(PKG_CONFIG) --variable=includedir libpq 2>/dev/null) -lpq

tests-build: all $(UNIT_BIN) $(APP_BIN) $(TEST_PRELOAD_SO) $(TEST_PLUGIN_SO)

test:
	@$(MAKE) --no-print-directory deps DEPS_SET="build test"
	@$(MAKE) --no-print-directory tests-build
	@sh tests/run.sh

# Run the suite without the package check (developers iterating).
test-only: tests-build
	@sh tests/run.sh

bench:
	@$(MAKE) --no-print-directory deps DEPS_SET="build test bench"
	@$(MAKE) --no-print-directory all $(APP_BIN)
	@sh tests/bench/run.sh

demo:
	@$(MAKE) --no-print-directory deps DEPS_SET="build"
	@$(MAKE) --no-print-directory all $(B)/tests/apps/demo
	@sh tools/demo.sh

# ---- install ---------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7
	install -m 0755 $(LIBKPROF) $(DESTDIR)$(LIBDIR)/libkprof.so
	install -m 0755 $(ANALYZE) $(DESTDIR)$(BINDIR)/kprof-analyze
	sed 's|^KPROF_LIB_DEFAULT=.*|KPROF_LIB_DEFAULT=$(LIBDIR)/libkprof.so|' $(LAUNCHER) \
		> $(DESTDIR)$(BINDIR)/kprof && chmod 0755 $(DESTDIR)$(BINDIR)/kprof
	install -m 0644 preload/kprof.h $(DESTDIR)$(INCLUDEDIR)/kprof.h
	for m in man/*.[1-9]; do \
		s=$${m##*.}; install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libkprof.so $(DESTDIR)$(BINDIR)/kprof-analyze \
		$(DESTDIR)$(BINDIR)/kprof $(DESTDIR)$(INCLUDEDIR)/kprof.h
	for m in man/*.[1-9]; do \
		s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; done

clean:
	rm -rf $(B)

# ---- benchmarks ------------------------------------------------------------
# the no-op interposer and the stamping reference, from one source
$(B)/bench/noop_preload.so: tests/bench/noop_preload.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -shared -fPIC $< -o $@ -ldl
$(B)/bench/stamp_preload.so: tests/bench/noop_preload.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -DBENCH_STAMP -shared -fPIC $< -o $@ -ldl

# ---- lib/ sanitizer builds and fuzzing (make asan, make fuzz) --------------
# Appended for the trace-format library. Both build into their own trees
# (build/asan/, build/fuzz/) so they never mix with the normal objects.
#
#   make asan         lib/ + its unit tests + the corpus replayer under
#                     ASan/UBSan, then runs them (KP_TEST_QUICK=1 shrinks
#                     the size/speed tests, which only print numbers)
#   make tsan-analyze-unit  the analyzer's unit tests that run both of its
#                     threads, under ThreadSanitizer
#   make fuzz         libFuzzer on the trace reader for FUZZ_SECONDS, over a
#                     copy of tests/fuzz/corpus (new inputs stay in build/)
#   make fuzz-corpus  regenerate the seed corpus (only when the format changes;
#                     then restore from git the files it does not make: the
#                     traces of older formats, v1-*, v2.*, v3.0-* and v3.1-*,
#                     nostacks.kpz and crash-* regressions, which the reader
#                     must keep reading)
FUZZ_SECONDS ?= 20
.PHONY: fuzz-corpus
# -gdwarf-aranges: clang omits .debug_aranges by default, and without it
# libdw (0.188) finds no line info (t_analyze_memory's symbolize_self
# reads the test's own DWARF, as gcc's objects provide it).
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -gdwarf-aranges
# Unit tests that need nothing but lib/ (the others link tools/ objects).
LIB_UNIT_TESTS := t_codec t_kpz t_fingerprint
ASAN_B := $(B)/asan
FUZZ_B := $(B)/fuzz
ASAN_LIB_OBJ := $(LIB_SRC:%.c=$(ASAN_B)/obj/%.o)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_B)/obj/%.o)
LIB_LIBS = $(shell $(PKG_CONFIG) --libs msgpack libzstd)

$(ASAN_B)/t_%: tests/unit/t_%.c $(wildcard tests/unit/*.h) tests/harness.h $(ASAN_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CLANG) $(BASE_CFLAGS) $(SAN_FLAGS) -Ilib -Itests $(PC_CFLAGS) $< \
		$(ASAN_LIB_OBJ) -o $@ $(LIB_LIBS) -lm

$(ASAN_B)/regress: tests/fuzz/regress.c tests/fuzz/fuzz_reader.c $(ASAN_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CLANG) $(BASE_CFLAGS) $(SAN_FLAGS) -Ilib $(PC_CFLAGS) \
		tests/fuzz/regress.c tests/fuzz/fuzz_reader.c $(ASAN_LIB_OBJ) \
		-o $@ $(LIB_LIBS)

# The analyzer under ASan/UBSan: tools/analyze/*.c (main.c too) linked with
# the asan lib/ objects into $(ASAN_B)/kprof-analyze; its unit test
# t_analyze_memory links the same objects but main.c.
ASAN_ANALYZE_OBJ := $(ANALYZE_SRC:%.c=$(ASAN_B)/obj/%.o)
ASAN_ANALYZE_LIB_OBJ := $(filter-out $(ASAN_B)/obj/$(ANALYZE_MAIN:.c=.o),$(ASAN_ANALYZE_OBJ))
ANALYZE_UNIT_TESTS := t_analyze_memory t_hist t_idmap t_analyze_queries t_perfmap t_json \
	t_analyze_cpu
# Any report stops the run (abort: non-zero exit); leaks are reported too.
ASAN_ENV := ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

$(ASAN_B)/kprof-analyze: $(ASAN_ANALYZE_OBJ) $(ASAN_LIB_OBJ)
	$(CLANG) $(SAN_FLAGS) -o $@ $(ASAN_ANALYZE_OBJ) $(ASAN_LIB_OBJ) \
		$(TOOLS_LIBS)

# $(call san_build,DIR,FLAGS): the rules for lib/ and tools/ objects and
# the analyzer's unit tests built with FLAGS under DIR (ASan/UBSan in
# $(ASAN_B), ThreadSanitizer in $(TSAN_B)).
define san_build
$(1)/obj/lib/%.o: lib/%.c $$(wildcard lib/*.h)
	@mkdir -p $$(dir $$@)
	$$(CLANG) $$(BASE_CFLAGS) $(2) -Ilib $$(PC_CFLAGS) -c $$< -o $$@

$(1)/obj/tools/%.o: tools/%.c $$(wildcard tools/analyze/*.h lib/*.h)
	@mkdir -p $$(dir $$@)
	$$(CLANG) $$(BASE_CFLAGS) $(2) -Ilib -Itools/analyze $$(PC_CFLAGS) \
		-c $$< -o $$@
$(1)/obj/tools/analyze/report_html.o: tools/analyze/report_html.js

$$(ANALYZE_UNIT_TESTS:%=$(1)/%): $(1)/t_%: tests/unit/t_%.c \
		$$(wildcard tests/unit/*.h) tests/harness.h \
		$$(filter-out $(1)/obj/$$(ANALYZE_MAIN:.c=.o),$$(ANALYZE_SRC:%.c=$(1)/obj/%.o)) \
		$$(LIB_SRC:%.c=$(1)/obj/%.o)
	@mkdir -p $$(dir $$@)
	$$(CLANG) $$(BASE_CFLAGS) $(2) -Ilib -Itools/analyze -Itests \
		$$(PC_CFLAGS) $$(filter %.c %.o,$$^) -o $$@ $$(TOOLS_LIBS)
endef
$(eval $(call san_build,$(ASAN_B),$(SAN_FLAGS)))

# The read-ahead thread and the driver's under ThreadSanitizer: the
# analyzer's unit tests that run whole analyses (both threads, frames lent
# or not). Any report fails the run.
TSAN_B := $(B)/tsan
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer -gdwarf-aranges
TSAN_UNIT_TESTS := t_analyze_memory t_analyze_queries t_analyze_cpu
$(eval $(call san_build,$(TSAN_B),$(TSAN_FLAGS)))

#   make asan            all of the below
#   make asan-lib        lib/ unit tests + corpus replay (tests/fuzz/regress)
#   make asan-analyze-unit    t_analyze_memory
#   make asan-analyze-corpus  kprof-analyze (text, json) on tests/fuzz/corpus
#   make asan-analyze-traces  kprof-analyze on traces recorded now by the
#                        normal (unsanitized) build/libkprof.so
.PHONY: asan-lib asan-analyze asan-analyze-unit asan-analyze-corpus \
	asan-analyze-traces
asan: asan-lib asan-analyze
asan-analyze: asan-analyze-unit asan-analyze-corpus asan-analyze-traces

asan-lib: $(LIB_UNIT_TESTS:%=$(ASAN_B)/%) $(ASAN_B)/regress
	@set -e; for t in $(LIB_UNIT_TESTS); do \
		echo "# $(ASAN_B)/$$t"; \
		KP_TEST_QUICK=1 $(ASAN_B)/$$t; done
	$(ASAN_B)/regress tests/fuzz/corpus

asan-analyze-unit: $(ANALYZE_UNIT_TESTS:%=$(ASAN_B)/%)
	@set -e; for t in $(ANALYZE_UNIT_TESTS); do \
		echo "# $(ASAN_B)/$$t"; \
		$(ASAN_ENV) KP_TEST_QUICK=1 $(ASAN_B)/$$t; done

.PHONY: tsan-analyze-unit
tsan-analyze-unit: $(TSAN_UNIT_TESTS:%=$(TSAN_B)/%)
	@set -e; for t in $(TSAN_UNIT_TESTS); do \
		echo "# $(TSAN_B)/$$t"; \
		TSAN_OPTIONS=halt_on_error=1:exitcode=66 KP_TEST_QUICK=1 \
			$(TSAN_B)/$$t; done

asan-analyze-corpus: $(ASAN_B)/kprof-analyze
	$(ASAN_ENV) sh tests/fuzz/asan_analyze.sh corpus $(ASAN_B)/kprof-analyze \
		tests/fuzz/corpus

asan-analyze-traces: $(ASAN_B)/kprof-analyze $(LIBKPROF) \
		$(B)/tests/apps/leaky $(B)/tests/apps/lifecycle
	$(ASAN_ENV) sh tests/fuzz/asan_analyze.sh traces $(ASAN_B)/kprof-analyze \
		$(ASAN_B)/traces $(LIBKPROF) $(B)/tests/apps

$(FUZZ_B)/obj/lib/%.o: lib/%.c $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CLANG) $(BASE_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined \
		-fno-sanitize-recover=all -Ilib $(PC_CFLAGS) -c $< -o $@

$(FUZZ_B)/fuzz_reader: tests/fuzz/fuzz_reader.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CLANG) $(BASE_CFLAGS) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all -Ilib $(PC_CFLAGS) $< $(FUZZ_LIB_OBJ) \
		-o $@ $(LIB_LIBS)

fuzz: $(FUZZ_B)/fuzz_reader
	rm -rf $(FUZZ_B)/corpus && mkdir -p $(FUZZ_B)/corpus
	cp tests/fuzz/corpus/* $(FUZZ_B)/corpus/
	$(FUZZ_B)/fuzz_reader -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_B)/ $(FUZZ_B)/corpus

$(B)/mkcorpus: tests/fuzz/mkcorpus.c $(LIBKP)
	$(CC) $(BASE_CFLAGS) -Ilib -Itests $(PC_CFLAGS) $< $(LIBKP) -o $@ \
		$(LIB_LIBS)

fuzz-corpus: $(B)/mkcorpus
	rm -f tests/fuzz/corpus/* && mkdir -p tests/fuzz/corpus
	$(B)/mkcorpus tests/fuzz/corpus
