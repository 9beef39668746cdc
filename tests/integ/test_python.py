# SPDX-License-Identifier: MIT
"""python3.11's own frames in allocation and I/O stacks (preload/pystack.c):
tests/integ/py_frames.py keeps 37 + 5 (in a thread) bytearrays from
keep_some(), makes and drops 50 from churn() and writes a file from
write_log(); the leak groups, the allocation sites and the file's I/O
stacks must name those functions and lines (found in the script by their
markers), inside the eval loop's machine frame; with KOTOBA_PROFILE_PYTHON=0
no stack holds a Python frame. (Query stacks: test_query_sqlite.py.)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
APP = os.path.join(SRC, "tests", "integ", "py_frames.py")
SRC_LINES = open(APP).read().splitlines()


def line_of(text):
    """The script's line (from 1) holding text, which must be there once."""
    found = [i + 1 for i, s in enumerate(SRC_LINES) if text in s]
    assert len(found) == 1, (text, found)
    return found[0]


KEEP, CHURN = line_of("# KEEP"), line_of("# CHURN")
CALL_KEEP, CALL_CHURN = line_of("keep_some(37)"), line_of("churn(50)")
CALL_WRITE, CALL_WORKER = line_of("write_log(os.path"), line_of("keep_some(5)")


def py_frames(stack):
    return tuple((x.get("function"), x.get("line")) for x in stack
                 if x.get("file") == APP)


def all_stacks(rep):
    m = rep["memory"]
    out = [g["stack"] for k in ("leaks", "top_by_calls", "top_by_bytes")
           for g in m[k]]
    return out + [s["frames"] for f in rep["io"]["files"] for s in f["stacks"]]


with t.section("allocation and I/O stacks hold the script's frames"):
    need(PY)
    with Tmp() as d:
        plain = run_plain([PY, APP, d], d)
        r = run([PY, APP, d], d)
        t.eq((r.rc, r.out, r.err), (0, plain.out, ""), "runs as without kprof")
        rep = analyze(r.traces, extra=["--top", "1000"])
        m = rep["memory"]
        leaks = {}
        for g in m["leaks"]:
            k = py_frames(g["stack"])
            if k and k[0][0] == "keep_some":
                b = leaks.setdefault(k, [0, 0])
                b[0] += g["blocks"]
                b[1] += g["bytes"]
        t.eq(leaks, {(("keep_some", KEEP), ("<module>", CALL_KEEP)): [37, 37 * 4001],
                     (("keep_some", KEEP), ("worker", CALL_WORKER)): [5, 5 * 4001]},
             "leaks: keep_some's blocks, by caller (the main thread's and the "
             "thread's), exactly")
        sites = {}
        for g in m["top_by_calls"]:
            k = py_frames(g["stack"])
            if k and k[0][0] == "churn":
                sites[k] = sites.get(k, 0) + g["calls"]
        t.eq(sites, {(("churn", CHURN), ("<module>", CALL_CHURN)): 50},
             "allocation sites: churn's 50 calls")
        placed = set()
        for s in all_stacks(rep):
            idx = [i for i, x in enumerate(s) if x.get("file") == APP]
            if idx and idx[-1] + 1 < len(s):
                placed.add(s[idx[-1] + 1].get("function"))
        t.eq(placed, {"_PyEval_EvalFrameDefault"},
             "the script's frames sit inside the eval loop's machine frame")
        log = [f for f in rep["io"]["files"] if f["path"].endswith("log.txt")]
        ws = [py_frames(s["frames"]) for f in log for s in f["stacks"]]
        t.ok(ws and all(x and x[0][0] == "write_log" and x[-1] == ("<module>", CALL_WRITE)
                        for x in ws),
             "log.txt's I/O stacks: write_log, called from its line", ws)
        r = run([PY, APP, d], d, prof={"PYTHON": "0"})
        t.eq((r.rc, r.err), (0, ""), "PYTHON=0: runs")
        rep = analyze(r.traces, extra=["--top", "1000"])
        t.eq([py_frames(s) for s in all_stacks(rep) if py_frames(s)], [],
             "PYTHON=0: no stack holds a frame of the script")
        t.ok(any(g["blocks"] == 37 for g in rep["memory"]["leaks"]),
             "PYTHON=0: keep_some's 37 blocks are still one leak group")
t.done()
