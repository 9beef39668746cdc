# SPDX-License-Identifier: MIT
"""Who killed a process (preload/hook_kill.c, tools/analyze/kills.c).

A process killed by SIGKILL, or by a signal kprof does not take
(KOTOBA_PROFILE_SIGNALS off), leaves a trace without its END. A traced
process that signals another records a KILL; kprof-analyze then names the
killer of a process whose trace has no END or ends by a signal: its pid,
the signal, how it was sent, when, and the stack that sent it.

tests/apps/killer.c kills three of its four children, by kill(SIGKILL)
from kill_one, sigqueue(SIGTERM) and pidfd_send_signal(SIGKILL), after
probing each with kill(pid, 0) and failing to signal a pid that does not
exist (neither is a KILL); the fourth exits. Then timeout(1), a real
program: its SIGTERM to the command, and with -s KILL its SIGKILL to its
own process group, which kills it too: that KILL is written, and its trace
ended, before the call.

A signal to a process group: killer.c's group mode puts a job of three
processes in a group of their own (setpgid from both sides, as a shell
does, or setsid) and kills the group (killpg SIGKILL, kill(-group)
SIGTERM); each of the three is named killed by it, found by the group it
was in (its trace's header and the PGID records of the moves). And
timeout(1)'s SIGTERM to its own group, which kills a command's
background child.
"""
import os
import re

from kptest import (ANALYZE, SRC, Tap, Tmp, analyze, app, dump, need, run,
                    run_plain)

RENDER = os.path.join(SRC, "tests", "integ", "html_render.js")

t = Tap()


def procs_by_pid(rep):
    """{pid: [process, ...]} of a JSON report (an exec gives two)."""
    out = {}
    for p in rep["trace"]["processes"]:
        out.setdefault(p["pid"], []).append(p)
    return out


for label, prof in (("signals not taken", {}),
                    ("signals taken (SIGNALS=1)", {"SIGNALS": "1"})):
    with t.section("killer, " + label):
        with Tmp() as d:
            r = run([app("killer")], d, prof=prof)
            t.eq((r.rc, r.err), (0, ""), "%s: killer runs, no warning" % label)
            kv = dict(x.split("=") for x in r.out.split())
            killed = [int(x) for x in kv.get("killed", "").split(",") if x]
            left = int(kv.get("left", "0"))
            rep = analyze(r.traces)
            by = procs_by_pid(rep)
            parent = [p for p in rep["trace"]["processes"] if not p["forked"]]
            ppid = parent[0]["pid"] if parent else None
            kills = [x for x in dump(r.traces) if x["type"] == "kill"]
            t.eq(sorted((x["v"][0], x["v"][1], x["kind"]) for x in kills),
                 sorted([(killed[0], 9, 0), (killed[1], 15, 2),
                         (killed[2], 9, 4)]),
                 "%s: three KILL records (kill, sigqueue, pidfd_send_signal); "
                 "no probe, no failed call" % label, kills)
            got = {}
            for pid in killed + [left]:
                p = by.get(pid, [{}])[0]
                k = p.get("killed_by")
                got[pid] = ((k["pid"], k["signal"], k["how"], k["group"])
                            if k else None)
            t.eq(got, {killed[0]: (ppid, 9, "kill", None),
                       killed[1]: (ppid, 15, "sigqueue", None),
                       killed[2]: (ppid, 9, "pidfd_send_signal", None),
                       left: None},
                 "%s: each killed child names the parent, the signal and "
                 "how; the one that exited, none" % label)
            # SIGKILL: no END, whatever the settings; SIGTERM: an END
            # (killed by SIGTERM) only when kprof takes the signal
            ends = {pid: (by[pid][0]["truncated"], by[pid][0]["end_reason"])
                    for pid in killed if pid in by}
            term = ((False, "signal") if prof else (True, None))
            t.eq(ends, {killed[0]: (True, None), killed[1]: term,
                        killed[2]: (True, None)},
                 "%s: how the children's traces end" % label)
            k = by.get(killed[0], [{}])[0].get("killed_by") or {}
            t.ok(k.get("stack") and k["stack"][0]["function"] == "kill_one" and
                 0 < k.get("time_ns", 0) < 60 * 10**9,
                 "%s: the SIGKILL's stack starts in kill_one; its time is "
                 "after the child began" % label, k)
            leaks = [l for l in rep["memory"]["leaks"] if l["stack"] and
                     l["stack"][0]["function"] == "child_work"]
            t.ok(leaks and leaks[0]["blocks"] == 4 and leaks[0]["bytes"] == 220,
                 "%s: the children's 55-byte blocks, recorded before they were "
                 "killed" % label, leaks)
            if not prof:
                page = os.path.join(d, "report.html")
                run_plain([ANALYZE, "--format", "html", "-o", page] + r.traces, d)
                drawn = run_plain([need("node"), RENDER, page], d).out
                t.ok("killed by signal 9, by pid %d (kill)" % ppid in drawn,
                     "the HTML page's table of processes names the killer",
                     drawn[:2000])
                txt = run_plain([ANALYZE] + r.traces, d).out
                t.ok("ended    TRUNCATED: no END record: killed by SIGKILL "
                     "from pid %d (below)" % ppid in txt and
                     "killer   pid %d " % ppid in txt and
                     "(no END record: killed by pid %d)" % ppid in txt,
                     "the text report names the killer", txt[:3000])

# More than three truncated traces share one warning line, which counts
# the ones whose killer is known; more than 12 traces make a table.
with t.section("killer three times: one warning for nine, a table"):
    with Tmp() as d:
        traces = []
        for _ in range(3):
            r = run([app("killer")], d)
            traces += r.traces
        txt = run_plain([ANALYZE] + traces, d).out
        t.ok("WARNING: 9 traces are TRUNCATED (pids" in txt and
             "9 of them killed by another traced process" in txt,
             "the warning counts the nine killed", txt[:4000])
        # the table of processes (15 traces; --top 20 shows them all):
        # the killer in the "ended" column
        txt = run_plain([ANALYZE, "--top", "20"] + traces, d).out
        t.eq(len(re.findall(r"  (?:KILL|TERM)<\d+  ", txt)), 9,
             "the table says which signal and which pid killed each of "
             "the nine", txt[:4000])

timeout = need("timeout")
for sig, args in (("TERM", []), ("KILL", ["-s", "KILL"])):
    with t.section("timeout %s" % " ".join(args or ["(SIGTERM)"])):
        with Tmp() as d:
            r = run([timeout] + args + ["0.3", "sleep", "5"], d)
            want_rc = 124 if sig == "TERM" else -9
            t.eq(r.rc, want_rc, "timeout %s: exits as without kprof" % sig)
            rep = analyze(r.traces)
            tp = [p for p in rep["trace"]["processes"]
                  if p["exe"].endswith("/timeout") and not p["forked"]]
            sl = [p for p in rep["trace"]["processes"]
                  if p["exe"].endswith("/sleep")]
            k = sl[0].get("killed_by") if sl else None
            t.ok(tp and k and k["pid"] == tp[0]["pid"] and
                 k["signal"] == (15 if sig == "TERM" else 9),
                 "timeout %s: sleep's killer is timeout, with SIG%s" % (sig, sig),
                 [(p["pid"], p["exe"], p["end_reason"], p.get("killed_by"))
                  for p in rep["trace"]["processes"]])
            want = ("exit", 124) if sig == "TERM" else ("signal", 137)
            t.eq((tp[0]["end_reason"], tp[0]["exit_status"],
                  tp[0]["truncated"]) if tp else None, want + (False,),
                 "timeout %s: its own trace ends (%s)" % (sig, want[0]))


for how, prof in (("setpgid", {}), ("setsid", {}), ("setsid", {"SIGNALS": "1"})):
    label = "a group killed, %s%s" % (how, ", SIGNALS=1" if prof else "")
    with t.section(label):
        with Tmp() as d:
            r = run([app("killer"), "group", how], d, prof=prof)
            t.eq((r.rc, r.err), (0, ""), "%s: runs, no warning" % label)
            kv = dict(x.split("=") for x in r.out.split())
            leader = int(kv.get("group", "0"))
            job = [leader] + [int(x) for x in kv.get("members", "").split(",") if x]
            rep = analyze(r.traces)
            by = procs_by_pid(rep)
            parent = [p["pid"] for p in rep["trace"]["processes"] if not p["forked"]]
            moves = sorted((x["v"][0], x["v"][1], x["kind"], x["tid"])
                           for x in dump(r.traces) if x["type"] == "pgid")
            want = [(leader, leader, 1, leader)] if how == "setsid" else \
                sorted([(leader, leader, 0, leader)] +
                       [(leader, leader, 0, p) for p in parent])
            t.eq(moves, want, "%s: the PGID records: the leader's own call%s"
                 % (label, "" if how == "setsid" else ", and the parent's"))
            sig, call = (15, "kill") if how == "setsid" else (9, "killpg")
            got = {}
            for pid in job:
                k = by.get(pid, [{}])[0].get("killed_by")
                got[pid] = ((k["pid"], k["signal"], k["how"], k["group"])
                            if k else None)
            t.eq(got, {pid: (parent[0] if parent else None, sig, call, leader)
                       for pid in job},
                 "%s: the leader and both members killed by the parent's "
                 "%s to group %d" % (label, call, leader))
            k = by.get(job[1], [{}])[0].get("killed_by") or {}
            t.ok(k.get("stack") and k["stack"][0]["function"] == "kill_group",
                 "%s: the signal's stack starts in kill_group" % label, k)
            if not prof:
                txt = run_plain([ANALYZE] + r.traces, d).out
                t.ok("(%s to process group %d), from:" % (call, leader) in txt,
                     "%s: the text's killer line names the group" % label,
                     txt[:3000])
                page = os.path.join(d, "report.html")
                run_plain([ANALYZE, "--format", "html", "-o", page] + r.traces, d)
                drawn = run_plain([need("node"), RENDER, page], d).out
                t.ok("by pid %d (%s to process group %d)" % (parent[0], call, leader)
                     in drawn, "%s: so does the HTML page's table of processes"
                     % label, drawn[:2000])

with t.section("timeout: its SIGTERM to its group kills a background child"):
    with Tmp() as d:
        r = run([timeout, "1", need("sh"), "-c", "sleep 5 & exec sleep 6"], d)
        t.eq(r.rc, 124, "timeout sh -c 'sleep 5 & exec sleep 6': exits as "
             "without kprof")
        rep = analyze(r.traces)
        tp = [p["pid"] for p in rep["trace"]["processes"]
              if p["exe"].endswith("/timeout") and not p["forked"]]
        bg = [p for p in rep["trace"]["processes"]
              if p["exe"].endswith("/sleep") and p["argv"][-1:] == ["5"]]
        k = bg[0].get("killed_by") if bg else None
        t.ok(tp and k and (k["pid"], k["signal"], k["group"]) == (tp[0], 15, tp[0]),
             "the background sleep's killer: timeout's SIGTERM to its own group",
             [(p["pid"], p["exe"], p["argv"][-1:], p.get("killed_by") and
               {x: y for x, y in p["killed_by"].items() if x != "stack"})
              for p in rep["trace"]["processes"]])

t.done()
