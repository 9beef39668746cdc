"""Line numbers for programs built with clang.

clang does not emit .debug_aranges by default, and libdw (0.188) finds a
line only through it, so kprof-analyze looks the address up in its own
index of compile-unit ranges. tests/apps/leaky.c is built here with
`clang -g`; its leak must be reported with file and line, as for gcc.
"""
import os
import subprocess

from kptest import SRC, Tap, Tmp, analyze, leak_with, need, run

t = Tap()
need("clang")

with Tmp() as d:
    exe = os.path.join(d, "leaky-clang")
    c = subprocess.run(["clang", "-g", "-O0", "-fno-omit-frame-pointer",
                        "-D_GNU_SOURCE", os.path.join(SRC, "tests", "apps", "leaky.c"),
                        "-o", exe, "-lpthread"], capture_output=True, text=True)
    t.eq(c.returncode, 0, "leaky.c builds with clang -g", c.stderr[-500:])
    r = run([exe], cwd=d)
    t.eq(r.rc, 0, "it runs under kprof")
    rep = analyze(r.traces)
    lk = leak_with(rep, "leak_thousand")
    frame = next((f for f in (lk or {}).get("stack", [])
                  if f["function"] == "leak_thousand"), None)
    t.ok(frame is not None, "the leak_thousand group is found")
    if frame:
        t.ok((frame["file"] or "").endswith("leaky.c"), "its frame names leaky.c", frame)
        t.ok(isinstance(frame["line"], int) and frame["line"] > 0,
             "and a line number", frame)

t.done()
