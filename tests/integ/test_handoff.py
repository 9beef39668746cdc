# SPDX-License-Identifier: MIT
"""Blocks that cross threads (tests/apps/handoff.c): two producers hand
100,000 blocks each to the main thread, which frees them and answers with
blocks of its own, which the producers free. glibc then gives addresses
freed on one thread to allocations on another, a few hundred ns later.
The analyzer pairs a FREE with its ALLOC, and an ALLOC with the FREE of
the block it reuses, by the events' stamps across threads: a stamp older
than its event (a clock read every few events, say) turns thousands of
those into unmatched frees and blocks wrongly in use. So every count
must be exact: with stacks off (the cheapest path), with stacks on, with
16 KiB rings (the producers wait for the writer), and with main
reallocating each block before it frees it.
"""
import json

from kptest import Tap, Tmp, analyze, analyze_raw, app, counts_from, leak_with, run

t = Tap()
PRODUCERS, ITERS = 2, 100000


def crossings(trace):
    """(reuses, gaps): FREE -> ALLOC of one address on two threads, in the
    dump's order, and their gaps in ns."""
    rc, out, err = analyze_raw(["dump", trace], timeout=120)
    if rc != 0:
        return None, err
    last, gaps = {}, []
    evs = []
    for line in out.splitlines():
        if '"alloc"' not in line and '"free"' not in line:
            continue
        d = json.loads(line)
        if d["type"] in ("alloc", "free"):
            evs.append((d["ts"], d["type"], d["tid"], d["ptr"]))
    evs.sort()
    for ts, ty, tid, p in evs:
        prev = last.get(p)
        if prev and prev[2] != tid and prev[1] == "free" and ty == "alloc":
            gaps.append(ts - prev[0])
        last[p] = (ts, ty, tid)
    return len(gaps), sorted(gaps)


for label, prof, extra in (("stacks off", {"STACK_DEPTH": "0"}, []),
                           ("stacks on", {}, []),
                           ("16 KiB rings", {"BUFFER_KB": "16"}, []),
                           ("realloc, stacks off", {"STACK_DEPTH": "0"}, ["realloc"]),
                           ("realloc, stacks on", {}, ["realloc"])):
    with t.section(label):
        with Tmp() as d:
            r = run([app("handoff"), str(PRODUCERS), str(ITERS)] + extra, d, prof=prof,
                    timeout=120)
            t.eq((r.rc, r.err), (0, ""), "%s: handoff runs, no warning" % label)
            want = counts_from(r.out)
            t.eq(want.get("allocs"), PRODUCERS * (2 * ITERS + 5),
                 "%s: it reports its counts" % label, r.out)
            if not r.traces:
                t.ok(False, "%s: a trace" % label)
                continue
            rep = analyze(r.traces)
            m = rep["memory"]
            t.eq(rep["trace"]["events_lost"], 0, "%s: no event lost" % label)
            # +1 a producer: its DTV, libc's calloc (storm.c); a realloc
            # counts as an allocation call and a free call
            re = want["reallocs"]
            t.eq(m["realloc_calls"], re, "%s: realloc_calls exact" % label)
            t.eq(m["alloc_calls"], want["allocs"] + re + PRODUCERS,
                 "%s: alloc_calls exact (+%d DTVs)" % (label, PRODUCERS))
            t.eq(m["free_calls"], want["frees"] + re, "%s: free_calls exact" % label)
            t.eq(m["unmatched_frees"], 0, "%s: every free matches its allocation" % label)
            # a free stamped before the other thread's allocation of its
            # block (the CPU reads the clock ahead of the load that gave
            # it the pointer): paired all the same (kprof-analyze(1))
            t.diag("%s: reordered_frees %d" % (label, m["reordered_frees"]))
            t.eq(m["in_use_at_exit"]["blocks"], want["leaked_blocks"] + PRODUCERS,
                 "%s: in use at exit: the leaks and the DTVs, nothing else" % label)
            if "stacks off" not in label:
                lk = leak_with(rep, "handoff_leak")
                t.eq((lk["blocks"], lk["bytes"]), (want["leaked_blocks"], want["leaked_bytes"]),
                     "%s: handoff_leak's group exact" % label)
            else:
                # the test is only as good as its crossings: most blocks
                # freed on one thread are next allocated on another
                n, gaps = crossings(r.traces[0])
                t.ok(n is not None and n >= ITERS,
                     "stacks off: >= %d addresses freed on one thread and next "
                     "allocated on another" % ITERS, gaps if n is None else n)
                if n:
                    t.diag("crossings %d, gap ns: min %d, 1st percentile %d, median %d"
                           % (n, gaps[0], gaps[len(gaps) // 100], gaps[len(gaps) // 2]))

t.done()
