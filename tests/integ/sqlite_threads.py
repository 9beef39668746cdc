# SPDX-License-Identifier: MIT
"""THREADS python threads, each with its own connection to one database
file, each running ROUNDS point selects and one insert per round, for
test_query_sqlite.py (the hook's statement table under concurrency).

    /usr/bin/python3 sqlite_threads.py DBFILE THREADS ROUNDS
"""
import sqlite3
import sys
import threading

path, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INT)")
db.execute("CREATE TABLE log(tno INT, i INT)")
db.execute("BEGIN")
for i in range(100):
    db.execute("INSERT INTO t VALUES (?, ?)", (i, i * i))
db.execute("COMMIT")
db.close()


errors = []


def work(tno):
    try:
        c = sqlite3.connect(path, isolation_level=None, timeout=120)
        c.execute("BEGIN IMMEDIATE")  # the write lock now (waits for it)
        for i in range(rounds):
            c.execute("SELECT v FROM t WHERE id = ?", (i % 100,)).fetchall()
            c.execute("INSERT INTO log VALUES (?, ?)", (tno, i))
        c.execute("COMMIT")
        c.close()
    except Exception as e:  # noqa: BLE001 - reported by the exit status
        errors.append(repr(e))


ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
for x in ts:
    x.start()
for x in ts:
    x.join()
if errors:
    sys.exit("sqlite_threads: %s" % errors)
print("ok")
