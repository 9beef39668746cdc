# SPDX-License-Identifier: MIT
"""The leak scan at exit (KOTOBA_PROFILE_LEAK_SCAN, preload/leakscan.c).

tests/apps/leakreach.c leaves blocks in use in every class valgrind's leak
check knows: its own comment lists them. Checked here:
- the classes, per leak group (by the function that allocated) and in
  all, exactly; the confidence they give; the text report's summary;
- the same numbers from valgrind --leak-check=full --run-libc-freeres=no
  (freeres would free glibc's blocks that kprof sees in use), on
  leakreach and on real programs (sqlite3, perl, python3 with its sqlite3
  module): the blocks of each class equal, and the bytes but where kprof
  makes a block larger (a thread's DTV has a slot per module with TLS,
  and kprof's libraries add some);
- a return from main, _exit, a thread still running at exit (its stack is
  read);
- not asked: no scan, no reachability; a fork child: not run, and said so.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
SCAN = {"LEAK_SCAN": "1"}
CLASSES = ("definitely_lost", "indirectly_lost", "possibly_lost",
           "still_reachable")


def vg_summary(cmd, d):
    """valgrind's LEAK SUMMARY: {class: (bytes, blocks)}, and its stderr."""
    vg = need("valgrind")
    p = subprocess.run([vg, "--leak-check=full", "--run-libc-freeres=no",
                        "--run-cxx-freeres=no", "--num-callers=30"] + cmd,
                       cwd=d, env=clean_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300)
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise Fail("valgrind %s exited %d:\n%s" % (cmd, p.returncode, err[-3000:]))
    r = {}
    for c in CLASSES:
        m = re.search(r"%s: ([\d,]+) bytes in ([\d,]+) blocks" % c.replace("_", " "), err)
        if not m:
            if "All heap blocks were freed" in err:
                r[c] = (0, 0)
                continue
            raise Fail("no '%s' in valgrind's LEAK SUMMARY:\n%s" % (c, err[-3000:]))
        r[c] = (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")))
    return r, err


def scanned(cmd, d, env=None, want_rc=0):
    """cmd under kprof with the scan: (result, report, {class: (bytes,
    blocks)})."""
    r = run(cmd, d, prof=SCAN, env=env, timeout=120)
    if r.rc != want_rc:
        raise Fail("%s under kprof exited %d: %s" % (cmd, r.rc, r.err[-2000:]))
    rep = analyze(r.traces)
    ls = rep["memory"]["leak_scan"]
    if not ls:
        raise Fail("no memory.leak_scan in the report of %s" % cmd)
    return r, rep, {c: (ls[c]["bytes"], ls[c]["blocks"]) for c in CLASSES}


def reach_of(rep, fn):
    """The classes of the leak groups fn allocated: {class: (bytes, blocks)}."""
    got = {c: [0, 0] for c in CLASSES}
    for l in leaks_with(rep, fn):
        if not l.get("reachability"):
            raise Fail("leak group of %s without reachability" % fn)
        for c in CLASSES:
            got[c][0] += l["reachability"][c]["bytes"]
            got[c][1] += l["reachability"][c]["blocks"]
    return {c: tuple(v) for c, v in got.items() if v != [0, 0]}


def dtv_bytes(rep):
    """The bytes of the leak group of glibc's DTV (pthread_create)."""
    return sum(l["bytes"] for l in leaks_with(rep, "pthread_create"))


LEAKREACH = {
    "keep_some": {"still_reachable": (428, 5)},
    "lose_plain": {"definitely_lost": (200, 5)},
    "lose_tree": {"definitely_lost": (64, 1), "indirectly_lost": (64, 2)},
    "lose_cycle": {"definitely_lost": (48, 1), "indirectly_lost": (48, 1)},
    "keep_middle": {"possibly_lost": (128, 1)},
    "lose_in_thread": {"definitely_lost": (72, 3)},
}

with t.section("leakreach: each block's class"):
    with Tmp() as d:
        for mode in ([], ["exit"], ["running"]):
            name = "leakreach %s" % (mode[0] if mode else "return")
            r, rep, got = scanned([app("leakreach")] + mode, d)
            for fn, want in sorted(LEAKREACH.items()):
                t.eq(reach_of(rep, fn), want, "%s: %s's blocks" % (name, fn))
            dtv = dtv_bytes(rep)
            extra = (88, 1) if mode == ["running"] else (0, 0)
            t.eq(got, {"definitely_lost": (384, 10),
                       "indirectly_lost": (112, 3),
                       "possibly_lost": (128 + dtv, 2),
                       "still_reachable": (428 + extra[0], 5 + extra[1])},
                 "%s: the sums (the DTV of the thread joined possibly lost)"
                 % name, leak_summary(rep))
            ls = rep["memory"]["leak_scan"]
            t.ok(ls["status"] == "done" and ls["processes_scanned"] == 1 and
                 ls["root_bytes"] > 0 and ls["duration_ns"] > 0,
                 "%s: status done, roots read, time taken" % name, ls)
            if mode == ["running"]:
                t.eq(reach_of(rep, "hold_on_stack"), {"still_reachable": (88, 1)},
                     "a running thread's block held in its stack: still reachable")
        conf = {fn: sorted({l["confidence"] for l in leaks_with(rep, fn)})
                for fn in LEAKREACH}
        t.eq(conf, {"keep_some": ["low", "medium"], "lose_plain": ["high"],
                    "lose_tree": ["high"], "lose_cycle": ["high"],
                    "keep_middle": ["medium"], "lose_in_thread": ["high"]},
             "confidence: high where lost, medium where only a middle "
             "pointer is left, never high where reachable")
        lp = leak_with(rep, "lose_plain")
        t.ok("unreachable at exit" in lp["reason"], "lose_plain's reason says why", lp["reason"])
        text = analyze(r.traces, fmt="text")
        t.ok(re.search(r"leak scan at exit:\s+definitely lost: 384 B in 10 blocks", text),
             "text: the summary", text[:3000])
        t.ok("leak scan: 5 definitely lost" in text, "text: a group's line", text[:3000])

# A fork child's blocks: one reachable only through a block its parent
# allocated before the fork (in the parent's trace, not the child's).
with t.section("a fork child: what it inherited is read from its parent's trace"):
    with Tmp() as d:
        r, rep, got = scanned([app("leakreach"), "fork"], d)
        t.eq((reach_of(rep, "child_keep"), reach_of(rep, "child_lose")),
             ({"still_reachable": (120, 1)}, {"definitely_lost": (112, 2)}),
             "the child's blocks: one held by the inherited holder reachable, "
             "two lost", leak_summary(rep))
        child = [p for p in rep["trace"]["processes"] if p["forked"]]
        t.eq([(p["memory"]["leak_scan"] or {}).get("status") for p in child], ["done"],
             "the child's scan ran")
        t.eq(reach_of(rep, "lose_plain"), {"definitely_lost": (200, 5)},
             "the parent's own as before")
        # valgrind's leak check of the child (it exits first, so its
        # summary comes first) counts what it inherited too: so does the
        # child's LEAK_SCAN record
        _, err = vg_summary([app("leakreach"), "fork"], d)
        first = err[:err.index("LEAK SUMMARY")] + err[err.index("LEAK SUMMARY"):][:600]
        vg = {c: tuple(int(x.replace(",", "")) for x in re.search(
                  r"%s: ([\d,]+) bytes in ([\d,]+) blocks" % c.replace("_", " "),
                  first).groups()) for c in CLASSES}
        v = [x for x in dump(child[0]["file"]) if x.get("type") == "leak_scan"][0]["v"]
        kp = {"definitely_lost": (v[3], v[2]), "indirectly_lost": (v[5], v[4]),
              "possibly_lost": (v[7], v[6]),
              "still_reachable": (v[1] - v[3] - v[5] - v[7], v[0] - v[2] - v[4] - v[6])}
        t.diag("fork child: valgrind %r, kprof %r" % (vg, kp))
        t.eq({c: kp[c][1] for c in CLASSES}, {c: vg[c][1] for c in CLASSES},
             "the child's blocks in each class, inherited ones too, as valgrind's")
        t.eq({c: kp[c][0] for c in CLASSES if c != "possibly_lost"},
             {c: vg[c][0] for c in CLASSES if c != "possibly_lost"},
             "and their bytes (but the DTV's, possibly lost)")

with t.section("advice: a lost block is a finding at any size"):
    with Tmp() as d:
        r, rep, _ = scanned([app("leakreach")], d)
        mem01 = sorted((funcs(a["stack"])[0], a["bytes"], a["severity"])
                       for a in rep["advice"] if a["code"] == "MEM01" and
                       a["title"].startswith("leak: "))
        # lose_tree's and lose_cycle's groups of their definitely and
        # indirectly lost blocks, one each (one allocation line each)
        t.eq(mem01, [("lose_cycle", 48, "warn"), ("lose_cycle", 48, "warn"),
                     ("lose_in_thread", 72, "warn"), ("lose_plain", 200, "warn"),
                     ("lose_tree", 32, "warn"), ("lose_tree", 32, "warn"),
                     ("lose_tree", 64, "warn")],
             "MEM01: each group with lost blocks, however small (valgrind "
             "calls each an error); none reachable or possibly lost",
             [a["title"] for a in rep["advice"]])
        rc, out, err = analyze_raw(["flame", "--folded", "--what", "lost"] + r.traces)
        folded = sorted((l.rsplit(" ", 1)[0].split(";")[-1], int(l.rsplit(" ", 1)[1]))
                        for l in out.splitlines())
        t.eq((rc, folded), (0, [("lose_cycle", 96), ("lose_in_thread", 72),
                                ("lose_plain", 200), ("lose_tree", 128)]),
             "flame --what lost: the lost bytes by allocation stack, no other", out)
        rc, _, err = analyze_raw(["export", "--what", "lost", "--pprof", "x.pb.gz"] + r.traces,
                                 cwd=d)
        t.eq(rc, 2, "export --what lost: a usage error (pprof takes cpu or heap)", err)
        rc, out, err = analyze_raw(["--fail-on", "warn", "advise"] + r.traces)
        t.eq(rc, 4, "--fail-on warn: exit 4 for them (a CI's leak check)", err)
        rep = analyze(r.traces, extra=["--leak-kinds", "possible,reachable"])
        t.eq((rep["memory"]["leak_kinds"],
              sorted({f for l in rep["memory"]["leaks"] for f in funcs(l["stack"])[:1]})),
             (["reachable", "possible"], ["allocate_dtv", "keep_middle", "keep_some"]),
             "--leak-kinds possible,reachable: only those groups listed")
        rc, out, err = analyze_raw(["--leak-kinds", "possible,reachable",
                                    "--fail-on", "warn", "advise"] + r.traces)
        t.eq(rc, 0, "--leak-kinds possible,reachable --fail-on warn: no lost "
             "group advised on, exit 0", out[-2000:])
        text = analyze(r.traces, fmt="text", extra=["--leak-kinds", "definite", "leaks"])
        t.ok("listed (--leak-kinds): the groups with definite blocks" in text and
             "keep_some" not in text, "text: --leak-kinds definite says so", text[-3000:])
        rc, _, err = analyze_raw(["--leak-kinds", "lost"] + r.traces)
        t.eq((rc, "definite, indirect, possible, reachable or all" in err), (2, True),
             "--leak-kinds lost: a usage error naming the kinds", err)
        r = run([app("leakreach")], d)
        t.ok(not [a for a in analyze(r.traces)["advice"] if a["code"] == "MEM01"
                  and a["title"].startswith("leak: ")],
             "without the scan: no leak there is notable (all small)")

with t.section("leakreach vs valgrind"):
    with Tmp() as d:
        for mode in ([], ["running"]):
            cmd = [app("leakreach")] + mode
            vg, err = vg_summary(cmd, d)
            _, rep, got = scanned(cmd, d)
            vg_dtv = sum(int(m.group(1).replace(",", "")) for m in re.finditer(
                r"([\d,]+) bytes in [\d,]+ blocks are possibly lost in loss record "
                r"\d+ of \d+\n(?:==\d+==\s+at .*\n)?(?:==\d+==\s+by .*\n)*?==\d+==\s+by .*"
                r"_dl_allocate_tls", err))
            t.diag("%s: valgrind %r, kprof %r, DTV %d and %d"
                   % (cmd, vg, got, vg_dtv, dtv_bytes(rep)))
            t.ok(vg_dtv > 0, "valgrind names the DTV possibly lost", err[-3000:])
            for c in CLASSES:
                diff = dtv_bytes(rep) - vg_dtv if c == "possibly_lost" else 0
                t.eq(got[c], (vg[c][0] + diff, vg[c][1]),
                     "%s: %s as valgrind's" % (" ".join(cmd[1:]) or "return", c))

with t.section("real programs vs valgrind"):
    with Tmp() as d:
        py = os.path.join(d, "q.py")
        with open(py, "w") as f:
            f.write("import sqlite3\n"
                    "c = sqlite3.connect(':memory:')\n"
                    "c.execute('create table t(a)')\n"
                    "c.executemany('insert into t values(?)', [(i,) for i in range(500)])\n"
                    "print(c.execute('select count(*) from t').fetchone()[0])\n")
        progs = [
            ([need("sqlite3"), ":memory:", "create table t(a); insert into t "
              "values(1),(2); select sum(a) from t;"], CLASSES),
            # perl copies the environment, which differs under the two
            # tools: its still reachable and possibly lost blocks too
            ([need("perl"), "-e", "my %h; $h{$_} = [$_] for 1..500; "
              "print scalar(keys %h), qq(\\n)"],
             ("definitely_lost", "indirectly_lost")),
            # the blocks glibc allocates for kprof's own dlsym of
            # libsqlite3 are roots: without them one of the loader's is
            # definitely lost
            (["/usr/bin/python3", py], CLASSES),
        ]
        for cmd, classes in progs:
            vg, _ = vg_summary(cmd, d)
            r, _, got = scanned(cmd, d)
            name = os.path.basename(cmd[0])
            t.diag("%s: valgrind %r, kprof %r" % (name, vg, got))
            for c in classes:
                t.eq(got[c], vg[c], "%s: %s as valgrind's" % (name, c))

# Runtimes and tools with threads, JITs, huge reservations (the JVM's
# heap, V8's cage), GC'd heaps beside malloc's: the same output and exit
# status with the scan, which ran, and classed every block in use.
with t.section("real programs: run as without it"):
    with Tmp() as d:
        with open(os.path.join(d, "Hello.java"), "w") as f:
            f.write("public class Hello { public static void main(String[] a) {\n"
                    "  java.util.List<String> l = new java.util.ArrayList<>();\n"
                    "  for (int i = 0; i < 20000; i++) l.add(\"x\" + i);\n"
                    "  System.out.println(l.size()); } }\n")
        with open(os.path.join(d, "x.c"), "w") as f:
            f.write("int sq(int x) { return x * x; }\n")
        for cmd in ([need("node"), "-e", "console.log([1, 2, 3].map(x => x * 2).join())"],
                    [need("java"), "Hello.java"],
                    [need("php"), "-r", "echo array_sum(range(1, 100)), PHP_EOL;"],
                    [need("gcc"), "-O2", "-c", "x.c", "-o", "x.o"]):
            name = os.path.basename(cmd[0])
            plain = run_plain(cmd, d, timeout=120)
            r = run(cmd, d, prof=SCAN, timeout=120)
            t.eq((r.rc, r.out), (plain.rc, plain.out), "%s: same exit status and output" % name,
                 r.err[-2000:])
            rep = analyze(r.traces)
            bad = []
            for p in rep["trace"]["processes"]:
                m = p["memory"]
                ls = m.get("leak_scan")
                if not ls or ls["status"] != "done":
                    bad.append((p["exe"], ls and ls["status"]))
                    continue
                classed = sum(ls[c]["blocks"] for c in CLASSES + ("after_scan",))
                if classed != m["in_use_at_exit"]["blocks"]:
                    bad.append((p["exe"], classed, m["in_use_at_exit"]["blocks"]))
            t.eq(bad, [], "%s: every process scanned, each block in use classed "
                 "(%d processes)" % (name, len(rep["trace"]["processes"])))

with t.section("not asked, and not run"):
    with Tmp() as d:
        r = run([app("leakreach")], d)
        rep = analyze(r.traces)
        t.eq((rep["memory"]["leak_scan"],
              sorted({repr(l.get("reachability")) for l in rep["memory"]["leaks"]})),
             (None, ["None"]), "without KOTOBA_PROFILE_LEAK_SCAN: no scan, no reachability")
        t.ok(not [x for x in dump(r.traces) if x.get("type") in ("leak", "leak_scan")],
             "without it: no LEAK or LEAK_SCAN record")
        # forks five deep, each child ending with _exit: a child reads its
        # ancestors' traces up to its fork, four generations at most; the
        # fifth is not scanned (status forked), and the report says so
        r = run(["/usr/bin/python3", "-c",
                 "import os\n"
                 "def down(n):\n"
                 "    if n:\n"
                 "        pid = os.fork()\n"
                 "        if pid == 0:\n"
                 "            down(n - 1)\n"
                 "        os.waitpid(pid, 0)\n"
                 "    os._exit(0)\n"
                 "down(5)\n"], d, prof=SCAN)
        rep = analyze(r.traces)
        st = sorted((p["memory"]["leak_scan"] or {}).get("status", "-")
                    for p in rep["trace"]["processes"])
        t.eq((r.rc, len(r.traces), st), (0, 6, ["done"] * 5 + ["forked"]),
             "forks five deep: four generations of children scanned, the "
             "fifth not (status forked)", r)
        text = analyze(r.traces, fmt="text")
        t.ok("not run in 1 of 6 processes" in text, "text: says it did not run, and where",
             text[:3000])
        # events dropped (a ring of 16 KiB, the drop policy, 64 threads
        # of churn): the blocks in use are not known
        r = run([app("storm"), "64", "20000"], d,
                prof=dict(SCAN, OVERFLOW="drop", BUFFER_KB="16"))
        rep = analyze(r.traces)
        t.eq((r.rc, rep["trace"]["events_lost"] > 0,
              (rep["memory"]["leak_scan"] or {}).get("status")),
             (0, True, "events_lost"), "events dropped: not run (events_lost)", r)
        r = run([app("leakreach")], d, prof=dict(SCAN, MEMORY="0"))
        t.eq((r.rc, [x["type"] for x in dump(r.traces) if x.get("type", "").startswith("leak")]),
             (0, []), "KOTOBA_PROFILE_MEMORY=0: no scan, no record")
        # under a seccomp filter (tests/apps/denysys.c), which might kill
        # on the scan's calls: not run, and the program ends as it would
        r = run([app("denysys"), "process_vm_readv", app("leakreach")], d, prof=SCAN)
        rep = analyze(r.traces)
        t.eq((r.rc, r.err, (rep["memory"]["leak_scan"] or {}).get("status")),
             (0, "", "no_read"), "under a seccomp filter: not run (no_read), exit 0", r)
        t.ok("seccomp" in analyze(r.traces, fmt="text"), "text: says why")

t.done()
