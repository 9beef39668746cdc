"""The outputs that put every kind of event on one clock, on a real
program: the sqlite3 CLI on a file database (queries through the SQLite
hook, I/O with its fsyncs, allocations) exported as a Chrome trace, and
the I/O time as folded stacks. Each is checked against the records
themselves (`kprof-analyze dump`)."""
import json
import os

from kptest import Tap, Tmp, analyze, analyze_raw, dump, need, run

t = Tap()
SQLITE = need("sqlite3")

SQL = "".join(["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n"] +
              ["INSERT INTO t(v) VALUES('row %d');\n" % i for i in range(30)] +
              ["SELECT count(*) FROM t WHERE v LIKE 'row 1%';\n"])

with Tmp() as d:
    r = run([SQLITE, os.path.join(d, "t.db")], d, stdin=SQL)
    t.eq((r.rc, r.out.strip()), (0, "11"), "sqlite3 ran its script unchanged")
    recs = [x for x in dump(r.traces) if x.get("type") != "header"]
    ios = [x for x in recs if x["type"] == "io"]
    queries = [x for x in recs if x["type"] == "query"]
    t.ok(len(queries) >= 32, "the queries were recorded (%d)" % len(queries))
    syncs = [x for x in ios if x["kind"] in (9, 10)]  # fsync, fdatasync
    t.ok(len(syncs) >= 30, "each autocommit insert synced (%d syncs)" % len(syncs))

    ch = os.path.join(d, "trace.json")
    rc, out, err = analyze_raw(["export", "--chrome", ch, "--io-min-us", "0"]
                               + r.traces)
    t.eq(rc, 0, "export --chrome", err)
    with open(ch) as f:
        doc = json.load(f)
    evs = doc["traceEvents"] if isinstance(doc, dict) else doc
    io_ev = [e for e in evs if e.get("ph") == "X" and
             str(e.get("name", "")).startswith("io:")]
    t.eq(len(io_ev), len(ios), "chrome: one X event per I/O call")
    names = {e["name"] for e in io_ev}
    t.ok(names & {"io:fsync", "io:fdatasync"} and
         names & {"io:pwrite", "io:write"},
         "chrome: I/O events named by operation: %s" % sorted(names)[:8])
    q_ev = [e for e in evs if e.get("ph") == "X" and e.get("cat") == "query"]
    t.eq(len(q_ev), len(queries), "chrome: one X event per query")
    t.ok(any("insert into t" in e["name"].lower() for e in q_ev) and
         not any("row 1" in e["name"] for e in q_ev),
         "chrome: queries by fingerprint, no literal")

    rc, folded, err = analyze_raw(["flame", "--what", "io", "--folded"] +
                                  r.traces)
    t.eq(rc, 0, "flame --what io --folded", err)
    total = sum(int(line.rsplit(" ", 1)[1]) for line in folded.splitlines()
                if line.strip())
    t.eq(total, sum(max(0, x["v"][4]) for x in ios),
         "folded I/O time = the sum of the I/O calls' durations")
    rep = analyze(r.traces)
    fps = {f["fingerprint"]: f for f in rep["queries"]["fingerprints"]}
    ins = [f for k, f in fps.items() if k.startswith("insert into t")]
    t.ok(ins and ins[0]["calls"] == 30 and ins[0]["fsyncs"] >= 30,
         "the insert fingerprint: 30 calls and their fsyncs", ins[:1])
t.done()
