# SPDX-License-Identifier: MIT
"""The libpq query hook against a real PostgreSQL server (issue 4), started
here (tests/integ/pgserver.py: initdb in a temp dir, Unix socket only, an
unprivileged user, stopped by PID): tests/apps/pq_app.c (sync, params,
prepared, async, an error), psql and pgbench as unmodified clients;
exact counts per fingerprint, rows, the SQLSTATE of the error, the N+1
of the prepared lookups, and no literal or parameter in the trace.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403
from pgserver import PgServer  # noqa: E402

t = Tap()

# fingerprint -> (calls, rows, errors)
PQ_WANT = {
    "create table items(id int primary key, name text, qty int)": (1, 0, 0),
    "insert into items values(?+)": (10, 10, 0),
    "select qty from items where id = ?": (11, 11, 0),
    "select count(*) from items where name = ?": (2, 2, 0),
    "select id from items order by id": (1, 10, 0),
    "update items set qty = qty + ? where id = ?": (1, 1, 0),
    "select * from no_such_table": (1, 0, 1),
}
TPCB = {
    "begin": 20, "end": 20,
    "update pgbench_accounts set abalance = abalance + ? where aid = ?": 20,
    "select abalance from pgbench_accounts where aid = ?": 20,
    "update pgbench_tellers set tbalance = tbalance + ? where tid = ?": 20,
    "update pgbench_branches set bbalance = bbalance + ? where bid = ?": 20,
    "insert into pgbench_history (tid, bid, aid, delta, mtime) values "
    "(?, ?, ?, ?, current_timestamp)": 20,
}


def sqlstate(v):
    return "".join(chr((v >> (8 * (4 - i))) & 0xff) for i in range(5))


with t.section("postgresql"):
    with PgServer() as pg:
        with Tmp() as d:
            # the C client
            r = run([app("pq_app"), pg.conninfo()], d)
            t.eq((r.rc, r.err, r.out), (0, "", "sum=165 ids=10 one=1 failed=1\n"),
                 "pq_app runs under kprof")
            q = analyze(r.traces)["queries"]
            got = {f["fingerprint"]: (f["calls"], f["rows"], f["errors"])
                   for f in q["fingerprints"]}
            t.eq(got, PQ_WANT, "pq_app: calls, rows, errors per fingerprint "
                 "(sync, params, prepared, async)")
            t.ok(all(f["source"] == "libpq" for f in q["fingerprints"]),
                 "pq_app: every query from the libpq hook")
            prep = [f for f in q["fingerprints"]
                    if f["fingerprint"] == "select qty from items where id = ?"]
            t.ok(prep and prep[0]["prepare_ns"] > 0,
                 "pq_app: PQprepare's time is charged to the prepared statement", prep)
            np1 = [(n["fingerprint"], n["queries"]) for n in q["n_plus_one"]]
            t.ok(("select qty from items where id = ?", 10) in np1 and
                 ("insert into items values(?+)", 10) in np1,
                 "pq_app: N+1 of the prepared lookups and the insert loop", np1)
            # a query's stack is where it began: the async ones were sent
            # from main and ended in drain()'s PQgetResult loop
            sites = {}
            for f in q["fingerprints"]:
                for c in f["call_sites"]:
                    own = [x.get("function") for x in c["stack"]
                           if x.get("module", "").endswith("/pq_app")]
                    sites.setdefault(f["fingerprint"], set()).add(own[0] if own else None)
            t.eq({k: sites.get(k) for k in ("select id from items order by id",
                                            "update items set qty = qty + ? where id = ?",
                                            "select qty from items where id = ?")},
                 {"select id from items order by id": {"main"},
                  "update items set qty = qty + ? where id = ?": {"main"},
                  "select qty from items where id = ?": {"main"}},
                 "pq_app: the async queries' call site is their send's (main), "
                 "not drain()'s PQgetResult")
            recs = dump(r.traces)
            errs = [x for x in recs if x["type"] == "query" and x["v"][3] != 0]
            t.eq([(sqlstate(x["v"][3]), bool(x["v"][10] & 8)) for x in errs],
                 [("42P01", True)], "pq_app: the failed query carries SQLSTATE 42P01")
            autoc = [bool(x["v"][10] & 1) for x in recs if x["type"] == "query"]
            t.eq(autoc, [True] * 27, "pq_app: every query ran in autocommit "
                 "(PQtransactionStatus idle)")
            begins = sum(1 for x in recs if x["type"] == "query_begin")
            t.eq(begins, 27, "pq_app: one QUERY_BEGIN per query")
            blob = "\n".join(json.dumps(x) for x in recs)
            t.ok("pq_secret" not in blob and "pq_literal_zq7" not in blob,
                 "pq_app: no parameter or literal in the trace")
            # the count by name scans the table on the server, but libpq
            # tells the client nothing of it: no evidence, no advice
            t.eq((q["index_advice"], sum(f["full_scan_calls"] for f in q["fingerprints"])),
                 ([], 0), "pq_app: no index advice without scan evidence (libpq)")
            st = [(s["fingerprint"], s["statements"]) for s in q["write_storms"]]
            t.eq(st, [("insert into items values(?+)", 11)],
                 "pq_app: the 10 autocommit inserts and the update: one write storm")

            # psql, unmodified
            psql = need("psql")
            r = run([psql, "-X", "-At", "-h", pg.dir, "-p", pg.port, "-U", pg.user,
                     "-d", "postgres", "-c", "SELECT 41 + 1", "-c",
                     "SELECT count(*) FROM items WHERE qty > 3"], d)
            t.eq((r.rc, r.out), (0, "42\n10\n"), "psql runs under kprof", r)
            q = analyze(r.traces)["queries"]
            t.eq(sorted((f["fingerprint"], f["calls"], f["rows"]) for f in q["fingerprints"]),
                 [("select ? + ?", 1, 1), ("select count(*) from items where qty > ?", 1, 1)],
                 "psql: exactly its two queries")

            # pgbench, unmodified: 20 TPC-B transactions, prepared protocol
            pgbench = need("pgbench")
            base = ["-h", pg.dir, "-p", pg.port, "-U", pg.user]
            r = run_plain([pgbench, "-i", "-q", "-s", "1"] + base + ["postgres"], d,
                          timeout=300)
            t.eq(r.rc, 0, "pgbench -i (not traced)", r.err[-500:])
            # three lookups for the index advice below, while every balance
            # is 0 (pgbench's transactions change some: one of them may
            # become 7)
            lookups = run([psql, "-X", "-At", "-h", pg.dir, "-p", pg.port, "-U",
                           pg.user, "-d", "postgres",
                           "-c", "SELECT count(*) FROM pgbench_accounts WHERE abalance = 7",
                           "-c", "SELECT abalance FROM pgbench_accounts WHERE aid = 7",
                           "-c", "SELECT count(*) FROM items WHERE name = 'x'"], d)
            t.eq((lookups.rc, lookups.out), (0, "0\n0\n0\n"), "psql: three lookups",
                 lookups)
            for mode in ("prepared", "simple"):
                r = run([pgbench, "-n", "-t", "20", "-c", "1", "-M", mode] + base +
                        ["postgres"], d, timeout=300)
                t.eq(r.rc, 0, "pgbench -M %s runs under kprof" % mode, r.err[-500:])
                q = analyze(r.traces)["queries"]
                got = {f["fingerprint"]: f["calls"] for f in q["fingerprints"]
                       if f["fingerprint"] in TPCB}
                t.eq(got, TPCB, "pgbench -M %s: 20 of each TPC-B statement" % mode)
                other = sorted(f["fingerprint"][:40] for f in q["fingerprints"]
                               if f["fingerprint"] not in TPCB)
                t.eq(len(other), 2, "pgbench -M %s: and its 2 start-up queries" % mode,
                     other)
                t.eq(sum(f["errors"] for f in q["fingerprints"]), 0,
                     "pgbench -M %s: no failed query" % mode)

            # index advice for libpq queries: only with --pg-dsn, only where
            # the server's generic plan scans a table of >= 1000 rows (the
            # lookups' traces, taken above)
            r = lookups
            q = analyze(r.traces)["queries"]
            t.eq(q["index_advice"], [], "libpq: no advice without --pg-dsn")
            q = analyze(r.traces, extra=["--pg-dsn", pg.conninfo()])["queries"]
            adv = [(a["fingerprint"], a["statement"], a["evidence"], a["verified"])
                   for a in q["index_advice"]]
            t.eq(adv, [("select count(*) from pgbench_accounts where abalance = ?",
                        "CREATE INDEX kp_pgbench_accounts_abalance ON "
                        "pgbench_accounts(abalance);", "server_plan", None)],
                 "--pg-dsn: advice for the sequential scan of the 100000-row table "
                 "only (not the primary-key lookup, not the 10-row table)", q["index_advice"])
            a = q["index_advice"][0] if q["index_advice"] else {}
            t.ok(a.get("table_rows", 0) >= 1000 and
                 "Seq Scan on pgbench_accounts" in (a.get("plan_before") or ""),
                 "--pg-dsn: the evidence: the server's plan and row estimate", a)
            out = analyze(r.traces, fmt="text",
                          extra=["queries", "--pg-dsn", pg.conninfo()])
            t.ok("CREATE INDEX kp_pgbench_accounts_abalance" in out and
                 "the server plans a sequential scan of pgbench_accounts" in out,
                 "--pg-dsn: the text report names the advice and its evidence",
                 out[-1500:])
            chk = run_plain([psql, "-X", "-At", "-h", pg.dir, "-p", pg.port, "-U",
                             pg.user, "-d", "postgres", "-c",
                             "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'kp_%'"], d)
            t.eq(chk.out, "0\n", "--pg-dsn: no index created on the server")
t.done()
