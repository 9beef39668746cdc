#!/bin/sh
# kprof-analyze built with ASan/UBSan (make asan-analyze-corpus,
# make asan-analyze-traces) on untrusted and on real input.
#
#   asan_analyze.sh corpus ANALYZE DIR
#       every file of DIR, as text and as --format json, and through every
#       other command and output: exit 0 (empty stderr, and valid JSON for
#       json) or 3 (exactly one stderr line).
#   asan_analyze.sh traces ANALYZE OUTDIR LIBKPROF APPSDIR
#       records traces now with the normal (unsanitized) LIBKPROF -- leaky;
#       leaky without stacks (KOTOBA_PROFILE_STACK_DEPTH=0); lifecycle fork
#       + lifecycle abort (merged); `cc -c` of a small file (cc, cc1, as:
#       merged); sqlite_app with CPU sampling on (I/O, queries, samples)
#       -- into OUTDIR, then analyzes each set (text, json, leaks, and every
#       other command and output): exit 0, empty stderr.
#
# The caller sets ASAN_OPTIONS/UBSAN_OPTIONS (see the Makefile: any report
# aborts). Any sanitizer report, other exit status or extra stderr line is
# a failure: the offending command, its status and its stderr are printed.
# Exit status: 0 all passed, 1 something failed.
set -u

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The recorder must not see the analyzer and vice versa.
unset LD_PRELOAD
for v in $(env | sed -n 's/^\(KOTOBA_[A-Za-z0-9_]*\)=.*/\1/p'); do
	unset "$v"
done

sanitizer_report() { # stderr file
	grep -Eq 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:|SUMMARY: (Address|Leak|Undefined)Sanitizer' "$1"
}

# check NAME ALLOWED3 ANALYZE ARGS...: run it, judge it, print one line.
check() {
	name=$1 allow3=$2; shift 2
	timeout -k 5 120 "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	# "no cpu data in the trace" and the like: a warning, not a failure
	lines=$(grep -cv '^kprof-analyze: warning: ' "$tmp/err")
	why=
	if sanitizer_report "$tmp/err"; then
		why="sanitizer report"
	elif [ "$rc" = 0 ]; then
		if [ "$lines" != 0 ]; then
			why="exit 0 with $lines stderr lines"
		else
			case " $* " in
			*" json "*)
				"$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' \
					"$tmp/out" 2>>"$tmp/err" || why="invalid JSON" ;;
			esac
		fi
	elif [ "$rc" = 3 ] && [ "$allow3" = 1 ]; then
		[ "$lines" = 1 ] || why="exit 3 with $lines stderr lines, want 1"
	else
		why="exit status $rc"
	fi
	if [ -n "$why" ]; then
		echo "FAIL $name: $why"
		echo "  command: $*"
		sed 's/^/  | /' "$tmp/err" | head -80
		fail=1
	else
		echo "ok   $name (exit $rc)"
	fi
}

# every_command NAME ALLOWED3 ANALYZE TRACES...: the commands and outputs
# of the other passes (I/O, queries, CPU, application events, flame graphs,
# pprof and Chrome exports, the HTML page, dump, a diff against the first
# trace) on the same input.
every_command() {
	ec_name=$1 ec_allow=$2 ec_an=$3; shift 3
	for c in io queries cpu app; do
		check "$ec_name $c" "$ec_allow" "$ec_an" "$c" "$@"
		check "$ec_name $c json" "$ec_allow" "$ec_an" "$c" --format json "$@"
	done
	for w in cpu alloc live io; do
		check "$ec_name flame $w" "$ec_allow" "$ec_an" flame --what "$w" \
			-o "$tmp/flame.svg" "$@"
		check "$ec_name folded $w" "$ec_allow" "$ec_an" flame --what "$w" \
			--folded "$@"
	done
	check "$ec_name pprof cpu" "$ec_allow" "$ec_an" export --pprof \
		"$tmp/cpu.pb.gz" --chrome "$tmp/trace.json" --io-min-us 0 "$@"
	check "$ec_name pprof heap" "$ec_allow" "$ec_an" export --what alloc \
		--pprof "$tmp/heap.pb.gz" "$@"
	check "$ec_name html" "$ec_allow" "$ec_an" --format html "$@"
	check "$ec_name dump" "$ec_allow" "$ec_an" dump "$@"
	check "$ec_name diff" "$ec_allow" "$ec_an" diff --base "$1" "$@"
	check "$ec_name diff json" "$ec_allow" "$ec_an" diff --format json \
		--base "$1" "$@"
}

corpus() { # ANALYZE DIR
	n=0
	for f in "$2"/*; do
		[ -f "$f" ] || continue
		n=$((n + 1))
		check "${f##*/} text" 1 "$1" "$f"
		check "${f##*/} json" 1 "$1" --format json "$f"
		every_command "${f##*/}" 1 "$1" "$f"
	done
	if [ "$n" = 0 ]; then
		echo "FAIL: no file in $2"
		fail=1
	fi
}

# record DIR MIN CMD...: run CMD under LIB in DIR, want >= MIN traces.
# $rec_env, if set, is one more VAR=value for CMD (not for a wrapper such as
# env(1), which would leave a trace of its own).
rec_env=
record() {
	dir=$1 min=$2; shift 2
	mkdir -p "$dir"
	# The braces: a shell's "Aborted" for a killed CMD goes to the file too.
	{ (
		cd "$dir" || exit 1
		[ -z "$rec_env" ] || export "${rec_env?}"
		LD_PRELOAD=$lib exec "$@" >/dev/null
	); } 2>"$tmp/rec.err"
	rc=$?
	n=$(find "$dir" -maxdepth 1 -name '*.kpz' | wc -l | tr -d ' ')
	if [ "$n" -lt "$min" ]; then
		echo "FAIL recording '$*': exit $rc, $n traces, want >= $min"
		sed 's/^/  | /' "$tmp/rec.err" | head -20
		fail=1
	fi
}

traces() { # ANALYZE OUTDIR LIB APPS
	an=$1 out=$2 lib=$(cd "$(dirname "$3")" && echo "$PWD/${3##*/}")
	apps=$(cd "$4" && pwd)
	rm -rf "$out" && mkdir -p "$out" || exit 1
	record "$out/leaky" 1 "$apps/leaky"
	rec_env=KOTOBA_PROFILE_STACK_DEPTH=0
	record "$out/nostacks" 1 "$apps/leaky"
	rec_env=
	record "$out/lifecycle" 2 "$apps/lifecycle" fork
	# abort() (SIGABRT; the app turns core dumps off): a trace ended by abort
	record "$out/lifecycle" 3 "$apps/lifecycle" abort
	cc=$(command -v gcc || command -v cc)
	printf '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n' \
		>"$tmp/small.c"
	record "$out/cc" 2 "$cc" -O2 -c "$tmp/small.c" -o "$tmp/small.o"
	# I/O, queries and CPU samples together: the SQLite test app
	rec_env=KOTOBA_PROFILE_CPU=1
	record "$out/sqlite" 1 "$apps/sqlite_app" "$out/sqlite/app.db"
	rec_env=
	for set in leaky nostacks lifecycle cc sqlite; do
		# shellcheck disable=SC2046
		set -- $(find "$out/$set" -maxdepth 1 -name '*.kpz' | sort)
		[ $# -gt 0 ] || continue
		echo "# $set: $# trace(s)"
		check "$set text" 0 "$an" "$@"
		check "$set json" 0 "$an" --format json "$@"
		check "$set leaks" 0 "$an" leaks --top 1000 "$@"
		every_command "$set" 0 "$an" "$@"
	done
}

case ${1:-} in
corpus) [ $# = 3 ] || exit 2; corpus "$2" "$3" ;;
traces) [ $# = 5 ] || exit 2; traces "$2" "$3" "$4" "$5" ;;
*) echo "usage: $0 corpus ANALYZE DIR | traces ANALYZE OUTDIR LIB APPS" >&2
	exit 2 ;;
esac
exit $fail
