"""The demo program of `make demo` (tests/apps/demo.c) and its ratings.

The report the README shows must come out the same on every run: the
per-request leak (10000 x 64 bytes from parse_request) is high
confidence; the start-up banner (1 x 4096 from startup_banner, the first
allocation of the process) is low, "allocated once at start-up" — decided
by allocation order, not by run time, so it cannot flip between runs.
"""
import re

from kptest import Tap, Tmp, analyze, app, leak_with, run

t = Tap()

for i in range(3):
    with Tmp() as d:
        r = run([app("demo")], cwd=d)
        t.eq(r.rc, 0, "run %d: demo runs" % i)
        rep = analyze(r.traces)
        req = leak_with(rep, "parse_request")
        ban = leak_with(rep, "startup_banner")
        t.eq(req and (req["blocks"], req["bytes"], req["confidence"]),
             (10000, 640000, "high"), "run %d: per-request leak, high" % i)
        t.eq(ban and (ban["blocks"], ban["bytes"], ban["confidence"]),
             (1, 4096, "low"), "run %d: start-up banner, low" % i)
        t.ok(ban and "start-up" in ban["reason"], "run %d: reason says start-up" % i,
             ban and ban["reason"])
        # demo.log's share of the wall time sums its four threads' calls:
        # the text line gives the JSON's share and says so above 100 %
        log = [f for f in rep["io"]["files"] if f["path"].endswith("/demo.log")]
        text = analyze(r.traces, fmt="text")
        m = re.search(r"/demo\.log \(file\): .* in I/O, ([0-9.]+) % of wall"
                      r"(, threads summed)?\n", text)
        t.ok(log and m and abs(float(m.group(1)) - 100 * log[0]["wall_share"]) < 0.1
             and bool(m.group(2)) == (float(m.group(1)) > 100),
             "run %d: demo.log's share of wall, threads summed above 100 %%" % i,
             m and m.group(0))

t.done()
