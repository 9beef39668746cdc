#!/bin/sh
# make bench: see tests/bench/bench.py.
set -eu
cd "$(dirname "$0")/../.."
make --no-print-directory build/bench/noop_preload.so build/bench/stamp_preload.so \
	build/tests/apps/alloc_bench build/tests/apps/storm build/tests/apps/io_known \
	build/tests/apps/sqlite_bench >/dev/null
exec /usr/bin/python3 tests/bench/bench.py "$@"
