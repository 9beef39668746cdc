# SPDX-License-Identifier: MIT
"""kprof's own stack unwinder (preload/unwind.c) against libunwind.

1. KOTOBA_PROFILE_UNWIND=verify takes every stack both ways and prints, per
   process, "unwind verify: N stacks compared, M differ, K the fast unwinder
   left to libunwind". Over the test apps (alloc_bench, the C++ app, the
   threaded leak apps, forkstorm's processes, unwindcases also built
   without PIE) and programs no one here wrote (python3,
   the sqlite3 CLI, gcc -c with its cc1 and as): no stack differs, and the
   fast unwinder handles nearly all of them itself. The stacks a remembered
   walk names (I/O calls, python3's queries from several call paths) are
   walked again and agree.
2. unwindcases' signal-handler stacks are left to libunwind (the kernel's
   signal frame is beyond the fast unwinder), and still agree.
3. The default (fast) and KOTOBA_PROFILE_UNWIND=libunwind give the same leak
   reports (functions, files, lines of every frame) for the deterministic
   apps leaky and unwindcases, and the header records the mode.
4. An allocation hook's walk starts at the hook's frame and stops at the
   stack depth: under verify at depths 1, 4 and 6 too; and unwindcases'
   four threads, alternating two call paths that share their outer frames
   at changing depths of recursion through every allocation function, have
   exactly the stacks they took (folded allocation stacks).
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
SUMMARY = re.compile(r"^kprof: unwind verify: (\d+) stacks compared, (\d+) differ, "
                     r"(\d+) the fast unwinder left to libunwind$")
MAX_FALLBACK_SHARE = 0.01  # of the stacks, per program

PY_SCRIPT = r"""
import json, re, threading, decimal, sqlite3, xml.etree.ElementTree as ET
def work(k):
    d = {str(i): [i] * (i % 5) for i in range(3000)}
    s = json.dumps(d)
    assert json.loads(s) == d
    sum(decimal.Decimal(i) / 7 for i in range(2000))
ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]
[x.start() for x in ts]
[x.join() for x in ts]
c = sqlite3.connect(":memory:")
c.execute("create table t(a)")
c.executemany("insert into t values(?)", [(i,) for i in range(2000)])
print(c.execute("select sum(a) from t").fetchone()[0],
      len(ET.tostring(ET.fromstring("<a>" + "<b>x</b>" * 500 + "</a>"))))
"""
SQL = ("create table t(a, b);\n"
       "with recursive c(x) as (select 1 union all select x + 1 from c where x < 2000)\n"
       "insert into t select x, printf('row%d', x) from c;\n"
       "select count(*), max(b) from t;\n")


def summaries(err):
    """The verify summary lines of stderr: [(compared, differ, fallback)]."""
    out = []
    for line in err.splitlines():
        m = SUMMARY.match(line)
        if m:
            out.append(tuple(int(g) for g in m.groups()))
    return out


def check_verify(name, r, nproc=1, min_stacks=1, min_fallback=0,
                 max_share=MAX_FALLBACK_SHARE):
    t.eq(r.rc, 0, "%s: exits 0 under verify" % name, r.err[-2000:])
    s = summaries(r.err)
    t.eq(len(s), nproc, "%s: one verify summary per process" % name, r.err[-2000:])
    compared = sum(c for c, _, _ in s)
    differ = sum(d for _, d, _ in s)
    fallback = sum(f for _, _, f in s)
    t.diag("%s: %d stacks compared, %d differ, %d left to libunwind"
           % (name, compared, differ, fallback))
    t.eq(differ, 0, "%s: the fast unwinder and libunwind agree on every stack" % name,
         "\n".join(l for l in r.err.splitlines() if "unwind verify" in l)[:3000])
    t.ge(compared, min_stacks, "%s: at least %d stacks compared" % (name, min_stacks))
    t.ge(fallback, min_fallback, "%s: at least %d stacks left to libunwind"
         % (name, min_fallback))
    t.le(fallback, max_share * (compared + fallback),
         "%s: at most %.0f%% of the stacks left to libunwind" % (name, 100 * max_share))


VERIFY = {"UNWIND": "verify"}

with t.section("verify: test apps"):
    with Tmp() as d:
        for name, cmd, nmin in (("alloc_bench", [app("alloc_bench"), "2", "20000"], 40000),
                                ("cxxnew", [app("cxxnew")], 2000),
                                ("leaky", [app("leaky"), "quiet"], 10000),
                                ("storm", [app("storm")], 100000),
                                ("threadchurn", [app("threadchurn")], 100000)):
            r = run(cmd, d, prof=VERIFY, timeout=300)
            check_verify(name, r, min_stacks=nmin)
        # forked children count their own stacks (each prints its summary)
        r = run([app("forkstorm")], d, prof=VERIFY, timeout=300)
        t.ge(len(r.traces), 10, "forkstorm: a trace per process")
        check_verify("forkstorm", r, nproc=len(r.traces), min_stacks=10000)
        # the parent takes ~700 k stacks, each child ~1 k of its own
        big = sorted(c for c, _, _ in summaries(r.err) if c >= 10000)
        t.eq(len(big), 1, "forkstorm: a child's summary does not repeat its "
             "parent's count", big)

# I/O stacks go through the thread's two remembered walks (unwind.c,
# kp_unwind_memo; stacktab.c, kp_stack_capture_memo); under verify each
# stack they name is checked against a walk and interning: two call paths
# at the same depth in turn, a loop, and three sites in turn (a write, a
# read and an lseek: more than the two memos hold)
with t.section("verify: remembered walks (I/O)"):
    with Tmp() as d:
        r = run([app("io_known"), d, "paths", "3000"], d, prof=VERIFY)
        check_verify("io_known paths", r, min_stacks=3000)
        recs = [x for x in dump(r.traces) if x["type"] == "io" and
                x["kind"] == 1 and x["v"][0] > 2]  # the writes
        t.eq(len(set(x["stack"] for x in recs)), 2,
             "io_known paths: the writes have two stacks", len(recs))
        r = run([app("io_known"), d, "small", "3000"], d, prof=VERIFY)
        check_verify("io_known small", r, min_stacks=3000)
        r = run([app("io_known"), d, "calls", "1000"], d, prof=VERIFY)
        check_verify("io_known calls", r, min_stacks=3000)

with t.section("verify: unwindcases (signal frames go to libunwind)"):
    with Tmp() as d:
        for name in ("unwindcases", "unwindcases_nopie"):
            r = run([app(name)], d, prof=VERIFY)
            # 2 stacks through the signal frame; 2 of ~6800 is 0.03 %;
            # 4 x 1200 allocations through path_x/path_y on four threads
            check_verify(name, r, min_stacks=6800, min_fallback=2)
        # the allocation hooks' walk stops at the depth: the stacks cut
        # there are libunwind's first frames too
        # (at depth 1 the signal handler's stack ends before the kernel's
        # frame: nothing is left to libunwind)
        for depth, nfall in (("1", 0), ("4", 2)):
            r = run([app("unwindcases")], d,
                    prof=dict(VERIFY, STACK_DEPTH=depth))
            check_verify("unwindcases, depth %s" % depth, r,
                         min_stacks=6800, min_fallback=nfall)
        r = run([app("alloc_bench"), "2", "5000"], d,
                prof=dict(VERIFY, STACK_DEPTH="6"))
        check_verify("alloc_bench, depth 6", r, min_stacks=10000)

with t.section("unwindcases: call paths that share their outer frames"):
    # each (thread, path, depth, leaf) that paths() takes is a stack of its
    # own, and no other stack goes through path_x or path_y
    want = set()
    for k in range(4):
        root = "main" if k == 0 else "start_thread"
        for i in range(1200):
            dep = (i * 7 + k) % 13
            path, how = ("path_x", i) if i % 3 else ("path_y", i // 3)
            want.add((root, path, dep + 1, "leaf_a" if how & 1 else "leaf_b"))
    with Tmp() as d:
        r = run([app("unwindcases")], d)
        t.eq(r.rc, 0, "unwindcases runs", r.err[-2000:])
        rc, out, err = analyze_raw(["flame", "--folded", "--what", "alloc"] + r.traces)
        t.eq(rc, 0, "unwindcases: folded allocation stacks", err[-1000:])
        have, other = set(), []
        for line in out.splitlines():
            fr = line.rsplit(" ", 1)[0].split(";")
            if "path_x" not in fr and "path_y" not in fr:
                continue
            i = fr.index("paths")
            m = re.match(r"^(path_[xy])((?:;shared)+);(leaf_[ab]);alloc_by$",
                         ";".join(fr[i + 1:]))
            if not m or fr[i - 1] not in ("main", "start_thread"):
                other.append(line)
                continue
            have.add((fr[i - 1], m.group(1), m.group(2).count(";"), m.group(3)))
        t.eq(other, [], "unwindcases: every stack through path_x/path_y is "
             "paths, the path, shared's recursion, a leaf, alloc_by")
        t.eq(sorted(have ^ want), [], "unwindcases: the stacks are those the "
             "threads took (%d)" % len(want))


with t.section("verify: python3"):
    with Tmp() as d:
        plain = run_plain([PY, "-c", PY_SCRIPT], d)
        r = run([PY, "-c", PY_SCRIPT], d, prof=VERIFY, timeout=300)
        t.eq(r.out, plain.out, "python3: same output as without kprof")
        check_verify("python3", r, min_stacks=5000)

# A statement's QUERY stack goes through its remembered walk too (deep
# machine stacks of an interpreter built without frame pointers: checks
# of the return addresses, and of the saved rbp only where a later step
# depends on it): one statement run from a loop, through map() and
# sorted()'s key (C frames between), the two in turn, and from two lines
# of one loop in runs of two, which only the outer frame's instruction
# tells apart (the statement remembers its Python frames too); every
# stack the memo names is walked again under verify (a check that
# accepted any machine stack gave 2 of ~8,500 wrong here, one that
# compared only the innermost Python frame's instruction 500 of ~16,000).
PY_QUERIES = r"""
import sqlite3
c = sqlite3.connect(":memory:")
c.execute("create table t(k primary key, v)")
c.executemany("insert into t values (?, ?)", [(i, str(i)) for i in range(500)])
def q(i):
    return c.execute("select v from t where k = ?", (i % 500,)).fetchone()[0]
n = sum(len(q(i)) for i in range(2000))
n += sum(map(len, map(q, range(2000))))
n += len(sorted(range(2000), key=q))
for i in range(1000):
    n += len(q(i)) + len(list(map(q, [i]))[0])
for i in range(1000):
    if i % 4 < 2:
        n += len(q(i))
    else:
        n += len(q(i + 1))
print(n)
"""

with t.section("verify: remembered walks (python3's queries)"):
    with Tmp() as d:
        r = run([PY, "-c", PY_QUERIES], d,
                prof=dict(VERIFY, MEMORY="0", IO="0"), timeout=300)
        t.eq(r.out, "21458\n", "python3 queries: the script's result")
        check_verify("python3 queries", r, min_stacks=8000)

with t.section("verify: sqlite3 CLI"):
    need("sqlite3")
    with Tmp() as d:
        r = run(["sqlite3", "v.db"], d, prof=VERIFY, stdin=SQL, timeout=300)
        t.eq(r.out, "2000|row999\n", "sqlite3: the query's result")
        check_verify("sqlite3", r, min_stacks=1000)

with t.section("verify: gcc -c"):
    gcc = need("gcc")
    with Tmp() as d:
        with open(os.path.join(d, "x.c"), "w") as f:
            f.write("#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }\n")
        r = run([gcc, "-O2", "-c", "x.c", "-o", "x.o"], d, prof=VERIFY, timeout=300)
        # gcc, cc1 and as: one summary each
        check_verify("gcc -c", r, nproc=3, min_stacks=1000)


def leak_stacks(rep):
    return [(l["bytes"], l["blocks"],
             [(f.get("function"), f.get("file"), f.get("line")) for f in l.get("stack") or []])
            for l in rep["memory"]["leaks"]]


with t.section("fast and libunwind give the same reports"):
    with Tmp() as d:
        for name, cmd in (("leaky", [app("leaky"), "quiet"]),
                          ("unwindcases", [app("unwindcases")])):
            reps = {}
            for mode in ("fast", "libunwind"):
                r = run(cmd, d, prof={"UNWIND": mode})
                t.eq((r.rc, r.err, len(r.traces)), (0, "", 1),
                     "%s, UNWIND=%s: runs, one trace, nothing on stderr" % (name, mode))
                h = trace_header(r.traces[0])
                t.eq(h.get("config", {}).get("unwind"), mode,
                     "%s, UNWIND=%s: the header records it" % (name, mode))
                reps[mode] = analyze(r.traces)
            a, b = leak_stacks(reps["fast"]), leak_stacks(reps["libunwind"])
            t.ok(len(a) >= 3 and all(len(s) >= 3 for _, _, s in a),
                 "%s: leaks with stacks of 3 frames or more" % name, a)
            t.eq(a, b, "%s: the same leaks with the same stacks, frame by frame" % name)
            ma, mb = reps["fast"]["memory"], reps["libunwind"]["memory"]
            t.eq(normalize(ma["top_by_calls"]), normalize(mb["top_by_calls"]),
                 "%s: the same allocation sites by calls" % name)

t.done()
