# SPDX-License-Identifier: MIT
"""Resource snapshots (SNAPSHOT records, preload/snapshot.c) and what the
analyzer makes of them (tools/analyze/resources.c); the heap over time
(the memory pass's slices) beside them.

tests/apps/rsswave.c touches 64 MiB, holds it, frees it (glibc unmaps a
block that large) and holds again, printing when it touched and freed the
memory (CLOCK_MONOTONIC, the trace's clock) and the kernel's VmHWM. The
writer samples the resident size as it flushes (every 100 ms when idle,
at most every 10 ms), so the sampled peak must fall while the memory was
held, the size at the end must be below it by most of the 64 MiB, and the
high-water mark must be the kernel's own.
"""
import json
import os
import re

from kptest import Tap, Tmp, analyze, analyze_raw, app, run, trace_header

t = Tap()
MIB = 1 << 20


def counters(d, traces, name):
    """The counter events called name of the Chrome export of traces."""
    ch = os.path.join(d, "t.json")
    rc, out, err = analyze_raw(["export", "--chrome", ch] + traces)
    if rc != 0:
        raise AssertionError("export --chrome: %s" % err)
    with open(ch) as f:
        return [e for e in json.load(f)["traceEvents"]
                if e["ph"] == "C" and e["name"] == name]


def proc_of(rep):
    ps = rep["trace"]["processes"]
    if len(ps) != 1:
        raise AssertionError("want one process, got %d" % len(ps))
    return ps[0]


with t.section("rsswave: the peak, the end, the kernel's mark"):
    with Tmp() as d:
        r = run([app("rsswave"), "400"], cwd=d)
        kv = dict(zip(r.out.split()[::2], map(int, r.out.split()[1::2])))
        t.eq((r.rc, sorted(kv)), (0, ["freed", "gone", "hwm_kb", "touched"]),
             "runs", r.err)
        start = trace_header(r.traces[0])["start_mono_ns"]
        rep = analyze(r.traces)
        res = proc_of(rep).get("resources") or {}
        dur = proc_of(rep)["duration_ns"]
        t.ok(3 <= res.get("samples", 0) <= dur // 10000000 + 2,
             "samples as the writer flushes, at most one per 10 ms "
             "(%s in %.0f ms)" % (res.get("samples"), dur / 1e6))
        t.ok(res.get("rss_peak_bytes", 0) >= 64 * MIB,
             "the sampled peak holds the 64 MiB (%.1f MiB)"
             % (res.get("rss_peak_bytes", 0) / MIB))
        # resident until free returns: its first call binds the symbol
        # (some us) before the block is unmapped
        t.ok(kv.get("touched", 0) - start <= res.get("rss_peak_ns", -1) <=
             kv.get("gone", 0) - start,
             "... and was sampled while the memory was held", res)
        t.ok(res.get("rss_end_bytes", 1 << 62) <=
             res.get("rss_peak_bytes", 0) - 56 * MIB,
             "at the end the 64 MiB are gone (%.1f MiB)"
             % (res.get("rss_end_bytes", 0) / MIB))
        hwm = kv.get("hwm_kb", 0) * 1024
        t.ok(hwm <= res.get("rss_max_bytes", 0) <= hwm + 16 * MIB,
             "the high-water mark is the kernel's VmHWM (%.1f MiB; the "
             "app read %.1f MiB before kprof's last flush)"
             % (res.get("rss_max_bytes", 0) / MIB, hwm / MIB))
        t.ok(res.get("minor_faults", 0) >= 64 * MIB // 4096,
             "a page fault per page touched at least (%s)"
             % res.get("minor_faults"))
        t.ok(res.get("vm_peak_bytes", 0) >= res.get("rss_peak_bytes", 1) and
             res.get("cpu_ns", 0) > 0, "mapped >= resident; CPU time")
        heap = rep["memory"]["peak_bytes"]
        text = analyze(r.traces, fmt="text")
        line = [ln for ln in text.splitlines() if ln.startswith("  rss ")]
        t.ok(len(line) == 1 and re.match(
            r"  rss      peak [\d.]+ MiB at [\d.]+ ms \(heap peak 64\.\d MiB\), "
            r"at the end [\d.]+ MiB", line[0]) and 64 * MIB <= heap < 65 * MIB,
             "text: the rss line with the heap peak beside it", line)

        cs = counters(d, r.traces, "rss")
        t.ok(len(cs) == res.get("samples") and
             max(e["args"]["bytes"] for e in cs) == res.get("rss_peak_bytes"),
             "chrome export: an rss counter per sample, the peak among them",
             cs[:3])

with t.section("the heap over time"):
    with Tmp() as d:
        r = run([app("rsswave"), "300"], cwd=d)
        kv = dict(zip(r.out.split()[::2], map(int, r.out.split()[1::2])))
        start = trace_header(r.traces[0])["start_mono_ns"]
        rep = analyze(r.traces)
        p = proc_of(rep)
        tl = p["memory"]["timeline"]
        w, sl = tl["slice_ns"], tl["max_in_use"]
        t.ok(w >= 1000000 and (len(sl) - 1) * w <= p["duration_ns"] <
             len(sl) * w, "slices of %d ms cover the run, the last partial"
             % (w // 1000000), (w, len(sl), p["duration_ns"]))
        # held: from after the memset to the call of free; after: from
        # its return on (the FREE is stamped in between, some us after
        # the call, which binds the symbol first)
        touched, freed = kv["touched"] - start, kv["freed"] - start
        gone = kv["gone"] - start
        held = [v for i, v in enumerate(sl)
                if i * w >= touched and (i + 1) * w <= freed]
        after = [v for i, v in enumerate(sl) if i * w > gone]
        t.ok(held and min(held) >= 64 * MIB and after and
             max(after) < MIB and max(sl) == rep["memory"]["peak_bytes"],
             "64 MiB in every slice while held, under 1 MiB after the "
             "free, the peak the largest", sl)
        text = analyze(r.traces, fmt="text")
        rows = re.findall(r"^ +[\d.]+ m?s +([\d.]+ [KMG]?i?B) +(#*)$",
                          text.split("HEAP OVER TIME", 1)[-1].split(
                              "\n\n", 1)[0], re.M)
        t.ok(2 <= len(rows) <= 12 and rows[0][0] == "64.0 MiB" and
             len(rows[0][1]) == 40 and rows[-1][1] == "",
             "text: HEAP OVER TIME in at most 12 rows, the bar full while "
             "held, empty at the end", rows)
        hs = counters(d, r.traces, "heap")
        t.ok([e["args"]["bytes"] for e in hs] == sl,
             "chrome export: a heap counter per slice", hs[:3])

with t.section("without memory recording"):
    with Tmp() as d:
        r = run([app("rsswave"), "150"], cwd=d, prof={"MEMORY": "0"})
        rep = analyze(r.traces)
        res = proc_of(rep).get("resources") or {}
        t.ok(r.rc == 0 and res.get("rss_peak_bytes", 0) >= 64 * MIB,
             "MEMORY=0: the snapshots are still taken", res)
        text = analyze(r.traces, fmt="text")
        t.ok(re.search(r"^  rss      peak [\d.]+ MiB at [\d.]+ ms, at the end",
                       text, re.M),
             "text: no heap peak to set beside it", text[:800])

with t.section("what recording cost: the writer's CPU, waits for a full ring"):
    KPROF_LINE = (r"^  kprof    writer thread [\d.]+ [mu]?s CPU \([\d.]+ % of the "
                  r"process's [\d.]+ [mu]?s\); ")
    with Tmp() as d:
        # 16 KiB rings (512 slots) fill between two wakes of the writer
        r = run([app("alloc_bench"), "2", "100000"], cwd=d,
                prof={"BUFFER_KB": "16"})
        rep = analyze(r.traces)
        p = proc_of(rep)
        res = p.get("resources") or {}
        t.ok(r.rc == 0 and 0 < res.get("kprof_writer_cpu_ns", 0) <=
             res.get("cpu_ns", 0),
             "the writer thread's CPU time, within the process's", res)
        t.ok(res.get("kprof_ring_waits", 0) > 0 and
             0 < res.get("kprof_ring_wait_ns", 0) < 2 * p["duration_ns"],
             "tiny rings: the threads waited, each wait timed (%s waits, "
             "%.1f ms)" % (res.get("kprof_ring_waits"),
                           res.get("kprof_ring_wait_ns", 0) / 1e6))
        text = analyze(r.traces, fmt="text")
        t.ok(re.search(KPROF_LINE + r"threads waited for a full ring [\d,]+ "
                       r"times, [\d.]+ [mu]?s in all", text, re.M),
             "text: the kprof line with the waits",
             [ln for ln in text.splitlines() if "kprof " in ln])
        t.eq(p.get("events_lost", rep["trace"]["events_lost"]), 0,
             "waiting lost nothing")

        r = run([app("alloc_bench"), "2", "100000"], cwd=d,
                prof={"BUFFER_KB": "16", "OVERFLOW": "drop"})
        rep = analyze(r.traces)
        res = proc_of(rep).get("resources") or {}
        t.ok(res.get("kprof_ring_waits", -1) == 0 and
             res.get("kprof_ring_wait_ns", -1) == 0 and
             rep["trace"]["events_lost"] > 0,
             "the drop policy: events lost, no waits", (res,
                                                       rep["trace"]["events_lost"]))

    with Tmp() as d:
        r = run([app("rsswave"), "150"], cwd=d)
        res = proc_of(analyze(r.traces)).get("resources") or {}
        t.ok(res.get("kprof_writer_cpu_ns", 0) > 0 and
             res.get("kprof_ring_waits", -1) == 0,
             "a calm program: writer CPU, no waits", res)
        text = analyze(r.traces, fmt="text")
        t.ok(re.search(KPROF_LINE + r"no waits for a full ring$", text, re.M),
             "text: no waits", [ln for ln in text.splitlines()
                                if "kprof " in ln])

    with Tmp() as d:
        # the parent waits (tiny rings, filled by I/O events, which the
        # writer takes longest over), then forks a child that exits at
        # once: the child's trace counts its own waits, none. All of the
        # parent's threads on one CPU, so that the writer runs only when
        # the app's thread waits for it (on two cores it may keep up:
        # it did not wait in 7 of 20 runs of the build before)
        code = ("import os\ncpu = min(os.sched_getaffinity(0))\n"
                "for tid in os.listdir('/proc/self/task'):\n"
                "    os.sched_setaffinity(int(tid), {cpu})\n"
                "fd = os.open('/dev/null', os.O_WRONLY)\n"
                "for i in range(200000):\n    os.write(fd, b'x')\n"
                "pid = os.fork()\nif pid == 0:\n    os._exit(0)\n"
                "os.waitpid(pid, 0)\n")
        r = run(["/usr/bin/python3", "-c", code], cwd=d,
                prof={"BUFFER_KB": "16"})
        reps = {}
        for tr in r.traces:
            h = trace_header(tr)
            reps[h["pid"]] = (h["ppid"], proc_of(analyze([tr])).get(
                "resources") or {})
        parent = [v for k, (pp, v) in reps.items() if pp not in reps]
        child = [v for k, (pp, v) in reps.items() if pp in reps]
        t.ok(r.rc == 0 and len(parent) == 1 and len(child) == 1 and
             parent[0].get("kprof_ring_waits", 0) > 0 and
             child[0].get("kprof_ring_waits", -1) == 0,
             "fork: the child starts from no waits",
             [(k, pp, v.get("kprof_ring_waits")) for k, (pp, v) in reps.items()])

t.done()
