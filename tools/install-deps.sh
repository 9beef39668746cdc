#!/bin/sh
# Install the Debian packages kprof needs, when they are missing.
#
#   sh tools/install-deps.sh [build] [test] [bench]
#
# As root it runs apt-get itself; otherwise it prints the exact apt-get
# line and fails. Exits 0 when everything needed is present.
set -eu

sets=${*:-build}
pkgs=""
for s in $sets; do
	case $s in
	build) pkgs="$pkgs gcc g++ make pkg-config libunwind-dev
		libmsgpack-dev libzstd-dev libdw-dev libelf-dev zlib1g-dev" ;;
	test) pkgs="$pkgs clang valgrind python3 sqlite3 strace git binutils man-db
		file"
		# python3's headers: the interpreter's frame layouts that
		# kprof reads (tests/unit/t_pyoffsets.c)
		pkgs="$pkgs python3-dev"
		# query profiling (issue 4): the C test apps' libraries, a
		# PostgreSQL server, psql and pgbench
		pkgs="$pkgs libsqlite3-dev libpq-dev postgresql postgresql-client
		postgresql-contrib util-linux"
		# a second SQLite, as a plugin brings it (SQLCipher:
		# tests/apps/sqlite_local.c)
		pkgs="$pkgs libsqlcipher-dev"
		# a real program whose modules are loaded with
		# RTLD_DEEPBIND: PHP, its PDO SQLite and pgsql
		# (tests/integ/test_deepbind.py)
		pkgs="$pkgs php-cli php-sqlite3 php-pgsql"
		# CPU sampling (issue 5): go tool pprof reads the exports
		pkgs="$pkgs golang-go"
		# libc's debug file, its DWARF compressed: lines for libc
		# frames, and the cache of inflated copies
		# (tests/integ/test_symbols_cache.py)
		pkgs="$pkgs libc6-dbg"
		# JIT maps: node --perf-basic-prof and the JVM's
		# -XX:+DumpPerfMapAtExit name their code for perf
		pkgs="$pkgs nodejs openjdk-17-jdk-headless"
		# apps with an allocator of their own: kprof must forward
		# to it (tests/apps/ownalloc.c)
		pkgs="$pkgs libjemalloc-dev libgoogle-perftools-dev"
		# programs that sandbox themselves: one thread asserted,
		# children made by clone (tests/integ/test_sandboxes.py)
		pkgs="$pkgs chromium firefox-esr bubblewrap" ;;
	bench) pkgs="$pkgs heaptrack sqlite3 valgrind python3" ;;
	*) echo "install-deps: unknown set '$s' (build, test, bench)" >&2; exit 2 ;;
	esac
done

missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case $st in
	*"ok installed"*) ;;
	*) case " $missing " in *" $p "*) ;; *) missing="$missing $p" ;; esac ;;
	esac
done
[ -z "$missing" ] && exit 0

line="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
	echo "kprof: missing packages; run as root:" >&2
	echo "  apt-get update && $line" >&2
	exit 1
fi
echo "kprof: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt-get (a parallel build) instead of failing.
lock="-o DPkg::Lock::Timeout=600"
# shellcheck disable=SC2086
apt-get $lock update -qq >/dev/null
# shellcheck disable=SC2086
apt-get $lock install -y -qq --no-install-recommends $missing >/dev/null
