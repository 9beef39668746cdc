# SPDX-License-Identifier: MIT
"""Known leaks, exact counts (issue #2 test 1): tests/apps/leaky.c.

leaky leaks 23 x 1000 bytes from leak_thousand() in each of 3 threads and
7 x 333 bytes from leak_small() in main; frees everything else it makes and
prints its own call counts. The report must say exactly that.

Blocks that are not the app's: the 3 threads run at the same time (a
barrier), so glibc makes 3 thread stacks and gives each a DTV with one
calloc (pthread_create -> _dl_allocate_tls -> allocate_dtv). A joined
thread's stack goes to glibc's stack cache with its DTV still allocated, so
at exit those 3 blocks are in use, from a stack through pthread_create. Their
size depends on how many modules have TLS (libkprof and its dependencies add
some), so the test takes their bytes from the report but requires exactly 3
calls and 3 blocks in one group through pthread_create. Nothing else
allocates: leaky uses no stdio.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
LEAKY = app("leaky")

with t.section("leaky"):
    with Tmp() as d:
        plain = run_plain([LEAKY], d)
        r = run([LEAKY], d)
        t.eq(r.rc, 0, "leaky exits 0 under kprof")
        t.eq(r.out, plain.out, "stdout identical with and without kprof")
        t.eq(len(r.traces), 1, "one trace file")
        want = counts_from(r.out)
        rep = analyze(r.traces)
        m = rep["memory"]
        tr = rep["trace"]
        t.eq(tr["truncated"], False, "trace not truncated")
        t.eq(tr["events_lost"], 0, "no events lost")
        t.eq(len(tr["processes"]), 1, "one process")
        p = tr["processes"][0]
        t.eq(p["pid"], r.pid, "process pid is the app's")
        t.eq(p["end_reason"], "exit", "end_reason exit")
        t.eq(p["exit_status"], 0, "exit_status 0")
        t.eq(p["threads"], 4, "4 threads (main + 3)")

        # the leak_thousand group
        lt = leak_with(rep, "leak_thousand")
        t.eq((lt["bytes"], lt["blocks"]), (69000, 69),
             "leak_thousand: 69000 bytes in 69 blocks (3 threads x 23 x 1000)")
        t.ok(stack_has(lt["stack"], "leaky_thread"),
             "leak_thousand stack has the thread function leaky_thread",
             funcs(lt["stack"]))
        f = frame_of(lt["stack"], "leak_thousand")
        t.ok(f and (f.get("file") or "").endswith("leaky.c") and
             isinstance(f.get("line"), int) and f["line"] > 0,
             "leak_thousand frame has file leaky.c and a line", f)
        t.ok(f and (f.get("module") or "").endswith("/leaky"),
             "leak_thousand frame's module is the leaky executable", f)
        t.eq(lt["confidence"], "high", "leak_thousand confidence high")
        t.ok(isinstance(lt.get("reason"), str) and lt["reason"].strip(),
             "leak_thousand has a reason", lt.get("reason"))
        t.eq((lt["site_allocs"], lt["site_frees"]), (69, 0),
             "leak_thousand site: 69 allocs, 0 frees")
        t.eq(lt["pids"], [r.pid], "leak_thousand pids = [app pid]")
        t.ok(not stack_has(lt["stack"], "malloc"),
             "malloc itself is trimmed from the leak stack", funcs(lt["stack"]))

        ls = leak_with(rep, "leak_small")
        t.eq((ls["bytes"], ls["blocks"]), (2331, 7),
             "leak_small: 2331 bytes in 7 blocks")
        t.ok(stack_has(ls["stack"], "main"), "leak_small stack has main",
             funcs(ls["stack"]))
        f = frame_of(ls["stack"], "leak_small")
        t.ok(f and (f.get("file") or "").endswith("leaky.c") and
             isinstance(f.get("line"), int) and f["line"] > 0,
             "leak_small frame has file leaky.c and a line", f)
        t.eq(ls["confidence"], "high", "leak_small confidence high")
        t.ok(isinstance(ls.get("reason"), str) and ls["reason"].strip(),
             "leak_small has a reason", ls.get("reason"))

        # libc's DTVs: one group through pthread_create, 3 blocks
        dtv = leaks_with(rep, "pthread_create")
        t.eq([l["blocks"] for l in dtv], [3],
             "libc's 3 DTV blocks (one per thread stack) in one group via "
             "pthread_create", leak_summary(rep))
        t.eq([(l["confidence"], l["reason"].startswith("C runtime:")) for l in dtv],
             [("low", True)],
             "the DTV group is the C runtime's own: confidence low, reason says so",
             [l["reason"] for l in dtv])
        dtv_bytes = sum(l["bytes"] for l in dtv)
        others = [l for l in m["leaks"] if l not in dtv and l is not lt and l is not ls]
        t.eq(others, [], "no other leak group", leak_summary(rep))

        t.eq(m["in_use_at_exit"]["blocks"], want["leaked_blocks"] + 3,
             "in_use_at_exit blocks = 76 of the app + 3 DTVs")
        t.eq(m["in_use_at_exit"]["bytes"], want["leaked_bytes"] + dtv_bytes,
             "in_use_at_exit bytes = 71331 + DTV bytes")
        t.eq(sum(l["bytes"] for l in m["leaks"]), m["in_use_at_exit"]["bytes"],
             "leak groups add up to in_use_at_exit bytes")
        t.eq(m["alloc_calls"], want["allocs"] + 3,
             "alloc_calls = the app's count + 3 DTV callocs")
        t.eq(m["free_calls"], want["frees"], "free_calls = the app's count")
        t.eq(m["realloc_calls"], want["reallocs"], "realloc_calls = the app's count")
        t.eq(m["bytes_allocated"], want["bytes"] + dtv_bytes,
             "bytes_allocated = the app's count + DTV bytes")
        t.eq(m["bytes_allocated"] - m["bytes_freed"], m["in_use_at_exit"]["bytes"],
             "bytes_allocated - bytes_freed = in use at exit")
        t.eq(m["unmatched_frees"], 0, "no unmatched frees")
        pm = p["memory"]
        t.eq((pm["alloc_calls"], pm["free_calls"], pm["in_use_at_exit"]),
             (m["alloc_calls"], m["free_calls"], m["in_use_at_exit"]),
             "per-process memory = totals for a single process")
        t.ok(m["peak_bytes"] >= m["in_use_at_exit"]["bytes"],
             "peak_bytes >= in use at exit", m["peak_bytes"])
        t.eq(m["peak_pid"], r.pid, "peak_pid is the app's")
        top = m["top_by_calls"]
        t.ok(top and top[0]["calls"] >= 10000,
             "top_by_calls[0] is the 10000-iteration loop",
             top[:1])
        t.ok(all(a["calls"] >= b["calls"] for a, b in zip(top, top[1:])),
             "top_by_calls sorted by calls")
        tb = m["top_by_bytes"]
        t.ok(all(a["bytes"] >= b["bytes"] for a, b in zip(tb, tb[1:])),
             "top_by_bytes sorted by bytes")

        # temporary allocations: main's 10000 malloc/free pairs, and in each
        # churn() (3 threads and main) 19 reallocs of the block just made,
        # its free and 10 calloc/free pairs; leaky counts them itself
        t.eq(want["temporary"], 10000 + 4 * 30, "leaky counts 10120 temporary")
        t.eq(m["temporary_allocs"], want["temporary"],
             "temporary_allocs = the app's count")
        t.eq(pm["temporary_allocs"], m["temporary_allocs"],
             "per-process temporary_allocs = the total")
        tt = m["top_by_temporary"]
        t.eq((tt[0]["temporary"], tt[0]["calls"]), (10000, 10000),
             "top_by_temporary[0]: main's loop, 10000 of 10000", tt[:1])
        t.ok(stack_has(tt[0]["stack"], "main") and
             not stack_has(tt[0]["stack"], "churn"),
             "its stack is main's, not churn's", funcs(tt[0]["stack"]))
        t.ok(all(a["temporary"] >= b["temporary"] for a, b in zip(tt, tt[1:])),
             "top_by_temporary sorted by temporary")
        t.eq(sum(s["temporary"] for s in tt), m["temporary_allocs"],
             "its sites add up to temporary_allocs (fewer sites than --top)")
        t.ok(all(s["temporary"] <= s["frees"] for s in tt),
             "a site's temporary allocations are among its frees")

t.done()
