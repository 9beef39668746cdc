#!/bin/sh
# `make demo`: profile the demo program and print the report.
set -eu
cd "$(dirname "$0")/.."
B=$PWD/build
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "== running build/tests/apps/demo under kprof"
(cd "$dir" && "$B/kprof" run -- "$B/tests/apps/demo")
echo "== kprof-analyze $(cd "$dir" && ls kprof.*.kpz)"
"$B/kprof-analyze" "$dir"/kprof.*.kpz
