# SPDX-License-Identifier: MIT
"""kprof-analyze diff --base BASE NEW: two runs of tests/apps/diffapp.c
(N = 5, then 12) compared: the heap totals' change, and exactly the sites
that changed, matched by their symbolized frames (a grown leak, a busier
loop, a site only in the new run, one gone), the unchanged one left out;
the text report; usage errors and an unreadable base. Then two runs of a
loop of SQLite point selects (100, then 300): the query fingerprints of
both, matched by text, with their calls and times. Then a file written and
synced 5, 20 and 3 times: matched by base name across directories, and by
path. Then CPU samples of three times the work: the hot functions' self
time, the most grown first.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
FUNCS = ("grow_leak", "churn", "stable", "only_new", "only_base")


def own(site):
    """The diffapp function a site's stack goes through, or None."""
    for fn in FUNCS:
        if stack_has(site["stack"], fn):
            return fn
    return None


with Tmp() as d:
    runs = {}
    for name, n in (("base", "5"), ("new", "12")):
        r = run([app("diffapp"), n], d, prof={"OUTPUT": os.path.join(d, name + ".kpz")})
        t.eq((r.rc, len(r.traces)), (0, 1), "diffapp %s runs under kprof" % n, r)
        runs[name] = r.traces[0] if r.traces else None
    base, new = runs["base"], runs["new"]

    rep = analyze([new], extra=["diff", "--base", base], schema="kprof-diff/1")
    t.eq((rep["base_files"], rep["new_files"]), ([base], [new]), "diff: the files")
    m = rep["memory"]
    t.eq(m["new"]["alloc_calls"] - m["base"]["alloc_calls"], 7 + 70 + 1 - 2,
         "diff: 76 more allocation calls (7 leaks, 70 in the loop, 1 new, "
         "2 gone)", m)
    t.eq(m["new"]["in_use_at_exit_bytes"] - m["base"]["in_use_at_exit_bytes"],
         700 + 77 - 198, "diff: in use at exit +579 bytes", m)
    got = {}
    for s in m["sites"]:
        fn = own(s)
        if fn:
            got[fn] = (s["base"], s["new"])
    want = {
        "grow_leak": ({"calls": 5, "bytes": 500, "leaked_bytes": 500, "leaked_blocks": 5},
                      {"calls": 12, "bytes": 1200, "leaked_bytes": 1200, "leaked_blocks": 12}),
        "churn": ({"calls": 50, "bytes": 3200, "leaked_bytes": 0, "leaked_blocks": 0},
                  {"calls": 120, "bytes": 7680, "leaked_bytes": 0, "leaked_blocks": 0}),
        "only_new": ({"calls": 0, "bytes": 0, "leaked_bytes": 0, "leaked_blocks": 0},
                     {"calls": 1, "bytes": 77, "leaked_bytes": 77, "leaked_blocks": 1}),
        "only_base": ({"calls": 2, "bytes": 198, "leaked_bytes": 198, "leaked_blocks": 2},
                      {"calls": 0, "bytes": 0, "leaked_bytes": 0, "leaked_blocks": 0}),
    }
    t.eq(got, want, "diff: exactly the four sites that changed, matched "
         "across the runs (stable's, unchanged, left out)")
    t.eq(len(m["sites"]), len(got), "diff: no other site changed",
         [s["stack"][:2] for s in m["sites"] if not own(s)])

    out = analyze([new], fmt="text", extra=["diff", "--base", base])
    t.ok("+700 bytes in +7 calls: 500 -> 1,200 bytes, 5 -> 12 calls" in out and
         "at keep (diffapp.c:" in out and "by grow_leak (diffapp.c:" in out,
         "diff text: the grown leak with its stack", out)
    t.ok("+77 bytes in +1 call (new site)" in out and
         "-198 bytes in -2 calls (gone)" in out,
         "diff text: a new site and a gone one", out)
    t.ok("LEAKS THAT CHANGED, the most bytes first (3 of 5 sites)" in out,
         "diff text: three leaks changed (grow_leak, only_new, only_base)", out)

    same = analyze([base], extra=["diff", "--base", base], schema="kprof-diff/1")
    t.eq(same["queries"]["fingerprints"], [], "diff: no queries, none listed")

    # queries: the same point-select loop, 100 then 300 times
    q = {}
    for n in ("100", "300"):
        r = run([app("sqlite_bench"), n], d,
                prof={"OUTPUT": os.path.join(d, "q%s.kpz" % n), "MEMORY": "0"})
        t.eq((r.rc, len(r.traces)), (0, 1), "sqlite_bench %s runs under kprof" % n, r)
        q[n] = r.traces[0] if r.traces else None
    rep = analyze([q["300"]], extra=["diff", "--base", q["100"]], schema="kprof-diff/1")
    fps = {f["fingerprint"]: (f["base"]["calls"], f["new"]["calls"])
           for f in rep["queries"]["fingerprints"]}
    t.eq(fps.get("select v from t where id = ?"), (100, 300),
         "diff: the point select's calls, 100 -> 300", fps)
    t.eq(sorted(set(v for k, v in fps.items() if k != "select v from t where id = ?")),
         [(1, 1)], "diff: the set-up statements once in each run", fps)
    t.eq(len(fps), 7, "diff: the 7 fingerprints of both runs, matched", fps)
    out = analyze([q["300"]], fmt="text", extra=["diff", "--base", q["100"]])
    # the time may change by ns, and either way: the base run's 100
    # selects, cold, took 222 us once where the 300 took 226
    t.ok(re.search(r"[-+][0-9.]+ [nmu]?s in all, \+200 calls: 100 -> 300 calls, .*\n"
                   r" +select v from t where id = \?\n", out),
         "diff text: the select's change in time and calls, with its fingerprint",
         out[out.find("QUERIES"):])
    t.eq(same["memory"]["sites"], [], "diff of a trace with itself: nothing changed")

    # I/O: a file written K times with an fsync after each, K = 5 in one
    # directory, then 20 in another (matched by base name) and 3 in the
    # first (matched by path)
    script = ("import os, sys\n"
              "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
              "for i in range(int(sys.argv[2])):\n"
              "    os.write(fd, b'x' * 100)\n"
              "    os.fsync(fd)\n"
              "os.close(fd)\n")
    w = {}
    for name, sub, k in (("w5", "r1", "5"), ("w20", "r2", "20"), ("w3", "r1", "3")):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        r = run([PY, "-c", script, os.path.join(d, sub, "data.bin"), k], d,
                prof={"OUTPUT": os.path.join(d, name + ".kpz")})
        t.eq((r.rc, len(r.traces)), (0, 1), "%s: python3 writes and syncs" % name, r)
        w[name] = r.traces[0] if r.traces else None

    def data_file(base, new):
        rep = analyze([new], extra=["diff", "--base", base], schema="kprof-diff/1")
        got = [f for f in rep["io"]["files"] if f["path"].endswith("/data.bin")]
        return got[0] if len(got) == 1 else got
    f = data_file(w["w5"], w["w20"])
    t.eq((f["base_path"], f["path"]) if isinstance(f, dict) else f,
         (os.path.join(d, "r1", "data.bin"), os.path.join(d, "r2", "data.bin")),
         "diff io: the file in another directory matched by its base name")
    want = lambda k: {"calls": 2 * k + 2, "bytes_read": 0, "bytes_written": 100 * k,  # noqa: E731
                      "syncs": k}
    strip = lambda x: {k: v for k, v in x.items() if k != "total_ns"}  # noqa: E731
    if isinstance(f, dict):
        t.eq((strip(f["base"]), strip(f["new"])), (want(5), want(20)),
             "diff io: open, K writes, K fsyncs, close; 100 x K bytes; K syncs")
    f = data_file(w["w5"], w["w3"])
    t.eq((f["base_path"], f["path"], strip(f["base"]), strip(f["new"]))
         if isinstance(f, dict) else f,
         (os.path.join(d, "r1", "data.bin"), os.path.join(d, "r1", "data.bin"),
          want(5), want(3)), "diff io: the same path matched as such")
    out = analyze([w["w20"]], fmt="text", extra=["diff", "--base", w["w5"]])
    t.ok(re.search(r"in all, \+30 calls: 12 -> 42 calls, .*, 5 -> 20 syncs\n +" +
                   re.escape(os.path.join(d, "r2", "data.bin")) + r"\n +\(was " +
                   re.escape(os.path.join(d, "r1", "data.bin")) + r"\)", out),
         "diff text: the file's change, its path and the path it was matched with",
         out[out.find("I/O BY FILE"):][:1500])

    # CPU: cpuwork's 60/30/10 % split of 6,000 and then 18,000 work units
    c = {}
    for units in ("6000", "18000"):
        r = run([app("cpuwork"), "split", units], d,
                prof={"OUTPUT": os.path.join(d, "c%s.kpz" % units), "CPU": "1",
                      "CPU_HZ": "1000", "MEMORY": "0"}, timeout=120)
        t.eq((r.rc, len(r.traces)), (0, 1), "cpuwork split %s, sampled" % units, r)
        c[units] = r.traces[0] if r.traces else None
    rep = analyze([c["18000"]], extra=["diff", "--base", c["6000"]], schema="kprof-diff/1")
    fns = rep["cpu"]["functions"]
    by = {f["function"]: f for f in fns}
    t.eq([f["function"] for f in fns[:2]], ["hot_a", "hot_b"],
         "diff cpu: hot_a's self time grew most, then hot_b's",
         [(f["function"], f["base"], f["new"]) for f in fns[:5]])
    # The CPU time a unit of work takes moves with what else runs on the
    # machine (the core's other hyperthread, its caches): with apt-get
    # busy beside the suite hot_a's ratio came out 1.88, and hot_c's 10 %
    # is ~20 samples in the base run, so its ratio moves more again. A
    # diff read the wrong way round would give ~0.33.
    t.ok(all(fn in by and by[fn]["new"]["self_ns"] > lo * by[fn]["base"]["self_ns"] > 0
             for fn, lo in (("hot_a", 1.6), ("hot_b", 1.6), ("hot_c", 1.3))),
         "diff cpu: three times the work, more than 1.6 times the self "
         "time in hot_a and hot_b, 1.3 times in hot_c",
         [(fn, by.get(fn)) for fn in ("hot_a", "hot_b", "hot_c")])
    out = analyze([c["18000"]], fmt="text", extra=["diff", "--base", c["6000"]])
    t.ok(re.search(r"CPU BY FUNCTION, the largest change in self time first "
                   r"\(\d+ functions\)\n +1\. \+[0-9.]+ [mu]?s self, .*\n +hot_a\n", out),
         "diff text: the CPU section, hot_a first", out[out.find("CPU BY"):][:600])

    # The advice of both runs, by code and subject: diffapp 2000 leaks
    # 2000 x 100 bytes from grow_leak (a finding of its own, high) and
    # churns 20,000 temporary blocks (MEM02); 5 leaks 500 bytes among the
    # other leaks, as 2000 does stable's and only_new's. --fail-on: the
    # new findings decide, 4 when one is at the severity or above.
    big = os.path.join(d, "big.kpz")
    r = run([app("diffapp"), "2000"], d, prof={"OUTPUT": big})
    rep = analyze([big], extra=["diff", "--base", base], schema="kprof-diff/1")
    a = rep["advice"]
    t.eq(([(x["code"], x["severity"], x["key"].split(" < ")[1]) for x in a["new"]],
          a["gone"], a["both"]),
         ([("MEM01", "high", "grow_leak (diffapp.c:24)"),
           ("MEM02", "info", "main (diffapp.c:58)")], [], 1),
         "diff advice: grow_leak's leak and churn's temporaries are new, the "
         "other leaks in both", a)
    out = analyze([big], fmt="text", extra=["diff", "--base", base])
    t.ok("ADVICE THAT CHANGED: 2 new, 0 gone, 1 in both\n"
         "  new  [high] MEM01 leak: 195.3 KiB in 2,000 blocks at keep (diffapp.c:16)\n"
         in out, "diff text: the advice that changed", out[out.find("ADVICE"):])
    for args, rc in ((["--fail-on", "high", "--base", base, big], 4),
                     (["--fail-on", "high", "--base", big, base], 0),
                     (["--fail-on", "info", "--base", big, base], 0)):
        p = subprocess.run([ANALYZE, "diff"] + args, capture_output=True, text=True)
        t.eq(p.returncode, rc, "diff %s: exit %d (new findings only)"
             % (" ".join(args[:2]), rc), p.stderr)

    for args, code, what in (
            (["diff", new], 2, "diff without --base"),
            (["--base", base, new], 2, "--base without diff"),
            (["diff", "--base", os.path.join(d, "nope.kpz"), new], 3,
             "an unreadable base")):
        p = subprocess.run([ANALYZE] + args, capture_output=True, text=True)
        t.eq(p.returncode, code, "%s: exit status %d" % (what, code), p.stderr)
        # a usage error adds the line pointing to --help
        t.ok(p.stderr.startswith("kprof-analyze: ") and
             p.stderr.count("\n") == (2 if code == 2 else 1),
             "%s: says so on stderr" % what, p.stderr)
t.done()
