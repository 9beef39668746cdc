"""Blocks from kprof's bootstrap pool, handed to the app, freed and realloc'd.

glibc 2.36's dlsym no longer allocates, so nothing reaches kprof's pool in a
normal run. tests/apps/preload/dlsym_alloc.c (preloaded before libkprof.so)
makes every dlsym allocate, as older glibc did: the blocks allocated while
kprof resolves its symbols come from the pool. tests/apps/bootpool.c then
frees some and reallocs others (grow, shrink, to 0) and checks contents and
usable sizes. Without the pool's handling in free/realloc this crashes (a
free of a static address) or corrupts memory.
"""
import os
import re

from kptest import APPS, LIB, Tap, Tmp, analyze, app, run

t = Tap()
shim = os.path.join(APPS, "dlsym_alloc.so")

with Tmp() as d:
    r = run([app("bootpool")], cwd=d, preload=shim + " " + LIB)
    t.eq(r.rc, 0, "the app's checks on pool blocks hold (rc 0)")
    m = re.search(r"blocks=(\d+) boot=(\d+)", r.out)
    t.ok(m is not None, "the app reports its blocks")
    blocks, boot = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    # kprof resolves ~25 symbols with dlsym; every one of them allocated
    # from the pool while kprof was resolving.
    t.ok(boot >= 10, "pool blocks reached the app (boot=%d of %d)" % (boot, blocks))
    traces = r.traces
    t.eq(len(traces), 1, "one trace")
    if traces:
        rep = analyze(traces)
        mem = rep["memory"]
        # Pool blocks were never recorded as allocations, and their frees
        # are not recorded either: nothing is unmatched.
        t.eq(mem["unmatched_frees"], 0, "frees of pool blocks are not recorded")
        t.eq(rep["trace"]["truncated"], False, "trace complete")

t.done()
