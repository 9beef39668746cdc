# SPDX-License-Identifier: MIT
"""The PostgreSQL server itself under kprof (DESIGN.md's real programs: "a
PostgreSQL server under pgbench"): a postmaster that forks its backends
and helpers without exec, shares memory between them, signals them, and
syncs its WAL at every commit. pgbench (not traced) runs 4 clients x 200
TPC-B transactions against it, with fsync on. The server runs under
strace -f as well, which counts the same run's sync calls and sees its
processes: kprof must have a complete trace of each process and every
sync call, and find the commits' WAL flushes at their stack (XLogFlush
from CommitTransactionCommand).
"""
import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403
from pgserver import PgServer, pg_tool  # noqa: E402

t = Tap()
SYNCS = ("fsync", "fdatasync", "sync_file_range")

with Tmp(0o777) as d:
    traces = os.path.join(d, "traces")
    os.mkdir(traces)
    os.chmod(traces, 0o777)  # the server runs as nobody
    slog = os.path.join(d, "strace.log")
    wrap = [need("strace"), "-f", "-q", "-o", slog,
            "-e", "trace=exit_group," + ",".join(SYNCS),
            # for the server only, not for strace itself
            "-E", "LD_PRELOAD=" + LIB,
            "-E", "KOTOBA_PROFILE_OUTPUT=" + traces + "/kprof.%p.kpz"]
    with PgServer(fsync=True, wrap=wrap) as pg:
        pgbench = pg_tool("pgbench")
        base = ["-h", pg.dir, "-p", pg.port, "-U", pg.user]
        r = run_plain([pgbench, "-i", "-q", "-s", "1"] + base + ["postgres"], d,
                      timeout=300)
        t.eq(r.rc, 0, "pgbench -i against the traced server", r.err[-500:])
        r = run_plain([pgbench, "-n", "-c", "4", "-j", "2", "-t", "200"] + base +
                      ["postgres"], d, timeout=300)
        t.eq(r.rc, 0, "pgbench: 4 clients x 200 transactions", r.err[-500:])
        t.ok("actually processed: 800/800" in r.out and
             "failed transactions: 0 " in r.out,
             "pgbench: all 800 transactions, none failed", r.out[-600:])
        postmaster = pg.postmaster_pid()
        status = pg.stop()
        log = pg.server_log()
    t.eq(status, 0, "the server shut down cleanly (strace's exit status, the "
         "postmaster's, 0)", log)
    t.ok(not re.search(r"PANIC|terminated by signal|was terminated", log),
         "the server log: no PANIC, no process killed", log)

    # what strace saw: the processes (each one's exit_group: threads,
    # kprof's writer among them, end without one) and the sync calls
    pids, want = set(), collections.Counter()
    for line in open(slog):
        m = re.match(r"(\d+) +(\w+)\(", line)
        if m and m.group(2) == "exit_group":
            pids.add(int(m.group(1)))
        elif m:
            want[m.group(2)] += 1
    files = sorted(kpz_files(traces))
    rep = analyze(files)
    procs = rep["trace"]["processes"]
    postgres = [p for p in procs if p["exe"].endswith("/postgres")]
    t.eq(sorted(p["pid"] for p in postgres), sorted(pids),
         "a trace of every server process strace saw (%d)" % len(pids))
    t.ge(len(postgres), 9, "postmaster, 4 client backends and the helpers")
    t.eq([p["pid"] for p in postgres if not p["forked"]], [postmaster],
         "every server process but the postmaster began at a fork")
    out = analyze(files, fmt="text")
    m = re.search(r"unmatched frees +([\d,]+) \(.*; (all|[\d,]+) in (\d+) forked", out)
    t.ok(m and m.group(2) == "all" and int(m.group(3)) >= 8,
         "the backends free the postmaster's blocks, and the summary says so",
         m.group(0) if m else out[:2000])
    t.eq([p["pid"] for p in postgres if p["truncated"] or p["end_reason"] != "exit"],
         [], "every server process's trace is complete and ends at its exit")
    t.eq(rep["trace"]["events_lost"], 0, "no event lost")
    served = [p for p in postgres if p["memory"]["alloc_calls"] > 2000]
    t.ok(len(served) >= 4, "4 backends served the clients (their allocations)",
         [(p["pid"], p["memory"]["alloc_calls"]) for p in postgres])

    got = collections.Counter()
    for f in rep["io"]["files"]:
        for op in SYNCS:
            got[op] += f["ops"].get(op, {}).get("calls", 0)
    t.ok(want["fdatasync"] >= 200, "strace: the WAL synced at commits (fdatasync)",
         dict(want))
    t.eq(dict(got), dict(want), "kprof recorded exactly the sync calls strace counted")

    # the WAL's syncs, found at the commit that caused them
    wal = [f for f in rep["io"]["files"] if "/pg_wal/" in f["path"]]
    commit = sum(s["total_ns"] for f in wal for s in f["stacks"]
                 if stack_has(s["frames"], "XLogFlush") and
                 stack_has(s["frames"], "CommitTransactionCommand"))
    total = sum(f["total_ns"] for f in wal)
    t.ok(total > 0 and commit > total / 2,
         "most of the WAL's I/O time is from XLogFlush called by "
         "CommitTransactionCommand (%.0f %%)" % (100.0 * commit / max(total, 1)),
         [(f["path"], f["total_ns"]) for f in wal])
    out = analyze(files, fmt="text", extra=["io"])
    t.ok(re.search(r"fdatasync +\d+", out) and "by XLogFlush" in out and
         "CommitTransactionCommand" in out,
         "the text report shows the WAL's fdatasync calls with the commit's stack",
         out[:3000])
t.done()
