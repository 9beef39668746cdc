# SPDX-License-Identifier: MIT
"""Invariants of DESIGN.md (issue #2 test 5): the app behaves as without
kprof (same allocator, exit status, stdout, fds, signal dispositions), the
trace is 0600 and never overwrites a file, KOTOBA_PROFILE_OUTPUT templates,
and a setuid (AT_SECURE) process is never traced.
"""
import os
import shutil
import signal
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
INV = app("invariants")
LEAKY = app("leaky")

with t.section("same allocator"):
    with Tmp() as d:
        plain = run_plain([INV, "mallinfo"], d)
        r = run([INV, "mallinfo"], d)
        c = counts_from(r.out)
        t.eq(r.rc, 0, "mallinfo: exit 0", r.err)
        t.ge(c.get("grow"), 1000,
             "mallinfo2 uordblks grows by >= 1000 after malloc(1000) under kprof "
             "(the block came from glibc's heap, not jemalloc)")
        t.eq(r.out, plain.out, "mallinfo: grow/back/usable identical with and without kprof")
        t.eq(len(r.traces), 1, "mallinfo: the run was traced")

with t.section("the app's own allocator"):
    # Linked with jemalloc or tcmalloc (or glibc's, for comparison), the
    # app's blocks must come from that allocator under kprof too: its own
    # statistics see them come and go, and the trace has each call.
    for exe in ("ownalloc", "ownalloc_je", "ownalloc_tc"):
        with Tmp() as d:
            plain = run_plain([app(exe)], d)
            r = run([app(exe)], d)
            t.eq(r.rc, 0, "%s: exit 0" % exe, r.err)
            t.ok(r.out.endswith(" grew=1 shrank=1 usable_ok=1\n"),
                 "%s: its allocator counted the blocks and their frees"
                 % exe, r.out)
            t.eq(r.out, plain.out, "%s: the same line without kprof" % exe)
            rep = analyze(r.traces)
            site = [g for g in rep["memory"]["leaks"]
                    if g["stack"] and g["stack"][0]["function"] ==
                    "own_alloc_site"]
            t.eq([(g["bytes"], g["blocks"]) for g in site], [(4000000, 40)],
                 "%s: the 40 blocks kept are in use at exit, at their site"
                 % exe)

def shared_lib(name):
    """The path of an installed shared library (ldconfig's cache)."""
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        if line.strip().startswith(name + " ") and "x86-64" in line:
            return line.split(" => ")[-1].strip()
    raise Fail("%s not installed (make test installs it via "
               "tools/install-deps.sh)" % name)


with t.section("an allocator listed before kprof in LD_PRELOAD"):
    # The app's malloc calls then go to that allocator and never reach
    # kprof: it must say so, and the report must not show a program that
    # allocates nothing. tcmalloc takes stack traces with libunwind as its
    # heap grows; libunwind's first use made a pipe under its lock, and
    # kprof, starting right there, waited for that lock forever.
    py = "/usr/bin/python3"
    for lib in ("libjemalloc.so.2", "libtcmalloc.so.4"):
        path = shared_lib(lib)
        with Tmp() as d:
            r = run([py, "-c", "print(sum(len(str(i)) for i in range(9999)))"],
                    d, preload=path + " " + LIB, timeout=60)
            t.eq((r.rc, r.out), (0, "38886\n"), "%s first: runs" % lib, r.err)
            said = [x for x in r.err.splitlines() if x.startswith("kprof:")]
            t.eq(said, ["kprof: the program's malloc is the one in %s, which "
                        "comes before libkprof.so (list libkprof.so first in "
                        "LD_PRELOAD); allocations are not recorded" % path],
                 "%s first: kprof says whose malloc it is" % lib, r.err)
            rep = analyze(r.traces)
            m, pm = rep["memory"], rep["trace"]["processes"][0]["memory"]
            t.eq((m["recorded"], pm["recorded"], pm["malloc_owner"],
                  m["alloc_calls"]), (False, False, path, 0),
                 "%s first: the report says memory was not recorded" % lib)
            t.ge(rep["io"]["totals"]["calls"], 1,
                 "%s first: the rest is recorded (I/O)" % lib)
            txt = analyze(r.traces, fmt="text")
            t.ok("HEAP SUMMARY\n  not recorded (the program's malloc was "
                 "the one in %s, ahead of libkprof.so)\n" % path in txt,
                 "%s first: the text report says so" % lib, txt[:1500])
    # A program with a malloc of its own (rustc links jemalloc in): no
    # preload can take its calls.
    with Tmp() as d:
        exe = app("ownalloc_inside")
        r = run([exe], d)
        t.eq((r.rc, r.out), (0, "allocator=jemalloc grew=1 shrank=1 "
                                "usable_ok=1\n"), "malloc inside: runs", r.err)
        t.eq(r.err, "kprof: the program has a malloc of its own (%s), which "
             "LD_PRELOAD cannot replace; allocations are not recorded\n"
             % os.path.realpath(exe), "malloc inside: kprof says so")
        pm = analyze(r.traces)["trace"]["processes"][0]["memory"]
        t.eq((pm["recorded"], pm["malloc_owner"]),
             (False, os.path.realpath(exe)),
             "malloc inside: the report says memory was not recorded")
        t.ok("  memory   not recorded (the program has a malloc of its "
             "own)\n" in analyze(r.traces, fmt="text"),
             "malloc inside: the text says whose")
    with Tmp() as d:
        r = run([py, "-c", "print(1)"], d,
                preload=LIB + " " + shared_lib("libtcmalloc.so.4"))
        rep = analyze(r.traces)
        t.eq((r.rc, r.err, rep["memory"]["recorded"]), (0, "", True),
             "kprof first, tcmalloc second: recorded, nothing said")
        t.ge(rep["memory"]["alloc_calls"], 100,
             "kprof first, tcmalloc second: the allocations are in")


with t.section("namespaces that need a single-threaded process"):
    # Entering a user namespace (unshare) or a mount namespace (setns)
    # fails with EINVAL in a process of more than one thread, and kprof's
    # writer made every process two-threaded: `unshare --user` and
    # `nsenter --mount` failed under kprof. The writer now stops for the
    # call. (As root here; each command must work without kprof first.)
    for cmd in ([need("unshare"), "--user", "--map-root-user", "id", "-u"],
                [need("nsenter"), "--mount=/proc/self/ns/mnt", "echo", "in"]):
        with Tmp() as d:
            plain = run_plain(cmd, d)
            t.eq(plain.rc, 0, "%s works without kprof" % cmd[1], plain.err)
            r = run(cmd, d)
            t.eq((r.rc, r.out, r.err), (0, plain.out, ""),
                 "%s: the same under kprof" % cmd[1])
            # the writer, joined, still counts as a thread for a few
            # microseconds: the call waits until it is gone (a third of
            # these failed with EINVAL before)
            again = [run(cmd, d, prof={"OUTPUT": os.path.join(d, "again.%p.kpz")})
                     for _ in range(20)]
            t.eq([x.rc for x in again if x.rc], [],
                 "%s: 20 more runs under kprof, none failed" % cmd[1],
                 [x.err for x in again if x.rc][:3])
            reps = [analyze([x]) for x in r.traces]
            first = [x for x in reps if x["trace"]["processes"][0]["argv"]
                     [0].endswith(os.path.basename(cmd[0]))]
            t.eq([x["trace"]["processes"][0]["end_reason"] for x in first],
                 ["exec"], "%s: its trace goes on to its exec" % cmd[1])


with t.section("system calls a sandbox refuses"):
    # A seccomp filter (tests/apps/denysys.c) makes a call fail with EPERM,
    # as sandboxes and service managers do for calls they do not allow.
    DENY = app("denysys")
    PY = "/usr/bin/python3"
    script = ("import threading\n"
              "def work(k):\n"
              "    return len([str(i) * k for i in range(50000)])\n"
              "ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]\n"
              "[x.start() for x in ts]; [x.join() for x in ts]\n"
              "print(sum(work(k) for k in range(3)))\n")
    # calls kprof makes that it can do without: the program runs as it
    # would, kprof says nothing, and its trace is whole
    for call in ("unshare", "process_vm_readv", "rt_tgsigqueueinfo", "prctl",
                 "close_range", "readlinkat"):
        with Tmp() as d:
            plain = run_plain([DENY, call, PY, "-c", script], d)
            r = run([DENY, call, PY, "-c", script], d, prof={"CPU": "1"})
            t.eq((r.rc, r.out, r.err), (0, plain.out, ""),
                 "%s refused: the program runs as without kprof, no word from it" % call,
                 plain.err)
            py = [x for x in r.traces if trace_header(x).get("exe", "").startswith("/usr/bin/python3")]
            rep = analyze(py) if py else {}
            t.ok(py and not rep["trace"]["truncated"] and
                 rep["trace"]["processes"][0]["end_reason"] == "exit" and
                 rep["memory"]["alloc_calls"] > 1000,
                 "%s refused: python's trace is whole" % call, r.traces)
    # no thread (glibc falls back from clone3 to clone only on ENOSYS):
    # kprof cannot run its writer, says so once and leaves no empty file
    with Tmp() as d:
        code = "print('no threads here')"
        r = run([DENY, "clone3", PY, "-c", code], d)
        t.eq((r.rc, r.out), (0, "no threads here\n"), "clone3 refused: python runs", r.err)
        t.eq(r.err, "kprof: cannot start the writer thread; not profiling\n",
             "clone3 refused: kprof says it does not profile")
        t.eq([trace_header(x).get("exe") for x in r.traces], [DENY],
             "clone3 refused: denysys's trace (up to its exec) only, no empty one",
             [(x, os.path.getsize(x)) for x in r.traces])
    # no CPU timer: said once, and the report says sampling was on
    with Tmp() as d:
        r = run([DENY, "timer_create", PY, "-c", script], d, prof={"CPU": "1"})
        t.eq((r.rc, r.err), (0, "kprof: CPU sampling: timer_create failed (Operation not "
                                "permitted); threads without a timer are not sampled\n"),
             "timer_create refused: the program runs; kprof says it once")
        py = [x for x in r.traces if trace_header(x).get("exe", "").startswith("/usr/bin/python3")]
        out = analyze(py, fmt="text", extra=["cpu"]) if py else ""
        t.ok("no CPU samples, though sampling was on" in out,
             "timer_create refused: the report says sampling was on", out[:300])


with t.section("a file size limit (ulimit -f)"):
    # A write past RLIMIT_FSIZE raises SIGXFSZ, which ends the process:
    # /bin/true died of it under `ulimit -f 1`, at the exit where its own
    # thread writes the trace. kprof's writes keep the signal to
    # themselves; it says the trace stops, and the program runs as it would.
    import resource

    def limit_fsize():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
    code = ("import os, sys\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    sys.exit(3)\n"
            "print(os.waitpid(pid, 0)[1] >> 8)\n")
    for cmd in (["/bin/true"], ["/usr/bin/python3", "-c", code]):
        with Tmp() as d:
            plain = run_plain(cmd, d, preexec_fn=limit_fsize)
            r = run(cmd, d, preexec_fn=limit_fsize)
            t.eq((r.rc, r.out), (plain.rc, plain.out),
                 "%s under a 1 KiB file size limit: as without kprof" % cmd[0], r.err)
            t.ok(r.traces and all(os.path.getsize(x) <= 1024 for x in r.traces) and
                 all(ln.startswith("kprof: cannot write trace '") and
                     ln.endswith("': File too large; recording stops")
                     for ln in r.err.splitlines()) and r.err,
                 "%s: kprof says its trace stops" % cmd[0], r.err)


with t.section("an address-space limit (ulimit -v, ulimit -d)"):
    # kprof reserves its stack table's address space up front (576 MiB,
    # pages made as used). Under RLIMIT_AS it gave up at 200 and 400 MB
    # ("cannot set up recording"), and left what it had mapped to the
    # program; under RLIMIT_DATA, which counts private writable mappings,
    # the same. Now it takes at most a sixteenth of the lower limit.
    import resource
    code = "x = bytearray(50 << 20); print(len(x))"
    for name, res in (("address space", resource.RLIMIT_AS),
                      ("data", resource.RLIMIT_DATA)):
        def limit(res=res):
            resource.setrlimit(res, (300 << 20, 300 << 20))
        with Tmp() as d:
            plain = run_plain(["/usr/bin/python3", "-c", code], d, preexec_fn=limit)
            r = run(["/usr/bin/python3", "-c", code], d, preexec_fn=limit)
            t.eq((plain.rc, r.rc, r.out), (0, 0, plain.out),
                 "300 MB %s: the program runs as without kprof" % name, r.err)
            t.eq(r.err, "", "300 MB %s: kprof says nothing" % name)
            t.eq(len(r.traces), 1, "300 MB %s: traced" % name, r.traces)
            if r.traces:
                m = analyze(r.traces)["memory"]
                t.ge(m["alloc_calls"], 100,
                     "300 MB %s: the allocations are in" % name)


with t.section("exit status and stdout"):
    with Tmp() as d:
        for st in ("0", "3", "255"):
            plain = run_plain([INV, "status", st], d)
            r = run([INV, "status", st], d)
            t.eq(r.rc, int(st), "exit status %s unchanged" % st)
            t.eq((r.out, r.err), (plain.out, plain.err),
                 "stdout and stderr identical with and without kprof (status %s)" % st)
            rep = analyze(r.traces)
            t.eq(rep["trace"]["processes"][0]["exit_status"], int(st),
                 "the report's exit_status is %s" % st)

with t.section("fds"):
    with Tmp() as d:
        plain = run_plain([INV, "fds"], d)
        t.ok("first_free=3" in plain.out and "fd=" not in plain.out,
             "fds: without kprof the app holds no fd >= 3", plain.out)
        r = run([INV, "fds"], d)
        t.eq(r.rc, 0, "fds: exit 0", r.err)
        held = [counts_from(l) | {"target": l.split("target=", 1)[1]}
                for l in r.out.splitlines() if l.startswith("fd=")]
        t.ok(held, "fds: kprof holds at least its trace fd", r.out)
        low = [h for h in held if h["fd"] < 100]
        t.eq(low, [], "fds: every fd kprof holds is >= 100", r.out)
        nocloexec = [h for h in held if h["cloexec"] != 1]
        t.eq(nocloexec, [], "fds: every fd kprof holds has FD_CLOEXEC", r.out)
        t.ok(any(h["target"].endswith(".kpz") for h in held),
             "fds: the trace fd is among them", r.out)
        t.ok("first_free=3\n" in r.out, "fds: the app's first open() gets fd 3", r.out)

with t.section("signals"):
    with Tmp() as d:
        plain = run_plain([INV, "signals"], d)
        r = run([INV, "signals"], d)
        t.eq(r.rc, 0, "signals: exit 0", r.err)
        t.ok(r.out.startswith("nondefault=10\nSigCgt:\t") and
             r.out.endswith("\ndone\n"),
             "signals: no disposition but the app's own SIGUSR1 differs from "
             "SIG_DFL", r.out)
        t.eq(r.out, plain.out, "signals: same as without kprof, in "
             "sigaction's answers and in the kernel's mask of caught signals")
        # asked for, kprof takes the signals that kill by default; the app
        # still reads SIG_DFL
        r = run([INV, "signals"], d, prof={"SIGNALS": "1"})
        lines = r.out.split("\n")
        cgt = int(lines[1].split()[1], 16) if len(lines) > 2 else 0
        t.ok(r.rc == 0 and lines[0] == "nondefault=10" and
             cgt & (1 << (signal.SIGTERM - 1)) and cgt & (1 << (signal.SIGINT - 1))
             and not cgt & (1 << (signal.SIGCHLD - 1)),
             "SIGNALS=1: SIGTERM and SIGINT caught, SIGCHLD not; sigaction "
             "still answers SIG_DFL", r.out)

with t.section("trace file mode and no overwrite"):
    with Tmp() as d:
        old = os.umask(0)
        try:
            r = run([LEAKY, "quiet"], d)
        finally:
            os.umask(old)
        t.eq(len(r.traces), 1, "mode: one trace")
        mode = stat.S_IMODE(os.stat(r.traces[0]).st_mode)
        t.eq(oct(mode), oct(0o600), "trace file mode 0600 (even with umask 0)")

        fixed = os.path.join(d, "fixed.kpz")
        content = b"precious data, not a trace\n" * 10
        with open(fixed, "wb") as f:
            f.write(content)
        r = run([LEAKY, "quiet"], d, prof={"OUTPUT": "fixed.kpz"})
        t.eq(r.rc, 0, "no-overwrite: app exits 0")
        with open(fixed, "rb") as f:
            t.eq(f.read(), content, "no-overwrite: the existing fixed.kpz is unchanged")
        t.eq([os.path.basename(x) for x in r.traces], ["fixed.1.kpz"],
             "no-overwrite: the trace went to fixed.1.kpz")
        rep = analyze([os.path.join(d, "fixed.1.kpz")])
        t.eq(rep["memory"]["in_use_at_exit"]["blocks"], 79, "no-overwrite: fixed.1.kpz is a full trace")
        r = run([LEAKY, "quiet"], d, prof={"OUTPUT": "fixed.kpz"})
        t.eq([os.path.basename(x) for x in r.traces], ["fixed.2.kpz"],
             "no-overwrite: the next run goes to fixed.2.kpz")
        # a symlink at the name is not followed
        target = os.path.join(d, "victim")
        with open(target, "wb") as f:
            f.write(b"victim\n")
        os.symlink(target, os.path.join(d, "link.kpz"))
        r = run([LEAKY, "quiet"], d, prof={"OUTPUT": "link.kpz"})
        with open(target, "rb") as f:
            t.eq(f.read(), b"victim\n", "no-overwrite: a symlink's target is untouched")
        t.eq([os.path.basename(x) for x in r.traces], ["link.1.kpz"],
             "no-overwrite: the trace went to link.1.kpz")

with t.section("output template"):
    with Tmp() as d:
        os.mkdir(os.path.join(d, "sub"))
        r = run([LEAKY, "quiet"], d, prof={"OUTPUT": "sub/t-%e-%p.kpz"})
        t.eq([os.path.relpath(x, d) for x in r.traces], ["sub/t-leaky-%d.kpz" % r.pid],
             "OUTPUT sub/t-%e-%p.kpz -> sub/t-leaky-<pid>.kpz")
        r = run([LEAKY, "quiet"], d, prof={"OUTPUT": os.path.join(d, "abs-%p-%%.kpz")})
        t.eq([os.path.relpath(x, d) for x in r.traces], ["abs-%d-%%.kpz" % r.pid],
             "OUTPUT with an absolute path and %% -> a literal %")
        rep = analyze(r.traces)
        t.eq(rep["trace"]["processes"][0]["pid"], r.pid, "templated trace is readable")

# ---- AT_SECURE ---------------------------------------------------------------
# ld.so preloads into a secure (setuid) process only libraries named without
# a slash, found in the system dirs, with the setuid bit. Install a copy of
# libkprof there for the test, and always remove it.
SYSLIB = "/usr/lib/x86_64-linux-gnu/libkprof-attest.so"
with t.section("AT_SECURE"):
    if os.geteuid() != 0:
        raise Fail("the AT_SECURE test needs root (to make a setuid-root binary)")
    with Tmp(mode=0o755) as d, Tmp(mode=0o1777) as out:
        try:
            shutil.copyfile(LIB, SYSLIB)
            os.chmod(SYSLIB, 0o4755)
            suid = os.path.join(d, "leaky-suid")
            plainbin = os.path.join(d, "leaky-plain")
            shutil.copyfile(LEAKY, suid)
            shutil.copyfile(LEAKY, plainbin)
            os.chmod(suid, 0o4755)
            os.chmod(plainbin, 0o755)
            tmpl = os.path.join(out, "sec-%e-%p.kpz")

            def as_nobody(binary):
                # The uid/gid switch is done by subprocess between fork and
                # exec (setgroups, setresgid, setresuid): no helper process
                # of its own is preloaded (see "setpriv under kprof" below).
                env = clean_env({"LD_PRELOAD": "libkprof-attest.so",
                                 "KOTOBA_PROFILE_OUTPUT": tmpl})
                p = subprocess.run([binary], cwd=out, env=env, user=65534,
                                   group=65534, extra_groups=[],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, timeout=60)
                return p.returncode, p.stdout.decode(), p.stderr.decode()

            rc, o, e = as_nobody(plainbin)
            got = sorted(os.listdir(out))
            t.ok(rc == 0 and len(got) == 1 and got[0].startswith("sec-leaky-plain-"),
                 "AT_SECURE control: the non-setuid copy run as nobody is traced "
                 "with LD_PRELOAD=libkprof-attest.so", (rc, got, e))
            for f in got:
                os.unlink(os.path.join(out, f))
            want_out = run_plain([LEAKY], d).out
            rc, o, e = as_nobody(suid)
            t.eq(rc, 0, "AT_SECURE: the setuid app runs normally", e)
            t.eq(o, want_out, "AT_SECURE: its output is right")
            t.eq(sorted(os.listdir(out)), [], "AT_SECURE: no trace created")
            t.eq(e, "", "AT_SECURE: kprof says nothing")
        finally:
            if os.path.exists(SYSLIB):
                os.unlink(SYSLIB)
    t.ok(not os.path.exists(SYSLIB), "AT_SECURE: the copied library is removed")

# A root program that drops privileges the way setpriv(1) does: setresuid
# with PR_SET_KEEPCAPS, capset (per thread!) on its own thread, then
# setresgid. glibc runs set*id on every thread (SIGSETXID); a thread the app
# does not know of (kprof's writer) has lost CAP_SETGID at the first step,
# fails the second, and glibc aborts the process on the inconsistency.
with t.section("setpriv under kprof"):
    need("setpriv")
    if os.geteuid() != 0:
        raise Fail("this test needs root")
    with Tmp(mode=0o1777) as d:
        plain = run_plain(["setpriv", "--reuid=nobody", "--regid=nogroup",
                           "--clear-groups", "/usr/bin/id", "-u"], d)
        r = run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                 "--clear-groups", "/usr/bin/id", "-u"], d)
        t.eq((plain.rc, plain.out), (0, "65534\n"), "setpriv id -u without kprof")
        t.eq((r.rc, r.out), (plain.rc, plain.out),
             "setpriv (setresuid, capset, setresgid) runs under kprof as without",
             r.err)

t.done()
