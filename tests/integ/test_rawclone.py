"""Children made by clone instead of fork (tests/apps/rawclone.c).

A child made by clone() or a raw syscall(SYS_clone / SYS_clone3) skips
glibc's fork handlers. Under kprof such a child kept the parent's
state without its writer thread, and once its ring filled it waited for
that writer for ever: rawclone's child, a million allocations, hung;
so did headless Chromium's zygote children (base::ForkWithFlags).
Each way must now give the child a trace of its own, as fork does, with
every allocation and its leak; fork is the reference. So must a program
that keeps the pthread_atfork handlers itself and runs them around its
clone(), as Firefox does: kprof's handlers then run twice around one
clone (a deadlock on the writer's lock until they counted). A clone by the
system call instruction itself, which no interposer sees, must not hang
either: that child says it is not traced.
"""
import re

from kptest import Tap, Tmp, analyze, app, process_by_pid, run

t = Tap()
N = 1000000

for mode in ("syscall", "clone3", "clone", "fork", "atfork"):
    with t.section(mode):
        with Tmp() as d:
            prog = app("rawclone_atfork" if mode == "atfork" else "rawclone")
            r = run([prog, mode, str(N)], d, timeout=60)
            m = re.search(r"child (\d+) done", r.out)
            t.ok(r.rc == 0 and m and "parent: child status 0" in r.out,
                 "runs to the end (the child does not hang)", r.out + r.err)
            t.eq(len(r.traces), 2, "two traces, the child's its own")
            if not m or len(r.traces) != 2:
                continue
            child = int(m.group(1))
            rep = analyze(r.traces)
            p = process_by_pid(rep, child)
            t.ok(p and p["forked"] and p["ppid"] == r.pid and
                 not p["truncated"] and p["end_reason"] == "_exit",
                 "the child's trace: forked from the parent, ended by _exit",
                 p)
            mem = p["memory"] if p else {}
            t.ok(mem.get("alloc_calls", 0) > N and
                 mem.get("free_calls", 0) >= N,
                 "the child's %d allocations and frees (%s, %s)" %
                 (N, mem.get("alloc_calls"), mem.get("free_calls")))
            at = [(l["bytes"], l["blocks"], l["pids"])
                  for l in rep["memory"]["leaks"]
                  if l["stack"] and l["stack"][0]["function"] == "child_work"]
            t.eq(at, [(100, 1, [child])], "its leak at child_work")
            t.eq(rep["trace"]["events_lost"], 0, "no event lost")
            if mode == "clone":
                used = re.search(r"stack_used (\d+)", r.out)
                # the handlers take ~7.5 KiB; their switch, ~2
                t.ok(used and int(used.group(1)) < 4096,
                     "the child's handlers ran on a stack of their own, "
                     "not on the caller's 16 KiB", r.out)

# A clone no interposer sees: the child stops recording when its ring
# fills and no writer drains it, says so, and runs on untraced.
with t.section("asm"):
    with Tmp() as d:
        r = run([app("rawclone"), "asm", str(N)], d, timeout=60)
        m = re.search(r"child (\d+) done", r.out)
        t.ok(r.rc == 0 and m and "parent: child status 0" in r.out,
             "runs to the end (the child does not hang)", r.out + r.err)
        t.eq(len(r.traces), 1, "one trace: the parent's")
        t.eq(r.err.splitlines(), ["kprof: process %s was cloned from %d "
                                  "without fork's handlers (a raw clone "
                                  "system call): not traced" %
                                  (m.group(1) if m else "?", r.pid)],
             "the child says it is not traced")
        rep = analyze(r.traces)
        t.eq(rep["trace"]["events_lost"], 0, "the parent's trace lost none")

t.done()
