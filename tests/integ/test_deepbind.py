"""Modules loaded with RTLD_DEEPBIND, as PHP loads its extensions.

Such a module binds its symbols in its own scope first (itself, then its
dependencies: libc's malloc, its libsqlite3), where libkprof.so's
definitions are not: its allocations, I/O and queries went unrecorded
and uncounted. kprof's dlopen loads these modules itself (a path: the
caller does not matter) and points their GOT slots of kprof's symbols
at kprof's where the module's scope gives what kprof's call on to
(preload/deepbind.c, preload/got.c).

tests/apps/sqlite_local.c --deep loads the plugins of tests/apps/sqlplug/
(one on libsqlite3, one on SQLCipher's SQLite) with RTLD_DEEPBIND; each
runs 300 prepared inserts and a count, leaks 7 x 333 bytes at plug_extra
and writes 4 KiB to PLUGIN.out with one fsync. Then a real PHP program
with PDO SQLite, and one with pgsql and PDO pgsql against a PostgreSQL
server started here (tests/integ/pgserver.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import (Fail, Tap, Tmp, analyze, app, need, run,  # noqa: E402
                    trace_header)
from pgserver import PgServer  # noqa: E402

t = Tap()

N = 300
INSERT, COUNT = "insert into t(a) values(?+)", "select count(*) from t"


def fingerprints(rep):
    return {f["fingerprint"]: f["calls"] for f in rep["queries"]["fingerprints"]}


def extra_leaks(rep):
    """{plugin module's file name: (blocks, bytes)} of plug_extra's leaks."""
    got = {}
    for lk in rep["memory"]["leaks"]:
        top = lk["stack"][0] if lk["stack"] else {}
        if top.get("function") == "plug_extra":
            got[os.path.basename(top["module"])] = (lk["blocks"], lk["bytes"])
    return got


def synced(rep, d, plugin):
    """(bytes, syncs) of the plugin's PLUGIN.out in the I/O report."""
    path = os.path.join(d, plugin + ".out")
    for f in rep["io"]["files"]:
        if f["path"] == path:
            return f["bytes"], f["syncs"]
    return None


with t.section("a module loaded with RTLD_DEEPBIND"):
    for how in ("now", "lazy"):
        for plugin in ("plain", "cipher"):
            label = "%s (%s)" % (plugin, how)
            with Tmp() as d:
                cmd = [app("sqlite_local"), "--deep", how, str(N), plugin]
                r0 = run(cmd, d, kprof=False)
                if r0.rc != 0 or not r0.out.startswith(plugin + " "):
                    raise Fail("sqlite_local --deep %s %s without kprof: %d %s"
                               % (how, plugin, r0.rc, r0.err))
                r = run(cmd, d)
                t.eq((r.rc, r.out, r.err), (0, r0.out, ""),
                     "%s: runs as without kprof" % label)
                rep = analyze(r.traces)
                fps = fingerprints(rep)
                t.ok(fps.get(INSERT) == N and fps.get(COUNT) == 1 and
                     rep["trace"]["events_lost"] == 0,
                     "%s: its queries recorded, none lost" % label,
                     (fps, rep["trace"]["events_lost_by_type"]))
                t.eq(extra_leaks(rep), {"libsqlplug_%s.so" % plugin: (7, 7 * 333)},
                     "%s: its leak, 7 x 333 bytes at plug_extra" % label)
                t.eq(synced(rep, d, plugin), (4096, 1),
                     "%s: its 4 KiB write and fsync" % label)

with t.section("two SQLites, each a module's"):
    # RTLD_LOCAL (now): as for RTLD_LOCAL plugins, the first library called
    # is recorded and the other's runs counted lost. RTLD_GLOBAL (lazy):
    # the first library is global, so kprof's hook hands every call to it;
    # the second module's calls to its own SQLite are left to it and go
    # unrecorded, which kprof says.
    for how in ("now", "lazy"):
        with Tmp() as d:
            cmd = [app("sqlite_local"), "--deep", how, str(N), "plain", "cipher"]
            r0 = run(cmd, d, kprof=False)
            r = run(cmd, d)
            t.eq((r.rc, r.out), (0, r0.out), "plain + cipher (%s): runs as without "
                 "kprof, each plugin on its own SQLite" % how, r.err)
            rep = analyze(r.traces)
            fps = fingerprints(rep)
            lost = rep["trace"]["events_lost_by_type"].get("query", 0)
            t.eq(extra_leaks(rep), {"libsqlplug_plain.so": (7, 2331),
                                    "libsqlplug_cipher.so": (7, 2331)},
                 "plain + cipher (%s): both modules' leaks" % how)
            t.eq((fps.get(INSERT), fps.get(COUNT)), (N, 1),
                 "plain + cipher (%s): the first library's queries recorded" % how)
            if how == "now":
                t.ok(lost >= N and r.err == "",
                     "now: the other's runs counted lost", (lost, r.err))
            else:
                t.ok(lost == 0 and "libsqlplug_cipher.so (loaded with RTLD_DEEPBIND) "
                     "calls sqlite3_" in r.err and "libsqlcipher.so.0" in r.err and
                     r.err.count("\n") == 1,
                     "lazy: the other's calls not recorded, and kprof says so once",
                     (lost, r.err))

with t.section("KOTOBA_PROFILE_DEEPBIND=0"):
    # every load left to glibc: the module's calls bind as they would
    # (tests/bench/sqlite_points.py's unhooked copy of a module)
    with Tmp() as d:
        cmd = [app("sqlite_local"), "--deep", "now", str(N), "plain"]
        r0 = run(cmd, d, kprof=False)
        r = run(cmd, d, prof={"DEEPBIND": "0"})
        t.eq((r.rc, r.out, r.err), (0, r0.out, ""), "runs as without kprof")
        rep = analyze(r.traces)
        t.eq((fingerprints(rep), extra_leaks(rep), synced(rep, d, "plain")),
             ({}, {}, None), "the module's calls are left unrecorded")
        t.eq(trace_header(r.traces[0])["config"].get("deepbind"), "0",
             "the trace's header says so")

PY_CTYPES = r"""
import ctypes, os, sys
lib = ctypes.CDLL("libsqlplug_plain.so", mode=os.RTLD_NOW | os.RTLD_DEEPBIND)
out = ctypes.create_string_buffer(128)
n = lib.plug_run(b"plain", int(sys.argv[1]), out, 128)
print(out.value.decode(), lib.plug_extra(7, b"plain.out"))
"""

with t.section("a bare name with RTLD_DEEPBIND"):
    # glibc finds a bare name through its caller's search path: kprof
    # loads it when it finds the same (deepbind.c, bare_name): here the
    # file in the program's RUNPATH, which kprof's own search lacks
    with Tmp() as d:
        cmd = [app("sqlite_local"), "--deep", "bare", str(N), "plain"]
        r0 = run(cmd, d, kprof=False)
        r = run(cmd, d)
        label = "bare name through the program's RUNPATH"
        t.eq((r0.rc, r.rc, r.out, r.err), (0, 0, r0.out, ""),
             "%s: loads as without kprof" % label)
        rep = analyze(r.traces)
        fps = fingerprints(rep)
        t.ok(fps.get(INSERT) == N and fps.get(COUNT) == 1 and
             rep["trace"]["events_lost"] == 0,
             "%s: its queries recorded, none lost" % label, fps)
        t.eq(extra_leaks(rep), {"libsqlplug_plain.so": (7, 7 * 333)},
             "%s: its leak, 7 x 333 bytes at plug_extra" % label)
        t.eq(synced(rep, d, "plain"), (4096, 1),
             "%s: its 4 KiB write and fsync" % label)
    # a caller with no search path of its own (python3's _ctypes): the
    # same search as kprof's; the name is found through LD_LIBRARY_PATH
    py = need("python3")
    plugins = os.path.join(os.path.dirname(app("sqlite_local")), "plugins")
    with Tmp() as d:
        script = os.path.join(d, "deep.py")
        with open(script, "w") as f:
            f.write(PY_CTYPES)
        env = {"LD_LIBRARY_PATH": plugins}
        r0 = run([py, script, "40"], d, kprof=False, env=env)
        r = run([py, script, "40"], d, env=env)
        label = "python3 ctypes, a bare name through LD_LIBRARY_PATH"
        t.eq((r0.rc, r.rc, r.out, r.err), (0, 0, r0.out, ""),
             "%s: loads as without kprof" % label, (r0.out, r0.err, r.err))
        rep = analyze(r.traces)
        fps = fingerprints(rep)
        t.ok(fps.get(INSERT) == 40 and fps.get(COUNT) == 1,
             "%s: its queries recorded" % label, fps)
        t.eq(extra_leaks(rep), {"libsqlplug_plain.so": (7, 7 * 333)},
             "%s: its leak, 7 x 333 bytes at plug_extra" % label)
    # where kprof cannot tell what glibc finds (a directory of
    # glibc-hwcaps variants on the way), glibc loads it unseen, and
    # kprof says so once
    with Tmp() as d:
        os.makedirs(os.path.join(d, "lib", "glibc-hwcaps", "x86-64-v2"))
        env = {"LD_LIBRARY_PATH": os.path.join(d, "lib")}
        cmd = [app("sqlite_local"), "--deep", "bare", str(N), "plain"]
        r0 = run(cmd, d, kprof=False, env=env)
        r = run(cmd, d, env=env)
        label = "bare name past a glibc-hwcaps directory"
        t.eq((r0.rc, r.rc, r.out), (0, 0, r0.out),
             "%s: loads as without kprof" % label)
        t.ok(r.err.count("\n") == 1 and "libsqlplug_plain.so, loaded with "
             "RTLD_DEEPBIND by its bare name, is not seen into" in r.err,
             "%s: one warning line says it is not seen into" % label, r.err)
        t.eq(fingerprints(analyze(r.traces)).get(INSERT), None,
             "%s: its queries are not recorded" % label)

# PHP loads every extension with RTLD_DEEPBIND; pdo_sqlite's calls went
# straight to libsqlite3: 0 queries recorded, none counted.
PHP_SCRIPT = r"""<?php
$db = new PDO("sqlite:" . $argv[1]);
$db->exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)");
$ins = $db->prepare("INSERT INTO users (name) VALUES (?)");
for ($i = 0; $i < 40; $i++)
    $ins->execute(["user" . $i]);
$one = $db->prepare("SELECT name FROM users WHERE id = ?");
for ($i = 1; $i <= 25; $i++) {
    $one->execute([$i]);
    $one->fetchAll();
}
echo $db->query("SELECT count(*) FROM users")->fetchColumn(), "\n";
"""
with t.section("PHP with PDO SQLite"):
    php = need("php")
    with Tmp() as d:
        script = os.path.join(d, "app.php")
        with open(script, "w") as f:
            f.write(PHP_SCRIPT)
        r0 = run([php, script, os.path.join(d, "plain.db")], d, kprof=False)
        r = run([php, script, os.path.join(d, "k.db")], d)
        t.eq((r0.rc, r0.out), (0, "40\n"), "php runs the script")
        t.eq((r.rc, r.out, r.err), (0, r0.out, ""), "and under kprof")
        rep = analyze(r.traces)
        fps = fingerprints(rep)
        want = {"create table users (id integer primary key, name text)": 1,
                "insert into users (name) values(?+)": 40,
                "select name from users where id = ?": 25,
                "select count(*) from users": 1}
        t.eq({k: fps.get(k) for k in want}, want,
             "its queries recorded, each fingerprint's calls", fps)
        t.eq(rep["trace"]["events_lost"], 0, "none lost")
        nplus = [n for n in rep["queries"]["n_plus_one"]
                 if n["fingerprint"] == "select name from users where id = ?"]
        t.ok(nplus and nplus[0]["stack"] and
             any("pdo_sqlite.so" in (fr["module"] or "") for fr in nplus[0]["stack"]),
             "the 25 selects found as an N+1 loop, called through pdo_sqlite.so",
             rep["queries"]["n_plus_one"][:1])

PHP_PG = r"""<?php
$c = pg_connect($argv[1]);
pg_query($c, "CREATE TABLE items (id serial PRIMARY KEY, name text)");
for ($i = 0; $i < 30; $i++)
    pg_query_params($c, "INSERT INTO items (name) VALUES ($1)", ["n" . $i]);
pg_prepare($c, "one", "SELECT name FROM items WHERE id = $1");
for ($i = 1; $i <= 12; $i++)
    pg_fetch_all(pg_execute($c, "one", [$i]));
echo pg_fetch_result(pg_query($c, "SELECT count(*) FROM items"), 0, 0), "\n";
$p = new PDO("pgsql:" . str_replace(" ", ";", $argv[1]));
echo $p->query("SELECT count(*) FROM items WHERE id > 5")->fetchColumn(), "\n";
"""
with t.section("PHP with pgsql and PDO pgsql (libpq)"):
    php = need("php")
    with PgServer() as pg, Tmp() as d:
        script = os.path.join(d, "pg.php")
        with open(script, "w") as f:
            f.write(PHP_PG)
        r = run([php, script, pg.conninfo()], d)
        t.eq((r.rc, r.out, r.err), (0, "30\n25\n", ""), "php runs the script under kprof")
        rep = analyze(r.traces)
        fps = {f["fingerprint"]: (f["calls"], f["rows"], f["source"])
               for f in rep["queries"]["fingerprints"]}
        want = {"create table items (id serial primary key, name text)": (1, 0, "libpq"),
                "insert into items (name) values(?+)": (30, 30, "libpq"),
                "select name from items where id = ?": (12, 12, "libpq"),
                "select count(*) from items": (1, 1, "libpq"),
                "select count(*) from items where id > ?": (1, 1, "libpq")}
        t.eq({k: fps.get(k) for k in want}, want,
             "pgsql and PDO pgsql: each fingerprint's calls and rows", fps)
        t.eq(rep["trace"]["events_lost"], 0, "none lost")

t.done()
