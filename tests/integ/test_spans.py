"""Extension events end to end: the span and custom-event API of
preload/kprof.h (tests/apps/spans.c), through multi-slot ring events, the
writer and the reader, checked record by record with `kprof-analyze dump`.

A 16 KiB ring (256 slots) with names of every length from 0 to 199 bytes
and some of 5999 (cut to 4096) makes events straddle slot and ring
boundaries all the time; with the lossless default every one must arrive
intact, in order, on its own thread. With the drop policy, recorded +
counted-as-lost must equal what the app made.
"""
from kptest import Tap, Tmp, analyze, app, dump, run, run_plain

ROUNDS, THREADS = 3000, 3
t = Tap()

with Tmp() as d:
    r = run_plain([app("spans"), "10", "2"], cwd=d)
    t.eq((r.rc, r.out), (0, "loaded=0\n"), "without kprof the API does nothing")


def check_thread(t, recs, tno, label):
    """The records of one worker thread, in file order."""
    spans = [x for x in recs if x["type"] == "span"]
    customs = [x for x in recs if x["type"] == "custom"]
    extra = 5 if tno == 0 else 0  # main's wrap/left-open/never-ended
    t.eq((len(spans), len(customs)), (4 * ROUNDS + extra, 3 * ROUNDS),
         "%s: 4 span records and 3 custom events per round (+%d)"
         % (label, extra))
    bad = []
    letter = chr(ord("a") + tno % 26)
    for i in range(min(ROUNDS, len(spans) // 4, len(customs) // 3)):
        ob, ib, ie, oe = spans[4 * i:4 * i + 4]
        name = letter * ((i + tno) % 200)
        if (ob["kind"], ob["str"]) != (0, "outer") or \
           (ib["kind"], ib["str"]) != (0, name) or \
           ie["kind"] != 1 or oe["kind"] != 1 or \
           ie["v"][0] != ib["v"][0] or oe["v"][0] != ob["v"][0] or \
           ob["v"][0] == ib["v"][0] or ob["v"][0] == 0:
            bad.append(("span", i, ob, ib, ie, oe))
            continue
        # an end carries the duration: end ts - dur = begin ts (+-1 ns of
        # rounding), the inner span lies within the outer one
        if abs(ie["ts"] - ie["v"][1] - ib["ts"]) > 1 or \
           abs(oe["ts"] - oe["v"][1] - ob["ts"]) > 1 or \
           not (ob["ts"] <= ib["ts"] <= ie["ts"] <= oe["ts"]) or \
           ie["v"][1] > oe["v"][1]:
            bad.append(("time", i, ob, ib, ie, oe))
        c, g, du = customs[3 * i:3 * i + 3]
        dname = "duration" if i % 100 else "L" * 4096
        if (c["kind"], c["str"], c["v"]) != (0, "counter", [i]) or \
           (g["kind"], g["str"], g["v"]) != (1, "gauge", [-i]) or \
           (du["kind"], du["str"], du["v"]) != (2, dname, [1000 * i]):
            bad.append(("custom", i, c["str"][:20], g, du["v"]))
    t.eq(bad[:2], [], "%s: every record exact (names, ids, values, times)"
         % label)


with Tmp() as d:
    r = run([app("spans"), str(ROUNDS), str(THREADS)], cwd=d,
            prof={"BUFFER_KB": "16"})
    t.eq((r.rc, r.out), (0, "loaded=1\n"), "under kprof with 16 KiB rings")
    recs = dump(r.traces)
    t.eq([x["what"] for x in recs if x["type"] == "lost"], [],
         "nothing lost with the default (wait) policy")
    tids = []
    for x in recs:
        if x["type"] == "span" and x["tid"] not in tids:
            tids.append(x["tid"])
    t.eq(len(tids), THREADS, "spans on %d threads" % THREADS)
    # which worker is which: its inner span names' letter
    for tid in tids:
        mine = [x for x in recs if x.get("tid") == tid and
                x["type"] in ("span", "custom")]
        inner = [x["str"] for x in mine if x["type"] == "span" and
                 x["kind"] == 0 and x["str"] not in ("outer", "")]
        tno = ord(inner[0][0]) - ord("a") if inner else -1
        check_thread(t, mine, tno, "thread %d" % tno)
    t.eq(sum(1 for x in recs if x["type"] == "custom" and x["kind"] > 2), 0,
         "an unknown event kind is not recorded")

    # the analysis: kprof-analyze's "app" section
    rep = analyze(r.traces)["app"]
    spans = {s["name"]: s for s in rep["spans"]}
    o = spans.get("outer", {})
    t.eq((o.get("events"), o.get("unclosed")), (ROUNDS * THREADS, 0),
         "app: every outer span counted and closed")
    want = {}
    for tno in range(THREADS):
        for i in range(ROUNDS):
            n = chr(ord("a") + tno) * ((i + tno) % 200)
            want[n] = want.get(n, 0) + 1
    got = {n: s["events"] for n, s in spans.items() if n not in
           ("outer", "wrap", "left-open", "never-ended")}
    t.eq(got == want, True, "app: inner spans counted per name (%d names)"
         % len(want))
    t.eq([(spans.get(n, {}).get("events"), spans.get(n, {}).get("unclosed"))
          for n in ("wrap", "left-open", "never-ended")],
         [(1, 0), (1, 0), (0, 1)],
         "app: a span left open ends with its parent; one never ended is open")
    inner_total = sum(s["total_ns"] for n, s in spans.items()
                      if n in want)
    t.ok(o.get("total_ns", 0) >= inner_total > 0,
         "app: outer spans take at least the time of the inner ones")
    c = {x["name"]: x for x in rep["counters"]}
    t.eq(c.get("counter", {}).get("sum"), THREADS * ROUNDS * (ROUNDS - 1) // 2,
         "app: the counter is the sum of its increments")
    g = {x["name"]: x for x in rep["gauges"]}.get("gauge", {})
    t.eq((g.get("events"), g.get("min"), g.get("max"), g.get("last")),
         (THREADS * ROUNDS, -(ROUNDS - 1), 0, -(ROUNDS - 1)),
         "app: gauge events, min, max, last")
    du = {x["name"]: x for x in rep["durations"]}
    vals = sorted(1000 * i for _ in range(THREADS) for i in range(ROUNDS)
                  if i % 100)
    d = du.get("duration", {})
    t.eq((d.get("events"), d.get("total_ns"), d.get("max_ns")),
         (len(vals), sum(vals), vals[-1]), "app: durations: count, total, max")
    for key, q in (("p50_ns", 0.5), ("p90_ns", 0.9), ("p99_ns", 0.99)):
        exact = vals[-(-len(vals) * int(q * 100) // 100) - 1]
        t.ok(abs(d.get(key, 0) - exact) <= exact * 0.004,
             "app: duration %s %s within 0.4 %% of %d" % (key, d.get(key), exact))
    t.eq(du.get("L" * 4096, {}).get("events"), 30 * THREADS,
         "app: a 5999-byte name is kept as its first 4096 bytes")

with Tmp() as d:
    r = run([app("spans"), str(ROUNDS), str(THREADS)], cwd=d,
            prof={"BUFFER_KB": "16", "OVERFLOW": "drop"})
    t.eq(r.rc, 0, "drop policy: the app runs")
    recs = dump(r.traces)
    lost = {}
    for x in recs:
        if x["type"] == "lost":
            lost[x["what"]] = x["count"]  # cumulative: the last one counts
    got = {w: sum(1 for x in recs if x["type"] == w) for w in ("span", "custom")}
    t.eq((got["span"] + lost.get("span", 0),
          got["custom"] + lost.get("custom", 0)),
         (4 * ROUNDS * THREADS + 5, 3 * ROUNDS * THREADS),
         "drop policy: recorded + lost = made (lost %r)" % lost)
t.done()
