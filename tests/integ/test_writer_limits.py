"""The recorder never hangs or loses its header because of its own limits.

- An argument longer than the format's 4096-byte string limit (a `sh -c`
  script, `python -c`, a long compiler line) is cut in the header; the
  trace stays readable. Before the fix the header was refused, nothing was
  ever written, and a busy program hung on its full rings.
- When the trace cannot be written any more (here: RLIMIT_FSIZE, with the
  app ignoring SIGXFSZ), recording stops with one warning and the app runs
  to its normal end instead of waiting for a writer that cannot drain;
  with stacks (compressed frames, write) and without (stored frames,
  writev cut short), and what was written reads as a truncated trace.
"""
import os
import resource

from kptest import PY, Tap, Tmp, analyze, run

t = Tap()
long_arg = "x" * 5000

with Tmp() as d:
    r = run(["/bin/echo", long_arg], cwd=d)
    t.eq(r.rc, 0, "echo with a 5000-byte argument exits 0")
    t.eq(r.out, long_arg + "\n", "its output is unchanged")
    t.eq(len(r.traces), 1, "one trace")
    if r.traces:
        rep = analyze(r.traces)
        argv = rep["trace"]["processes"][0]["argv"]
        t.eq([len(a) for a in argv], [9, 4095], "argv kept, the long one cut to 4095 bytes")
        t.eq(rep["trace"]["truncated"], False, "trace complete")

with Tmp() as d:
    # Objects over 512 bytes bypass pymalloc: every one is a malloc.
    script = "x = [bytes(600 + i % 100) for i in range(300000)]\nprint(len(x))\n#" + "y" * 5000
    r = run([PY, "-c", script], cwd=d, timeout=60)
    t.eq((r.rc, r.out), (0, "300000\n"), "a busy python3 with a long -c script finishes")
    if r.traces:
        rep = analyze(r.traces)
        t.ok(rep["memory"]["alloc_calls"] > 100000, "its allocations are recorded")
        t.eq(rep["trace"]["events_lost"], 0, "none lost")
    else:
        t.ok(False, "its allocations are recorded", "no trace")

with Tmp() as d:
    script = ("import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "x = [bytes(600 + i % 100) for i in range(1000000)]\nprint(len(x))\n")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    # with stacks, compressed frames (write); without, stored frames
    # (writev, cut short by the limit)
    for how, prof in (("stacks", {"BUFFER_KB": "64"}),
                      ("no stacks", {"BUFFER_KB": "64", "STACK_DEPTH": "0"})):
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        r = run([PY, "-c", script], cwd=d, timeout=120, preexec_fn=limit,
                prof=prof)
        t.eq((r.rc, r.out), (0, "1000000\n"),
             "%s: the app finishes although its trace cannot grow" % how)
        warn = [l for l in r.err.splitlines() if l.startswith("kprof:")]
        t.eq(len(warn), 1, "%s: one warning line" % how, r.err[-500:])
        t.ok(warn and "recording stops" in warn[0], "%s: it says recording stops" % how,
             warn)
        t.ok(len(r.traces) == 1 and os.path.getsize(r.traces[0]) <= 64 * 1024,
             "%s: the trace stopped at the limit" % how, r.traces)
        rep = analyze(r.traces) if r.traces else {"trace": {}}
        t.eq(rep["trace"].get("truncated"), True,
             "%s: what was written reads, as a truncated trace" % how)

t.done()
