"""Modules without a debug file: no debuginfod client without DEBUGINFOD_URLS.

When libdw's search finds no debug file for a module, its last resort is
its debuginfod client, which it loads the first time (libdebuginfod,
libcurl and some 30 libraries) and which, with DEBUGINFOD_URLS unset,
asks no server. kprof-analyze does not start that search when no file is
where it would look. Debian's sqlite3 (program and library) ships no
debug file: its report must not load libdebuginfod, and must be the same
report as the one libdw's whole search gives (DEBUGINFOD_URLS set to a
port nothing listens on, so the client runs and finds nothing).
"""
import os
import subprocess

from kptest import ANALYZE, Tap, Tmp, clean_env, debug_file, need, run

t = Tap()
sqlite = need("sqlite3")
strace = need("strace")


if debug_file(os.path.realpath(sqlite)):
    print("ok 1 - # SKIP sqlite3 has a debug file on this machine")
    raise SystemExit(0)

with Tmp() as d:
    script = "CREATE TABLE t(a);\n" + "".join(
        "INSERT INTO t VALUES('row %d');\n" % i for i in range(200))
    r = run([sqlite, os.path.join(d, "x.db")], cwd=d, stdin=script)
    t.eq(r.rc, 0, "sqlite3 runs under kprof")
    t.ok(len(r.traces) == 1, "one trace", r)

    def report(env_extra):
        env = {k: v for k, v in clean_env().items() if k not in env_extra}
        env.update({k: v for k, v in env_extra.items() if v is not None})
        log = os.path.join(d, "strace.log")
        p = subprocess.run([strace, "-f", "-e", "trace=openat", "-o", log,
                            ANALYZE, "--format", "json"] + r.traces,
                           capture_output=True, text=True, env=env, timeout=120)
        with open(log) as f:
            opened = f.read()
        return p.returncode, p.stdout, opened

    env = {k: None for k in ("DEBUGINFOD_URLS",)}
    env.update({"XDG_CACHE_HOME": d, "DEBUGINFOD_CACHE_PATH": os.path.join(d, "dc")})
    rc, rep, opened = report(dict(env))
    t.eq(rc, 0, "the analyzer reads the trace")
    t.ok("sqlite3" in rep, "the report shows sqlite3 frames")
    t.ok("libdebuginfod" not in opened and "libcurl" not in opened,
         "without DEBUGINFOD_URLS, libdebuginfod is not loaded")

    env["DEBUGINFOD_URLS"] = "http://127.0.0.1:9"
    rc2, rep2, opened2 = report(dict(env))
    t.eq(rc2, 0, "the analyzer reads it with DEBUGINFOD_URLS set")
    t.ok("libdebuginfod" in opened2,
         "with DEBUGINFOD_URLS, libdw's search goes to its client")
    t.ok(rep == rep2, "the same report either way")

t.done()
