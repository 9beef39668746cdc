"""The query hook's cost on the issue's own example of an app: python3's
sqlite3 module (tests/bench/bench.py, query_bench). A loop of indexed point
selects through a secondary index, inside one read transaction (no file
locking or system calls per query), each a few microseconds: the
interpreter's work around SQLite's lookup. Timed inside the loop, so the
start-up and the trace's writing at exit are not counted.

    sqlite_points.py QUERIES DBFILE   prints "queries=N ns_per_query=X
    cpu_ns_per_query=Y" (DBFILE: the table t(id, k, v) with an index on k
    that tests/apps/sqlite_bench.c creates)
"""
import sqlite3
import sys
import time


def main():
    n = int(sys.argv[1])
    db = sqlite3.connect(sys.argv[2])
    # all of it in SQLite's page cache: CPU-bound lookups, no reads
    db.execute("PRAGMA cache_size = -131072")
    db.execute("SELECT sum(length(v)) FROM t").fetchone()
    rows = db.execute("SELECT count(*) FROM t WHERE k >= 0").fetchone()[0]
    cur = db.cursor()
    db.execute("BEGIN")
    found = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    for i in range(n):
        # k = (i * 7919) % rows is a permutation: every k once
        cur.execute("SELECT v FROM t WHERE k = ?", ((i * 7919) % rows,))
        found += cur.fetchone() is not None
    t1, c1 = time.perf_counter(), time.thread_time()
    db.execute("COMMIT")
    db.close()
    if found != n:
        sys.exit("found %d of %d" % (found, n))
    if n:
        print("queries=%d ns_per_query=%.1f cpu_ns_per_query=%.1f" %
              (n, (t1 - t0) * 1e9 / n, (c1 - c0) * 1e9 / n))


if __name__ == "__main__":
    main()
