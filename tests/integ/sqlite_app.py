# SPDX-License-Identifier: MIT
"""tests/apps/sqlite_app.c's statement list through python3's sqlite3
module (which dlopen()s libsqlite3 via _sqlite3), for test_query_sqlite.py.
Autocommit mode (isolation_level=None), so BEGIN/COMMIT are the app's own.
The app's trace callback (sqlite3_trace_v2) must still see its statement.

    /usr/bin/python3 sqlite_app.py DBFILE
"""
import sqlite3
import sys

db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
db.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INT, amount INT)")
INS = "INSERT INTO users(name, city) VALUES (?, ?)"


def insert_users(first, n):
    for i in range(first, first + n):
        db.execute(INS, ("bound_secret_%d" % i, "paris_zq9" if i % 2 else "rome"))


insert_users(1, 20)              # autocommit: a write storm
db.execute("BEGIN")
insert_users(21, 20)
for i in range(1, 41):
    db.execute("INSERT INTO orders(user_id, amount) VALUES (?, ?)", (i, 100 + i))
db.execute("COMMIT")

n = total = 0
for (uid,) in db.execute("SELECT id FROM users"):   # N+1
    n += 1
    total += len(db.execute("SELECT amount FROM orders WHERE user_id = ?",
                            (uid,)).fetchall())
for _ in range(2):                                  # a duplicate
    db.execute("SELECT name FROM users WHERE id = 7").fetchall()
# the app's own trace callback keeps working under kprof (not stolen)
traced = []
db.set_trace_callback(traced.append)
db.execute("SELECT count(*) FROM users WHERE city = 'paris_zq9'").fetchall()
db.set_trace_callback(None)
if traced != ["SELECT count(*) FROM users WHERE city = 'paris_zq9'"]:
    sys.exit("sqlite_app.py: the trace callback saw %r" % traced)
db.close()
print("users=%d order_rows=%d" % (n, total))
