# SPDX-License-Identifier: MIT
"""Signal handlers that run inside kprof's hooks (tests/apps/sighook.c):
two threads loop over malloc, free and write(), while a third sends them
SIGUSR1 as fast as it can; the handler writes a byte to /dev/null and,
when its thread is not inside malloc or free, mallocs a block its thread
frees later. Some of those signals land inside kprof's own hook (its
recording of the thread's last call), where the handler's calls pass
through unrecorded: kprof(7) CAVEATS. What must hold: the program runs as
without kprof, the trace is whole, every free of the app is recorded,
every write is recorded but for at most one a signal, no block is left
wrongly in use, and no free is unmatched but those of the handler's
unrecorded blocks. With stacks off, on, and with CPU sampling, whose own
signal comes on top.

Then a handler that leaves by siglongjmp (tests/apps/sigjump.c, a
timeout pattern): the program must run as without kprof and its trace
must be whole. What kprof records of that thread after a jump out of its
own hook is a known gap (kprof(7) CAVEATS): printed, not asserted.
"""
from kptest import Tap, Tmp, analyze, app, counts_from, run, run_plain

t = Tap()
WORKERS, ITERS = 2, 200000

for label, prof in (("stacks off", {"STACK_DEPTH": "0"}),
                    ("stacks on", {}),
                    ("stacks on, CPU sampling", {"CPU": "1"})):
    with t.section(label):
        with Tmp() as d:
            r = run([app("sighook"), str(WORKERS), str(ITERS)], d, prof=prof,
                    timeout=120)
            t.eq((r.rc, r.err), (0, ""), "%s: sighook runs, no warning" % label)
            c = counts_from(r.out)
            t.ok(c.get("signals", 0) > 1000 and c.get("allocs", 0) > WORKERS * ITERS,
                 "%s: over 1,000 signals handled, the handler's blocks counted" % label,
                 r.out)
            if len(r.traces) != 1:
                t.ok(False, "%s: one trace" % label, r.traces)
                continue
            rep = analyze(r.traces)
            tr, m = rep["trace"], rep["memory"]
            t.eq((tr["events_lost"], tr["truncated"],
                  tr["processes"][0]["end_reason"]), (0, False, "exit"),
                 "%s: the trace is whole: nothing lost, not truncated, the exit" % label)
            writes = sum(f["ops"]["write"]["calls"] for f in rep["io"]["files"]
                         if f.get("path") == "/dev/null" and "write" in f["ops"])
            t.ok(c["writes"] - c["signals"] <= writes <= c["writes"],
                 "%s: the writes to /dev/null recorded: the app's %d, less at most "
                 "one a signal (%d)" % (label, c["writes"], c["signals"]), writes)
            t.ok(m["free_calls"] >= c["frees"],
                 "%s: every free of the app recorded" % label, (m["free_calls"], c))
            # recorded allocations: the app's, less the handler's that
            # went unrecorded, plus libc's 4 (below); each unrecorded block
            # is one unmatched free, its free being the app's
            unseen = c["allocs"] + 4 - m["alloc_calls"]
            t.eq(m["unmatched_frees"], unseen,
                 "%s: each unmatched free is a block of the handler's left "
                 "unrecorded" % label, (m["alloc_calls"], c))
            # libc's: stdout's buffer and the DTVs of the three threads
            t.eq(m["in_use_at_exit"]["blocks"], 4,
                 "%s: 4 blocks in use at exit, no block of the app's" % label,
                 m["in_use_at_exit"])
            if prof.get("STACK_DEPTH") != "0":
                kinds = sorted({l["stack"][0]["function"] for l in m["leaks"]
                                if l["stack"]})
                t.eq(kinds, ["_IO_file_doallocate", "allocate_dtv"],
                     "%s: they are stdout's buffer and the threads' DTVs" % label,
                     m["leaks"])

for label, prof in (("siglongjmp, stacks off", {"STACK_DEPTH": "0"}),
                    ("siglongjmp, stacks on", {})):
    with t.section(label):
        with Tmp() as d:
            plain = run_plain([app("sigjump")], d)
            r = run([app("sigjump")], d, prof=prof, timeout=120)
            t.eq((r.rc, r.err), (0, ""), "%s: sigjump runs, no warning" % label)
            c, cp = counts_from(r.out), counts_from(plain.out)
            t.ok(plain.rc == 0 and c.get("jumps", 0) > 100 and
                 all(x.get("allocs") == x.get("frees", 0) + 1000 for x in (c, cp)),
                 "%s: over 100 jumps; 1000 more allocations than frees, as without "
                 "kprof (%s)" % (label, plain.out.strip()), r.out)
            if len(r.traces) != 1:
                t.ok(False, "%s: one trace" % label, r.traces)
                continue
            rep = analyze(r.traces)
            tr, m = rep["trace"], rep["memory"]
            t.eq((tr["truncated"], tr["processes"][0]["end_reason"]), (False, "exit"),
                 "%s: the trace is whole: not truncated, the exit" % label)
            print("# %s: recorded %d of %d allocations, %d blocks in use at exit "
                  "(of 1000 leaked; the gap in kprof(7) CAVEATS)"
                  % (label, m["alloc_calls"], c.get("allocs", 0),
                     m["in_use_at_exit"]["blocks"]))

t.done()
