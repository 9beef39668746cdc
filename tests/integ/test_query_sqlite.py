# SPDX-License-Identifier: MIT
"""The SQLite query hook and `kprof-analyze queries` end to end (issue 4):
tests/apps/sqlite_app.c (libsqlite3 linked) and tests/integ/sqlite_app.py
(python3's sqlite3 module, libsqlite3 dlopen()ed) run one known list of
statements; the report must count every fingerprint exactly and find the
N+1 loop, the duplicate, the full scans (with index advice verified by
EXPLAIN QUERY PLAN on a copy of the database), and the autocommit write
storm. Privacy: with the default settings no literal or bound value of
the app is anywhere in the trace; with QUERY_TEXT=full the literal is
there (so the check can fail).
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
PYAPP = os.path.join(SRC, "tests", "integ", "sqlite_app.py")

# fingerprint -> (calls, rows, full-scan calls)
WANT = {
    "create table users(id integer primary key, name text, city text)": (1, 0, 0),
    "create table orders(id integer primary key, user_id int, amount int)": (1, 0, 0),
    "insert into users(name, city) values(?+)": (40, 40, 0),
    "begin": (1, 0, 0),
    "insert into orders(user_id, amount) values(?+)": (40, 40, 0),
    "commit": (1, 0, 0),
    "select id from users": (1, 40, 1),
    "select amount from orders where user_id = ?": (40, 40, 40),
    "select name from users where id = ?": (2, 2, 0),
    "select count(*) from users where city = ?": (1, 1, 1),
}
ADVICE = {"select amount from orders where user_id = ?":
          "CREATE INDEX kp_orders_user_id ON orders(user_id);",
          "select count(*) from users where city = ?":
          "CREATE INDEX kp_users_city ON users(city);"}


def check_report(t, q, label):
    fps = {f["fingerprint"]: f for f in q["fingerprints"]}
    got = {k: (f["calls"], f["rows"], f["full_scan_calls"]) for k, f in fps.items()}
    t.eq(got, WANT, "%s: calls, rows, full-scan calls per fingerprint" % label)
    t.eq(q["calls"], sum(v[0] for v in WANT.values()), "%s: total calls" % label)
    # the time distribution: every call in one decade, the last with
    # calls the one of the (exact) max
    def decade(ns):
        d, lim = 0, 1000
        while d < 8 and ns >= lim:
            d, lim = d + 1, lim * 10
        return d
    bad = [(k, f["distribution"], f["calls"], f["max_ns"]) for k, f in fps.items()
           if len(f["distribution"]) != 9 or sum(f["distribution"]) != f["calls"] or
           max(i for i, c in enumerate(f["distribution"]) if c) != decade(f["max_ns"])]
    t.eq(bad, [], "%s: each distribution counts every call, up to the max's decade" % label)
    ranked = [f["total_ns"] for f in q["fingerprints"]]
    t.eq(ranked, sorted(ranked, reverse=True), "%s: ranked by total time" % label)
    t.eq(sum(f["total_ns"] for f in q["fingerprints"]), q["total_ns"],
         "%s: total time = sum over fingerprints" % label)
    f = fps.get("select amount from orders where user_id = ?", {})
    t.ok(f and f["p50_ns"] <= f["p95_ns"] <= f["p99_ns"] <= f["max_ns"] and
         f["full_scan"] == 40 * 39, "%s: percentiles ordered, 40 x 39 full-scan "
         "steps (the other 39 orders rows per lookup)" % label, f)
    t.ok(all(f["alloc_calls"] > 0 for k, f in fps.items() if k.startswith("create")),
         "%s: allocations while the query ran are attributed (CREATE TABLE)" % label)
    t.ok(all(f["call_sites"] and f["call_sites"][0]["stack"] for f in fps.values()),
         "%s: every fingerprint has a call site with a stack" % label)
    np1 = sorted((n["fingerprint"], n["queries"], n["runs"]) for n in q["n_plus_one"])
    t.eq(np1, sorted([("insert into orders(user_id, amount) values(?+)", 40, 1),
                      ("insert into users(name, city) values(?+)", 20, 1),
                      ("insert into users(name, city) values(?+)", 20, 1),
                      ("select amount from orders where user_id = ?", 40, 1)]),
         "%s: N+1: the lookup loop (and the insert loops, from their call sites)" % label)
    sel = [n for n in q["n_plus_one"] if n["fingerprint"].startswith("select amount")]
    t.ok(sel and 0 < sel[0]["saving_ns"] < sel[0]["total_ns"] and sel[0]["stack"],
         "%s: the N+1 has a saving below its time and a call site" % label, sel)
    dups = [(d["fingerprint"], d["calls"], d["duplicate_calls"]) for d in q["duplicates"]]
    t.eq(dups, [("select name from users where id = ?", 2, 1)],
         "%s: the one duplicate (same query, same value)" % label)
    adv = {a["fingerprint"]: a["statement"] for a in q["index_advice"]}
    t.eq(adv, ADVICE, "%s: index advice for the two full scans" % label)
    st = [(s["fingerprint"], s["statements"], s["storms"]) for s in q["write_storms"]]
    t.eq(st, [("insert into users(name, city) values(?+)", 20, 1)],
         "%s: the autocommit insert storm (20 writes)" % label)
    s = q["write_storms"][0] if q["write_storms"] else {}
    t.ok(s.get("saving_measured") and 0 < s.get("saving_ns", 0) <= s.get("total_ns", 0),
         "%s: storm saving measured against the same insert in a transaction" % label, s)
    t.ok(s.get("fsyncs", 0) >= 20,
         "%s: the storm's commits paid fsyncs (>= one per insert): %s"
         % (label, s.get("fsyncs")), s)
    ins = fps.get("insert into users(name, city) values(?+)", {})
    t.ok(ins.get("fsyncs", 0) >= 20 and ins.get("io_bytes", 0) > 0,
         "%s: the insert fingerprint carries its fsyncs and I/O bytes" % label, ins)


def call_sites(q):
    """fingerprint -> its call sites as (calls, ((module, offset), ...))."""
    return {f["fingerprint"]: sorted(
        (c["calls"], tuple((os.path.basename(x.get("module") or ""), x.get("offset"))
                           for x in c["stack"])) for c in f["call_sites"])
        for f in q["fingerprints"]}


# The SQLite hook remembers each statement's last stack walk and reuses
# its stack when the walk would read the same words (kp_unwind_memo);
# libunwind walks every stack from scratch: the call sites must agree,
# including the insert statement's two (one function, two callers).
with t.section("C app: query stacks as libunwind takes them"):
    sites = {}
    for mode in ("fast", "libunwind"):
        with Tmp() as d:
            r = run([app("sqlite_app"), os.path.join(d, "app.db")], d,
                    prof={"UNWIND": mode})
            t.eq((r.rc, r.err), (0, ""), "UNWIND=%s: runs" % mode)
            sites[mode] = call_sites(analyze(r.traces)["queries"])
    ins = sites["fast"].get("insert into users(name, city) values(?+)", [])
    t.eq([c for c, _ in ins], [20, 20], "the insert's two call sites, 20 runs each", ins)
    t.eq(sites["fast"], sites["libunwind"],
         "every fingerprint's call sites and their stacks: fast = libunwind")


def kprof_frames_left_out(t, rep):
    """kprof's sqlite3_step between the app and libsqlite3's is not the
    app's code: allocation stacks go from libsqlite3 straight to the app."""
    m = rep["memory"]
    stacks = [x["stack"] for k in ("top_by_calls", "top_by_bytes", "leaks")
              for x in m[k]]
    mods = [[os.path.basename(f.get("module") or "") for f in s] for s in stacks]
    bad = [ms for ms in mods if any(x.startswith("libkprof") for x in ms)]
    t.ok(stacks and not bad, "C app: no allocation stack has a frame in "
         "libkprof.so (%d of %d do)" % (len(bad), len(stacks)), bad[:2])
    t.ok(any(f.get("function") == "sqlite3_step" and
             os.path.basename(g.get("module") or "") == "sqlite_app"
             for s in stacks for f, g in zip(s, s[1:])),
         "C app: stacks go from libsqlite3's sqlite3_step to the app's frame",
         "\n".join(" <- ".join(funcs(s)[:10]) for s in stacks[:10]))


APPS = [("C app", lambda db: [app("sqlite_app"), db]),
        ("python3 app", lambda db: [PY, PYAPP, db])]

for label, cmd in APPS:
    with t.section(label):
        with Tmp() as d:
            db = os.path.join(d, "app.db")
            plain = run_plain(cmd(os.path.join(d, "plain.db")), d)
            r = run(cmd(db), d)
            t.eq((r.rc, r.err), (0, ""), "%s: runs under kprof" % label)
            t.eq(r.out, plain.out, "%s: same output as without kprof" % label)
            t.eq(r.out, "users=40 order_rows=40\n", "%s: its own result" % label)
            rep = analyze(r.traces)
            check_report(t, rep["queries"], label)
            # the C app's sqlite3_step(NULL) is a misuse, not a lost run
            t.eq(rep["trace"]["events_lost"], 0, "%s: no event lost" % label)
            if label == "C app":
                kprof_frames_left_out(t, analyze(r.traces, extra=["--top", "1000"]))
            # verify the advice on a copy of the database
            need("sqlite3")
            before = open(db, "rb").read()
            rep = analyze(r.traces, extra=["--sqlite-db", db])
            adv = rep["queries"]["index_advice"]
            t.eq([(a["verified"], "SCAN" in (a["plan_before"] or ""),
                   "INDEX kp_" in (a["plan_after"] or "")) for a in adv],
                 [(True, True, True)] * 2,
                 "%s: --sqlite-db: each index is used by EXPLAIN QUERY PLAN" % label, adv)
            t.eq(open(db, "rb").read() == before, True,
                 "%s: --sqlite-db leaves the database itself unchanged" % label)
            # privacy: no literal, no bound value
            recs = dump(r.traces)
            blob = "\n".join(json.dumps(x) for x in recs)
            raw = b"".join(open(f, "rb").read() for f in r.traces)
            t.ok("paris_zq9" not in blob and "bound_secret" not in blob and
                 b"paris_zq9" not in raw,
                 "%s: default: no literal or bound value in the trace" % label)
            t.ok(any(x["type"] == "query" for x in recs), "%s: query records present" % label)
            # a QUERY's ctx is its QUERY_BEGIN's, one each, earlier on its
            # thread; 0 when none was written (nothing else recorded meanwhile)
            begun, bad, zero = {}, [], 0
            for x in recs:
                if x["type"] == "query_begin":
                    bad += [x] if (x["tid"], x["v"][0]) in begun else []
                    begun[(x["tid"], x["v"][0])] = 0
                elif x["type"] == "query" and x["v"][0]:
                    k = (x["tid"], x["v"][0])
                    bad += [x] if begun.get(k) != 0 else []
                    begun[k] = 1
                elif x["type"] == "query":
                    zero += 1
            t.ok(not bad and begun and all(begun.values()) and zero,
                 "%s: each QUERY_BEGIN ends in one QUERY with its ctx; QUERYs "
                 "without a begin have ctx 0 (%d)" % (label, zero), bad[:3])
            if label == "C app":
                r2 = run(cmd(os.path.join(d, "full.db")), d, prof={"QUERY_TEXT": "full"})
                blob = "\n".join(json.dumps(x) for x in dump(r2.traces))
                t.ok("paris_zq9" in blob and "bound_secret" not in blob,
                     "QUERY_TEXT=full: the literal text is stored (bound values never)")
                rep2 = analyze(r2.traces)
                t.eq({f["fingerprint"]: f["calls"] for f in rep2["queries"]["fingerprints"]},
                     {k: v[0] for k, v in WANT.items()},
                     "QUERY_TEXT=full: the analyzer fingerprints the full text the same")

with t.section("UTF-16 prepares"):
    # tests/apps/sqlite_utf16.c: sqlite3_prepare16, _v2 and _v3
    with Tmp() as d:
        r = run([app("sqlite_utf16"), os.path.join(d, "u.db")], d)
        t.eq((r.rc, r.err, r.out), (0, "", "rows=8 max=8\n"),
             "UTF-16: the app runs unchanged under kprof", r)
        q = analyze(r.traces)["queries"]
        got = {f["fingerprint"]: (f["calls"], f["rows"]) for f in q["fingerprints"]}
        t.eq(got, {
            "create table données(clé integer primary key, valeur text)": (1, 0),
            # 5 bound (prepare16_v2) + 3 with a literal (legacy prepare16)
            "insert into données(valeur) values(?+)": (8, 8),
            "select valeur from données where clé = ?": (4, 4),
            # legacy prepare16 keeps no text: taken from the app's, to the tail
            "select count(*) from données": (1, 1),
            "select max(clé) from données": (1, 1),
        }, "UTF-16: calls and rows per fingerprint, the text as UTF-8")
        raw = b"".join(open(f, "rb").read() for f in r.traces)
        t.ok(b"clef" not in raw and "clef".encode("utf-16-le") not in raw,
             "UTF-16: default: the literal is not in the trace")

with t.section("threads"):
    with Tmp() as d:
        TH, RO = 4, 300
        r = run([PY, os.path.join(SRC, "tests", "integ", "sqlite_threads.py"),
                 os.path.join(d, "th.db"), str(TH), str(RO)], d, timeout=300)
        t.eq((r.rc, r.out), (0, "ok\n"), "4 threads, 4 connections: runs under kprof", r)
        q = analyze(r.traces)["queries"]
        got = {f["fingerprint"]: f["calls"] for f in q["fingerprints"]}
        t.eq((got.get("select v from t where id = ?"), got.get("insert into log values(?+)"),
              got.get("begin"), got.get("begin immediate"), got.get("commit")),
             (TH * RO, TH * RO, 1, TH, TH + 1),
             "threads: every execution of every thread counted once", got)
        recs = dump(r.traces)
        tids = {x["tid"] for x in recs if x["type"] == "query" and
                (x["str"] or "").startswith("select v")}
        t.eq(len(tids), TH, "threads: the selects come from %d threads" % TH)
        conns = {}
        for x in recs:
            if x["type"] == "query" and (x["str"] or "").startswith("select v"):
                conns.setdefault(x["tid"], set()).add(x["v"][11])
        t.ok(len(conns) == TH and all(len(c) == 1 and 0 not in c for c in conns.values()),
             "threads: each thread's selects name one connection (its own)", conns)

# The hook reads a run's four counters straight from SQLite's statement
# once the API has confirmed their place (hook_sqlite.c): every run's
# counters must be the API's, and a wrong place (offset=8, a test's) must
# be caught by the check and cost nothing but one warning line.
with t.section("statement counters"):
    with Tmp() as d:
        runs = {}
        for mode in ("api", "auto", "offset=8", "offset=4096"):
            db = os.path.join(d, "c%d.db" % len(runs))
            r = run([app("sqlite_app"), db], d, prof={"SQLITE_COUNTERS": mode})
            t.eq((r.rc, r.out), (0, "users=40 order_rows=40\n"),
                 "SQLITE_COUNTERS=%s: the app runs unchanged" % mode)
            lines = r.err.splitlines()
            if mode.startswith("offset="):
                t.ok(len(lines) == 1 and "KOTOBA_PROFILE_SQLITE_COUNTERS" in lines[0]
                     and "sqlite3_stmt_status" in lines[0],
                     "SQLITE_COUNTERS=%s: the wrong place is caught, one warning" % mode,
                     r.err)
            else:
                t.eq(r.err, "", "SQLITE_COUNTERS=%s: no warning" % mode)
            runs[mode] = [(x["str"], x["v"][2], x["v"][4:8]) for x in dump(r.traces)
                          if x["type"] == "query"]
            if mode != "offset=4096":
                check_report(t, analyze(r.traces)["queries"], "SQLITE_COUNTERS=" + mode)
        t.ok(len(runs["api"]) == 128 and any(v[3] for _, _, v in runs["api"]) and
             any(v[0] for _, _, v in runs["api"]),
             "api: 128 runs, with full-scan and VM steps counted")
        for mode in ("auto", "offset=8", "offset=4096"):
            t.eq(runs[mode], runs["api"],
                 "SQLITE_COUNTERS=%s: every run's text, rows and four counters "
                 "are the API's" % mode)
        r = run([app("sqlite_app"), os.path.join(d, "bad.db")], d,
                prof={"SQLITE_COUNTERS": "offset=-4"})
        t.ok(r.rc == 0 and len(r.err.splitlines()) == 1 and
             "KOTOBA_PROFILE_SQLITE_COUNTERS" in r.err and "default auto" in r.err,
             "SQLITE_COUNTERS=offset=-4: one warning line, the default used", r.err)


# Every value of every run against SQLite's own: tests/apps/sqlite_counters
# prints, after each run, its rows, status, autocommit state and four
# statement counters as the API gives them; without kprof those are the
# truth (under kprof the hook has read and reset the counters first). Its
# runs take both ring forms of a QUERY (state.h, kp_qc_pack): the common
# one packed in two slots, and the whole one for a run with an error, a
# prepare time or a counter past 65,535.
with t.section("every run as SQLite counts it"):
    with Tmp() as d:
        r0 = run([app("sqlite_counters")], d, kprof=False)
        want = [tuple(int(x) for x in l.split()) for l in r0.out.splitlines()]
        r = run([app("sqlite_counters")], d)
        t.eq((r.rc, r.err, len(r.out.splitlines())), (0, "", len(want)),
             "the program runs under kprof, one line a run")
        recs = dump(r.traces)
        qs = [x for x in recs if x["type"] == "query"]
        got = [(x["v"][2], x["v"][3], x["v"][10] & 1) + tuple(x["v"][4:8]) for x in qs]
        t.eq(got, want, "every run's rows, status, autocommit flag and four "
             "counters are SQLite's (%d runs)" % len(want))
        t.ok(any(w[3] > 65535 or w[6] > 65535 for w in want) and
             any(w[4] for w in want) and any(w[5] for w in want) and
             any(w[1] for w in want) and any(w[0] > 65535 for w in want),
             "the runs include counters and rows past 16 bits, a sort, an "
             "automatic index and an error", want)
        begins = {x["v"][0] for x in recs if x["type"] == "query_begin"}
        ctxs = [x["v"][0] for x in qs if x["v"][0]]
        t.ok(ctxs and len(set(ctxs)) == len(ctxs) and set(ctxs) <= begins,
             "a run that allocated has a ctx of its own, its QUERY_BEGIN's "
             "(%d of %d runs)" % (len(ctxs), len(qs)))
        t.ok(len({x["v"][11] for x in qs}) == 1 and qs[0]["v"][11] > 0 and
             all(x["v"][12] > 0 and x["str"] for x in qs) and
             sum(1 for x in qs if x["v"][8] > 0) == 13,
             "one connection id; every run's text; a prepare time on each "
             "statement's first run only (13 statements)")


# SQLite in no global scope (tests/apps/sqlite_local.c): each plugin is
# loaded with RTLD_LOCAL and brings its own, SQLCipher's (SQLite 3.15,
# soname libsqlcipher.so.0) or libsqlite3. Without kprof each plugin's
# calls bind to its own library. The hook used to send every call to
# libsqlite3.so.0 or to none: alone, the SQLCipher plugin's prepares
# failed (SQLITE_MISUSE, the program exited 1).
with t.section("plugins with a SQLite of their own (RTLD_LOCAL)"):
    with Tmp() as d:
        for plugins in (["cipher"], ["plain"], ["cipher", "plain"], ["plain", "cipher"]):
            label = " + ".join(plugins)
            cmd = [app("sqlite_local"), "300"] + plugins
            r0 = run(cmd, d, kprof=False)
            if r0.rc != 0 or len(r0.out.splitlines()) != len(plugins):
                raise Fail("sqlite_local %s without kprof: %d %s" % (label, r0.rc, r0.err))
            r = run(cmd, d)
            t.eq((r.rc, r.out, r.err), (0, r0.out, ""),
                 "%s: runs as without kprof, each plugin on its own SQLite" % label)
            rep = analyze(r.traces)
            fps = {f["fingerprint"]: f["calls"] for f in rep["queries"]["fingerprints"]}
            lost = rep["trace"]["events_lost_by_type"].get("query", 0)
            # the first library called is the one recorded; the other's
            # runs are counted lost: its 300 inserts and more
            t.ok(fps.get("insert into t(a) values(?+)") == 300 and
                 fps.get("select count(*) from t") == 1 and
                 (lost == 0 if len(plugins) == 1 else lost >= 302),
                 "%s: the first library's runs recorded, the other's counted "
                 "lost" % label, (fps, lost))


# kprof's messages go to the stderr the program started with, never to a
# file the program later opened as fd 2: here python3 closes fd 2, opens
# its own file (which gets fd 2) and then uses SQLite with a wrong counter
# place, whose warning comes at the first statement, mid-run. Run once
# with fd 2 left alone, so that the warning is known to come.
STDERR_REUSE = r"""
import os, sqlite3, sys
reuse = sys.argv[2] == "reuse"
if reuse:
    os.close(2)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
assert (fd == 2) == reuse, fd
c = sqlite3.connect(":memory:")
c.execute("create table t(a)")
for i in range(50):
    c.execute("insert into t values(?)", (i,))
print(len(c.execute("select a from t").fetchall()))
os.write(fd, b"the program's own line\n")
"""
with t.section("a program's own file at fd 2"):
    with Tmp() as d:
        for how in ("keep", "reuse"):
            own = os.path.join(d, how + ".txt")
            r = run([PY, "-c", STDERR_REUSE, own, how], d,
                    prof={"SQLITE_COUNTERS": "offset=8"})
            t.eq((r.rc, r.out), (0, "50\n"), "%s: the program runs unchanged" % how,
                 r.err)
            with open(own) as f:
                t.eq(f.read(), "the program's own line\n",
                     "%s: the program's file holds its line only" % how)
            if how == "keep":
                t.ok("KOTOBA_PROFILE_SQLITE_COUNTERS" in r.err,
                     "keep: the warning comes, on stderr", r.err)
            else:
                t.eq(r.err, "", "reuse: nothing on the stderr the program closed")

with t.section("variables"):
    with Tmp() as d:
        for prof, want, name in (({"QUERY": "0"}, 0, "QUERY=0: no query recorded"),
                                 ({"QUERY_HOOKS": "libpq"}, 0,
                                  "QUERY_HOOKS=libpq: the sqlite hook is off"),
                                 ({"QUERY_HOOKS": "sqlite"}, 128,
                                  "QUERY_HOOKS=sqlite: recorded"),
                                 ({"QUERY_HOOKS": "none"}, 0, "QUERY_HOOKS=none")):
            db = os.path.join(d, "v%d.db" % len(os.listdir(d)))
            r = run([app("sqlite_app"), db], d, prof=prof)
            t.eq((r.rc, r.err, r.out), (0, "", "users=40 order_rows=40\n"),
                 "%s: the app runs unchanged" % name)
            n = sum(1 for x in dump(r.traces) if x["type"] == "query")
            t.eq(n, want, name)
        r = run([app("sqlite_app"), os.path.join(d, "bad.db")], d,
                prof={"QUERY_HOOKS": "mysql", "QUERY_TEXT": "raw",
                      "SLOW_QUERY_MS": "soon"})
        lines = r.err.splitlines()
        t.ok(r.rc == 0 and len(lines) == 3 and all("default" in x for x in lines) and
             any("KOTOBA_PROFILE_QUERY_HOOKS" in x for x in lines) and
             any("KOTOBA_PROFILE_QUERY_TEXT" in x for x in lines) and
             any("KOTOBA_PROFILE_SLOW_QUERY_MS" in x for x in lines),
             "bad values: one warning line each, naming the variable and default", r.err)
        t.eq(sum(1 for x in dump(r.traces) if x["type"] == "query"), 128,
             "bad values: the defaults record every query")
        # slow threshold from the recording, or --slow-ms
        r = run([app("sqlite_app"), os.path.join(d, "slow.db")], d,
                prof={"SLOW_QUERY_MS": "0"})
        q = analyze(r.traces)["queries"]
        t.eq((q["slow_threshold_ns"], len(q["slow"])), (0, 10),
             "SLOW_QUERY_MS=0: the trace's threshold, every fingerprint slow")
        sl = q["slow"][0] if q["slow"] else {}
        w = sl.get("worst", {})
        t.ok(w.get("dur_ns", 0) > 0 and w.get("stack") and
             w["io_ns"] + w["fsync_ns"] + w["rest_ns"] == w["dur_ns"],
             "slow: the worst sample with its stack and time split", sl)
        q = analyze(r.traces, extra=["--slow-ms", "100000"])["queries"]
        t.eq((q["slow_threshold_ns"], q["slow"]), (100000 * 10**6, []),
             "--slow-ms overrides the trace's threshold")
        # the N+1 and storm thresholds: sqlite_app's runs are 20, 20, 40
        # and 40 queries long, its storm 20 writes
        def runs_storms(extra):
            q = analyze(r.traces, extra=extra)["queries"]
            return (q["n_plus_one_min"], q["storm_min"],
                    sorted(n["max_run"] for n in q["n_plus_one"]),
                    [s["statements"] for s in q["write_storms"]])
        t.eq(runs_storms([]), (5, 10, [20, 20, 40, 40], [20]),
             "defaults: N+1 runs of >= 5, storms of >= 10 writes")
        t.eq(runs_storms(["--n-plus-one-min", "21", "--storm-min", "20"]),
             (21, 20, [40, 40], [20]),
             "--n-plus-one-min 21: the 40-query runs only; --storm-min 20: the storm")
        t.eq(runs_storms(["--n-plus-one-min", "41", "--storm-min", "21"]),
             (41, 21, [], []), "--n-plus-one-min 41, --storm-min 21: none")
        out = analyze(r.traces, fmt="text",
                      extra=["queries", "--n-plus-one-min", "21", "--storm-min", "20"])
        t.ok("2 N+1 (runs of >= 21)" in out and "1 write storm (>= 20 writes)" in out,
             "the text report states the thresholds in use", out[:3000])
        # the full text report's distribution line: the JSON's counts
        # from the first decade with calls to the last
        names = ["<1us", "1us", "10us", "100us", "1ms", "10ms", "100ms", "1s", "10s+"]
        q = analyze(r.traces)["queries"]
        want = []
        for f in q["fingerprints"]:
            d = f["distribution"]
            nz = [i for i, c in enumerate(d) if c]
            want.append("        time " + ", ".join(
                "%s %d" % (names[i], d[i]) for i in range(nz[0], nz[-1] + 1)))
        got = [l for l in out.splitlines() if l.startswith("        time ")]
        t.eq(got, want, "the text report's time distribution of each fingerprint")
        # --order-by: the fingerprints ranked by another field
        q = analyze(r.traces)["queries"]
        t.eq(q["order_by"], "total_ns", "fingerprints ranked by total_ns by default")
        for key, field in (("calls", "calls"), ("max", "max_ns"), ("p95", "p95_ns"),
                           ("p99", "p99_ns"), ("rows", "rows"), ("mean", "mean_ns"),
                           ("total", "total_ns")):
            q = analyze(r.traces, extra=["--order-by", key])["queries"]
            got = [(f[field], f["total_ns"]) for f in q["fingerprints"]]
            t.ok(q["order_by"] == field and len(got) == len(WANT) and
                 got == sorted(got, reverse=True),
                 "--order-by %s: every fingerprint, by %s, then total_ns" % (key, field),
                 (q["order_by"], got))
        out = analyze(r.traces, fmt="text", extra=["queries", "--order-by", "calls"])
        first = [l for l in out.splitlines() if l.strip().startswith("1 ")][:1]
        t.ok("ranked by calls" in out and first and first[0].split()[3] == "40" and
             "insert into users" in first[0],
             "text, --order-by calls: said so; of the three 40-call fingerprints, "
             "the slowest in all (the inserts that fsync) first", out[:1500])
        for opt, bad in (("--n-plus-one-min", "1"), ("--storm-min", "x"),
                         ("--storm-min", "-3"), ("--order-by", "speed")):
            rc, _, err = analyze_raw([opt, bad, "queries"] + r.traces)
            t.ok(rc == 2 and opt in err, "%s %s: a usage error (exit 2)" % (opt, bad),
                 err)
        out = analyze(r.traces, fmt="text", extra=["queries"])
        t.ok("N+1" in out and "CREATE INDEX kp_orders_user_id ON orders(user_id);" in out
             and "WRITE STORM" in out and "DUPLICATE" in out,
             "kprof-analyze queries: the text report names every finding", out[-3000:])
        n1 = dict((m.group(2), m.group(1)) for m in re.finditer(
            r"^N\+1  .* batched \(([^)]*)\) would save about [^:]*: (.*)$", out, re.M))
        t.eq((n1.get("insert into orders(user_id, amount) values(?+)"),
              n1.get("select amount from orders where user_id = ?")),
             ("one statement for the rows", "IN list / JOIN"),
             "text: an N+1 of writes is batched as one statement, of selects "
             "with an IN list or a JOIN", n1)

# More live statements than the hook's table holds (8,192 slots, a
# statement within 64 of its home): the runs of those without a slot are
# not recorded, and are counted as lost QUERY events, each run once
# (ended by done, by a reset after a row, or by its finalize): recorded
# plus lost is every run. With few statements nothing is lost.
with t.section("statements without a slot: lost runs counted"):
    with Tmp() as d:
        for n, some_lost in (("10000", True), ("300", False)):
            r = run([app("sqlite_many"), n], d, prof={"MEMORY": "0", "IO": "0"})
            t.eq(r.rc, 0, "sqlite_many %s runs" % n, r.err)
            runs = int(r.out.split()[1]) if r.out.startswith("runs ") else -1
            rep = analyze(r.traces)
            calls = sum(f["calls"] for f in rep["queries"]["fingerprints"])
            lost = rep["trace"].get("events_lost_by_type", {}).get("query", 0)
            t.eq(calls + lost, runs, "sqlite_many %s: %d recorded + %d lost = the "
                 "app's %d runs" % (n, calls, lost, runs))
            t.eq(lost > 0, some_lost, "sqlite_many %s: lost runs %s" % (
                n, "counted" if some_lost else "none"))
            t.eq(rep["trace"]["events_lost"], lost, "sqlite_many %s: only query "
                 "events lost" % n)

# A SQLite whose internal calls bind within the library (Firefox's
# libmozsqlite3) prepares sqlite3_exec's statements unseen and steps each
# through its PLT, into kprof's hook: those runs were counted lost (619
# in a Firefox run) although the exec's own QUERY covers them.
# tests/apps/sqlplug/sqlexec.c is such an exec.
with t.section("sqlite3_exec whose statements the hooks do not see prepared"):
    with Tmp() as d:
        r = run([app("sqlite_exec")], d, prof={"MEMORY": "0", "IO": "0"})
        t.eq((r.rc, r.out, r.err), (0, "ok rows=2\n", ""), "sqlite_exec runs")
        rep = analyze(r.traces)
        t.eq(rep["trace"]["events_lost"], 0, "no QUERY counted lost")
        t.eq(sorted((f["fingerprint"], f["calls"], f["rows"])
                    for f in rep["queries"]["fingerprints"]),
             [("create table t(x); insert into t values(?+); insert into t "
               "values(?+); select x from t", 1, 0),
              ("select count(*) from t where x > ?", 2, 2)],
             "the exec is one QUERY (not SQLite's schema query inside it), "
             "the prepared statement's runs their own")

# Python's own frames (preload/pystack.c, python3.11): each query's stack
# holds the script's functions and lines, inside the machine frame of the
# eval loop that ran them; fingerprint -> {the stack's Python frames as
# (function, file, line), outermost last: calls}. The lines are
# sqlite_app.py's: a query's stack is taken where it begins (its first
# step), so the N+1 select's is its db.execute( (line 33, not the
# fetchall() of line 34 that ends it) and the loop's select's the for
# statement (31).
PYSITES = {
    "create table users(id integer primary key, name text, city text)":
        {(("<module>", 13),): 1},
    "create table orders(id integer primary key, user_id int, amount int)":
        {(("<module>", 14),): 1},
    "insert into users(name, city) values(?+)":
        {(("insert_users", 20), ("<module>", 23)): 20,
         (("insert_users", 20), ("<module>", 25)): 20},
    "begin": {(("<module>", 24),): 1},
    "insert into orders(user_id, amount) values(?+)": {(("<module>", 27),): 40},
    "commit": {(("<module>", 28),): 1},
    "select id from users": {(("<module>", 31),): 1},
    "select amount from orders where user_id = ?": {(("<module>", 33),): 40},
    "select name from users where id = ?": {(("<module>", 36),): 2},
    "select count(*) from users where city = ?": {(("<module>", 40),): 1},
}


def py_frames(stack):
    return tuple((x.get("function"), x.get("line")) for x in stack
                 if x.get("file") == PYAPP)


def py_sites(q):
    got = {}
    for f in q["fingerprints"]:
        sites = got.setdefault(f["fingerprint"], {})
        for c in f["call_sites"]:
            k = py_frames(c["stack"])
            sites[k] = sites.get(k, 0) + c["calls"]
    return got


with t.section("python3 app: the script's frames in query and I/O stacks"):
    with Tmp() as d:
        r = run([PY, PYAPP, os.path.join(d, "app.db")], d)
        t.eq((r.rc, r.err), (0, ""), "runs under kprof")
        rep = analyze(r.traces)
        t.eq(py_sites(rep["queries"]), PYSITES, "every fingerprint's call sites "
             "name the script's functions and lines, with their calls")
        stacks = [c["stack"] for f in rep["queries"]["fingerprints"]
                  for c in f["call_sites"]]
        placed = []
        for s in stacks:
            i = max(k for k, x in enumerate(s) if x.get("file") == PYAPP)
            placed.append((s[i + 1].get("function"), s[i].get("module")))
        t.eq(set(placed), {("_PyEval_EvalFrameDefault", "[python]")},
             "the Python frames sit inside the eval loop's machine frame, "
             "module [python]")
        io = {os.path.basename(f["path"]): f for f in rep["io"]["files"]}
        jw = [py_frames(s["frames"]) for s in io["app.db-journal"]["stacks"]]
        t.ok(jw and all(x and x[-1][0] == "<module>" for x in jw),
             "I/O stacks (the journal's writes) carry the script's frames too", jw)
        recs = dump(r.traces)
        names = [(x["name"], x["lo"], x["size"]) for x in recs
                 if x["type"] == "jit_code"]
        t.eq([(n, lo >= 0xffffffff00000000, size) for n, lo, size in names
              if n.endswith("/sqlite_app.py:20")],
             [("py::insert_users:%s:20" % PYAPP, True, 16)],
             "line 20's call is named by one JIT_CODE record, in kernel space "
             "(where no user code is)", names[:5])
        r = run([PY, PYAPP, os.path.join(d, "app2.db")], d, prof={"PYTHON": "0"})
        t.eq((r.rc, r.err), (0, ""), "PYTHON=0: runs")
        got = py_sites(analyze(r.traces)["queries"])
        t.eq({k: set(v) for k, v in got.items()}, {k: {()} for k in PYSITES},
             "PYTHON=0: machine frames only")

def fmt_ns(ns):
    """queries.c's fmt_ns, the text report's times."""
    if ns < 10000:
        return "%dns" % ns
    if ns < 10000000:
        return "%.1fus" % (ns / 1e3)
    if ns < 10000000000:
        return "%.1fms" % (ns / 1e6)
    return "%.2fs" % (ns / 1e9)


# The CPU samples that land in a query are its CPU time, as the CPU report
# estimates it (a sample weighs its thread's CPU since the one before): a
# recursive CTE that only computes is on CPU all its run; its slow sample's
# split adds up. And 300 inserts give the text report a p99 and a max.
CTE = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
       "WHERE x<800000) SELECT sum(x) FROM c;")
with t.section("CPU samples inside a query"):
    sq = need("sqlite3")
    with Tmp() as d:
        sql = ("CREATE TABLE t(a);\n" +
               "".join("INSERT INTO t VALUES(%d);\n" % i for i in range(300)) +
               CTE + "\n")
        for sampled in (True, False):
            prof = {"MEMORY": "0", "SLOW_QUERY_MS": "100"}
            if sampled:
                prof.update(CPU="1", CPU_HZ="1000")
            r = run([sq, ":memory:"], d, prof=prof, stdin=sql)
            t.eq((r.rc, r.out), (0, "320000400000\n"),
                 "sqlite3 CLI computes the CTE (CPU %s)" % sampled, r.err)
            q = analyze(r.traces)["queries"]
            cte = [f for f in q["fingerprints"]
                   if f["fingerprint"].startswith("with recursive")]
            f = cte[0] if cte else {}
            t.eq(q["cpu_sampled"], sampled, "cpu_sampled: %s" % sampled)
            if not sampled:
                t.eq((f.get("cpu_ns"), f.get("cpu_samples")), (0, 0),
                     "not sampled: no CPU in the query")
                continue
            t.ok(f.get("cpu_samples", 0) >= 20 and
                 0.6 * f["total_ns"] <= f["cpu_ns"] <= 1.4 * f["total_ns"],
                 "the CTE is on CPU for its run (samples, CPU, time)",
                 f and (f["cpu_samples"], f["cpu_ns"], f["total_ns"]))
            slow = [x for x in q["slow"] if x["fingerprint"] == f.get("fingerprint")]
            w = slow[0]["worst"] if slow else {}
            t.ok(w and w["io_ns"] + w["fsync_ns"] + w["lock_ns"] + w["cpu_ns"] +
                 w["rest_ns"] == w["dur_ns"] and w["cpu_ns"] >= 0.6 * w["dur_ns"],
                 "its slow sample's split adds up, most of it on CPU", w)
            ins = [x for x in q["fingerprints"]
                   if x["fingerprint"].startswith("insert into t")]
            text = analyze(r.traces, fmt="text", extra=["queries"])
            row = [ln for ln in text.split("\n")
                   if ln.rstrip().endswith("insert into t values(?+)")]
            x = ins[0] if ins else {}
            t.ok(x and row and row[0].split()[4:8] ==
                 [fmt_ns(x[k]) for k in ("p50_ns", "p95_ns", "p99_ns", "max_ns")],
                 "the text row's p50, p95, p99 and max are the JSON's",
                 (row, x and [x[k] for k in ("p50_ns", "p95_ns", "p99_ns", "max_ns")]))
            t.ok("on CPU (sampled) " in text and ", on CPU " in text,
                 "the text report gives the CPU in queries", text[-1500:])

with t.section("the in-process pairs of make bench (sqlite_bench ab)"):
    # a bench tool, checked for what it does, not for its times: blocks of
    # selects alternate between the hooked sqlite3_step/reset and
    # libsqlite3's own (dlsym on its handle), which the hook never sees
    with Tmp() as d:
        db = os.path.join(d, "points.db")
        r = run([app("sqlite_bench"), "1", db], d, kprof=False, timeout=300)
        t.eq(r.rc, 0, "sqlite_bench creates its database", r.err)
        for under in (False, True):
            r = run([app("sqlite_bench"), "4000", db, "txn", "ab"], d,
                    kprof=under, prof={"MEMORY": "0", "IO": "0"})
            ab_pairs_ok(t, r, 2, "sqlite_bench ab %s kprof"
                        % ("under" if under else "without"))
            if under:
                got = {f["fingerprint"]: f["calls"] for f in
                       analyze(r.traces)["queries"]["fingerprints"]}
                t.eq(got.get("select v from t where k = ?"), 2000,
                     "sqlite_bench ab: the hooked blocks' 2,000 selects are "
                     "recorded, the direct ones are not", got)
t.done()
