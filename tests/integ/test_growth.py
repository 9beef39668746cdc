"""A heap that keeps growing (advice MEM03) and the heap's floor.

tests/apps/growth.c runs 6 s: every 20 ms it allocates and frees 100
blocks of 1 KiB (churn) and, in the modes that grow, cache_put keeps 64
entries of 256 bytes for good (800 KiB a second). MEM03 must name
cache_put, at about that rate, whether the cache is freed before exit
(grow) or left (keep, which is also a leak: MEM01); a heap as big that
does not grow (flat: a table of 1 MiB and the same churn) and a run
shorter than 5 s (the rule's minimum) must not have it. The timeline's
floor (min_in_use) is checked against what flat holds.
"""
import re
from concurrent.futures import ThreadPoolExecutor

from kptest import Tap, Tmp, analyze, app, run

t = Tap()
RATE = 800 * 1024  # bytes a second cache_put keeps, at most


def record(args):
    """The run, its report, and its advice with MEM03's threshold at 1 GiB
    (--advice-min)."""
    with Tmp() as d:
        r = run([app("growth")] + args, d, timeout=60)
        if r.rc != 0 or not r.traces:
            return r, None, None
        return r, analyze(r.traces), analyze(
            r.traces, extra=["--advice-min", "MEM03=1G"])["advice"]


with ThreadPoolExecutor(4) as ex:  # they sleep most of their 6 s
    runs = dict(zip(["grow", "keep", "flat", "short"], ex.map(record, [
        ["6000", "grow"], ["6000", "keep"], ["6000", "flat"],
        ["3000", "grow"]])))


def mem03(rep):
    return [a for a in rep["advice"] if a["code"] == "MEM03"]


for mode in ("grow", "keep"):
    with t.section(mode):
        r, rep, big = runs[mode]
        t.ok(r.rc == 0 and rep, "growth 6000 %s runs" % mode, r.err)
        t.eq([a for a in big or [] if a["code"] == "MEM03"], [],
             "--advice-min MEM03=1G: no MEM03 (it grew a few MiB)")
        g = mem03(rep)
        t.eq([(a["severity"], a["key"].split(" < ")[0].split(":")[0])
              for a in g], [("warn", "cache_put (growth.c")],
             "one MEM03, at cache_put", g)
        if not g:
            continue
        a = g[0]
        m = re.search(r"\(about ([\d.]+) MiB a minute\)", a["title"])
        per_s = float(m.group(1)) * 2**20 / 60 if m else 0
        t.ok(0.7 * RATE <= per_s <= RATE * 1.02,
             "the rate, about cache_put's (%.0f KiB/s of at most %d)" %
             (per_s / 1024, RATE // 1024), a["title"])
        sites = re.search(r"grew most: (.*) \(from ([\d.]+) ms to "
                          r"([\d.]+) ms\)$", a["evidence"])
        t.ok(sites and sites.group(1).startswith("at cache_put (growth.c:")
             and "churn" not in sites.group(1),
             "the site that grew: cache_put, not churn", a["evidence"])
        if sites:
            grew = re.match(r"at cache_put \(growth\.c:\d+\) \+([\d.]+) MiB",
                            sites.group(1))
            span = (float(sites.group(3)) - float(sites.group(2))) / 1000
            t.ok(grew and 0.7 * RATE * span <= float(grew.group(1)) * 2**20
                 <= RATE * span * 1.02,
                 "its growth between the two times: %s MiB in %.3f s" %
                 (grew.group(1) if grew else "?", span))
        f = [float(x) for x in re.findall(r"([\d.]+) MiB",
                                          a["evidence"].split(";")[0])]
        t.ok(len(f) == 4 and f[0] < f[1] < f[2] < f[3],
             "the floors of quarters 2-4 rise, under the peak", f)
        t.eq(a["bytes"] > 0 and a["stack"][0]["function"], "cache_put",
             "its stack is cache_put's")

with t.section("keep: the leak too"):
    r, rep, _ = runs["keep"]
    t.ok(any(a["code"] == "MEM01" and "cache_put" in a["title"]
             for a in rep["advice"]), "MEM01 at cache_put")

with t.section("no growth"):
    r, rep, _ = runs["flat"]
    t.ok(r.rc == 0 and rep, "growth 6000 flat runs", r.err)
    t.eq(mem03(rep), [], "flat: no MEM03")
    tl = rep["trace"]["processes"][0]["memory"]["timeline"]
    lo, hi = tl["min_in_use"], tl["max_in_use"]
    t.eq(len(lo), len(hi), "min_in_use: a value each slice")
    t.ok(all(a <= b for a, b in zip(lo, hi)), "each floor at most its max")
    t.ok(len(lo) > 8 and all(x >= 2**20 for x in lo[1:-1]) and
         all(x < 2**20 + 64 * 1024 for x in lo[1:-1]),
         "flat's floor: its table, 1 MiB, from start to exit", lo)
    t.ok(sum(b - a >= 100 * 1024 for a, b in zip(lo[1:-1], hi[1:-1])) >=
         len(lo) // 2, "the churn's 100 KiB above it")
    r, rep, _ = runs["short"]
    t.ok(r.rc == 0 and rep, "growth 3000 grow runs", r.err)
    t.eq(mem03(rep), [], "a 3 s run: no MEM03 (5 s at least)")

t.done()
