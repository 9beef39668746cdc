# SPDX-License-Identifier: MIT
"""Real programs nobody here wrote run unchanged under kprof and give sane
reports (issue #2 test 8): python3, the sqlite3 CLI, gcc -c (which spawns
cc1 and as: several traces, merged), git init/add/commit.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()

# Python's small objects come from pymalloc arenas (mmap), not malloc:
# strings over 512 bytes do go to malloc, one call each.
PY_SCRIPT = r'''
import json, collections
d = {}
for i in range(20000):
    d["key%d" % i] = [i, str(i) * 3, {"x": i}, ("s%d" % i) * 200]
c = collections.Counter(len(v[1]) for v in d.values())
print(len(d), sorted(c.items())[:3])
print(json.dumps({"n": len(json.dumps(d))}, sort_keys=True))
'''


def check_traces(name, traces, nproc=None):
    """Every trace readable alone, and all merged; return the merged report."""
    for f in traces:
        rc, out, err = analyze_raw(["--format", "json", f])
        t.ok(rc == 0, "%s: %s is readable" % (name, os.path.basename(f)),
             "kprof-analyze exit status %d; stderr: %s" % (rc, err))
    rep = analyze(traces)
    t.eq(len(rep["trace"]["processes"]), len(traces),
         "%s: merged report has one process per trace" % name)
    if nproc is not None:
        t.ge(len(traces), nproc, "%s: at least %d traces" % (name, nproc))
    t.eq(rep["trace"]["truncated"], False, "%s: nothing truncated" % name)
    t.eq(rep["trace"]["events_lost"], 0, "%s: no events lost" % name)
    return rep


with t.section("python3"):
    with Tmp() as d:
        with open(os.path.join(d, "s.py"), "w") as f:
            f.write(PY_SCRIPT)
        plain = run_plain([PY, "s.py"], d)
        r = run([PY, "s.py"], d)
        t.eq((r.rc, r.out), (plain.rc, plain.out), "python3: same stdout and exit status")
        t.eq(r.err, plain.err, "python3: same stderr (kprof says nothing)")
        t.eq(len(r.traces), 1, "python3: one trace")
        rep = check_traces("python3", r.traces)
        m = rep["memory"]
        t.ge(m["alloc_calls"], 10000, "python3: alloc_calls > 10000")
        t.ge(m["free_calls"], 5000, "python3: many frees")
        t.eq(rep["trace"]["processes"][0]["end_reason"], "exit", "python3: ends with exit")
        t.ok(m["in_use_at_exit"]["bytes"] <= m["bytes_allocated"],
             "python3: in use <= allocated", m["in_use_at_exit"])

with t.section("sqlite3"):
    need("sqlite3")
    with Tmp() as d:
        sql = ("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);\n"
               "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<1000)\n"
               "INSERT INTO t(name, v) SELECT 'row' || x, x * 0.5 FROM c;\n"
               "SELECT count(*), sum(v), max(name) FROM t;\n")
        plain = run_plain(["sqlite3", "plain.db"], d, stdin=sql)
        r = run(["sqlite3", "traced.db"], d, stdin=sql)
        t.eq((r.rc, r.out, r.err), (plain.rc, plain.out, plain.err),
             "sqlite3: same output and exit status")
        t.eq(r.out, "1000|250250.0|row999\n", "sqlite3: inserted 1000 rows")
        rep = check_traces("sqlite3", r.traces)
        t.ge(rep["memory"]["alloc_calls"], 1000, "sqlite3: allocations recorded")

with t.section("gcc -c"):
    gcc = need("gcc")
    with Tmp() as d:
        with open(os.path.join(d, "x.c"), "w") as f:
            f.write("#include <stdio.h>\nstatic int sq(int x) { return x * x; }\n"
                    "int main(void) { printf(\"%d\\n\", sq(7)); return 0; }\n")
        plain = run_plain([gcc, "-O2", "-c", "x.c", "-o", "plain.o"], d)
        t.eq(plain.rc, 0, "gcc: compiles without kprof", plain.err)
        r = run([gcc, "-O2", "-c", "x.c", "-o", "traced.o"], d)
        t.eq((r.rc, r.err), (0, ""), "gcc: compiles under kprof, nothing on stderr")
        with open(os.path.join(d, "plain.o"), "rb") as a, open(os.path.join(d, "traced.o"), "rb") as b:
            t.ok(a.read() == b.read(), "gcc: the same .o, byte for byte")
        rep = check_traces("gcc", r.traces, nproc=3)
        exes = sorted(os.path.basename(p["exe"] or "") for p in rep["trace"]["processes"])
        # Debian: /usr/bin/x86_64-linux-gnu-gcc-12, .../cc1, /usr/bin/x86_64-linux-gnu-as
        t.ok("cc1" in exes and any(e == "as" or e.endswith("-as") for e in exes) and
             any("gcc" in e for e in exes),
             "gcc: traces of gcc, cc1 and as", exes)
        gp = [p for p in rep["trace"]["processes"] if p["pid"] == r.pid]
        kids = [p for p in rep["trace"]["processes"] if p["ppid"] == r.pid]
        t.ok(len(gp) == 1 and len(kids) >= 2, "gcc: cc1 and as are children of gcc",
             [(p["pid"], p["ppid"], p["exe"]) for p in rep["trace"]["processes"]])

with t.section("git"):
    git = need("git")
    with Tmp() as d:
        env = {"HOME": d, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "T",
               "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "T",
               "GIT_COMMITTER_EMAIL": "t@example.com"}
        repo = os.path.join(d, "r")
        os.mkdir(repo)
        traces = []
        for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "first"]):
            if cmd[0] == "add":
                for i in range(20):
                    with open(os.path.join(repo, "f%d.txt" % i), "w") as f:
                        f.write("line %d\n" % i * (i + 1))
            # traces go beside the work tree, not into it
            r = run([git] + cmd, repo, env=env, trace_dir=d,
                    prof={"OUTPUT": os.path.join(d, "kprof.%p.kpz")})
            t.eq((r.rc, r.err), (0, ""), "git %s: exit 0, nothing on stderr" % cmd[0])
            t.ge(len(r.traces), 1, "git %s: traced" % cmd[0])
            traces += r.traces
        # check the commit without kprof
        p = run_plain([git, "log", "--format=%s"], repo, env=env)
        t.eq(p.out, "first\n", "git: the commit is there")
        p = run_plain([git, "ls-files"], repo, env=env)
        t.eq(sorted(p.out.split()), sorted("f%d.txt" % i for i in range(20)),
             "git: the 20 files are committed")
        check_traces("git", traces)

t.done()
