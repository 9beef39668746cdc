# SPDX-License-Identifier: MIT
"""Lock waits in the slow-query split (issue 4): tests/apps/sqlite_lock.c
runs two processes on one SQLite database file. In "hold" mode the child
holds an exclusive lock for HOLD ms while the parent steps a SELECT with
a busy timeout: SQLite's busy handler sleeps and retries, so the SELECT's
time must be mostly lock wait (bounded below with a wide margin: at least
a third of the hold; no upper timing bound), and the split must add up.
In "free" mode the same statements run without contention: no lock wait
at all. The I/O report shows the refused locks on the database file,
apart from its I/O (not time in I/O, not failed calls).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
HOLD_MS = 300
SEL = "select count(*) from t"


def select_of(rep):
    fps = {f["fingerprint"]: f for f in rep["queries"]["fingerprints"]}
    slow = {s["fingerprint"]: s for s in rep["queries"]["slow"]}
    return fps.get(SEL, {}), slow.get(SEL, {}).get("worst", {})


with t.section("contention"):
    with Tmp() as d:
        db = os.path.join(d, "lock.db")
        r = run([app("sqlite_lock"), db, "hold", str(HOLD_MS)], d, timeout=120)
        t.eq((r.rc, r.err, r.out), (0, "", "count=4\n"),
             "hold: both processes run unchanged under kprof", r)
        t.eq(len(r.traces), 2, "hold: one trace per process")
        rep = analyze(r.traces, extra=["--slow-ms", "50"])
        f, w = select_of(rep)
        t.eq(f.get("calls"), 1, "hold: the SELECT ran once", f)
        t.ge(f.get("lock_wait_ns", 0), HOLD_MS * 10**6 // 3,
             "hold: the SELECT's lock wait is at least a third of the %d ms hold" % HOLD_MS)
        t.ok(f.get("lock_waits", 0) >= 2,
             "hold: several waits (busy-handler sleeps, refused locks)", f)
        t.ok(w and w["lock_ns"] >= HOLD_MS * 10**6 // 3 and w["lock_ns"] <= w["dur_ns"],
             "hold: the slow SELECT's worst sample is mostly lock wait", w)
        t.ok(w and w["io_ns"] + w["fsync_ns"] + w["lock_ns"] + w["rest_ns"] == w["dur_ns"],
             "hold: file I/O + fsync + lock wait + rest = the query's time", w)
        others = [x for x in rep["queries"]["fingerprints"] if x["fingerprint"] != SEL]
        t.ok(others and all(x["lock_wait_ns"] == 0 for x in others),
             "hold: the child's statements did not wait",
             [(x["fingerprint"], x["lock_wait_ns"]) for x in others])
        recs = dump(r.traces)
        ops = {x["kind"] for x in recs if x["type"] == "io"}
        t.ok({17, 18} <= ops, "hold: IO records of op 17 (lock) and 18 (sleep)", sorted(ops))
        heads = [x for x in recs if x["type"] == "header"]
        pids = {x["pid"] for x in heads}
        child = [x["pid"] for x in heads if x["ppid"] in pids]
        sleeps = {x["tid"] for x in recs if x["type"] == "io" and x["kind"] == 18}
        t.ok(len(child) == 1 and sleeps and child[0] not in sleeps,
             "hold: the child's own sleep (outside any database call) is not recorded",
             (child, sleeps))
        io = rep["io"]
        files = {x["path"]: x for x in io["files"]}
        lk = files.get(db, {}).get("ops", {}).get("lock", {})
        t.ok(lk.get("calls", 0) >= 1 and lk["errors"] == lk["calls"],
             "hold: io: the refused locks on the database file (op lock)", lk)
        t.ok("sleep" not in str([x.get("ops", {}).keys() for x in io["files"]]),
             "hold: io: sleeps are no file's")
        t.ok(not any(x["code"] == "IO05" for x in io["findings"]),
             "hold: io: refused locks are not failed calls (no IO05)",
             [x["code"] for x in io["findings"]])
        out = analyze(r.traces, fmt="text", extra=["queries", "--slow-ms", "50"])
        t.ok("lock wait" in out and "lock waits" in out,
             "hold: the text report shows the lock wait", out[-2500:])

with t.section("no contention"):
    with Tmp() as d:
        db = os.path.join(d, "free.db")
        r = run([app("sqlite_lock"), db, "free", str(HOLD_MS)], d, timeout=120)
        t.eq((r.rc, r.err, r.out), (0, "", "count=4\n"),
             "free: runs unchanged under kprof", r)
        rep = analyze(r.traces, extra=["--slow-ms", "0"])
        f, w = select_of(rep)
        t.eq((f.get("calls"), f.get("lock_waits"), f.get("lock_wait_ns")), (1, 0, 0),
             "free: the SELECT did not wait", f)
        t.eq(w.get("lock_ns"), 0, "free: no lock wait in its split", w)
        t.eq(sum(x["lock_wait_ns"] for x in rep["queries"]["fingerprints"]), 0,
             "free: no statement waited")
        ops = {x["kind"] for x in dump(r.traces) if x["type"] == "io"}
        t.ok(not ({17, 18} & ops), "free: no lock or sleep record", sorted(ops))
t.done()
