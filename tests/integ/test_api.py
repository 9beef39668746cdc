"""The public API of preload/kprof.h, from an app (tests/apps/apiflush.c).

Without libkprof.so the weak symbols are NULL: kprof_loaded() is 0 and
kprof_flush_if_loaded() returns -1, nothing breaks. Under kprof, with a
flush interval of one minute, the app leaks 5 x 321 bytes, calls
kprof_flush() and SIGKILLs itself: the trace (truncated, since the process
was killed) holds the leak only because of the explicit flush — the
control that skips the flush leaves no readable events.
"""
import subprocess

from kptest import SRC, Tap, Tmp, analyze, analyze_raw, app, leak_with, run, run_plain

t = Tap()
version = subprocess.run(["sh", "-c", "sed -n 's/^VERSION := //p' Makefile"],
                         capture_output=True, text=True,
                         cwd=SRC).stdout.strip()

with Tmp() as d:
    r = run_plain([app("apiflush")], cwd=d)
    t.eq((r.rc, r.out), (0, "loaded=0 version=none\nflush=-1\n"),
         "without kprof: not loaded, flush is a no-op")

with Tmp() as d:
    r = run([app("apiflush"), "kill"], cwd=d, prof={"FLUSH_MS": "60000"})
    t.eq(r.rc, -9, "under kprof: the app killed itself")
    t.eq(r.out, "loaded=1 version=%s\nflush=0\n" % version,
         "under kprof: loaded, version %s, flush returned 0" % version)
    rep = analyze(r.traces)
    t.eq(rep["trace"]["truncated"], True, "the trace is truncated (SIGKILL)")
    lk = leak_with(rep, "api_leak")
    t.eq(lk and (lk["blocks"], lk["bytes"]), (5, 1605),
         "the flushed allocations are in it")

with Tmp() as d:
    r = run([app("apiflush"), "noflush"], cwd=d, prof={"FLUSH_MS": "60000"})
    t.eq(r.rc, -9, "control: killed without flushing")
    rc, out, err = analyze_raw(["--format", "json"] + r.traces)
    t.ok(rc != 0 or '"api_leak"' not in out,
         "control: without the flush the leak is not on disk", (rc, err))

t.done()
