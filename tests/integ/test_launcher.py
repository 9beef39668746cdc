# SPDX-License-Identifier: MIT
"""The launcher build/kprof (tools/kprof.sh).

--version, --help, usage errors (exit 2, nothing run); `kprof run` gives the
same stdout and exit status as the program alone and one trace named after
the program's pid (the launcher execs it); each option has the effect of its
KOTOBA_PROFILE_* variable: the trace header's "config" map (the recorder's
effective settings, read here from the uncompressed header) is the same as
with the variable, and the behaviour shows it; -a prints the report of this
run's traces only on stderr, after the program, and keeps its exit status;
`make install DESTDIR= PREFIX=` gives a launcher that finds the installed
library (the KPROF_LIB_DEFAULT line rewritten by the install rule).
"""
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
KPROF = os.path.join(BUILD, "kprof")
LEAKY = app("leaky")
STORM = app("storm")
LIFE = app("lifecycle")
PRINTENV = shutil.which("printenv") or "/usr/bin/printenv"

# Defaults of preload/config.c (documented in kprof(7)), as the header's
# config map spells them.
DEFAULT_CONFIG = {"memory": "1", "output": "kprof.%p.kpz", "stack_depth": "64",
                  "buffer_kb": "1024", "overflow": "wait", "flush_ms": "100",
                  "zstd_level": "1", "zstd_literals": "compressed", "io": "1",
                  "io_stacks": "1", "leak_scan": "0"}
# query profiling (issue 4, preload/config.c)
DEFAULT_CONFIG.update({"query": "1", "query_hooks": "all", "query_plugin": "",
                       "slow_query_ms": "100", "query_text": "fingerprint"})
# CPU sampling (issue 5)
DEFAULT_CONFIG.update({"cpu": "0", "cpu_hz": "100"})
# resource snapshots (preload/snapshot.c)
DEFAULT_CONFIG.update({"sampling_interval_ms": "100", "max_snapshots": "100000"})
# signals that kill (preload/signals.c): auto, so as CPU sampling
DEFAULT_CONFIG.update({"signals": "0"})
# the stack unwinder (preload/unwind.c)
DEFAULT_CONFIG.update({"unwind": "fast"})
# how the SQLite hook reads its counters (preload/hook_sqlite.c)
DEFAULT_CONFIG.update({"sqlite_counters": "auto"})
DEFAULT_CONFIG.update({"python": "1"})
# modules loaded with RTLD_DEEPBIND (preload/deepbind.c)
DEFAULT_CONFIG.update({"deepbind": "1"})


def makefile_version():
    with open(os.path.join(SRC, "Makefile")) as f:
        m = re.search(r"^VERSION\s*:?=\s*(\S+)", f.read(), re.M)
    if not m:
        raise Fail("no VERSION in the Makefile")
    return m.group(1)


def kprof(args, cwd, env=None, launcher=None, **kw):
    """Run the launcher (not itself under the preload): Result."""
    need(launcher or KPROF)
    return run([launcher or KPROF] + list(args), cwd, kprof=False, env=env, **kw)


header = trace_header  # kptest.py


def config_of(r, launched_in=None):
    """The header's config; of a run the launcher started in directory
    launched_in, with the output template as given (the launcher makes a
    relative one absolute there: checked here)."""
    if len(r.traces) != 1:
        raise Fail("want one trace, got %r" % r.traces)
    cfg = header(r.traces[0]).get("config")
    if launched_in and cfg:
        at = os.path.realpath(launched_in) + os.sep
        if not cfg.get("output", "").startswith(at):
            raise Fail("output %r is not in the launch directory %s" % (cfg.get("output"), at))
        cfg = dict(cfg, output=cfg["output"][len(at):])
    return cfg


# ---- tests -------------------------------------------------------------------

with t.section("--version and --help"):
    with Tmp() as d:
        r = kprof(["--version"], d)
        t.eq((r.rc, r.out, r.err), (0, "kprof %s\n" % makefile_version(), ""),
             "--version: 'kprof VERSION' (the Makefile's), exit 0")
        for args in (["--help"], ["-h"], ["run", "--help"]):
            r = kprof(args, d)
            t.eq((r.rc, r.err), (0, ""), "%s: exit 0, nothing on stderr" % " ".join(args))
            t.ok("kprof run [options] [--] PROGRAM" in r.out and
                 all(o in r.out for o in ("--output", "--programs", "--stack-depth", "--buffer-kb",
                                          "--drop", "--flush-ms", "--no-memory", "--no-io",
                                          "--no-query", "--query-text-full", "--cpu",
                                          "--analyze", "--version")),
                 "%s: usage text on stdout names the command and every option"
                 % " ".join(args), r.out)
        t.eq(kpz_files(d), set(), "--version/--help: no trace written")

with t.section("usage errors"):
    with Tmp() as d:
        cases = [
            ([], "no argument", None),
            (["frobnicate", LEAKY], "unknown command", "frobnicate"),
            (["run", "--bogus", LEAKY], "unknown option", "--bogus"),
            (["run", "-x", LEAKY], "unknown short option", "-x"),
            (["run"], "run without a program", None),
            (["run", "-a", "--"], "run -a -- without a program", None),
            (["run", "-o"], "-o without its value", "-o"),
            (["run", "--stack-depth"], "--stack-depth without its value", "--stack-depth"),
        ]
        for args, what, named in cases:
            r = kprof(args, d)
            t.eq((r.rc, r.out), (2, ""), "%s: exit 2, nothing on stdout" % what, r)
            t.ok(r.err.strip() and (named is None or named in r.err),
                 "%s: a message on stderr%s" % (what, " naming %s" % named if named else ""),
                 r.err)
        t.eq(kpz_files(d), set(), "usage errors: the program never ran (no trace)")
        r = kprof(["run", LEAKY], d, env={"KPROF_LIB": os.path.join(d, "nope.so")})
        t.eq((r.rc, r.out, len(r.traces)), (2, "", 0),
             "KPROF_LIB naming a missing file: exit 2, program not run", r)
        t.ok("KPROF_LIB" in r.err, "KPROF_LIB missing: the message names KPROF_LIB", r.err)

with t.section("run leaky"):
    with Tmp() as d:
        plain = run_plain([LEAKY], d)
        r = kprof(["run", "--", LEAKY], d)
        t.eq(r.rc, plain.rc, "kprof run -- leaky: same exit status (%d)" % plain.rc)
        t.eq(r.out, plain.out, "kprof run -- leaky: same stdout")
        t.eq(r.err, "", "kprof run -- leaky: nothing on stderr")
        t.eq([os.path.basename(f) for f in r.traces], ["kprof.%d.kpz" % r.pid],
             "exactly one trace, kprof.<pid>.kpz with the pid kprof was started "
             "with (the launcher execs the program)")
        h = header(r.traces[0])
        t.eq(config_of(r, d), DEFAULT_CONFIG,
             "header config: the defaults (the output template in the launch directory)")
        t.eq(h.get("exe"), os.path.realpath(LEAKY), "header exe: the program")
        want = counts_from(r.out)
        m = analyze(r.traces)["memory"]
        t.eq((m["alloc_calls"], m["free_calls"]), (want["allocs"] + 3, want["frees"]),
             "the report counts the program's calls (+3 DTVs, see test_leaky)")
        # without "--", the program's own arguments pass through, options too
        r = kprof(["run", LEAKY, "quiet", "-o", "x"], d)
        t.eq((r.rc, r.out, r.err, len(r.traces)), (0, "", "", 1),
             "kprof run leaky quiet -o x: args after the program are the program's")
        r = kprof(["run", PRINTENV, "LD_PRELOAD"], d)
        got = r.out.rstrip("\n")
        t.ok(os.path.isabs(got) and os.path.realpath(got) == os.path.realpath(LIB),
             "the program's LD_PRELOAD is the absolute path of build/libkprof.so", r)
        extra = "/lib/x86_64-linux-gnu/libm.so.6"
        r = kprof(["run", PRINTENV, "LD_PRELOAD"], d, env={"LD_PRELOAD": extra})
        t.eq(r.out, got + " " + extra + "\n",
             "an LD_PRELOAD of the caller is kept, after libkprof.so")
        os.mkdir(os.path.join(d, "alt"))
        alt = os.path.join(d, "alt", "libkprof.so")
        shutil.copy(LIB, alt)
        r = kprof(["run", PRINTENV, "LD_PRELOAD"], d, env={"KPROF_LIB": alt})
        t.eq(r.out, alt + "\n", "KPROF_LIB chooses the library")

# Each option against its variable: the same header config, and its effect.
OPTIONS = [
    (["-o", "out.%p.kpz"], {"OUTPUT": "out.%p.kpz"}, "output", "out.%p.kpz"),
    (["--output", "out.%p.kpz"], {"OUTPUT": "out.%p.kpz"}, "output", "out.%p.kpz"),
    (["-d", "0"], {"STACK_DEPTH": "0"}, "stack_depth", "0"),
    (["--stack-depth", "5"], {"STACK_DEPTH": "5"}, "stack_depth", "5"),
    (["-b", "64"], {"BUFFER_KB": "64"}, "buffer_kb", "64"),
    (["--buffer-kb", "64"], {"BUFFER_KB": "64"}, "buffer_kb", "64"),
    (["--drop"], {"OVERFLOW": "drop"}, "overflow", "drop"),
    (["--flush-ms", "50"], {"FLUSH_MS": "50"}, "flush_ms", "50"),
    (["--no-memory"], {"MEMORY": "0"}, "memory", "0"),
    (["--no-io"], {"IO": "0"}, "io", "0"),
    (["--no-io-stacks"], {"IO_STACKS": "0"}, "io_stacks", "0"),
    (["--leak-scan"], {"LEAK_SCAN": "1"}, "leak_scan", "1"),
    (["--no-query"], {"QUERY": "0"}, "query", "0"),
    (["--query-text-full"], {"QUERY_TEXT": "full"}, "query_text", "full"),
    (["--cpu"], {"CPU": "1"}, "cpu", "1"),
    (["--cpu=250"], {"CPU": "1", "CPU_HZ": "250"}, "cpu_hz", "250"),
    (["--unwind=libunwind"], {"UNWIND": "libunwind"}, "unwind", "libunwind"),
    (["--no-python"], {"PYTHON": "0"}, "python", "0"),
    (["--signals"], {"SIGNALS": "1"}, "signals", "1"),
    (["-d", "0"], {"STACK_DEPTH": "0"}, "zstd_literals", "raw"),
    (["-p", "leaky"], {"PROGRAMS": "leaky"}, "programs", "leaky"),
    (["--programs", "x,leak*"], {"PROGRAMS": "x,leak*"}, "programs", "x,leak*"),
]

with t.section("options = variables (header config)"):
    with Tmp() as d:
        for opts, prof, key, val in OPTIONS:
            name = " ".join(opts)
            r = kprof(["run"] + opts + ["--", LEAKY, "quiet"], d)
            t.eq((r.rc, r.err, len(r.traces)), (0, "", 1), "%s: runs, one trace, no warning" % name, r)
            got = config_of(r, d)
            e = run([LEAKY, "quiet"], d, prof=prof)
            t.eq(got, config_of(e), "%s: header config = with KOTOBA_PROFILE_%s=%s"
                 % (name, *next(iter(prof.items()))))
            t.eq(got and got.get(key), val, "%s: config %s = %s" % (name, key, val))
        # all at once
        r = kprof(["run", "-o", "all.%p.kpz", "-d", "7", "-b", "64", "--drop",
                   "--flush-ms", "50", "--no-memory", LEAKY, "quiet"], d)
        t.eq(config_of(r, d), dict(DEFAULT_CONFIG, output="all.%p.kpz", stack_depth="7",
                                buffer_kb="64", overflow="drop", flush_ms="50", memory="0"),
             "every option at once: each one in the header config")
        # a bad value goes to the recorder, which warns as for the variable
        r = kprof(["run", "-b", "8", LEAKY, "quiet"], d)
        lines = r.err.splitlines()
        t.ok(r.rc == 0 and len(lines) == 1 and "KOTOBA_PROFILE_BUFFER_KB" in lines[0],
             "-b 8 (too small): the recorder's one warning naming KOTOBA_PROFILE_BUFFER_KB",
             r.err)

with t.section("-o: the trace's name"):
    with Tmp() as d:
        r = kprof(["run", "-o", "out.%p.kpz", LEAKY, "quiet"], d)
        t.eq([os.path.basename(f) for f in r.traces], ["out.%d.kpz" % r.pid],
             "-o out.%p.kpz: the trace is out.<pid>.kpz")
        os.mkdir(os.path.join(d, "sub"))
        r = kprof(["run", "--output", os.path.join(d, "sub", "%e-%p.kpz"), LEAKY, "quiet"], d)
        t.eq([os.path.relpath(f, d) for f in r.traces],
             [os.path.join("sub", "leaky-%d.kpz" % r.pid)],
             "--output DIR/%e-%p.kpz: absolute template with the program name")

    with Tmp() as d:
        # a relative template is the launch directory's, for every process
        # of the run: sh changes directory and then runs the program
        os.mkdir(os.path.join(d, "elsewhere"))
        r = kprof(["run", "-a", "--", "/bin/sh", "-c",
                   "cd elsewhere && exec %s fork" % LIFE], d)
        c = counts_from(r.out)
        sh = c.get("parent", 0)  # the program is sh's process, exec'd
        t.eq([os.path.basename(f) for f in r.traces],
             sorted(["kprof.%d.kpz" % sh, "kprof.%d.1.kpz" % sh,
                     "kprof.%d.kpz" % c.get("child", 0)]),
             "-o default, a program that changes directory: its traces (sh's, the "
             "program's, its child's) in the launch directory", r.traces)
        t.eq(os.listdir(os.path.join(d, "elsewhere")), [],
             "-o default: none in the directory the program changed to")
        t.ok("summary: 3 processes" in r.err, "-a: all three analyzed", r.err[:600])

with t.section("-d 0: no stacks"):
    with Tmp() as d:
        r = kprof(["run", "-d", "0", LEAKY], d)
        want = counts_from(r.out)
        rep = analyze(r.traces)
        m = rep["memory"]
        t.eq(m["in_use_at_exit"]["blocks"], want["leaked_blocks"] + 3,
             "-d 0: leaks still counted")
        stacks = [l.get("stack") for l in m["leaks"]] + \
            [s.get("stack") for s in m["top_by_calls"] + m["top_by_bytes"]]
        t.ok(stacks and all(not s for s in stacks),
             "-d 0: no stack anywhere in the report", leak_summary(rep))
        r = kprof(["run", "-d", "3", LEAKY], d)
        m = analyze(r.traces)["memory"]
        t.le(max(len(l.get("stack") or []) for l in m["leaks"]), 3,
             "-d 3: leak stacks have <= 3 frames")

with t.section("-b and --drop"):
    with Tmp() as d:
        r = kprof(["run", "-b", "64", STORM, "4", "50000"], d)
        want = counts_from(r.out)
        rep = analyze(r.traces)
        t.eq((r.rc, r.err), (0, ""), "-b 64: storm runs, no warning")
        t.eq(rep["trace"]["events_lost"], 0, "-b 64 (policy wait): no event lost")
        t.eq(rep["memory"]["alloc_calls"], want["allocs"] + 4, "-b 64: alloc_calls exact (+4 DTVs)")
        r = kprof(["run", "-b", "64", "--drop", STORM, "4", "50000"], d)
        want = counts_from(r.out)
        rep = analyze(r.traces)
        tr = rep["trace"]
        t.diag("-b 64 --drop: events_lost=%d %r" % (tr["events_lost"], tr["events_lost_by_type"]))
        t.ge(tr["events_lost"], 1, "-b 64 --drop: a storm on 64 KiB rings drops events")
        t.eq(rep["memory"]["alloc_calls"] + lost_of(rep, "alloc", "realloc"), want["allocs"] + 4,
             "-b 64 --drop: alloc_calls + lost allocs = the program's count (+4 DTVs)")

with t.section("--no-memory"):
    with Tmp() as d:
        r = kprof(["run", "--no-memory", LEAKY, "quiet"], d)
        m = analyze(r.traces)["memory"]
        t.eq((r.rc, m["alloc_calls"], m["free_calls"], m["leaks"]), (0, 0, 0, []),
             "--no-memory: alloc_calls 0, no frees, no leaks")

with t.section("--flush-ms"):
    with Tmp() as d:
        need(KPROF)
        p = subprocess.Popen([KPROF, "run", "--flush-ms", "50", LIFE, "sleep"], cwd=d,
                             env=clean_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            line = p.stdout.readline().decode()
            c = counts_from(line)
            t.ok("ready" in line, "--flush-ms 50: app allocated and is sleeping", line)
            # 2000 allocations reach the file within a few flush intervals
            deadline = time.time() + 10
            while time.time() < deadline:
                fs = [f for f in os.listdir(d) if f.endswith(".kpz")]
                if fs and os.path.getsize(os.path.join(d, fs[0])) > 2000:
                    break
                time.sleep(0.02)
            time.sleep(0.3)
        finally:
            p.send_signal(signal.SIGKILL)
            p.communicate()
        traces = sorted(kpz_files(d))
        t.eq(len(traces), 1, "--flush-ms 50: one trace")
        t.eq(header(traces[0])["config"]["flush_ms"], "50", "--flush-ms 50: config flush_ms 50")
        rc, out, err = analyze_raw(["--format", "json"] + traces)
        rep = json.loads(out) if rc == 0 else {}
        t.eq(rc, 0, "--flush-ms 50: the SIGKILLed trace reads", err)
        t.ge(rep.get("memory", {}).get("alloc_calls"), c.get("allocs", 2000),
             "--flush-ms 50: the allocations before the sleep are in the trace of a "
             "SIGKILLed process")

with t.section("-a"):
    with Tmp() as d:
        plain = run_plain([LIFE, "exit", "3"], d)
        r = kprof(["run", "-a", LIFE, "exit", "3"], d)
        t.eq((plain.rc, r.rc), (3, 3), "-a: exit status 3 kept")
        t.eq(r.out, plain.out, "-a: stdout is the program's only")
        t.eq(len(r.traces), 1, "-a: exactly one trace (the launcher's own helpers "
             "are not profiled)", r.traces)
        t.ok("summary: 1 process" in r.err and "exit(3)" in r.err and
             os.path.basename(r.traces[0]) in r.err if r.traces else False,
             "-a: report of this run's one trace on stderr", r.err)
        # the report comes after the program's own output on stderr
        sh = "/bin/sh"
        r = kprof(["run", "--analyze", "--", sh, "-c", "echo app-says-hi >&2; exit 5"], d)
        t.eq(r.rc, 5, "--analyze: sh's exit status 5 kept")
        t.ok(r.err.startswith("app-says-hi\n") and "kprof-analyze summary" in r.err,
             "--analyze: the program's stderr first, then the report", r.err[:500])
        # a signal: 128+n like a shell
        r = kprof(["run", "-a", LIFE, "abort"], d)
        t.eq(r.rc, 128 + signal.SIGABRT, "-a: a program killed by SIGABRT gives 134")
        t.ok("abort" in r.err, "-a: the report says abort", r.err[-500:])
        r = kprof(["run", LIFE, "abort"], d)
        t.eq(r.rc, -signal.SIGABRT, "without -a: the launcher is the program (killed by SIGABRT)")
    with Tmp() as d:
        # Ctrl-C: the terminal sends SIGINT to the whole foreground group,
        # the launcher too; the program dies of it, and the report still
        # comes, exit status 130; with --signals the trace ends 'signal'
        # with every event, without it the trace reads as truncated
        for opt, want in ((["--signals"], "ended    killed by SIGINT (130)"),
                          ([], "ended    TRUNCATED")):
            p = subprocess.Popen([KPROF, "run", "-a", "--flush-ms", "60000"] + opt +
                                 ["--", LIFE, "sleep"], cwd=d, env=clean_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True)
            line = p.stdout.readline().decode()
            time.sleep(0.1)
            os.killpg(p.pid, signal.SIGINT)
            out, err = p.communicate(timeout=60)
            err = err.decode(errors="replace")
            t.ok("ready" in line and p.returncode == 130 and
                 "kprof-analyze summary: 1 process" in err and want in err and
                 (not opt or "2,000 allocs, 1,000 frees" in err),
                 "-a %sand Ctrl-C: the program's report, status 130"
                 % (" ".join(opt) + " " if opt else ""), (p.returncode, err[:700]))
    with Tmp() as d:
        # An empty trace of the run (what a process killed as kprof
        # created it leaves; made here by the program itself) is not
        # given to kprof-analyze, which would refuse the others with it.
        r = kprof(["run", "-a", "--", "/bin/sh", "-c",
                   ": > kprof.999999999.kpz; echo made"], d)
        t.eq((r.rc, r.out), (0, "made\n"), "-a with an empty trace: runs", r.err)
        t.ok("kprof: kprof.999999999.kpz is empty (its process was killed "
             "as kprof created it); not analyzed\n" in r.err,
             "-a with an empty trace: says it is left out", r.err[:600])
        t.ok("kprof-analyze summary: 1 process" in r.err,
             "-a with an empty trace: the other trace is analyzed", r.err[:600])
    with Tmp() as d:
        # with -o and a fork: both processes' traces, and nothing older
        os.mkdir(os.path.join(d, "t"))
        old = os.path.join(d, "t", "app.1.kpz")
        shutil.copy(os.path.join(SRC, "tests", "fuzz", "corpus", "small.kpz"), old)
        r = kprof(["run", "-a", "-o", os.path.join(d, "t", "app.%p.kpz"), LIFE, "fork"], d)
        c = counts_from(r.out)
        t.eq(r.rc, 0, "-a -o DIR/app.%p.kpz with fork: exit 0", r.err)
        t.ok("summary: 2 processes" in r.err and
             ("process %d " % c.get("parent", -1)) in r.err and
             ("process %d " % c.get("child", -1)) in r.err,
             "-a -o DIR/app.%p.kpz: the report has the parent and the child", r.err[:800])
        t.ok("app.1.kpz" not in r.err, "-a: an older trace matching the template "
             "is not analyzed", r.err[:800])
        # a template without %p: the child's name gets ".1" (see writer.c)
        r = kprof(["run", "-a", "-o", "fixed.kpz", LIFE, "fork"], d)
        t.ok(r.rc == 0 and "summary: 2 processes" in r.err and "fixed.kpz" in r.err and
             "fixed.1.kpz" in r.err,
             "-a -o fixed.kpz with fork: fixed.kpz and fixed.1.kpz analyzed", r.err[:800])
        r = kprof(["run", "-a", "-o", "fixed.kpz", LIFE, "exit", "0"], d)
        t.ok(r.rc == 0 and "summary: 1 process" in r.err and "fixed.2.kpz" in r.err,
             "-a -o fixed.kpz again: only the new fixed.2.kpz analyzed", r.err[:800])


def make_install(dest, prefix, extra=()):
    b = os.path.relpath(BUILD, SRC) if BUILD.startswith(SRC + os.sep) else BUILD
    p = subprocess.run([need("make"), "--no-print-directory", "-C", SRC, "install",
                        "B=" + b, "DESTDIR=" + dest, "PREFIX=" + prefix] + list(extra),
                       env=clean_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    if p.returncode != 0:
        raise Fail("make install failed:\n" + p.stdout.decode("utf-8", "replace")[-3000:])


with t.section("programs kprof cannot see into"):
    # the launcher says why there will be no trace, and runs them as they are
    with Tmp(mode=0o755) as d:
        src = os.path.join(d, "st.c")
        with open(src, "w") as f:
            f.write('#include <stdio.h>\n#include <stdlib.h>\n'
                    'int main(void) { char *p = malloc(64); '
                    'printf("static %d\\n", p != NULL); return 3; }\n')
        for flag in ("-static", "-static-pie"):
            exe = os.path.join(d, "st" + flag)
            subprocess.run([need("cc"), flag, "-o", exe, src], check=True)
            plain = run_plain([exe], d)
            r = kprof(["run", "--", exe], d)
            t.ok((r.rc, r.out, r.traces) == (plain.rc, plain.out, []) and
                 r.out == "static 1\n" and r.rc == 3 and
                 r.err == "kprof: %s is statically linked: libkprof.so cannot "
                 "be preloaded into it, nothing is recorded (its children may "
                 "be)\n" % exe,
                 "cc %s: one line says why, the program runs as alone" % flag,
                 (r.rc, r.out, r.err, r.traces))
        r = kprof(["run", "-a", "--", "st-static"], d,
                  env={"PATH": d + ":" + os.environ.get("PATH", "")})
        t.ok(r.rc == 3 and "statically linked" in r.err and
             "no trace written" in r.err,
             "found in PATH; -a: then no trace", r.err)

        if os.geteuid() != 0:
            raise Fail("the set-user-ID case needs root (a file of another "
                       "user's with the bit set)")
        suid = os.path.join(d, "leaky-suid")
        shutil.copyfile(LEAKY, suid)
        os.chown(suid, 65534, 65534)
        os.chmod(suid, 0o4755)
        plain = run_plain([LEAKY], d)
        r = kprof(["run", "--", suid], d)
        t.ok((r.rc, r.out, r.traces) == (plain.rc, plain.out, []) and
             r.err == "kprof: %s is set-user-ID or set-group-ID: the loader "
             "ignores LD_PRELOAD for it, nothing is recorded\n" % suid,
             "set-user-ID to another user: one line says why, no trace",
             (r.rc, r.err, r.traces))
        os.chown(suid, 0, 0)
        os.chmod(suid, 0o4755)
        r = kprof(["run", "--", suid], d)
        t.ok((r.rc, r.out, r.err, len(r.traces)) == (plain.rc, plain.out, "", 1),
             "set-user-ID to this user (root): traced, nothing said",
             (r.rc, r.err, r.traces))

with t.section("make install DESTDIR PREFIX=/usr"):
    with Tmp() as dest:
        make_install(dest, "/usr")
        ikprof = os.path.join(dest, "usr", "bin", "kprof")
        ilib = os.path.join(dest, "usr", "lib", "libkprof.so")
        for f in ("usr/bin/kprof", "usr/bin/kprof-analyze", "usr/lib/libkprof.so",
                  "usr/include/kprof.h"):
            t.ok(os.path.isfile(os.path.join(dest, f)), "installed %s" % f)
        with open(ikprof) as f:
            inst = f.read().splitlines()
        with open(KPROF) as f:
            built = f.read().splitlines()
        t.eq([l for l in inst if l.startswith("KPROF_LIB_DEFAULT=")],
             ["KPROF_LIB_DEFAULT=/usr/lib/libkprof.so"],
             "installed kprof: KPROF_LIB_DEFAULT=$(LIBDIR)/libkprof.so")
        t.eq([l for l in inst if not l.startswith("KPROF_LIB_DEFAULT=")],
             [l for l in built if not l.startswith("KPROF_LIB_DEFAULT=")],
             "installed kprof = build/kprof but for that line")
        with Tmp() as d:
            r = kprof(["--version"], d, launcher=ikprof)
            t.eq((r.rc, r.out), (0, "kprof %s\n" % makefile_version()),
                 "installed kprof --version")
            r = kprof(["run", PRINTENV, "LD_PRELOAD"], d, launcher=ikprof)
            t.eq(r.out, ilib + "\n", "installed kprof run: uses the installed "
                 "libkprof.so (DESTDIR/usr/lib, next to its bin)")
            r = kprof(["run", "-a", LEAKY, "quiet"], d, launcher=ikprof)
            t.ok(r.rc == 0 and len(r.traces) == 1 and "kprof-analyze summary" in r.err,
                 "installed kprof run -a: a trace, and the installed analyzer's report", r)

# The installed launcher finds the library only through the rewritten
# KPROF_LIB_DEFAULT when LIBDIR is not BINDIR/../lib: this fails if the
# install rule's rewrite breaks.
with t.section("make install LIBDIR elsewhere"):
    with Tmp() as root:
        pre = os.path.join(root, "p")
        libdir = os.path.join(pre, "lib", "kprof-x")
        make_install("", pre, ["LIBDIR=" + libdir])
        ikprof = os.path.join(pre, "bin", "kprof")
        with Tmp() as d:
            r = kprof(["run", PRINTENV, "LD_PRELOAD"], d, launcher=ikprof)
            t.eq((r.rc, r.out), (0, os.path.join(libdir, "libkprof.so") + "\n"),
                 "installed kprof finds LIBDIR/libkprof.so via KPROF_LIB_DEFAULT", r)

t.done()
