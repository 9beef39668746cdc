"""fork() while three threads allocate at full speed (tests/apps/forkstorm.c).

Forty children are forked while new stacks are being interned and rings
filled; every lock kprof takes (writer cycle, modules, stack table, shared
ring, private allocator) is held across fork by its atfork handlers. No
child may hang or lose its trace: 41 complete traces, one 99-byte leak
from child_leak() per child, nothing lost.
"""
from kptest import Tap, Tmp, analyze, app, leak_with, run

t = Tap()

with Tmp() as d:
    r = run([app("forkstorm")], cwd=d, timeout=120)
    t.eq((r.rc, r.out), (0, "children_ok=40\n"), "all 40 children exit 0 (none hangs)")
    t.eq(len(r.traces), 41, "41 traces: the parent and each child")
    rep = analyze(r.traces)
    t.eq(rep["trace"]["truncated"], False, "none truncated")
    t.eq(rep["trace"]["events_lost"], 0, "nothing lost")
    procs = rep["trace"]["processes"]
    kids = [p for p in procs if any(p["ppid"] == q["pid"] for q in procs)]
    t.eq(len(kids), 40, "40 processes name another as their parent")
    t.eq(sorted(set(p["end_reason"] for p in kids)), ["_exit", "exit"],
         "children end by exit and _exit")
    lk = leak_with(rep, "child_leak")
    t.eq(lk and (lk["blocks"], lk["bytes"], len(lk["pids"])), (40, 40 * 99, 40),
         "one 99-byte leak from child_leak in each of the 40 children")

t.done()
