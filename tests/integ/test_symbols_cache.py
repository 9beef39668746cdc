"""The cache of inflated debug files (KOTOBA_REPORT_CACHE, kprof-analyze(1)).

libc's debug file (libc6-dbg) keeps its DWARF compressed; kprof-analyze
inflates it into a copy, kept in $XDG_CACHE_HOME/kprof, else
~/.cache/kprof, else where KOTOBA_REPORT_CACHE says ("off": nowhere). A
report from the cache, made there or found there, must be the report
made without it; "off" must leave nothing on disk.
"""
import json
import os
import subprocess

from kptest import ANALYZE, Tap, Tmp, app, clean_env, debug_file, run

t = Tap()


def report(trace, env):
    """(rc, JSON report, stderr) of kprof-analyze in env (KOTOBA_* and the
    cache's variables as given, nothing inherited)."""
    e = {k: v for k, v in clean_env().items()
         if k not in ("HOME", "XDG_CACHE_HOME", "KOTOBA_REPORT_CACHE")}
    e.update(env)
    p = subprocess.run([ANALYZE, "--format", "json", trace], env=e,
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def copies(d):
    """{name: (mode, inode, mtime_ns)} of the copies in cache directory d."""
    if not os.path.isdir(d):
        return {}
    st = {n: os.stat(os.path.join(d, n)) for n in os.listdir(d)
          if n.endswith(".debug")}
    return {n: (s.st_mode & 0o777, s.st_ino, s.st_mtime_ns)
            for n, s in st.items()}


dbg = debug_file("/lib/x86_64-linux-gnu/libc.so.6")
if not dbg:
    t.ok(False, "libc6-dbg installed (tools/install-deps.sh test installs it)")
    t.done()
    raise SystemExit(1)
hdr = subprocess.run(["readelf", "-S", "-W", dbg], capture_output=True, text=True)
t.ok(any(".debug_info" in ln and " C " in ln for ln in hdr.stdout.splitlines()),
     "libc's debug file has compressed sections (else this tests nothing)")

with Tmp() as d:
    r = run([app("alloc_bench"), "2", "2000"], cwd=d)
    t.eq(r.rc, 0, "alloc_bench runs under kprof")
    trace = r.traces[0]
    home = os.path.join(d, "home")
    os.mkdir(home)

    rc, ref, err = report(trace, {"HOME": home, "KOTOBA_REPORT_CACHE": "off"})
    t.eq((rc, err), (0, ""), "off: a report")
    t.eq(os.listdir(home), [], "off: nothing kept")
    libc_frames = [f for s in json.loads(ref)["memory"]["top_by_calls"]
                   for f in s["stack"] if "libc.so" in (f.get("module") or "")
                   and f.get("line")]
    t.ok(libc_frames, "libc frames with lines (from its debug file)",
         ref[:600])

    cdir = os.path.join(home, ".cache", "kprof")
    rc, out, err = report(trace, {"HOME": home})
    t.eq((rc, err), (0, ""), "~/.cache/kprof: a report")
    t.ok(out == ref, "the report made with the cache is the same")
    first = copies(cdir)
    t.ok(first and all(v[0] == 0o600 for v in first.values()) and
         os.stat(cdir).st_mode & 0o777 == 0o700 and
         os.stat(os.path.dirname(cdir)).st_mode & 0o777 == 0o700,
         "~/.cache and ~/.cache/kprof made 0700, the copies 0600", first)

    rc, out, err = report(trace, {"HOME": home})
    again = copies(cdir)
    t.ok(rc == 0 and out == ref, "the report from the cache is the same")
    t.ok(sorted(again) == sorted(first) and
         all(again[n][1] == first[n][1] and again[n][2] > first[n][2]
             for n in first),
         "the copies were used, none made anew", (first, again))

    xdg = os.path.join(d, "xdg")
    os.mkdir(xdg)
    rc, out, err = report(trace, {"HOME": home, "XDG_CACHE_HOME": xdg})
    t.ok(rc == 0 and out == ref and
         sorted(copies(os.path.join(xdg, "kprof"))) == sorted(first),
         "XDG_CACHE_HOME/kprof before ~/.cache/kprof")

    own = os.path.join(d, "own")
    rc, out, err = report(trace, {"HOME": home, "KOTOBA_REPORT_CACHE": own})
    t.ok(rc == 0 and out == ref and sorted(copies(own)) == sorted(first),
         "KOTOBA_REPORT_CACHE names the directory")

    os.chmod(own, 0o777)
    rc, out, err = report(trace, {"HOME": home, "KOTOBA_REPORT_CACHE": own})
    t.ok(rc == 0 and out == ref and "not this user's alone" in err and
         len(err.splitlines()) == 1,
         "a directory others may write to: one warning, the same report", err)
    os.chmod(cdir, 0o777)
    rc, out, err = report(trace, {"HOME": home})
    t.ok(rc == 0 and out == ref and err == "",
         "... the default one: not used, silently", err)

    # a home of another user's (sudo keeping the caller's HOME): nothing
    # made in it
    other = os.path.join(d, "other")
    os.mkdir(other)
    if os.geteuid() == 0:
        os.chown(other, 65534, 65534)
        rc, out, err = report(trace, {"HOME": other})
        t.ok(rc == 0 and out == ref and err == "" and os.listdir(other) == [],
             "root with another user's HOME: nothing made there", err)
    else:
        t.ok(True, "# SKIP not root: no home of another user's to try")

t.done()
