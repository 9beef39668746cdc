"""fork() while three threads allocate at full speed (tests/apps/forkstorm.c).

Forty children are forked while new stacks are being interned and rings
filled; every lock kprof takes (writer cycle, modules, stack table, shared
ring, private allocator) is held across fork by its atfork handlers. No
child may hang or lose its trace: 41 complete traces, one 99-byte leak
from child_leak() per child, nothing lost.
"""
import re

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

    # 41 processes are too many for a block each: a table of the --top
    # busiest, by allocation calls, then the rest counted
    calls = {p["pid"]: p["memory"]["alloc_calls"] for p in procs}
    want = sorted(calls, key=lambda pid: (-calls[pid], pid))
    for top, extra in ((10, []), (50, ["--top", "50"])):
        text = analyze(r.traces, fmt="text", extra=extra)
        table = text.split("PROCESSES, the %d with the most allocation "
                           "calls (--top N)\n" % min(top, 41), 1)[-1]
        B = r"[\d.]+ [KMG]?i?B"
        rows = re.findall(r"^ +(\d+) +(\d+) +[\d.]+ m?s +(\S+) +([\d,]+) +"
                          r"(%s) +(%s) +forkstorm$" % (B, B),
                          table.split("\n\n", 1)[0], re.M)
        t.ok([int(x[0]) for x in rows] == want[:top] and
             all(int(x[3].replace(",", "")) == calls[int(x[0])] and
                 x[5] != "0 B" for x in rows)
             and ("... 31 more" in table) == (top == 10) and
             "\nprocess " not in text,
             "text, --top %d: %d rows, busiest first, with their resident "
             "peaks; no process blocks"
             % (top, min(top, 41)), text[:1500])

t.done()
