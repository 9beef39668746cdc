"""Programs that assert they are single-threaded (tests/apps/solo.c).

Sandboxes count their threads by /proc/self/task's link count before
they fork or drop privileges: Chromium's zygote (fstatat on a /proc fd,
"self/task/") and Firefox's (stat("/proc/self/task")); Python 3.12 reads
/proc/self/stat after os.fork() and warns when there is more than one.
kprof's writer thread was one too many: the zygote crashed at start
and headless Chromium died with "GPU process isn't usable". Now the
writer steps out when the app's only thread looks, and stays out until
the app starts a thread; meanwhile the app's thread writes the trace
itself. solo asserts one thread in the parent (Python's way), in a
forked child and in the parent after a thread of its own has come and
gone (the sandboxes' ways), makes a million allocations in each of three
places (the parent, the child, and that thread), and each must be in
the traces, none lost, with each process's leak.

While the writer is out, the app's thread also flushes the trace itself
each flush interval (as it makes events): `solo park` looks, allocates,
then makes an event a millisecond; SIGKILLed, its trace must hold the
allocations (before, its ring was written only once full: minutes at
that pace, so a kill lost everything).
"""
import signal

from kptest import (LIB, Tap, Tmp, analyze, app, clean_env, kill_once_flushed,
                    process_by_pid, run)

t = Tap()
N = 1000000

with t.section("solo"):
    with Tmp() as d:
        r = run([app("solo"), str(N)], d, timeout=120)
        t.eq((r.rc, r.err), (0, ""), "runs to the end, no assertion fails")
        t.eq([l for l in r.out.splitlines() if "single-threaded" in l],
             ["ok parent single-threaded (stat)", "ok child single-threaded",
              "ok parent again single-threaded"],
             "one thread each time it looks: parent (Python's way), child, "
             "parent after its thread (the sandboxes' way)")
        t.eq(len(r.traces), 2, "two traces: the parent's, the child's")
        rep = analyze(r.traces)
        t.eq((rep["trace"]["truncated"], rep["trace"]["events_lost"]),
             (False, 0), "complete, nothing lost")
        parent = process_by_pid(rep, r.pid)
        child = [p for p in rep["trace"]["processes"] if p["forked"]]
        t.ok(parent and parent["end_reason"] == "exit" and
             parent["memory"]["alloc_calls"] > 2 * N and
             parent["memory"]["free_calls"] >= 2 * N,
             "the parent's 2 million allocations and frees, its thread's "
             "among them", parent and parent["memory"])
        t.ok(len(child) == 1 and child[0]["end_reason"] == "_exit" and
             child[0]["memory"]["alloc_calls"] > N,
             "the child's million, written with no writer thread",
             child and child[0]["memory"])
        leaks = {l["stack"][0]["function"]: (l["bytes"], l["pids"])
                 for l in rep["memory"]["leaks"] if l["stack"]}
        t.eq((leaks.get("child_work"), leaks.get("thread_work")),
             ((64, [child[0]["pid"] if child else None]), (32, [r.pid])),
             "the child's leak and the thread's, each in its process")

# The drop policy drops an event rather than wait for the writer thread;
# with the writer out there is none to wait for, and the app's thread
# writes its full ring itself as with the default policy (before, it
# dropped: 3.5 million of solo's events).
with t.section("solo, drop policy"):
    with Tmp() as d:
        r = run([app("solo"), str(N)], d, prof={"OVERFLOW": "drop"},
                timeout=120)
        t.eq((r.rc, len(r.traces)), (0, 2), "runs, two traces")
        rep = analyze(r.traces)
        t.eq(rep["trace"]["events_lost"], 0, "nothing dropped")
        t.eq(sorted(p["memory"]["alloc_calls"] > N
                    for p in rep["trace"]["processes"]), [True, True],
             "each process's million allocations and more")

with t.section("parked, then killed"):
    with Tmp() as d:
        env = clean_env({"LD_PRELOAD": LIB, "KOTOBA_PROFILE_FLUSH_MS": "50"})
        # killed 3 s on at most: its ring would take minutes to fill
        line, rc, traces = kill_once_flushed([app("solo"), "park"], d, env,
                                             2000, limit=2.5)
        t.eq((line, rc), ("ok parked single-threaded (stat)\n",
                          -signal.SIGKILL),
             "one thread when it looks (the writer out), killed")
        t.eq(len(traces), 1, "one trace")
        rep = analyze(traces)
        t.eq(rep["trace"]["truncated"], True, "truncated (no END)")
        m = rep["memory"]
        t.ok(m["alloc_calls"] >= 2000 and m["free_calls"] >= 1000,
             "park_work's 2,000 allocations and 1,000 frees are in, "
             "flushed by the app's thread", (m["alloc_calls"], m["free_calls"]))

t.done()
