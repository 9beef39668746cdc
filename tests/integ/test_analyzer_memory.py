"""The analyzer's memory follows the live set, not the trace length
(DESIGN invariant 8: one streaming pass, aggregates per stack).

alloc_bench keeps a window of 4096 live blocks per thread whatever the
number of iterations. Its traces for 100 k and 1 M iterations differ ten
times in length and events, not in live blocks or unique stacks; the
analyzer's peak RSS (its --stats line) must differ by far less than the
trace does. Bounds are generous: a pass that kept every event (tens of
bytes each) would need 10x more memory for the longer trace.
"""
import os
import re

from kptest import ANALYZE, Tap, Tmp, app, run
import subprocess

t = Tap()


def analyze_stats(files):
    p = subprocess.run([ANALYZE, "--stats", "--no-symbols", "--format", "json"] + files,
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"(\d+) events in .* peak RSS (\d+) MB", p.stderr)
    return p.returncode, (int(m.group(1)), int(m.group(2))) if m else (0, 0)


res = {}
with Tmp() as d:
    for iters in (100000, 1000000):
        sub = os.path.join(d, str(iters))
        os.mkdir(sub)
        r = run([app("alloc_bench"), "1", str(iters)], cwd=sub, timeout=120)
        t.eq(r.rc, 0, "alloc_bench 1 thread x %d runs" % iters)
        size = sum(os.path.getsize(f) for f in r.traces)
        rc, (events, rss) = analyze_stats(r.traces)
        t.eq(rc, 0, "analyzer reads the %d-iteration trace" % iters)
        res[iters] = (size, events, rss)

small, big = res[100000], res[1000000]
t.ok(big[1] >= 9 * small[1], "the long trace has ~10x the events", (small, big))
t.ok(big[0] >= 5 * small[0], "and is several times longer on disk", (small, big))
t.ok(big[2] <= small[2] * 1.5 + 8,
     "peak RSS %d MB vs %d MB: bounded by the live set, not the length" % (big[2], small[2]),
     (small, big))

t.done()
