/* SPDX-License-Identifier: MIT */
/*
 * THE trace schema: the one header that both the writer (preload/) and the
 * reader (tools/) use, so the two cannot drift apart. man/kprof-trace.5 is
 * the prose version of this file; change both together.
 *
 * A trace file is
 *
 *   magic "KPROFTRC" (8 bytes)
 *   u16 major, u16 minor, u32 header_len      (little endian)
 *   header: header_len bytes, one msgpack map with string keys (kp_header)
 *   zero or more zstd frames, each independent, each with its content size
 *   and a checksum, each holding a sequence of whole records
 *
 * A record is one msgpack array whose first element is the record type
 * (a positive fixint, enum kp_rec_type). The remaining elements are
 * positional and listed below per type. A reader
 *   - skips a record whose type it does not know (any msgpack object),
 *   - ignores elements past the ones it knows (newer minor versions append),
 *   - uses the documented default for trailing elements that are missing.
 * That is how new record types and fields arrive without a major bump.
 *
 * Delta state, reset at the start of every frame (so frames decode alone):
 *   last_ts  = frame base (the FRAME record), then the ts of the last record
 *              that carried one; "dts" fields are signed deltas from it.
 *   last_ptr = 0, then the last pointer written; "dptr" fields are signed
 *              deltas from it (as int64, wrapping).
 *   cur_tid  = 0, set by THREAD records; events carry no tid of their own.
 * Every frame starts with a FRAME record.
 *
 * Times are nanoseconds of CLOCK_MONOTONIC since header.start_mono_ns.
 */
#ifndef KP_RECORD_H
#define KP_RECORD_H

#include <stdint.h>

#define KP_MAGIC "KPROFTRC"
#define KP_MAGIC_LEN 8
/* readers refuse a larger major; 2: EVENTS blocks (a 1.x reader would
 * skip them and miss every allocation, hence a major); 3: the blocks'
 * time deltas split between the tag and a varint, in a record type of
 * their own (a 2.x reader would skip those blocks, hence a major); 4:
 * blocks without the stack field (EVENTS_NS) for a process recorded
 * without stacks (a 3.x reader would skip them); 4 reads 1 to 3 too */
#define KP_FORMAT_MAJOR 4
#define KP_FORMAT_MAJOR_MIN 1 /* the oldest major this reader reads */
/* readers accept any minor (2.1: QUERY_TEXT records and the QUERY value
 * text_id, which a 2.0 reader would see without their text; 3.1:
 * JIT_CODE records, which a 3.0 reader skips, and SNAPSHOT's values,
 * which it ignores; 3.2: SNAPSHOT's values for kprof's own cost, which a
 * 3.1 reader skips; 4.1: the header's "forked", which a 4.0 reader
 * ignores; 4.2: THREAD_NAME records; 4.3: KILL records, which a 4.2
 * reader skips; 4.4: the header's "pgid" and PGID records, which a 4.3
 * reader ignores and skips; 4.5: LEAK and LEAK_SCAN records, which a 4.4
 * reader skips; 4.6: SNAPSHOT's memory cgroup values, which a 4.5
 * reader ignores) */
#define KP_FORMAT_MINOR 6
#define KP_PREFIX_LEN 16  /* magic + major + minor + header_len */

/* Limits a reader enforces; a trace beyond them is corrupt (KP_ELIMIT). */
#define KP_MAX_HEADER_LEN (1u << 20)       /* header map */
#define KP_MAX_FRAME_CONTENT (32u << 20)   /* decompressed frame */
#define KP_MAX_STACK_DEPTH 256             /* pcs in one STACK record */
#define KP_MAX_STR_LEN 4096                /* any string field */
#define KP_MAX_ARGV 4096                   /* header argv entries */

enum kp_rec_type {
	/* [1, base_ts, seq]: first record of each frame. base_ts is absolute
	 * (ns since start); seq counts frames from 0 so gaps can be seen. */
	KP_REC_FRAME = 1,
	/* [2, tid]: the records that follow belong to thread tid. */
	KP_REC_THREAD = 2,
	/* [3, dts, dptr, size, stack, kind=KP_ALLOC_MALLOC, align=0]:
	 * a block was returned by the allocator. */
	KP_REC_ALLOC = 3,
	/* [4, dts, dptr]: a block is about to be freed (ts taken before). */
	KP_REC_FREE = 4,
	/* [5, dts, dptr_old, dptr_new, size, stack, dur]:
	 * realloc(old, size) returned new (non-NULL, both non-NULL). The free
	 * of old happened at ts, the allocation of new at ts + dur. dptr_new is
	 * a delta from old. realloc(NULL, n) is an ALLOC of kind REALLOC;
	 * realloc(p, 0) that frees p is a FREE. */
	KP_REC_REALLOC = 5,
	/* [6, id, [pc, ...]]: stack id is the array of return addresses,
	 * innermost first, kprof's own frames already removed. Ids are dense
	 * from 1; 0 means "no stack" (stacks off or capture failed). A STACK
	 * record precedes (in file order) every record that uses its id. */
	KP_REC_STACK = 6,
	/* [7, dts, bias, lo, hi, path, build_id(bin)]: a module is mapped;
	 * [lo, hi) is the span of its PT_LOAD segments in memory, bias the
	 * load bias (file vaddr + bias = address). path "" is unknown. */
	KP_REC_MODULE = 7,
	/* [8, dts, bias, path]: a module was unmapped (dlclose). */
	KP_REC_UNMODULE = 8,
	/* [9, dts, tid, name]: a thread began (first event seen or created). */
	KP_REC_THREAD_START = 9,
	/* [10, dts, tid]: a thread ended. */
	KP_REC_THREAD_END = 10,
	/* [11, what, count]: count events of record type `what` were dropped
	 * (overflow policy drop, or lost at teardown). Cumulative per trace:
	 * a later LOST for the same `what` replaces the earlier count. */
	KP_REC_LOST = 11,
	/* [12, dts, reason, status]: the process finished cleanly; its
	 * absence means the trace is truncated (killed, crashed). */
	KP_REC_END = 12,
	/* [13, dts, child_pid]: this process forked; the child writes its own
	 * trace whose header has ppid = this pid. Reserved: kprof 0.1 does not
	 * write it yet (readers link a child by its header's ppid). */
	KP_REC_FORK = 13,
	/* [14, dts, path]: this process is about to exec path. */
	KP_REC_EXEC = 14,
	/* [15, tid, bin]: the EVENTS block of format 2, which wrote its
	 * events' dts in another way ("Event blocks" below). Read, no longer
	 * written. */
	KP_REC_EVENTS2 = 15,
	/* [16, id, text]: query text id (dense from 1 within a trace) is the
	 * string text; a QUERY whose text_id is id has this text (2.1). Like
	 * STACK, it precedes (in file order) every record that uses its id,
	 * and each id is defined once per trace. */
	KP_REC_QUERY_TEXT = 16,
	/* [17, tid, bin]: a run of ALLOC, FREE and REALLOC events of thread
	 * tid in a compact encoding ("Event blocks" below), using and
	 * updating the frame's delta state; afterwards cur_tid = tid. This
	 * is how the writer stores memory events (format 3). */
	KP_REC_EVENTS = 17,
	/* [18, lo, size, name]: code compiled at run time (a JIT's) spans
	 * [lo, lo + size) and is called name, as the JIT's perf map
	 * (/tmp/perf-<pid>.map) says when the trace ends (3.1). Written last,
	 * after every stack, in the map's order: where two overlap, the later
	 * describes the code there now. */
	KP_REC_JIT_CODE = 18,
	/* [19, tid, bin]: an EVENTS block whose ALLOC and REALLOC events
	 * have no stack field (their stack is 0): what the writer writes for
	 * a process recorded without stacks (format 4). */
	KP_REC_EVENTS_NS = 19,
	/* [20, dts, tid, name]: thread tid is called name from dts on (the
	 * program named it: pthread_setname_np), where THREAD_START has the
	 * name it had at its first event (4.2). */
	KP_REC_THREAD_NAME = 20,

	/*
	 * Extension records (type >= KP_REC_EXT_MIN): I/O, queries, spans,
	 * custom events, CPU samples. They share one generic layout, see
	 * "Extension records" below; their values are listed per type there.
	 */
	KP_REC_IO = 32,
	KP_REC_FD_OPEN = 33,
	KP_REC_FD_CLOSE = 34,
	KP_REC_IO_SUMMARY = 35,
	KP_REC_QUERY = 40,
	KP_REC_SPAN = 41,
	KP_REC_CUSTOM = 42,
	KP_REC_QUERY_BEGIN = 43,
	KP_REC_KILL = 44,
	KP_REC_PGID = 45,
	KP_REC_LEAK = 46,
	KP_REC_LEAK_SCAN = 47,
	KP_REC_CPU_SAMPLE = 48,
	KP_REC_SNAPSHOT = 56,

	KP_REC_TYPE_MAX = 127
};

#define KP_REC_EXT_MIN 32

/*
 * ---- Event blocks (KP_REC_EVENTS) -----------------------------------------
 *
 * The bin of an EVENTS record is a sequence of events, each
 *
 *   tag      one byte: bits 0-1 the kind of event (enum kp_blk_type),
 *            bit 2 (KP_BLK_PTR16) every pointer delta of the event is
 *            stored divided by 16 (malloc's alignment), bits 3-7 the low
 *            5 bits of zigzag(dts)
 *   dts_hi   varint: zigzag(dts) >> 5 (so zigzag(dts) = dts_hi << 5 |
 *            tag >> 3: one byte for |dts| below 2048 ns, where the
 *            events of a busy thread fall)
 *   ALLOC    dptr, size, stack
 *   ALLOC_X  dptr, size, stack, kind, align
 *   FREE     dptr
 *   REALLOC  dptr_old, dptr_new (from old), size, stack, dur
 *
 * In an EVENTS_NS block the stack fields are left out (every stack is 0):
 * a byte an allocation, 8 % of a trace without stacks, whose writer
 * leaves its bytes without entropy coding (KOTOBA_PROFILE_ZSTD_LEVEL in
 * kprof(7)) and needs them few.
 *
 * varint: unsigned LEB128, at most 10 bytes; zigzag: 0, -1, 1, -2, ... ->
 * 0, 1, 2, 3, ...; dptr: zigzag varint of the signed pointer delta. The
 * values mean what they mean in ALLOC, FREE and REALLOC records.
 *
 * Format 2's blocks (KP_REC_EVENTS2) differ only in the dts: bits 3-7 of
 * the tag are zigzag(dts) when below KP_BLK_DTS_ESC, else KP_BLK_DTS_ESC
 * and the zigzag varint of dts follows the tag (absent otherwise): most
 * events, 64 ns or more apart, took two bytes of time after the tag.
 */
enum kp_blk_type {
	KP_BLK_ALLOC = 0,
	KP_BLK_FREE = 1,
	KP_BLK_REALLOC = 2,
	KP_BLK_ALLOC_X = 3, /* ALLOC with a kind or an alignment */
};
#define KP_BLK_PTR16 4
#define KP_BLK_DTS_ESC 31 /* format 2 only */

/*
 * ---- Extension records ----------------------------------------------------
 *
 * Every type from KP_REC_EXT_MIN up has the same wire layout:
 *
 *   [type, dts, kind, stack, str, v0, v1, ..., v(n-1)]
 *
 *   kind   small unsigned, a per-type enum (the I/O operation, ...)
 *   stack  stack id (as in ALLOC), 0 = none
 *   str    a string (path, query text, name) or nil for types without one
 *   v[i]   signed integers; their meaning per type is the KP_<TYPE>_* index
 *          list below. Durations are ns.
 *
 * They are per-thread events (tid = cur_tid, like ALLOC). The record's ts is
 * the moment the event was recorded: for a timed call that is its END, and
 * it started at ts - dur. A reader takes missing trailing values as 0 and
 * ignores values past the ones it knows, so a type gains values by
 * appending them (and bumping its KP_*_NV) in a minor version.
 */
#define KP_EXT_MAX_V 13 /* values one extension record may carry */

struct kp_ext_layout {
	uint8_t nv;        /* values this version writes */
	uint8_t has_str;   /* the str element is a string (else nil) */
	uint16_t dur_mask; /* bit i: v[i] is a duration (the writer converts
			    * it from clock ticks to ns) */
};

/* ---- I/O (KP_REC_IO): one timed call; kind = enum kp_io_op (io.h);
 * ret = bytes (or the call's result), -errno if it failed; off -1 = none.
 * Five values: the event fits one ring slot (the hot path) ---- */
enum { KP_IO_FD, KP_IO_REQ, KP_IO_RET, KP_IO_OFF, KP_IO_DUR, KP_IO_NV };
/* ---- KP_REC_FD_OPEN: an fd appeared (open, dup, pipe, socket, ...);
 * kind = how, str = path ("" unknown); src = fd it was dup'ed from or -1 */
enum { KP_FDO_FD, KP_FDO_FDKIND, KP_FDO_FLAGS, KP_FDO_DUR, KP_FDO_ERR,
       KP_FDO_SRC, KP_FDO_NV };
/* ---- KP_REC_FD_CLOSE: an fd went away; kind = how ---- */
enum { KP_FDC_FD, KP_FDC_DUR, KP_FDC_ERR, KP_FDC_NV };
/* ---- KP_REC_IO_SUMMARY: per-process I/O accounting at exit
 * (/proc/self/io against what was interposed); no stack ---- */
enum { KP_IOS_RCHAR, KP_IOS_WCHAR, KP_IOS_READ_BYTES, KP_IOS_WRITE_BYTES,
       KP_IOS_SEEN_READ, KP_IOS_SEEN_WRITE,
       KP_IOS_SELF_WRITE, /* bytes kprof itself wrote (trace, warnings,
			   * libunwind's probes) */
       KP_IOS_SELF_READ,  /* bytes kprof itself read */
       KP_IOS_NV };

/* ---- KP_REC_QUERY_BEGIN: a query starts on this thread; the events of
 * the thread until the QUERY with the same ctx belong to it ---- */
enum { KP_QB_CTX, KP_QB_NV };
/* ---- KP_REC_QUERY: a query finished; kind = source (enum
 * kp_query_source), str = its text (fingerprinted, lib/fingerprint.h,
 * unless QUERY_TEXT=full) when text_id is 0. ctx = the ctx of its
 * QUERY_BEGIN (0: none was written); dur = first step/send to completion;
 * rows = rows returned plus rows changed; status 0 = success, else the
 * engine's code (SQLite result code; libpq: the SQLSTATE's 5 characters
 * packed big-endian into the low 40 bits, flag KP_QF_SQLSTATE, or -1
 * without one); fullscan, sort, autoindex, vmstep = SQLite's
 * sqlite3_stmt_status counters for this run; prepare_dur = parse/plan
 * time charged to the first run after a prepare; valhash = a hash of the
 * literal/bound values (0 = not computed), equal values give equal
 * hashes; flags = KP_QF_*; conn = the connection (an opaque id: same id,
 * same connection within one process); text_id (2.1) = 0, or the id of
 * the QUERY_TEXT record that holds the text (then str is empty and not
 * the text) ---- */
enum { KP_Q_CTX, KP_Q_DUR, KP_Q_ROWS, KP_Q_STATUS, KP_Q_FULLSCAN,
       KP_Q_SORT, KP_Q_AUTOINDEX, KP_Q_VMSTEP, KP_Q_PREPARE_DUR,
       KP_Q_VALHASH, KP_Q_FLAGS, KP_Q_CONN, KP_Q_TEXT_ID, KP_Q_NV };

/* KP_REC_QUERY kind: who recorded it. */
enum kp_query_source {
	KP_QSRC_API = 0,    /* kprof_query_begin/end (kprof.h) */
	KP_QSRC_SQLITE = 1, /* the libsqlite3 hook */
	KP_QSRC_LIBPQ = 2,  /* the libpq hook */
	KP_QSRC_PLUGIN = 3, /* a KOTOBA_PROFILE_QUERY_PLUGIN */
	KP_QSRC_MAX = 3
};

/* KP_Q_FLAGS bits. */
enum {
	KP_QF_AUTOCOMMIT = 1, /* ran outside an explicit transaction */
	KP_QF_WRITE = 2,      /* may change the database (not read-only) */
	KP_QF_TEXT_FULL = 4,  /* str is the full text (QUERY_TEXT=full) */
	KP_QF_SQLSTATE = 8,   /* status is a packed SQLSTATE */
	KP_QF_EXEC = 16,      /* a whole sqlite3_exec() text */
	KP_QF_CUT = 32,       /* the text was longer than the record holds */
};
/* ---- KP_REC_SPAN: kind 0 = begin, 1 = end; str = name ---- */
enum { KP_SPAN_ID, KP_SPAN_DUR, KP_SPAN_NV };
/* ---- KP_REC_CUSTOM: kind = counter, gauge, duration; str = name ---- */
enum { KP_CUSTOM_VALUE, KP_CUSTOM_NV };

/* ---- KP_REC_KILL (4.3): the process sent a signal to another one, or
 * to a process group; kind = enum kp_kill_how; target = the pid, or
 * minus the process group's id; sig = the signal. Only calls that
 * succeeded, with a signal (not 0, the probe), to another process ---- */
enum { KP_KILL_TARGET, KP_KILL_SIG, KP_KILL_NV };
enum kp_kill_how {
	KP_KILL_KILL = 0,    /* kill(2) */
	KP_KILL_KILLPG = 1,  /* killpg(3) */
	KP_KILL_SIGQUEUE = 2, /* sigqueue(3) */
	KP_KILL_TGKILL = 3,  /* tgkill(2) (its tgid) */
	KP_KILL_PIDFD = 4,   /* pidfd_send_signal(2) */
	KP_KILL_HOW_MAX = 4
};

/* ---- KP_REC_PGID (4.4): a process moved to another process group
 * (setpgid, setpgrp) or began a session (setsid), by a call of this one
 * that succeeded: pid = that process (this one, or a child), group = its
 * new group's id; kind = enum kp_pgid_how. With the header's "pgid", the
 * group a process was in when a signal went to a group ---- */
enum { KP_PGID_PID, KP_PGID_GROUP, KP_PGID_NV };
enum kp_pgid_how {
	KP_PGID_SETPGID = 0, /* setpgid(2), setpgrp(2) */
	KP_PGID_SETSID = 1,  /* setsid(2) */
	KP_PGID_HOW_MAX = 1
};

/* ---- KP_REC_LEAK (4.5): a block in use at the leak scan
 * (KOTOBA_PROFILE_LEAK_SCAN, preload/leakscan.c) that no chain of
 * pointers from the roots (the process's writable memory outside its
 * heap blocks: globals, stacks) leads to by its start; kind = enum
 * kp_leak_class, ptr and size as its ALLOC (or REALLOC) gave them. The
 * LEAK records of a scan come just before its LEAK_SCAN; a block in use
 * then that has none was reachable. No stack ---- */
enum { KP_LEAK_PTR, KP_LEAK_SIZE, KP_LEAK_NV };
enum kp_leak_class {
	KP_LEAK_REACHABLE = 0, /* (never written) a chain of pointers to
				* its start leads to it from a root */
	KP_LEAK_DEFINITE = 1,  /* nothing leads to it: definitely lost */
	KP_LEAK_INDIRECT = 2,  /* only definitely lost blocks lead to it
				* (by pointers to its start or into it) */
	KP_LEAK_POSSIBLE = 3,  /* only chains with a pointer into its
				* middle (not its start) lead to it */
	KP_LEAK_CLASS_MAX = 3
};
/* ---- KP_REC_LEAK_SCAN (4.5): the leak scan at the process's exit
 * (exit, return from main, _exit), after its LEAK records; kind = enum
 * kp_leak_scan_status. blocks, bytes: the blocks in use it knew (from
 * the trace, read back); def_, ind_, pos_: how many of them, and their
 * bytes, it found definitely, indirectly and possibly lost (the rest
 * were reachable); root_bytes: the bytes of roots it read; dur: how
 * long it took (ns). All 0 but dur when it did not run (status) ---- */
enum { KP_LS_BLOCKS, KP_LS_BYTES, KP_LS_DEF_BLOCKS, KP_LS_DEF_BYTES,
       KP_LS_IND_BLOCKS, KP_LS_IND_BYTES, KP_LS_POS_BLOCKS,
       KP_LS_POS_BYTES, KP_LS_ROOT_BYTES, KP_LS_DUR, KP_LS_NV };
enum kp_leak_scan_status {
	KP_LS_DONE = 0,
	KP_LS_FORKED = 1,  /* not run: a fork child whose ancestors' traces
			    * (the blocks it inherited) it could not read:
			    * more than four generations, or one gone */
	KP_LS_LOST = 2,    /* not run: memory events were dropped (the drop
			    * policy) or the trace could not be read back */
	KP_LS_NOMEM = 3,   /* not run: out of memory, or kprof's own
			    * memory not all known */
	KP_LS_NOREAD = 4,  /* not run: the process's memory could not be
			    * read (process_vm_readv or /proc/self/maps
			    * refused), or it runs under a seccomp filter */
	KP_LS_STATUS_MAX = 4
};

/* ---- KP_REC_CPU_SAMPLE: the thread was sampled; stack = where it was;
 * weight = thread CPU ns this sample stands for ---- */
enum { KP_CPU_WEIGHT, KP_CPU_NV };

/* ---- KP_REC_SNAPSHOT (3.1): the process's resources, sampled by the
 * writer every KOTOBA_SAMPLING_INTERVAL_MS (preload/snapshot.c) and once
 * more at the end; tid = the pid, no stack, kind 0. rss and vm: bytes resident and
 * mapped (/proc/self/statm; -1 when it cannot be read); maxrss: the
 * kernel's high-water mark of rss since the process began (getrusage
 * ru_maxrss, bytes: it catches a peak between samples, and it carries over
 * an exec and is inherited by a fork); minflt, majflt: page faults so far;
 * cpu_ns: user + system CPU time so far (all threads). Since 3.2, kprof's
 * own cost so far: writer_cpu_ns, the CPU time of its writer thread (0:
 * not known); ring_waits and ring_wait_ns, how many times an app thread
 * found its ring full and waited for the writer (the default overflow
 * policy), and how long in all. Since 4.6, the process's memory cgroup
 * (preload/cgroup.c): cg_usage, the bytes it holds (all its processes),
 * cg_limit, the most it may (the least limit of it and those above it);
 * -1 when not known, or no limit ---- */
enum { KP_SNAP_RSS, KP_SNAP_VM, KP_SNAP_MAXRSS, KP_SNAP_MINFLT,
       KP_SNAP_MAJFLT, KP_SNAP_CPU_NS, KP_SNAP_WRITER_CPU_NS,
       KP_SNAP_RING_WAITS, KP_SNAP_RING_WAIT_NS, KP_SNAP_CG_USAGE,
       KP_SNAP_CG_LIMIT, KP_SNAP_NV };

/* The layout of an extension type; nv = 0 for a type with none. */
static inline struct kp_ext_layout kp_ext_layout(unsigned type)
{
	struct kp_ext_layout l = { 0, 0, 0 };

	switch (type) {
	case KP_REC_IO:
		l.nv = KP_IO_NV;
		l.dur_mask = 1u << KP_IO_DUR;
		break;
	case KP_REC_FD_OPEN:
		l.nv = KP_FDO_NV;
		l.has_str = 1;
		l.dur_mask = 1u << KP_FDO_DUR;
		break;
	case KP_REC_FD_CLOSE:
		l.nv = KP_FDC_NV;
		l.dur_mask = 1u << KP_FDC_DUR;
		break;
	case KP_REC_IO_SUMMARY:
		l.nv = KP_IOS_NV;
		break;

	case KP_REC_QUERY_BEGIN:
		l.nv = KP_QB_NV;
		break;
	case KP_REC_QUERY:
		l.nv = KP_Q_NV;
		l.has_str = 1;
		l.dur_mask = 1u << KP_Q_DUR | 1u << KP_Q_PREPARE_DUR;
		break;
	case KP_REC_SPAN:
		l.nv = KP_SPAN_NV;
		l.has_str = 1;
		l.dur_mask = 1u << KP_SPAN_DUR;
		break;
	case KP_REC_CUSTOM:
		l.nv = KP_CUSTOM_NV;
		l.has_str = 1;
		break;

	case KP_REC_KILL:
		l.nv = KP_KILL_NV;
		break;
	case KP_REC_PGID:
		l.nv = KP_PGID_NV;
		break;
	case KP_REC_LEAK:
		l.nv = KP_LEAK_NV;
		break;
	case KP_REC_LEAK_SCAN:
		l.nv = KP_LS_NV;
		break;

	case KP_REC_CPU_SAMPLE:
		l.nv = KP_CPU_NV;
		break;
	case KP_REC_SNAPSHOT:
		l.nv = KP_SNAP_NV;
		break;

	default:
		break;
	}
	return l;
}

/* The allocator entry point that produced an ALLOC. */
enum kp_alloc_kind {
	KP_ALLOC_MALLOC = 0,
	KP_ALLOC_CALLOC = 1,
	KP_ALLOC_REALLOC = 2, /* realloc(NULL, n) */
	KP_ALLOC_REALLOCARRAY = 3,
	KP_ALLOC_POSIX_MEMALIGN = 4,
	KP_ALLOC_ALIGNED_ALLOC = 5,
	KP_ALLOC_MEMALIGN = 6,
	KP_ALLOC_VALLOC = 7,
	KP_ALLOC_PVALLOC = 8,
	KP_ALLOC_KIND_MAX = 8
};

/* Why the trace ended (END.reason). */
enum kp_end_reason {
	KP_END_EXIT = 0,  /* exit() or return from main */
	KP_END__EXIT = 1, /* _exit()/_Exit() */
	KP_END_EXEC = 2,  /* successful exec replaced the image */
	KP_END_ABORT = 3, /* abort() */
	KP_END_SIGNAL = 4, /* killed by a signal left to its default action
			    * (status 128 + the signal) */
};

/*
 * One decoded (reader) or to-be-encoded (writer) record. Pointers inside
 * point into the frame buffer (reader) or the caller's memory (writer) and
 * stay valid until the next frame is read or the record is encoded; the
 * reader's STACK pcs only until the next record is read (one reused array).
 * ts and tid are absolute for every record type (delta coding is the
 * codec's business); fields a type does not carry are zero.
 */
struct kp_rec {
	uint8_t type;  /* enum kp_rec_type */
	uint8_t kind;  /* alloc kind (ALLOC), reason (END), ext kind */
	uint16_t pad;
	uint32_t tid;  /* thread (cur_tid for events; THREAD_* own tid) */
	uint64_t ts;   /* ns since start_mono_ns */
	union {
		struct {
			uint64_t ptr, size, align;
			uint32_t stack;
		} alloc;
		struct {
			uint64_t ptr;
		} free;
		struct {
			uint64_t old_ptr, new_ptr, size, dur;
			uint32_t stack;
		} realloc;
		struct {
			uint32_t id, depth;
			const uint64_t *pcs; /* reader: decoded array of depth */
		} stack;
		struct {
			uint64_t bias, lo, hi;
			const char *path; /* not NUL-terminated */
			const uint8_t *build_id;
			uint32_t path_len, build_id_len;
		} module;
		struct {
			const char *name; /* THREAD_START, THREAD_NAME; not
					   * NUL-terminated */
			uint32_t name_len;
		} thread;
		struct {
			uint64_t count;
			uint32_t what; /* a kp_rec_type */
		} lost;
		struct {
			int64_t status; /* exit status (END), child pid (FORK) */
		} end;
		struct {
			uint64_t base_ts, seq;
		} frame;
		struct {
			const char *path; /* EXEC; not NUL-terminated */
			uint32_t path_len;
		} exec;
		struct {
			const char *text; /* QUERY_TEXT; not NUL-terminated */
			uint32_t len;
			uint32_t id;
		} qtext;
		struct {
			uint64_t lo, size;
			const char *name; /* JIT_CODE; not NUL-terminated */
			uint32_t name_len;
		} jit;
		struct {
			/* extension records (type >= KP_REC_EXT_MIN) */
			int64_t v[KP_EXT_MAX_V]; /* by KP_<TYPE>_* index */
			const char *str;  /* not NUL-terminated; NULL = none */
			uint32_t str_len;
			uint32_t stack;
		} ext;
	} u;
};

/*
 * An ALLOC, FREE or REALLOC as the reader's bulk path returns it
 * (kp_reader_mem()): the fields struct kp_rec has for the type, in a
 * smaller struct.
 *   ALLOC    a = ptr, b = size, c = align, stack, kind
 *   FREE     a = ptr (b, c, d, stack unset)
 *   REALLOC  a = old_ptr, b = new_ptr, c = size, d = dur, stack
 */
struct kp_mem_rec {
	uint64_t ts;
	uint64_t a, b, c, d;
	uint32_t stack;
	uint32_t tid;
	uint8_t type;  /* KP_REC_ALLOC, KP_REC_FREE or KP_REC_REALLOC */
	uint8_t kind;
};

/* The header map. Keys are the field names below; unknown keys are
 * ignored by readers; missing keys read as zero/empty. */
struct kp_header {
	uint16_t major, minor;     /* from the fixed prefix */
	int64_t pid, ppid;         /* "pid", "ppid" */
	const char *exe;           /* "exe": /proc/self/exe at start */
	const char *const *argv;   /* "argv": array of str */
	uint32_t argc;
	uint64_t start_wall_ns;    /* "start_wall_ns": CLOCK_REALTIME at start */
	uint64_t start_mono_ns;    /* "start_mono_ns": CLOCK_MONOTONIC at start */
	const char *clock;         /* "clock": "tsc" or "clock_gettime" */
	double tsc_hz;             /* "tsc_hz": calibrated ticks/s, 0 if none */
	const char *hostname;      /* "hostname" */
	const char *kprof_version; /* "kprof_version" */
	/* "config": map str -> str, the effective KOTOBA_PROFILE_* settings */
	const char *const *config_keys;
	const char *const *config_vals;
	uint32_t nconfig;
	/* "forked" (4.1; written only when 1): recording began in the child
	 * of a fork of a recorded process, whose heap it started with */
	int forked;
	/* "pgid" (4.4; written only when known): the process group it was
	 * in at start (0: not known) */
	int64_t pgid;
};

#endif
