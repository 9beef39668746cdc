# SPDX-License-Identifier: MIT
"""Every KOTOBA_PROFILE_* variable of the recorder (issue #2 test 6).

MEMORY, STACK_DEPTH, BUFFER_KB with OVERFLOW=wait|drop, ZSTD_LEVEL (FLUSH_MS
is exercised by test_lifecycle's SIGKILL test, OUTPUT by test_invariants),
PROGRAMS (which processes of a process tree are traced), and a bad value
of each: exactly one warning line on stderr naming the variable and the
default, and the app runs on unchanged.

Threads' DTVs: leaky and storm run their threads at the same time; each
new thread stack gets one calloc from glibc (see leaky.c), counted here.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
LEAKY = app("leaky")
STORM = app("storm")
LIFECYCLE = app("lifecycle")

# Defaults of preload/config.c (documented in kprof(7)).
DEFAULTS = {"MEMORY": "1", "STACK_DEPTH": "64", "BUFFER_KB": "1024",
            "OVERFLOW": "wait", "FLUSH_MS": "100", "ZSTD_LEVEL": "1",
            "OUTPUT": "kprof.%p.kpz", "UNWIND": "fast",
            "PROGRAMS": "every program"}
BAD = [("STACK_DEPTH", "abc"), ("STACK_DEPTH", "-1"), ("STACK_DEPTH", "100000"),
       ("BUFFER_KB", "-1"), ("BUFFER_KB", "8"), ("BUFFER_KB", "12k"),
       ("OVERFLOW", "maybe"), ("OVERFLOW", ""), ("MEMORY", "perhaps"),
       ("MEMORY", ""), ("ZSTD_LEVEL", "99"), ("ZSTD_LEVEL", "0"),
       ("FLUSH_MS", "0"), ("FLUSH_MS", "1e3"), ("OUTPUT", ""),
       ("UNWIND", "dwarf"), ("UNWIND", ""), ("UNWIND", "Fast"),
       ("PROGRAMS", ""), ("PROGRAMS", "leaky," * 100)]

with t.section("MEMORY=0"):
    with Tmp() as d:
        for v in ("0", "off", "no", "false"):
            r = run([LEAKY, "quiet"], d, prof={"MEMORY": v})
            t.eq((r.rc, r.err), (0, ""), "MEMORY=%s: runs, no warning" % v)
            rep = analyze(r.traces)
            m = rep["memory"]
            t.eq((m["alloc_calls"], m["free_calls"], m["leaks"]), (0, 0, []),
                 "MEMORY=%s: no allocation events" % v)
        r = run([LEAKY, "quiet"], d, prof={"MEMORY": "on"})
        t.eq(analyze(r.traces)["memory"]["in_use_at_exit"]["blocks"], 79,
             "MEMORY=on: recorded (76 app blocks + 3 DTVs)")

with t.section("STACK_DEPTH"):
    with Tmp() as d:
        r = run([LEAKY], d, prof={"STACK_DEPTH": "0"})
        t.eq((r.rc, r.err), (0, ""), "STACK_DEPTH=0: runs, no warning")
        want = counts_from(r.out)
        rep = analyze(r.traces)
        m = rep["memory"]
        t.eq(m["in_use_at_exit"]["blocks"], want["leaked_blocks"] + 3,
             "STACK_DEPTH=0: leaks still counted")
        t.eq(sum(l["blocks"] for l in m["leaks"]), want["leaked_blocks"] + 3,
             "STACK_DEPTH=0: leak groups hold every block in use")
        t.ok(all(not l["stack"] for l in m["leaks"]), "STACK_DEPTH=0: leak stacks empty",
             leak_summary(rep))
        t.eq(m["alloc_calls"], want["allocs"] + 3, "STACK_DEPTH=0: alloc_calls exact")
        # format 4: events without stack fields, zstd literals raw unless
        # a level is asked for (kprof(7), ZSTD_LEVEL; kprof-trace(5))
        def blocks(r):
            """(major, zstd_literals, has EVENTS_NS blocks, has EVENTS)"""
            major, _, recs = trace_records(r.traces[0])
            types = {rec[0] for rec in recs}
            return (major, trace_header(r.traces[0])["config"]["zstd_literals"],
                    19 in types, 17 in types)
        for lvl, lit in ((None, "raw"), ("1", "compressed")):
            prof = {"STACK_DEPTH": "0"}
            if lvl:
                prof["ZSTD_LEVEL"] = lvl
            e = run([LEAKY], d, prof=prof)
            t.eq(blocks(e), (4, lit, True, False),
                 "STACK_DEPTH=0 ZSTD_LEVEL=%s: format 4, literals %s, EVENTS_NS "
                 "blocks only" % (lvl or "unset", lit))
            want_e = counts_from(e.out)
            m = analyze(e.traces)["memory"]
            t.eq((m["alloc_calls"], m["free_calls"]),
                 (want_e["allocs"] + 3, want_e["frees"]),
                 "STACK_DEPTH=0 ZSTD_LEVEL=%s: every event read back" % (lvl or "unset"))
        t.eq(blocks(run([LEAKY, "quiet"], d)), (4, "compressed", False, True),
             "stacks on: literals compressed, EVENTS blocks only")

        r = run([LEAKY], d, prof={"STACK_DEPTH": "3"})
        t.eq((r.rc, r.err), (0, ""), "STACK_DEPTH=3: runs, no warning")
        rep = analyze(r.traces)
        m = rep["memory"]
        stacks = [l["stack"] for l in m["leaks"]] + \
            [s["stack"] for s in m["top_by_calls"] + m["top_by_bytes"]]
        t.le(max(len(s or []) for s in stacks), 3, "STACK_DEPTH=3: every stack has <= 3 frames")
        t.ok(any(stack_has(l["stack"], "leak_thousand") for l in m["leaks"]),
             "STACK_DEPTH=3: the innermost frames are kept (leak_thousand)", leak_summary(rep))
        t.eq(m["in_use_at_exit"]["blocks"], 79, "STACK_DEPTH=3: in use at exit unchanged")

with t.section("BUFFER_KB=16 OVERFLOW=wait"):
    with Tmp() as d:
        r = run([STORM, "4", "50000"], d, prof={"BUFFER_KB": "16", "OVERFLOW": "wait"})
        t.eq((r.rc, r.err), (0, ""), "wait: storm runs, no warning")
        want = counts_from(r.out)
        rep = analyze(r.traces)
        m = rep["memory"]
        t.eq(rep["trace"]["events_lost"], 0, "wait: no event lost with 16 KiB rings")
        t.eq(m["alloc_calls"], want["allocs"] + 4, "wait: alloc_calls exact (+4 DTVs)")
        t.eq(m["free_calls"], want["frees"], "wait: free_calls exact")
        t.eq(m["in_use_at_exit"]["blocks"], want["leaked_blocks"] + 4, "wait: in use blocks exact")
        t.eq(m["unmatched_frees"], 0, "wait: no unmatched frees")
        t.eq(leak_with(rep, "storm_leak")["bytes"], want["leaked_bytes"], "wait: storm_leak bytes")

with t.section("BUFFER_KB=16 OVERFLOW=wait, 64 threads"):
    # most of the threads wait for the writer at any time: each sleeps on
    # its ring until the writer has drained it (preload/ring.c)
    with Tmp() as d:
        r = run([STORM, "64", "20000"], d, prof={"BUFFER_KB": "16", "OVERFLOW": "wait"},
                timeout=180)
        t.eq((r.rc, r.err), (0, ""), "wait, 64 threads: storm runs, no warning")
        want = counts_from(r.out)
        rep = analyze(r.traces)
        m = rep["memory"]
        res = rep["trace"]["processes"][0]["resources"]
        t.ok(res["kprof_ring_waits"] > 0, "wait, 64 threads: threads waited for the writer",
             res)
        # each thread's DTV is freed with its stack, or kept in glibc's
        # cache of stacks and in use at exit
        dtv_freed = m["free_calls"] - want["frees"]
        dtv_kept = m["in_use_at_exit"]["blocks"] - want["leaked_blocks"]
        t.eq((rep["trace"]["events_lost"], m["alloc_calls"], m["unmatched_frees"],
              dtv_freed + dtv_kept, min(dtv_freed, dtv_kept) >= 0),
             (0, want["allocs"] + 64, 0, 64, True),
             "wait, 64 threads: nothing lost, every count exact (+64 DTVs, each "
             "freed or in use)", (want, m["free_calls"], m["in_use_at_exit"]))
        t.eq(leak_with(rep, "storm_leak")["bytes"], want["leaked_bytes"],
             "wait, 64 threads: storm_leak bytes")

with t.section("BUFFER_KB=16 OVERFLOW=drop"):
    with Tmp() as d:
        r = run([STORM, "4", "50000"], d, prof={"BUFFER_KB": "16", "OVERFLOW": "drop"})
        t.eq((r.rc, r.err), (0, ""), "drop: storm runs, no warning")
        want = counts_from(r.out)
        rep = analyze(r.traces)
        m = rep["memory"]
        tr = rep["trace"]
        t.diag("drop: events_lost=%d by type %r" % (tr["events_lost"], tr["events_lost_by_type"]))
        t.eq(tr["events_lost"], sum(tr["events_lost_by_type"].values()),
             "drop: events_lost = sum of events_lost_by_type")
        t.eq(m["alloc_calls"] + lost_of(rep, "alloc", "realloc"), want["allocs"] + 4,
             "drop: alloc_calls + lost allocs = the program's count (+4 DTVs)")
        t.eq(m["free_calls"] + lost_of(rep, "free", "realloc"), want["frees"],
             "drop: free_calls + lost frees = the program's count")
        t.eq(tr["processes"][0].get("events_lost"), tr["events_lost"],
             "drop: the process's events_lost = the trace's (one process)")

with t.section("ZSTD_LEVEL"):
    with Tmp() as d:
        reps = {}
        sizes = {}
        for lv in ("1", "19"):
            r = run([LEAKY, "quiet"], d, prof={"ZSTD_LEVEL": lv})
            t.eq((r.rc, r.err), (0, ""), "ZSTD_LEVEL=%s: runs, no warning" % lv)
            sizes[lv] = os.path.getsize(r.traces[0])
            rep = analyze(r.traces)
            m = rep["memory"]
            reps[lv] = {
                "trace": {k: rep["trace"][k] for k in ("truncated", "events_lost")},
                "memory": {k: m[k] for k in ("alloc_calls", "free_calls", "realloc_calls",
                                             "bytes_allocated", "bytes_freed",
                                             "in_use_at_exit", "unmatched_frees")},
                "leaks": sorted(normalize(m["leaks"]), key=lambda l: (l["bytes"], l["blocks"])),
            }
        t.diag("trace sizes: level 1 %d bytes, level 19 %d bytes" % (sizes["1"], sizes["19"]))
        t.eq(reps["1"], reps["19"], "ZSTD_LEVEL=1 and =19 give identical reports "
             "(but for times, pids and addresses)")

def traced(r):
    """(exe's file name, end reason) of each trace of a run, sorted."""
    return sorted((os.path.basename(p["exe"]), p["end_reason"])
                  for p in analyze(r.traces)["trace"]["processes"]) if r.traces else []


with t.section("PROGRAMS"):
    with Tmp() as d:
        # lifecycle forkexec PROG: a fork child leaks 2 x 64, then execs PROG
        fe = [LIFECYCLE, "forkexec", "/bin/true"]
        for progs, want in (
                (None, [("lifecycle", "exec"), ("lifecycle", "exit"), ("true", "exit")]),
                ("lifecycle", [("lifecycle", "exec"), ("lifecycle", "exit")]),
                ("true", [("true", "exit")]),
                ("nomatch,tru?", [("true", "exit")]),
                ("*/apps/lifecycle", [("lifecycle", "exec"), ("lifecycle", "exit")]),
                ("/nonexistent/*", []),
                ("nomatch", [])):
            r = run(fe, d, prof={"PROGRAMS": progs} if progs else None)
            label = "PROGRAMS=%s" % progs if progs else "PROGRAMS unset"
            t.eq((r.rc, r.err, r.out.startswith("parent=")), (0, "", True),
                 "%s: runs, no warning" % label)
            t.eq(traced(r), want, "%s: traces exactly %s" % (label, want or "none"))
            for f in r.traces:
                os.unlink(f)
        r = run(fe, d, prof={"PROGRAMS": "lifecycle"})
        rep = analyze(r.traces)
        t.eq([(l["bytes"], l["blocks"]) for l in rep["memory"]["leaks"]], [(128, 2)],
             "PROGRAMS=lifecycle: the fork child's 2 x 64 before its exec, exactly")
        t.eq(trace_header(r.traces[0])["config"].get("programs"), "lifecycle",
             "PROGRAMS in the trace header's config")
        for f in r.traces:
            os.unlink(f)
        # argv[0]'s name counts too (python3 runs python3.11): a link
        os.symlink(LIFECYCLE, os.path.join(d, "othername"))
        plain = run_plain(["./othername", "leak4"], d)
        for progs, n in (("othername", 1), ("lifecycle", 1), ("other*", 1), ("nomatch", 0)):
            r = run(["./othername", "leak4"], d, prof={"PROGRAMS": progs})
            t.eq((r.rc, r.out, r.err, len(r.traces)), (plain.rc, plain.out, "", n),
                 "PROGRAMS=%s, run by a link named othername: same output, %d trace"
                 % (progs, n))
            if n:
                leaks = analyze(r.traces)["memory"]["leaks"]
                t.eq([(l["bytes"], l["blocks"]) for l in leaks], [(200, 4)],
                     "PROGRAMS=%s: leak4's 4 x 50 exactly" % progs)
            for f in r.traces:
                os.unlink(f)

# Resource snapshots: one every KOTOBA_SAMPLING_INTERVAL_MS, the writer
# waking for them in an idle process; KOTOBA_MAX_SNAPSHOTS bounds them,
# the interval doubling at half of it, at half the rest, ... (then only
# the last, at the end).
def snapshots(traces):
    return [x["ts"] for x in dump(traces) if x["type"] == "snapshot"]


with t.section("SAMPLING_INTERVAL_MS and MAX_SNAPSHOTS"):
    with Tmp() as d:
        for ms, lo, hi in (("20", 30, 52), (None, 6, 12)):
            env = {"KOTOBA_SAMPLING_INTERVAL_MS": ms} if ms else {}
            r = run(["/bin/sleep", "1"], d, env=env)
            ts = snapshots(r.traces)
            t.ok(r.rc == 0 and r.err == "" and lo <= len(ts) <= hi,
                 "SAMPLING_INTERVAL_MS=%s: %d to %d snapshots in an idle second"
                 % (ms or "default (100)", lo, hi), (len(ts), r.err))
            t.eq(trace_header(r.traces[0])["config"].get("sampling_interval_ms"),
                 ms or "100", "sampling_interval_ms in the header's config")
            for f in r.traces:
                os.unlink(f)
        r = run(["/bin/sleep", "1"], d, env={"KOTOBA_SAMPLING_INTERVAL_MS": "10",
                                             "KOTOBA_MAX_SNAPSHOTS": "8"})
        ts = snapshots(r.traces)
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        # 4 at 10 ms, 2 at 20, 1 at 40, 1 at 80, then the last at the end
        t.ok(r.rc == 0 and len(ts) == 9 and gaps[3] >= 19e6 and gaps[5] >= 39e6
             and gaps[6] >= 79e6 and ts[-1] > 0.9e9,
             "MAX_SNAPSHOTS=8: 8 with the interval doubling, and the last",
             (len(ts), gaps))
        t.eq(trace_header(r.traces[0])["config"].get("max_snapshots"), "8",
             "max_snapshots in the header's config")
        for f in r.traces:
            os.unlink(f)
        for name, val, dflt in (("KOTOBA_SAMPLING_INTERVAL_MS", "0", "100"),
                                ("KOTOBA_SAMPLING_INTERVAL_MS", "1s", "100"),
                                ("KOTOBA_MAX_SNAPSHOTS", "-5", "100000")):
            r = run(["/bin/true"], d, env={name: val})
            lines = r.err.splitlines()
            t.ok(r.rc == 0 and len(lines) == 1 and name in lines[0] and
                 "default %s" % dflt in lines[0],
                 "%s=%s: one warning naming the default %s" % (name, val, dflt), r.err)
            for f in r.traces:
                os.unlink(f)

# KOTOBA_PROFILE_SIGNALS: auto (the default) follows CPU sampling
with t.section("SIGNALS"):
    with Tmp() as d:
        for env, want in (({}, "0"), ({"CPU": "1"}, "1"), ({"SIGNALS": "auto"}, "0"),
                          ({"SIGNALS": "1"}, "1"), ({"SIGNALS": "off", "CPU": "1"}, "0")):
            r = run(["/bin/true"], d, prof=env)
            t.eq((r.rc, r.err, trace_header(r.traces[0])["config"].get("signals")),
                 (0, "", want), "%s: signals %s" % (env or "defaults", want))
            for f in r.traces:
                os.unlink(f)
        r = run(["/bin/true"], d, prof={"SIGNALS": "always"})
        lines = r.err.splitlines()
        t.ok(r.rc == 0 and len(lines) == 1 and "KOTOBA_PROFILE_SIGNALS" in lines[0]
             and "default auto" in lines[0],
             "SIGNALS=always: one warning naming the default auto", r.err)

with t.section("bad values"):
    with Tmp() as d:
        want_out = run_plain([LEAKY], d).out
        for var, val in BAD:
            name = "KOTOBA_PROFILE_" + var
            r = run([LEAKY], d, prof={var: val})
            lines = r.err.splitlines()
            label = "%s=%r" % (name, val)
            t.ok(len(lines) == 1 and name in lines[0] and "default" in lines[0] and
                 DEFAULTS[var] in lines[0],
                 "%s: exactly one warning line naming the variable and the default %s"
                 % (label, DEFAULTS[var]), r.err)
            t.eq((r.rc, r.out), (0, want_out), "%s: the app runs on with the same output" % label)
            t.eq(len(r.traces), 1, "%s: still traced with the default" % label)
        # good values: no warning at all
        for var, val in (("STACK_DEPTH", "256"), ("BUFFER_KB", "16"), ("FLUSH_MS", "1"),
                         ("ZSTD_LEVEL", "19"), ("OVERFLOW", "drop"), ("MEMORY", "TRUE"),
                         ("UNWIND", "fast"), ("UNWIND", "libunwind")):
            r = run([LEAKY, "quiet"], d, prof={var: val})
            t.eq((r.rc, r.err), (0, ""), "KOTOBA_PROFILE_%s=%s: accepted silently" % (var, val))

t.done()
