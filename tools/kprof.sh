#!/bin/sh
# kprof — run a program under libkprof.so, like `heaptrack ./app`.
#
#   kprof run [options] [--] PROGRAM [ARGS...]
#   kprof --version
#
# Options set the KOTOBA_PROFILE_* variables (see kprof(7)):
#   -o, --output TEMPLATE   trace path (%p pid, %e program name, %t time)
#   -d, --stack-depth N     frames per stack (0: no stacks)
#   -b, --buffer-kb N       ring size per thread
#   --drop                  drop (and count) events when a ring is full
#   --flush-ms N            longest time an event waits before reaching disk
#   --no-memory             do not record allocations
#   -a, --analyze           run kprof-analyze on the traces afterwards
# The program's exit status is kprof's exit status.
set -eu

KPROF_VERSION=@VERSION@
KPROF_LIB_DEFAULT=
here=$(cd "$(dirname "$0")" && pwd)

find_lib() {
	for c in "${KPROF_LIB:-}" "$KPROF_LIB_DEFAULT" "$here/libkprof.so" \
		"$here/../lib/libkprof.so"; do
		if [ -n "$c" ] && [ -f "$c" ]; then
			(cd "$(dirname "$c")" && echo "$PWD/$(basename "$c")")
			return 0
		fi
	done
	echo "kprof: cannot find libkprof.so (set KPROF_LIB)" >&2
	exit 2
}

usage() {
	sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

[ $# -ge 1 ] || usage
case $1 in
run) shift ;;
--version) echo "kprof $KPROF_VERSION"; exit 0 ;;
-h|--help) usage 0 ;;
*) echo "kprof: unknown command '$1'" >&2; usage ;;
esac

analyze=0
while [ $# -gt 0 ]; do
	case $1 in
	-o|--output) export KOTOBA_PROFILE_OUTPUT="$2"; shift 2 ;;
	-d|--stack-depth) export KOTOBA_PROFILE_STACK_DEPTH="$2"; shift 2 ;;
	-b|--buffer-kb) export KOTOBA_PROFILE_BUFFER_KB="$2"; shift 2 ;;
	--drop) export KOTOBA_PROFILE_OVERFLOW=drop; shift ;;
	--flush-ms) export KOTOBA_PROFILE_FLUSH_MS="$2"; shift 2 ;;
	--no-memory) export KOTOBA_PROFILE_MEMORY=0; shift ;;
	-a|--analyze) analyze=1; shift ;;
	--) shift; break ;;
	-*) echo "kprof: unknown option '$1'" >&2; usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage

lib=$(find_lib)
export LD_PRELOAD="$lib${LD_PRELOAD:+ $LD_PRELOAD}"
if [ "$analyze" = 0 ]; then
	exec "$@"
fi
marker=$(mktemp)
status=0
"$@" || status=$?
unset LD_PRELOAD
traces=$(find . -maxdepth 1 -name 'kprof.*.kpz' -newer "$marker" | sort)
rm -f "$marker"
if [ -n "$traces" ]; then
	# shellcheck disable=SC2086
	"$here/kprof-analyze" $traces >&2 || true
fi
exit "$status"
