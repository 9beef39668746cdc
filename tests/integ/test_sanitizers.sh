#!/bin/sh
# The trace library under ASan/UBSan, and a short libFuzzer run of the
# reader: `make asan` (lib/ unit tests + corpus replay), `make fuzz` for
# 20 s, then the corpus plus what the fuzzer found replayed under ASan.
# Needs clang with libFuzzer; without it every test is skipped.
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${B:-build}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail=0

if ! command -v "${CLANG:-clang}" >/dev/null 2>&1; then
	echo "ok 1 - asan unit tests # SKIP no clang"
	echo "ok 2 - fuzz reader 20s # SKIP no clang"
	echo "ok 3 - fuzz corpus regression # SKIP no clang"
	exit 0
fi

# Show the tail of a failed step's output as TAP comments.
show() {
	tail -40 "$log" | sed 's/^/#   /'
}

if make --no-print-directory asan B="$B" >"$log" 2>&1 &&
	! grep -q '^not ok' "$log"; then
	echo "ok 1 - asan unit tests"
else
	echo "not ok 1 - asan unit tests"
	show
	fail=1
fi

if make --no-print-directory fuzz B="$B" FUZZ_SECONDS=20 >"$log" 2>&1; then
	echo "ok 2 - fuzz reader 20s"
	grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" |
		sed 's/^/# /'
else
	echo "not ok 2 - fuzz reader 20s"
	grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" |
		head -10 | sed 's/^/#   /'
	fail=1
fi

if [ -x "$B/asan/regress" ] &&
	"$B/asan/regress" tests/fuzz/corpus "$B/fuzz/corpus" >"$log" 2>&1; then
	echo "ok 3 - fuzz corpus regression"
else
	echo "not ok 3 - fuzz corpus regression"
	show
	fail=1
fi
exit $fail
