"""Thread churn: 2000 short-lived threads in rounds of 40.

Each thread's ring is closed when it exits, drained by the writer and
reused by a later thread; frees glibc makes after a thread's key
destructor go to the shared ring. Nothing may be lost or misattributed:
exactly 2000 blocks of 48 bytes leak from leak_one(), every free matches
an allocation, and 2001 threads (main + 2000) are seen — with the default
ring size and with the smallest one (which forces waits).
"""
import re

from kptest import Tap, Tmp, analyze, app, run

t = Tap()

for buf in ("1024", "16"):
    with Tmp() as d:
        r = run([app("threadchurn")], cwd=d, prof={"BUFFER_KB": buf}, timeout=120)
        t.eq(r.rc, 0, "BUFFER_KB=%s: threadchurn runs" % buf)
        m = re.search(r"threads=(\d+) leaked=(\d+) pairs=(\d+)", r.out)
        t.ok(m is not None, "BUFFER_KB=%s: it reports its counts" % buf, r.out)
        if not m or not r.traces:
            continue
        threads, leaked, pairs = map(int, m.groups())
        rep = analyze(r.traces)
        mem = rep["memory"]
        groups = [l for l in mem["leaks"]
                  if any(f["function"] == "leak_one" for f in l["stack"])]
        t.eq([(l["blocks"], l["bytes"]) for l in groups], [(leaked, leaked * 48)],
             "BUFFER_KB=%s: one leak group of %d x 48 bytes from leak_one" % (buf, leaked))
        t.eq(rep["trace"]["events_lost"], 0, "BUFFER_KB=%s: nothing lost" % buf)
        t.eq(mem["unmatched_frees"], 0, "BUFFER_KB=%s: every free matched" % buf)
        t.eq(rep["trace"]["processes"][0]["threads"], threads + 1,
             "BUFFER_KB=%s: every thread seen" % buf)
        t.ok(mem["alloc_calls"] >= pairs + leaked and mem["free_calls"] >= pairs,
             "BUFFER_KB=%s: all of the app's calls counted" % buf,
             (mem["alloc_calls"], mem["free_calls"], pairs, leaked))

t.done()
