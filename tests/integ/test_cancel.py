# SPDX-License-Identifier: MIT
"""Threads cancelled while they allocate and write (tests/apps/cancelstorm.c):
150 rounds of 6 threads, each leaking one 48-byte block from leak_one(),
then allocating and writing to /dev/null until main cancels it in its
write() (a cancellation point, inside kprof's I/O hook); its cleanup
handler frees what it holds. The cancellation unwinds through kprof's
frames. What must hold: the program runs as without kprof, the trace is
whole, every free matches an allocation, the 900 leaked blocks and
nothing of the app's loop are in use at exit, and 901 threads are seen.
With stacks on, off, the smallest ring (whose waits come on top), and
CPU sampling.

Then a thread that calls exit(7) with a cancellation pending: the process
ends with status 7, as without kprof, whose exit path joins its writer
thread (a cancellation point, where the thread used to be cancelled
instead, and the process ended with main's 0).
"""
import os

from kptest import Tap, Tmp, analyze, app, counts_from, run, run_plain

t = Tap()
ROUNDS = 150
N = ROUNDS * 6

for label, prof in (("stacks on", {}),
                    ("stacks off", {"STACK_DEPTH": "0"}),
                    ("BUFFER_KB=16", {"BUFFER_KB": "16"}),
                    ("CPU sampling", {"CPU": "1"})):
    with t.section(label):
        with Tmp() as d:
            r = run([app("cancelstorm"), str(ROUNDS)], d, prof=prof, timeout=120)
            t.eq((r.rc, r.err), (0, ""), "%s: cancelstorm runs, no warning" % label)
            c = counts_from(r.out)
            t.eq((c.get("threads"), c.get("cancelled"),
                  c.get("allocs", 0) - c.get("frees", 0)), (N, N, N),
                 "%s: %d threads, each cancelled, every block freed but the "
                 "leaked" % (label, N), r.out)
            if len(r.traces) != 1:
                t.ok(False, "%s: one trace" % label, r.traces)
                continue
            rep = analyze(r.traces)
            tr, m = rep["trace"], rep["memory"]
            p = tr["processes"][0]
            t.eq((tr["events_lost"], tr["truncated"], p["end_reason"], p["threads"]),
                 (0, False, "exit", N + 1),
                 "%s: the trace is whole, with main and %d threads" % (label, N))
            t.eq(m["unmatched_frees"], 0, "%s: every free matches" % label)
            # the app's calls, and libc's on top (the unwinder's libgcc_s
            # loaded for the first cancellation, threads' DTVs)
            t.ok(m["alloc_calls"] >= c["allocs"] and m["free_calls"] >= c["frees"] and
                 m["alloc_calls"] - c["allocs"] < 1000,
                 "%s: every allocation and free of the app's recorded" % label,
                 (m["alloc_calls"], m["free_calls"], c))
            extra = m["in_use_at_exit"]["blocks"] - N
            t.ok(0 <= extra <= 30,
                 "%s: in use at exit: the %d leaked blocks and a few of libc's"
                 % (label, N), m["in_use_at_exit"])
            if prof.get("STACK_DEPTH") == "0":
                continue
            mine = [(l["blocks"], l["bytes"]) for l in m["leaks"]
                    if any(f["function"] == "leak_one" for f in l["stack"])]
            t.eq(mine, [(N, N * 48)],
                 "%s: one leak group of %d x 48 bytes from leak_one" % (label, N),
                 m["leaks"])
            loop = [l for l in m["leaks"]
                    if any(f["function"] in ("work", "cleanup") for f in l["stack"])
                    and not any(f["function"] == "leak_one" for f in l["stack"])]
            t.eq(loop, [], "%s: no block of the thread's loop in use at exit" % label)

with t.section("without kprof"):
    with Tmp() as d:
        plain = run_plain([app("cancelstorm"), str(ROUNDS)], d, timeout=120)
        c = counts_from(plain.out)
        t.eq((plain.rc, c.get("threads"), c.get("cancelled"),
              c.get("allocs", 0) - c.get("frees", 0)),
             (0, N, N, N),
             "the same counts without kprof: every block freed but the leaked",
             plain.out)

with t.section("exit with a cancellation pending"):
    with Tmp() as d:
        plain = run_plain([app("cancelstorm"), "exit"], d, timeout=60)
        t.eq(plain.rc, 7, "without kprof: exit(7) ends the process", plain)
        for label, prof in (("", {}), (", CPU sampling", {"CPU": "1"})):
            r = run([app("cancelstorm"), "exit"], d, prof=prof, timeout=60)
            t.eq((r.rc, r.err), (7, ""), "with kprof%s: exit(7) ends the process" % label)
            if len(r.traces) != 1:
                t.ok(False, "one trace", r.traces)
                continue
            p = analyze(r.traces)["trace"]["processes"][0]
            t.eq((p["truncated"], p["end_reason"], p["exit_status"]), (False, "exit", 7),
                 "with kprof%s: the trace ends with exit(7)" % label)
            for f in r.traces:
                os.unlink(f)

t.done()
