# SPDX-License-Identifier: MIT
"""Cross-check with valgrind's memcheck (issue #2 test 7).

For leaky, reallocs and cxxnew: valgrind's HEAP SUMMARY ("in use at exit",
"total heap usage: A allocs, F frees, B bytes allocated") against kprof's
report. Both count the same way (realloc = 1 alloc + 1 free; failed calls
and free(NULL) not at all). The systematic differences, each asserted
exactly:

1. valgrind runs __libc_freeres and __gnu_cxx::__freeres at exit by
   default; a normal exit (kprof's view) does not. For like-for-like numbers
   the main comparison uses --run-libc-freeres=no --run-cxx-freeres=no. With
   the defaults, libc frees the DTVs of its cached thread stacks (leaky: 3
   more frees, 3 fewer blocks in use) and libstdc++ frees its emergency EH
   pool (cxxnew: 1 more free, 1 fewer block).
2. A thread's DTV (calloc in _dl_allocate_tls) has one 16-byte slot per
   module with TLS, plus a fixed surplus: libkprof.so and its libraries add
   modules with TLS, so under kprof each DTV is larger (same count). The
   test reads the DTV bytes from valgrind's loss record (allocate_dtv) and
   from kprof's leak group (pthread_create) and asserts the difference is all
   of it.
3. valgrind's allocator does not set errno on failure and aborts the program
   on pvalloc: reallocs is run with its "valgrind" argument under both tools
   (no errno checks after failures, valloc instead of pvalloc; same counts).
4. Allocations made before kprof initialised are not seen by kprof. In these
   apps there are none (kprof initialises in the first malloc of the
   process, libstdc++'s pool included): the counts must match.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
LIKE = ["--run-libc-freeres=no", "--run-cxx-freeres=no"]


def valgrind(cmd, d, opts):
    vg = need("valgrind")
    p = subprocess.run([vg, "--leak-check=full", "--show-leak-kinds=all",
                        "--num-callers=30"] + opts + cmd, cwd=d, env=clean_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=120)
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise Fail("valgrind %s exited %d:\n%s" % (cmd, p.returncode, err[-3000:]))
    return p.stdout.decode(), err, valgrind_summary(err)


def vg_records(err):
    """valgrind's loss records: [(bytes, blocks, [stack lines])]."""
    recs, cur = [], None
    for line in err.splitlines():
        body = re.sub(r"^==\d+== ?", "", line)
        m = re.match(r"([\d,]+) bytes in ([\d,]+) blocks are .* in loss record", body)
        if m:
            cur = (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")), [])
            recs.append(cur)
        elif cur is not None and body.strip():
            cur[2].append(body)
        else:
            cur = None
    return recs


def vg_bytes_with(err, fn):
    """Bytes of the loss records whose stack names fn."""
    return sum(b for b, _, st in vg_records(err)
               if any(re.search(r"\b%s\b" % re.escape(fn), l) for l in st))


def kprof_run(cmd, d):
    r = run(cmd, d)
    if r.rc != 0:
        raise Fail("%s under kprof exited %d: %s" % (cmd, r.rc, r.err))
    rep = analyze(r.traces)
    m = rep["memory"]
    return r, rep, {"in_use_bytes": m["in_use_at_exit"]["bytes"],
                    "in_use_blocks": m["in_use_at_exit"]["blocks"],
                    "allocs": m["alloc_calls"], "frees": m["free_calls"],
                    "bytes_allocated": m["bytes_allocated"]}


with t.section("leaky vs valgrind"):
    with Tmp() as d:
        cmd = [app("leaky")]
        out, err, vg = valgrind(cmd, d, LIKE)
        r, rep, kp = kprof_run(cmd, d)
        t.eq(out, r.out, "leaky: same stdout under valgrind and kprof")
        vg_dtv = vg_bytes_with(err, "allocate_dtv")
        kp_dtv = sum(l["bytes"] for l in leaks_with(rep, "pthread_create"))
        t.diag("leaky: valgrind %r, kprof %r; DTV bytes valgrind %d, kprof %d"
               % (vg, kp, vg_dtv, kp_dtv))
        t.ok(vg_dtv > 0 and kp_dtv >= vg_dtv,
             "leaky: DTV blocks found in both (kprof's larger or equal: more TLS modules)",
             (vg_dtv, kp_dtv))
        for k in ("in_use_blocks", "allocs", "frees"):
            t.eq(kp[k], vg[k], "leaky: %s equal (freeres off)" % k)
        t.eq(kp["in_use_bytes"] - vg["in_use_bytes"], kp_dtv - vg_dtv,
             "leaky: in-use bytes differ by the DTV size difference only")
        t.eq(kp["bytes_allocated"] - vg["bytes_allocated"], kp_dtv - vg_dtv,
             "leaky: bytes allocated differ by the DTV size difference only")
        _, _, vgd = valgrind(cmd, d, [])
        t.eq((vgd["frees"] - kp["frees"], kp["in_use_blocks"] - vgd["in_use_blocks"]), (3, 3),
             "leaky: valgrind's default __libc_freeres frees the 3 DTVs (3 more frees)")

with t.section("reallocs vs valgrind"):
    with Tmp() as d:
        cmd = [app("reallocs"), "valgrind"]
        out, err, vg = valgrind(cmd, d, LIKE)
        r, rep, kp = kprof_run(cmd, d)
        t.eq(out, r.out, "reallocs: same stdout under valgrind and kprof")
        t.diag("reallocs: valgrind %r, kprof %r" % (vg, kp))
        want = counts_from(out)
        t.eq((vg["allocs"], vg["frees"], vg["bytes_allocated"], vg["in_use_bytes"],
              vg["in_use_blocks"]),
             (want["allocs"], want["frees"], want["bytes"], want["leaked_bytes"],
              want["leaked_blocks"]),
             "reallocs: valgrind agrees with the app's own counts")
        for k in sorted(vg):
            t.eq(kp[k], vg[k], "reallocs: %s equal" % k)

with t.section("cxxnew vs valgrind"):
    with Tmp() as d:
        cmd = [app("cxxnew")]
        out, err, vg = valgrind(cmd, d, LIKE)
        r, rep, kp = kprof_run(cmd, d)
        t.eq(out, r.out, "cxxnew: same stdout under valgrind and kprof")
        t.diag("cxxnew: valgrind %r, kprof %r" % (vg, kp))
        for k in sorted(vg):
            t.eq(kp[k], vg[k], "cxxnew: %s equal (freeres off)" % k)
        _, _, vgd = valgrind(cmd, d, [])
        pool = kp["in_use_bytes"] - counts_from(out)["leaked_bytes"]
        t.eq((vgd["frees"] - kp["frees"], kp["in_use_blocks"] - vgd["in_use_blocks"],
              kp["in_use_bytes"] - vgd["in_use_bytes"]), (1, 1, pool),
             "cxxnew: valgrind's default __gnu_cxx::__freeres frees the emergency pool")

t.done()
