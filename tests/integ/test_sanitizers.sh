#!/bin/sh
# The trace library and the analyzer under ASan/UBSan, and a short libFuzzer
# run of the reader: `make asan-lib` (lib/ unit tests + corpus replay), the
# analyzer's steps of `make asan` (its unit test; build/asan/kprof-analyze
# over tests/fuzz/corpus and over traces recorded now by the normal
# libkprof.so), `make fuzz` for 20 s, then the corpus plus what the fuzzer
# found replayed under ASan; last, the analyzer's unit tests that run both
# of its threads under ThreadSanitizer (`make tsan-analyze-unit`).
# Needs clang with libFuzzer (`make test` installs it); without it every
# step fails: a missing tool is a failure, never a skip.
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${B:-build}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail=0

if ! command -v "${CLANG:-clang}" >/dev/null 2>&1; then
	for t in "asan unit tests" "asan analyzer unit tests" \
		"asan analyzer over corpus" "asan analyzer over real traces" \
		"fuzz reader 20s" "fuzz corpus regression" \
		"tsan analyzer unit tests"; do
		echo "not ok - $t: clang is not installed (tools/install-deps.sh test)"
	done
	exit 1
fi

# Show the tail of a failed step's output as TAP comments.
show() {
	tail -40 "$log" | sed 's/^/#   /'
}

# step N NAME TARGET: `make TARGET`, one TAP line. A failure shows the
# sanitizer report if there is one (else the tail of the output).
step() {
	start=$(date +%s)
	if make --no-print-directory "$3" B="$B" >"$log" 2>&1 &&
		! grep -q '^not ok' "$log"; then
		echo "ok $1 - $2"
	else
		echo "not ok $1 - $2"
		if grep -Eq 'runtime error:|ERROR: [A-Za-z]*Sanitizer|WARNING: ThreadSanitizer' "$log"; then
			# which inputs failed, then the top of the first report
			# (short: tests/run.sh shows 40 comment lines in all; the
			# whole output is `make $3`'s)
			grep -E '^(FAIL|not ok)' "$log" | head -4 | sed 's/^/#   /'
			grep -E -m1 -A6 'runtime error:|ERROR: [A-Za-z]*Sanitizer|WARNING: ThreadSanitizer' \
				"$log" | sed 's/^/#   /'
		else
			show
		fi
		fail=1
	fi
	echo "# make $3: $(( $(date +%s) - start ))s"
}

step 1 "asan unit tests" asan-lib
# Build first so each step's time is its own run.
if ! make --no-print-directory "$B/asan/kprof-analyze" \
	"$B/asan/t_analyze_memory" B="$B" >"$log" 2>&1; then
	echo "# building the asan analyzer failed:"
	show
fi
step 2 "asan analyzer unit tests" asan-analyze-unit
step 3 "asan analyzer over corpus" asan-analyze-corpus
step 4 "asan analyzer over real traces" asan-analyze-traces

if make --no-print-directory fuzz B="$B" FUZZ_SECONDS=20 >"$log" 2>&1; then
	echo "ok 5 - fuzz reader 20s"
	grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" |
		sed 's/^/# /'
else
	echo "not ok 5 - fuzz reader 20s"
	grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" |
		head -10 | sed 's/^/#   /'
	fail=1
fi

if [ -x "$B/asan/regress" ] &&
	"$B/asan/regress" tests/fuzz/corpus "$B/fuzz/corpus" >"$log" 2>&1; then
	echo "ok 6 - fuzz corpus regression"
else
	echo "not ok 6 - fuzz corpus regression"
	show
	fail=1
fi

step 7 "tsan analyzer unit tests" tsan-analyze-unit
exit $fail
