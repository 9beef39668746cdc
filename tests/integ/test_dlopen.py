"""Allocations from dlopen'ed libraries, including one loaded where a
dlclose'd library used to be.

tests/apps/dlopener.c loads its plugins by bare name through its RUNPATH
($ORIGIN/plugins): that works only if glibc sees the program as dlopen's
caller, which is why kprof's dlopen passes such calls on by a jump, not
a call (preload/deepbind.c). Plugin A leaks 3 x 555
bytes and is dlclosed; plugin B, usually mapped at A's old address, leaks
2 x 777. Each leak must name its own plugin's function, file and line: the
recorder rescans modules before publishing a new stack, the writer keeps
module changes and stacks in the order they happened, and the analyzer
resolves each stack against the modules mapped when it was written.
"""
from kptest import Tap, Tmp, analyze, app, leak_with, run, run_plain

t = Tap()

with Tmp() as d:
    plain = run_plain([app("dlopener")], cwd=d)
    r = run([app("dlopener")], cwd=d)
    t.eq((plain.rc, plain.out), (0, "ok\n"), "dlopener loads its plugins without kprof")
    t.eq((r.rc, r.out), (0, "ok\n"), "and under kprof (bare-name dlopen via RUNPATH)", r.err)
    rep = analyze(r.traces)
    for fn, src, blocks, size in (("plugin_a_leak", "libkpplug_a.c", 3, 555),
                                  ("plugin_b_leak", "libkpplug_b.c", 2, 777)):
        lk = leak_with(rep, fn)
        t.ok(lk is not None, "a leak group names %s" % fn,
             [[f["function"] for f in l["stack"][:2]] for l in rep["memory"]["leaks"]])
        if not lk:
            continue
        t.eq((lk["blocks"], lk["bytes"]), (blocks, blocks * size),
             "%s: %d blocks of %d bytes" % (fn, blocks, size))
        top = lk["stack"][0]
        t.eq(top["function"], fn, "%s is the innermost frame" % fn)
        t.ok((top["file"] or "").endswith(src) and (top["line"] or 0) > 0,
             "%s has %s:line" % (fn, src), top)
        t.ok(top["module"].endswith(src.replace(".c", ".so")),
             "%s is in its own module" % fn, top["module"])

t.done()
