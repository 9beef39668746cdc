#!/bin/sh
# kprof — run a program under libkprof.so, like `heaptrack ./app`.
#
#   kprof run [options] [--] PROGRAM [ARGS...]
#   kprof --version
#   kprof --help
#
# Options set the KOTOBA_PROFILE_* variables (see kprof(7)):
#   -o, --output TEMPLATE   trace path (%p pid, %e program name, %t time)
#   -p, --programs LIST     trace only these programs of the process tree
#                           (comma list of patterns, e.g. cc1plus,python3)
#   -d, --stack-depth N     frames per stack (0: no stacks)
#   -b, --buffer-kb N       ring size per thread
#   --drop                  drop (and count) events when a ring is full
#   --flush-ms N            longest time an event waits before reaching disk
#   --no-memory             do not record allocations
#   --no-io                 do not record I/O calls
#   --no-io-stacks          record I/O calls without their stacks
#   --leak-scan             at exit, find the blocks nothing points to
#   --no-query              do not record database queries
#   --query-text-full       keep query texts with their literals
#   --cpu[=HZ]              sample CPU time (default 100 samples/CPU-s)
#   --unwind=MODE           stack unwinder: fast (default), libunwind, verify
#   --no-python             python3.11: no script frames in the stacks
#   --signals               end the trace before a signal left to its
#                           default action kills (Ctrl-C, kill, a crash)
#   -a, --analyze           run kprof-analyze on the traces afterwards
#                           (report on stderr)
# The library is $KPROF_LIB if set, else the installed one, else the one
# next to this script. The program's exit status is kprof's exit status;
# 2 is a usage error of kprof.
set -eu

KPROF_VERSION=@VERSION@
KPROF_LIB_DEFAULT=
here=$(cd "$(dirname "$0")" && pwd)

find_lib() {
	if [ -n "${KPROF_LIB:-}" ] && [ ! -f "$KPROF_LIB" ]; then
		echo "kprof: KPROF_LIB=$KPROF_LIB: no such file" >&2
		exit 2
	fi
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

# usage [STATUS]: the comment above; on stdout for --help, else on stderr.
usage() {
	if [ "${1:-2}" = 0 ]; then
		sed -n '4,/^[^#]/s/^# \{0,1\}//p' "$0"
	else
		sed -n '4,/^[^#]/s/^# \{0,1\}//p' "$0" >&2
	fi
	exit "${1:-2}"
}

# elf_u OFFSET SIZE FILE: the unsigned SIZE-byte number at OFFSET of FILE
# (this machine's byte order: the programs it runs are its own).
elf_u() {
	od -An -t "u$2" -j "$1" -N "$2" "$3" | tr -d ' '
}

# is_static FILE: FILE is an ELF program without an interpreter (no
# PT_INTERP program header): the dynamic loader, hence LD_PRELOAD, never
# runs for it.
is_static() {
	[ "$(od -An -c -N 4 "$1" 2>/dev/null | tr -d ' ')" = '177ELF' ] || return 1
	case $(elf_u 4 1 "$1") in
	2) off=$(elf_u 32 8 "$1") ent=$(elf_u 54 2 "$1") num=$(elf_u 56 2 "$1") ;;
	1) off=$(elf_u 28 4 "$1") ent=$(elf_u 42 2 "$1") num=$(elf_u 44 2 "$1") ;;
	*) return 1 ;;
	esac
	type=$(elf_u 16 2 "$1") # ET_EXEC or ET_DYN
	[ "$type" = 2 ] || [ "$type" = 3 ] || return 1
	i=0
	while [ "$i" -lt "$num" ]; do
		[ "$(elf_u $((off + i * ent)) 4 "$1")" = 3 ] && return 1
		i=$((i + 1))
	done
	return 0
}

# check_program PROGRAM: say why kprof will see nothing of it, if it can
# tell: a static program does not load libkprof.so; a set-user-ID or
# set-group-ID one that changes this user's IDs (on a file system not
# mounted nosuid) runs with AT_SECURE set, for which the loader ignores
# LD_PRELOAD (and kprof does not trace). The program runs all the same.
check_program() {
	case $1 in
	*/*) f=$1 ;;
	*) f=$(command -v -- "$1" 2>/dev/null) || return 0 ;;
	esac
	[ -f "$f" ] && [ -r "$f" ] || return 0
	if { { [ -u "$f" ] && [ "$(stat -c %u "$f")" != "$(id -u)" ]; } ||
		{ [ -g "$f" ] && [ "$(stat -c %g "$f")" != "$(id -g)" ]; }; } &&
		! findmnt -n -o OPTIONS --target "$f" 2>/dev/null |
			grep -q nosuid; then
		echo "kprof: $f is set-user-ID or set-group-ID: the loader" \
			"ignores LD_PRELOAD for it, nothing is recorded" >&2
	elif is_static "$f"; then
		echo "kprof: $f is statically linked: libkprof.so cannot be" \
			"preloaded into it, nothing is recorded (its children" \
			"may be)" >&2
	fi
}

# need_arg OPTION ARGC: OPTION takes a value.
need_arg() {
	if [ "$2" -lt 2 ]; then
		echo "kprof: option '$1' needs a value" >&2
		usage
	fi
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
	-o|--output) need_arg "$1" $#; export KOTOBA_PROFILE_OUTPUT="$2"; shift 2 ;;
	-p|--programs) need_arg "$1" $#; export KOTOBA_PROFILE_PROGRAMS="$2"; shift 2 ;;
	-d|--stack-depth) need_arg "$1" $#; export KOTOBA_PROFILE_STACK_DEPTH="$2"; shift 2 ;;
	-b|--buffer-kb) need_arg "$1" $#; export KOTOBA_PROFILE_BUFFER_KB="$2"; shift 2 ;;
	--drop) export KOTOBA_PROFILE_OVERFLOW=drop; shift ;;
	--flush-ms) need_arg "$1" $#; export KOTOBA_PROFILE_FLUSH_MS="$2"; shift 2 ;;
	--no-memory) export KOTOBA_PROFILE_MEMORY=0; shift ;;
	--no-io) export KOTOBA_PROFILE_IO=0; shift ;;
	--no-io-stacks) export KOTOBA_PROFILE_IO_STACKS=0; shift ;;
	--leak-scan) export KOTOBA_PROFILE_LEAK_SCAN=1; shift ;;
	--no-query) export KOTOBA_PROFILE_QUERY=0; shift ;;
	--query-text-full) export KOTOBA_PROFILE_QUERY_TEXT=full; shift ;;
	--cpu) export KOTOBA_PROFILE_CPU=1; shift ;;
	--cpu=*) export KOTOBA_PROFILE_CPU=1 KOTOBA_PROFILE_CPU_HZ="${1#--cpu=}"
		shift ;;
	--unwind=*) export KOTOBA_PROFILE_UNWIND="${1#--unwind=}"; shift ;;
	--no-python) export KOTOBA_PROFILE_PYTHON=0; shift ;;
	--signals) export KOTOBA_PROFILE_SIGNALS=1; shift ;;
	-a|--analyze) analyze=1; shift ;;
	-h|--help) usage 0 ;;
	--) shift; break ;;
	-*) echo "kprof: unknown option '$1'" >&2; usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage

lib=$(find_lib)
preload="$lib${LD_PRELOAD:+ $LD_PRELOAD}"
check_program "$1"
# The trace template made absolute here, in the directory kprof was run
# from: else each process puts its trace in its own working directory at
# the time, and a daemon that changes directory (to /, or postgres to its
# data directory) before it forks or execs leaves traces where neither
# the user nor -a looks. (% in that directory's name is escaped as %%.)
tmpl=${KOTOBA_PROFILE_OUTPUT:-kprof.%p.kpz}
case $tmpl in
/*) ;;
*) tmpl="$(printf '%s' "$PWD" | sed 's/%/%%/g')/$tmpl" ;;
esac
export KOTOBA_PROFILE_OUTPUT="$tmpl"
if [ "$analyze" = 0 ]; then
	export LD_PRELOAD="$preload"
	exec "$@"
fi

# -a: the traces of this run are the files matching the output template
# (%X -> *; a taken name gets ".N" before its extension, see
# preload/writer.c) that did not exist before. Only the program runs under
# the preload, not the helpers here.
pat=$(printf '%s\n' "$tmpl" | sed 's/%./*/g')
case ${pat##*/} in
*.*) pat2="${pat%.*}.*.${pat##*.}" ;;
*) pat2="$pat.*" ;;
esac
list_traces() {
	IFS=''
	# shellcheck disable=SC2086
	for f in $pat $pat2; do
		[ -f "$f" ] && printf '%s\n' "${f#"$PWD"/}"
	done | sort -u
	unset IFS
}
before=$(list_traces)
status=0
# Ctrl-C interrupts the program (the terminal signals the whole group);
# the report is still wanted, so this shell only notes it (a caught
# signal is the default again in the program, an ignored one would not be)
trap 'status=130' INT
LD_PRELOAD=$preload "$@" || status=$?
trap - INT
set --
IFS='
'
for f in $(list_traces); do
	case "
$before
" in
	*"
$f
"*) ;;
	*)
		# An empty trace is a process killed as kprof created it, before
		# kprof wrote its header: kprof-analyze would refuse the other
		# traces with it.
		if [ -s "$f" ]; then
			set -- "$@" "$f"
		else
			echo "kprof: $f is empty (its process was killed as kprof" \
				"created it); not analyzed" >&2
		fi ;;
	esac
done
unset IFS
if [ $# -gt 0 ]; then
	"$here/kprof-analyze" "$@" >&2 || true
else
	echo "kprof: no trace written (template '$tmpl')" >&2
fi
exit "$status"
