#!/bin/sh
# Run every test program and integration script; count TAP lines.
#
# Each program prints "ok N - name", "not ok N - name" or
# "ok N - name # SKIP why". A program that exits non-zero without printing a
# "not ok" line, or that prints no TAP line at all, counts as one failure:
# a crash never passes silently. The last line is "N passed, N failed".
#
#   sh tests/run.sh [pattern]     only programs whose name contains pattern
set -u
cd "$(dirname "$0")/.." || exit 2
B=${B:-build}
export KPROF_BUILD="$PWD/$B"
export KPROF_SRC="$PWD"
pat=${1:-}
pass=0 fail=0 skip=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run_one() { # name, command...
	name=$1; shift
	case $name in *"$pat"*) ;; *) return ;; esac
	start=$(date +%s)
	timeout -k 10 600 "$@" >"$out/log" 2>"$out/err"
	rc=$?
	p=$(grep -c '^ok ' "$out/log" | tr -d ' ')
	s=$(grep -c '^ok .*# SKIP' "$out/log" | tr -d ' ')
	f=$(grep -c '^not ok ' "$out/log" | tr -d ' ')
	p=$((p - s))
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		echo "not ok - $name exited with status $rc"
		f=1
	fi
	if [ $((p + f + s)) = 0 ]; then
		echo "not ok - $name ran no test"
		f=1
	fi
	grep -E '^(not ok|#)' "$out/log" | grep -v '^# .*: [0-9]* passed' | head -40
	if [ "$f" != 0 ]; then
		echo "# --- stderr of $name (last 30 lines) ---"
		tail -30 "$out/err" | sed 's/^/#   /'
	fi
	echo "# $name: $p passed, $f failed, $s skipped ($(( $(date +%s) - start ))s)"
	pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
}

for t in "$B"/tests/t_*; do
	[ -x "$t" ] || continue
	run_one "${t##*/}" "$t"
done
for t in tests/integ/test_*.py; do
	[ -f "$t" ] || continue
	run_one "${t##*/}" /usr/bin/python3 "$t"
done
for t in tests/integ/test_*.sh; do
	[ -f "$t" ] || continue
	run_one "${t##*/}" sh "$t"
done

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
