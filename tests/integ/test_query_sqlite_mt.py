# SPDX-License-Identifier: MIT
"""The SQLite hook's statement table under threads (issue 4): the C app
tests/apps/sqlite_mt.c runs THREADS threads, each with its own connection,
each stepping its prepared statements, preparing and finalizing one
statement per round (churn), and leaving one run open for the main thread
to end by a finalize (reset, step and finalize from another thread than
the one that prepared). Every execution of every thread must be counted
exactly once, with its rows.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
TH, RO, ROWS = 8, 400, 50

with t.section("threads, one connection each"):
    with Tmp() as d:
        plain = run_plain([app("sqlite_mt"), str(TH), str(RO)], d)
        r = run([app("sqlite_mt"), str(TH), str(RO)], d, timeout=300,
                prof={"MEMORY": "0"})
        t.eq((r.rc, r.err), (0, ""), "sqlite_mt runs under kprof", r)
        t.eq(r.out, plain.out, "same output as without kprof")
        t.ok(r.out.startswith("ok "), "its own result", r.out)
        q = analyze(r.traces)["queries"]
        got = {f["fingerprint"]: (f["calls"], f["rows"]) for f in q["fingerprints"]}
        want = {
            "create table t(id integer primary key, v int)": (TH, 0),
            "insert into t(id, v) values(?+)": (TH * ROWS, TH * ROWS),
            # ROUNDS by each thread, then one more by the main thread
            "select v from t where id = ?": (TH * (RO + 1), TH * (RO + 1)),
            "select count(*) from t where v > ?": (TH * RO, TH * RO),
            # stepped to one row, ended by the main thread's finalize
            "select id from t order by id": (TH, TH),
        }
        t.eq(got, want, "calls and rows per fingerprint, exactly", q["fingerprints"][:2])
        t.eq(q["queries_dropped"], 0, "no query dropped")
        allrecs = dump(r.traces)
        pid = [x["pid"] for x in allrecs if x["type"] == "header"][0]
        recs = [x for x in allrecs if x["type"] == "query"]
        tids = {x["tid"] for x in recs if (x["str"] or "").startswith("select count")}
        t.eq(len(tids), TH, "the churned statements come from %d threads" % TH)
        opened = [x for x in recs if (x["str"] or "").startswith("select id from t")]
        t.ok(len(opened) == TH and all(x["tid"] == pid for x in opened) and
             all(x["v"][2] == 1 for x in opened),
             "the open runs (1 row each) are recorded when the main thread "
             "finalizes them", opened[:2])
t.done()
