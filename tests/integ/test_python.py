# SPDX-License-Identifier: MIT
"""python3.11's own frames in allocation, I/O and CPU-sample stacks
(preload/pystack.c): tests/integ/py_frames.py keeps 37 + 5 (in a thread)
bytearrays from keep_some(), makes and drops 50 from churn() and writes a
file from write_log(); the leak groups, the allocation sites and the
file's I/O stacks must name those functions and lines (found in the script
by their markers), inside the eval loop's machine frame. py_cpu.py spends
its time in hot(), called from a generator in warm(): the CPU samples must
say so. With KOTOBA_PROFILE_PYTHON=0 no stack holds a Python frame.
(Query stacks: test_query_sqlite.py.)
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
CPU_APP = os.path.join(SRC, "tests", "integ", "py_cpu.py")
CPU_LINES = open(CPU_APP).read().splitlines()
HOT = [i + 1 for i, s in enumerate(CPU_LINES) if "# HOT" in s][0]

with t.section("CPU samples hold the script's frames"):
    with Tmp() as d:
        r = run([PY, CPU_APP, "200"], d, prof={"CPU": "1", "CPU_HZ": "1000"})
        t.eq((r.rc, r.out, r.err), (0, "True\n", ""), "runs under kprof, sampled")
        cpu = analyze(r.traces)["cpu"]
        fn = {f["function"]: f for f in cpu["functions"]}
        t.ok(fn.get("hot", {}).get("total_share", 0) >= 0.5,
             "hot() has most of the CPU time (%d samples)" % cpu["samples"],
             sorted((f["total_share"], f["function"]) for f in cpu["functions"])[-5:])
        chains = {}
        for s in cpu["stacks"]:
            py = [(x.get("function"), x.get("line")) for x in s["stack"]
                  if x.get("file") == CPU_APP]
            if py and py[0][0] == "hot":
                k = tuple(f for f, _ in py)
                chains[k] = chains.get(k, 0) + s["samples"]
        # a sample that came while its thread was naming a new place
        # (holding the lock) has nameless frames: allow a few such
        want = ("hot", "warm.<locals>.<genexpr>", "warm", "<module>")
        t.ok(chains.get(want, 0) >= 0.9 * sum(chains.values()) > 0,
             "hot's samples: called from the generator in warm, from the module",
             chains)
        lines = {x.get("line") for s in cpu["stacks"] for x in s["stack"][:3]
                 if x.get("file") == CPU_APP and x.get("function") == "hot"}
        t.ok(lines and lines <= set(range(HOT - 2, HOT + 2)),
             "hot's samples are on its lines (%d-%d)" % (HOT - 2, HOT + 1), lines)
        r = run([PY, CPU_APP, "20"], d, prof={"CPU": "1", "PYTHON": "0"})
        t.eq(r.rc, 0, "PYTHON=0: runs")
        cpu = analyze(r.traces)["cpu"]
        t.ok(cpu["samples"] > 0 and not any(f["function"] == "hot"
                                            for f in cpu["functions"]),
             "PYTHON=0: the samples name no function of the script")
t.done()
