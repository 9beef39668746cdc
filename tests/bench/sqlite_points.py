"""The query hook's cost on the issue's own example of an app: python3's
sqlite3 module (tests/bench/bench.py, query_bench). A loop of indexed point
selects through a secondary index, inside one read transaction (no file
locking or system calls per query), 2 to 2.6 microseconds each on the
2-core machines here: the interpreter's work around SQLite's lookup.
Timed inside the loop, so the start-up and the trace's writing at exit
are not counted.

    sqlite_points.py QUERIES DBFILE   prints "queries=N ns_per_query=X
    cpu_ns_per_query=Y" (DBFILE: the table t(id, k, v) with an index on k
    that tests/apps/sqlite_bench.c creates)

    sqlite_points.py QUERIES DBFILE ab   the same queries in blocks of
    1,000 that alternate between two connections: one of the sqlite3
    module as the app has it (its calls into libsqlite3 go through kprof's
    hook when kprof is preloaded) and one of a second copy of the module
    loaded with RTLD_DEEPBIND (its calls bind to libsqlite3's own
    definitions first: not hooked when kprof runs with
    KOTOBA_PROFILE_DEEPBIND=0, as bench.py runs it), which goes first
    alternating too;
    prints "pairs=P hook_ns=H direct_ns=D added_ns=A added_cpu_ns=C" as
    tests/apps/abpairs.h does. Without kprof A is the difference between
    the two copies of the module, a few tens of ns either way.
"""
import importlib.util
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time


def unhooked_module():
    """A second copy of the _sqlite3 extension, loaded with RTLD_DEEPBIND
    from a copy of its file (the same path would give the module already
    loaded): its own dependencies, libsqlite3 among them, come before the
    global scope where an interposer's sqlite3_step is."""
    import _sqlite3
    d = tempfile.mkdtemp(prefix="kprof-bench-mod-")
    try:
        dst = os.path.join(d, os.path.basename(_sqlite3.__file__))
        shutil.copy(_sqlite3.__file__, dst)
        flags = sys.getdlopenflags()
        sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
        loaded = sys.modules.pop("_sqlite3")
        try:
            spec = importlib.util.spec_from_file_location("_sqlite3", dst)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        finally:
            sys.modules["_sqlite3"] = loaded
            sys.setdlopenflags(flags)
        return mod
    finally:
        shutil.rmtree(d, ignore_errors=True)


def open_db(module, path):
    """A connection in a read transaction, its table in SQLite's page
    cache (CPU-bound lookups, no reads); its cursor and the row count."""
    db = module.connect(path)
    db.execute("PRAGMA cache_size = -131072")
    db.execute("SELECT sum(length(v)) FROM t").fetchone()
    rows = db.execute("SELECT count(*) FROM t WHERE k >= 0").fetchone()[0]
    db.execute("BEGIN")
    return db, db.cursor(), rows


def selects(cur, first, n, rows):
    """n point selects from query number first on; how many found a row.
    k = (i * 7919) % rows is a permutation: every k once a round."""
    found = 0
    for i in range(first, first + n):
        cur.execute("SELECT v FROM t WHERE k = ?", ((i * 7919) % rows,))
        found += cur.fetchone() is not None
    return found


def ab(n, path):
    conns = [open_db(sqlite3, path), open_db(unhooked_module(), path)]
    rows = conns[0][2]
    block, done, found = 1000, 0, 0
    wall = ([], [])
    dw, dc = [], []
    for p in range(max(n // (2 * block), 1)):
        took = [None, None]
        for o in range(2):
            direct = (p + o) & 1
            t0, c0 = time.perf_counter(), time.thread_time()
            found += selects(conns[direct][1], done, block, rows)
            t1, c1 = time.perf_counter(), time.thread_time()
            done += block
            took[direct] = ((t1 - t0) * 1e9 / block, (c1 - c0) * 1e9 / block)
        for direct in (0, 1):
            wall[direct].append(took[direct][0])
        dw.append(took[0][0] - took[1][0])
        dc.append(took[0][1] - took[1][1])
    for db, _, _ in conns:
        db.execute("COMMIT")
        db.close()
    if found != done:
        sys.exit("found %d of %d" % (found, done))
    print("pairs=%d hook_ns=%.1f direct_ns=%.1f added_ns=%.1f added_cpu_ns=%.1f" % (
        len(dw), statistics.median(wall[0]), statistics.median(wall[1]),
        statistics.median(dw), statistics.median(dc)))


def main():
    n = int(sys.argv[1])
    if len(sys.argv) > 3 and sys.argv[3] == "ab":
        ab(n, sys.argv[2])
        return
    db, cur, rows = open_db(sqlite3, sys.argv[2])
    t0, c0 = time.perf_counter(), time.thread_time()
    found = selects(cur, 0, n, rows)
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
