# SPDX-License-Identifier: MIT
"""realloc / aligned / failure / errno semantics (issue #2 test 2):
tests/apps/reallocs.c checks the C behaviour itself (alignment of every
aligned kind, ENOMEM and an intact block after failed realloc/reallocarray,
calloc overflow, errno preserved across successful calls) and exits
non-zero if any check fails; it prints its own counts, which the report must
equal exactly: failed calls and free(NULL) are not recorded, realloc(NULL,n)
is an alloc, realloc(p,0) a free, realloc(p,n) one alloc + one free.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
APP = app("reallocs")

with t.section("reallocs"):
    with Tmp() as d:
        plain = run_plain([APP], d)
        t.eq(plain.rc, 0, "reallocs passes its own checks without kprof", plain.err)
        r = run([APP], d)
        t.eq(r.rc, 0, "reallocs passes its own checks under kprof "
             "(alignment, ENOMEM, errno preserved)", r.err)
        t.eq(r.out, plain.out, "stdout identical with and without kprof")
        want = counts_from(r.out)
        rep = analyze(r.traces)
        m = rep["memory"]
        t.eq(m["alloc_calls"], want["allocs"], "alloc_calls exact")
        t.eq(m["free_calls"], want["frees"], "free_calls exact")
        t.eq(m["realloc_calls"], want["reallocs"], "realloc_calls exact")
        t.eq(m["bytes_allocated"], want["bytes"],
             "bytes_allocated exact (requested sizes; pvalloc's too)")
        t.eq(m["in_use_at_exit"], {"bytes": want["leaked_bytes"],
                                   "blocks": want["leaked_blocks"]},
             "in_use_at_exit exact")
        t.eq(m["unmatched_frees"], 0, "no unmatched frees")
        # five call sites in leak_aligned: five groups of one block each
        la = leaks_with(rep, "leak_aligned")
        t.eq(sorted((l["bytes"], l["blocks"]) for l in la),
             [(100, 1), (100, 1), (100, 1), (100, 1), (512, 1)],
             "leak_aligned: 5 aligned blocks, one group per call site "
             "(posix_memalign, aligned_alloc, memalign, valloc, pvalloc)",
             leak_summary(rep))
        lr = leak_with(rep, "leak_realloced")
        t.eq((lr["bytes"], lr["blocks"]), (777, 1),
             "leak_realloced: the realloc'd block, 777 bytes, counted once")
        t.eq(len(m["leaks"]), 6, "no other leak group", leak_summary(rep))
        t.eq(rep["trace"]["events_lost"], 0, "no events lost")

# reallocarray(p, 2, SIZE_MAX/2 + 1): the product wraps to 0 in size_t; glibc
# returns NULL with ENOMEM and p stays allocated. That is a failure, not a
# realloc(p, 0): nothing is recorded, and the later free(p) matches p.
with t.section("reallocarray overflow"):
    with Tmp() as d:
        r = run([APP, "arrayoverflow"], d)
        t.eq(r.rc, 0, "arrayoverflow: NULL, ENOMEM, p intact under kprof", r.err)
        rep = analyze(r.traces)
        m = rep["memory"]
        t.eq((m["alloc_calls"], m["free_calls"]), (1, 1),
             "reallocarray overflow: 1 alloc, 1 free (the failure not recorded "
             "as a free)")
        t.eq(m["unmatched_frees"], 0,
             "reallocarray overflow: the later free(p) is not unmatched")
        t.eq(m["in_use_at_exit"], {"bytes": 0, "blocks": 0},
             "reallocarray overflow: nothing in use at exit")

t.done()
