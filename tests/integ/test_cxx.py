# SPDX-License-Identifier: MIT
"""C++ allocation (issue #2 test 3): tests/apps/cxxnew.cc.

new/delete, new[]/delete[], std::vector growth and one leaked `new Widget`
from kpwidgets::make_leaked_widget(int). The leak's stack must name that
function demangled, with operator new trimmed from its top.

Blocks that are not the app's: libstdc++ allocates its exception emergency
pool (one block, ~72 KiB, in a static constructor through
__static_initialization_and_destruction / pool::pool) and frees it only in
__gnu_cxx::__freeres, which valgrind calls and a normal exit does not. It is
seen by kprof (kprof initialises on the first malloc of the process) and
stays in use at exit: exactly one extra alloc call and one extra block, whose
bytes the test reads from its leak group.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
APP = app("cxxnew")

with t.section("cxxnew"):
    with Tmp() as d:
        plain = run_plain([APP], d)
        r = run([APP], d)
        t.eq(r.rc, 0, "cxxnew exits 0 under kprof", r.err)
        t.eq(r.out, plain.out, "stdout identical with and without kprof")
        want = counts_from(r.out)
        rep = analyze(r.traces)
        m = rep["memory"]
        lw = leak_with(rep, "make_leaked_widget")
        t.eq((lw["bytes"], lw["blocks"]), (want["widget_size"], 1),
             "leaked Widget: one block of sizeof(Widget)")
        top = (lw["stack"] or [{}])[0].get("function") or ""
        t.ok(top.split("(")[0] == "kpwidgets::make_leaked_widget",
             "the leak's innermost frame is kpwidgets::make_leaked_widget "
             "(demangled; operator new trimmed)", funcs(lw["stack"]))
        t.ok(not any("operator new" in f for f in funcs(lw["stack"])),
             "no operator new frame in the leak stack", funcs(lw["stack"]))
        t.ok(not any(f.startswith("_Z") for f in funcs(lw["stack"])),
             "no mangled names in the leak stack", funcs(lw["stack"]))
        t.ok(stack_has(lw["stack"], "main"), "the leak stack reaches main",
             funcs(lw["stack"]))
        f = frame_of(lw["stack"], "make_leaked_widget")
        t.ok(f and (f.get("file") or "").endswith("cxxnew.cc") and
             (f.get("line") or 0) > 0, "file cxxnew.cc and a line", f)
        # one block from a site that ran once: the analyzer says "medium"
        # ("allocated once and never freed"); not "low" (start-up singleton)
        t.ok(lw["confidence"] in ("high", "medium") and (lw.get("reason") or "").strip(),
             "confidence high or medium, with a reason",
             (lw["confidence"], lw.get("reason")))

        # libstdc++'s emergency pool: the only other block in use
        others = [l for l in m["leaks"] if l is not lw]
        t.eq([l["blocks"] for l in others], [1],
             "one other block in use: libstdc++'s emergency EH pool",
             leak_summary(rep))
        pool = sum(l["bytes"] for l in others)
        t.ok(pool >= 1024, "the emergency pool is a large block", pool)
        t.eq(m["in_use_at_exit"], {"bytes": want["leaked_bytes"] + pool,
                                   "blocks": 2},
             "in_use_at_exit = the Widget + the pool")
        t.eq(m["alloc_calls"], want["allocs"] + 1,
             "alloc_calls = the app's count + the pool")
        t.eq(m["free_calls"], want["frees"], "free_calls = the app's count")
        t.eq(m["bytes_allocated"], want["bytes"] + pool,
             "bytes_allocated = the app's count + the pool")
        t.eq(m["unmatched_frees"], 0, "no unmatched frees")
        t.ok(all("operator new" not in ((s["stack"] or [{}])[0].get("function") or "")
                 for s in m["top_by_calls"] if s["stack"]),
             "operator new trimmed from every top_by_calls stack",
             [funcs(s["stack"])[:2] for s in m["top_by_calls"]])

t.done()
