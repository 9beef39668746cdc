# SPDX-License-Identifier: MIT
"""Signal handlers that run while their thread is inside kprof's hooks
(tests/apps/sighook.c): two threads loop over malloc, free and write(),
while a third sends them SIGUSR1 as fast as it can; the handler writes a
byte to /dev/null and, when its thread is not inside malloc or free,
mallocs a block its thread frees later. Some of those signals land inside
kprof's own recording of the thread's last call; kprof defers them to the
end of it (preload/signals.c), so that the handler's calls are recorded
like any other. What must hold: the program runs as without kprof, the
trace is whole, and every call is recorded: the app's and its handler's
allocations, frees and writes, exactly, no free unmatched, no block left
wrongly in use. With stacks off, on, and with CPU sampling, whose own
signal comes on top. (Before the deferral, 0.3 to 6 % of the handler's
writes went unrecorded, and up to 365 of its blocks.)

Then a handler that leaves by siglongjmp (tests/apps/sigjump.c, a timeout
pattern): the program runs as without kprof, and kprof records all of it.
A jump out of kprof's own hook used to leave the thread marked as inside
kprof, which then recorded a few hundred of its 2 M allocations.

Then what a program sees of its handlers (tests/apps/sigapi.c): queries,
siginfo, SA_RESETHAND, SA_NODEFER, SA_ONSTACK, SIG_IGN, and real-time
signals to a thread that allocates (the ones deferred must come with their
siginfo, none merged): every line as without kprof.
"""
import os

from kptest import (LIB, Tap, Tmp, analyze, app, counts_from, need, run,
                    run_plain)

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
            t.eq(writes, c["writes"],
                 "%s: every write to /dev/null recorded, the handler's %d signals' "
                 "too" % (label, c["signals"]), c)
            # the app's and its handler's, and libc's 4 (below)
            t.eq((m["alloc_calls"], m["free_calls"], m["unmatched_frees"]),
                 (c["allocs"] + 4, c["frees"], 0),
                 "%s: every allocation and free recorded, none unmatched" % label, c)
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
            t.eq((tr["events_lost"], tr["truncated"], tr["processes"][0]["end_reason"]),
                 (0, False, "exit"),
                 "%s: the trace is whole: nothing lost, not truncated, the exit" % label)
            # the app's, and stdout's buffer (in use at exit too)
            t.eq((m["alloc_calls"], m["free_calls"], m["unmatched_frees"],
                  m["in_use_at_exit"]["blocks"]),
                 (c["allocs"] + 1, c["frees"], 0, 1001),
                 "%s: every allocation and free recorded across the jumps; "
                 "the 1000 leaks and stdout's buffer in use at exit" % label, c)
            if prof.get("STACK_DEPTH") != "0":
                t.ok(any(l["blocks"] == 1000 and l["stack"] and
                         l["stack"][0]["function"] == "leak_after_jumps"
                         for l in m["leaks"]),
                     "%s: the 1000 leaks, from leak_after_jumps" % label, m["leaks"])

for label, prof in (("handlers as the app sees them", {}),
                    ("handlers as the app sees them, CPU sampling", {"CPU": "1"})):
    with t.section(label):
        with Tmp() as d:
            plain = run_plain([app("sigapi")], d)
            r = run([app("sigapi")], d, prof=prof, timeout=120)
            t.eq((r.rc, r.err), (0, ""), "%s: sigapi runs, no warning" % label)
            t.eq(plain.out.splitlines()[-1:], ["rt: sent 20000 got 20000 sum ok bad 0"],
                 "%s: without kprof, every real-time signal comes with its value"
                 % label, plain.out)
            t.eq(r.out, plain.out, "%s: every line as without kprof" % label)
            if len(r.traces) != 1:
                t.ok(False, "%s: one trace" % label, r.traces)
                continue
            tr = analyze(r.traces)["trace"]
            t.eq((tr["events_lost"], tr["truncated"], tr["processes"][0]["end_reason"]),
                 (0, False, "exit"),
                 "%s: the trace is whole: nothing lost, not truncated, the exit" % label)

# A signal left to its default action that comes while kprof's own code
# runs (KOTOBA_PROFILE_SIGNALS=1): kprof's handler queues it again to the
# thread, to end the trace where kprof's work is done. It queues it with
# tgkill, not rt_tgsigqueueinfo (its own handler needs no siginfo):
# Firefox's content sandbox refuses rt_tgsigqueueinfo and printed a
# "seccomp sandbox violation" for each. tests/apps/plugins/libkpsigterm.c
# sends SIGTERM from a query plugin's init, which kprof runs as its own
# work: the signal comes there every time.
with t.section("a signal that kills, come while kprof's code runs"):
    strace = need("strace")
    with Tmp() as d:
        log = os.path.join(d, "strace.log")
        r = run([strace, "-f", "-qq", "-e", "trace=rt_tgsigqueueinfo,tgkill",
                 "-e", "signal=none", "-o", log, "-E", "LD_PRELOAD=" + LIB,
                 "-E", "KOTOBA_PROFILE_SIGNALS=1", "-E",
                 "KOTOBA_PROFILE_QUERY_PLUGIN=" + app("plugins/libkpsigterm.so"),
                 "/bin/true"], d, kprof=False)
        with open(log) as f:
            calls = [x.split("(")[0].split()[-1] for x in f if "(" in x]
        t.eq((r.rc, sorted(calls)), (-15, ["tgkill", "tgkill"]),
             "SIGTERM in kprof's code: queued again with tgkill, then raised "
             "once more to kill; no rt_tgsigqueueinfo", r.err)
        p = analyze(r.traces)["trace"]["processes"] if r.traces else []
        t.eq([(x["end_reason"], x["exit_status"], x["truncated"]) for x in p],
             [("signal", 128 + 15, False)],
             "its trace ends: killed by SIGTERM", r.traces)

t.done()
