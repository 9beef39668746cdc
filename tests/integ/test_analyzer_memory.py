"""The analyzer's memory follows the live set, not the trace length
(DESIGN invariant 8: one streaming pass, aggregates per stack). And its
read-ahead thread (tools/analyze/readahead.c) changes nothing it reports.

alloc_bench keeps a window of 4096 live blocks per thread whatever the
number of iterations. Its traces for 100 k and 1 M iterations differ ten
times in length and events, not in live blocks or unique stacks; the
analyzer's peak RSS (its --stats line) must differ by far less than the
trace does. Bounds are generous: a pass that kept every event (tens of
bytes each) would need 10x more memory for the longer trace.
"""
import os
import re

from kptest import ANALYZE, Tap, Tmp, analyze, app, run
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

# The reader runs on a thread of its own when the analyzer may use more
# than one CPU, handing its results over in chunks; on one CPU the same
# code fills the chunks inline. The reports must be the same, byte for
# byte, on traces that take many chunks: alloc_bench's ~16,000 STACK
# records among 1.2 M events, and io_known's I/O records among them.
with Tmp() as d:
    if len(os.sched_getaffinity(0)) < 2:
        raise AssertionError("the read-ahead comparison needs two CPUs")
    r = run([app("alloc_bench"), "2", "300000"], cwd=d, timeout=120)
    r2 = run([app("io_known"), d, "bad"], cwd=d)
    traces = r.traces + r2.traces
    t.ok(r.rc == 0 and r2.rc == 0 and len(traces) >= 2, "two programs run",
         traces)
    for fmt in (["--format", "json"], []):
        outs = []
        for pre in ([], ["taskset", "-c", "0"]):
            p = subprocess.run(pre + [ANALYZE] + fmt + traces,
                               capture_output=True, text=True, timeout=120)
            outs.append((p.returncode, p.stdout))
        t.ok(outs[0] == outs[1] and outs[0][0] == 0 and
             len(outs[0][1]) > 5000, "%s: the same report read ahead on "
             "a thread and inline on one CPU" % (fmt[1] if fmt else "text"),
             [o[1][:200] for o in outs])

# kprof-analyze memory: the summary's memory part only
with Tmp() as d:
    r = run([app("io_known"), d, "bad"], cwd=d)
    summary = analyze(r.traces, fmt="text")
    memory = analyze(r.traces, fmt="text", extra=["memory"])
    t.ok("\nI/O\n" in summary and "HEAP SUMMARY" in summary,
         "summary: the heap and the I/O of io_known", summary[:300])
    lines = summary.split("\n")
    io = lines.index("I/O") if "I/O" in lines else len(lines)
    end = lines.index("", io) if "" in lines[io:] else len(lines)
    rest = lines[end + 1:]
    adv = [i for i, x in enumerate(rest) if x.startswith("ADVICE: ")]
    t.ok(adv, "summary: an ADVICE section (io_known's findings)", rest[-20:])
    if adv:  # the advice ends the summary; its blank line, then the end
        rest = rest[:adv[0]] + rest[rest.index("", adv[0]) + 1:]
    t.eq(memory.split("\n"), ["kprof-analyze memory: 1 process"] + lines[1:io] +
         rest, "memory: the summary without its I/O and ADVICE sections")

t.done()
