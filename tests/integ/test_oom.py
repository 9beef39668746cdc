# SPDX-License-Identifier: MIT
"""A process the kernel's OOM killer ends (preload/cgroup.c, snapshot.c,
tools/analyze/kills.c).

The test makes a memory cgroup with a 64 MiB limit below its own (cgroup
v1's memory controller, or v2's), runs tests/apps/oomhog in it under
kprof, and removes the cgroup after. oomhog grows its heap a MiB every
2 ms until the kernel kills it (SIGKILL, from no process: no killer in
any trace). Checked: the snapshots carry the cgroup's use and limit,
they come every 10 ms or so as the use nears the limit, and the report
says the OOM killer probably ended it, with the numbers; not so for the
same program killed by another SIGKILL far from its limit, nor for one
that exits.
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
LIMIT = 64 << 20
RENDER = os.path.join(SRC, "tests", "integ", "html_render.js")


def own_cgroup():
    """(mount dir of the memory controller, this process's cgroup in it,
    v1?)."""
    with open("/proc/self/cgroup") as f:
        lines = [l.rstrip("\n").split(":", 2) for l in f]
    for hid, ctl, path in lines:
        if "memory" in ctl.split(","):
            return "/sys/fs/cgroup/memory", path, True
    for hid, ctl, path in lines:
        if hid == "0":
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                if os.path.exists(os.path.join(root, "cgroup.controllers")):
                    return root, path, False
    raise Fail("no memory cgroup: /proc/self/cgroup has neither v1's memory "
               "controller nor v2")


class Cgroup:
    """A memory cgroup of LIMIT bytes below this process's, removed after."""

    def __init__(self, limit):
        root, path, self.v1 = own_cgroup()
        parent = root + path.rstrip("/")
        self.dir = os.path.join(parent, "kprof-oom-%d" % os.getpid())
        try:
            if not self.v1:
                with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory")
            os.mkdir(self.dir)
            if self.v1:
                self.put("memory.limit_in_bytes", limit)
                if os.path.exists(os.path.join(self.dir, "memory.memsw.limit_in_bytes")):
                    self.put("memory.memsw.limit_in_bytes", limit)
            else:
                self.put("memory.max", limit)
                self.put("memory.swap.max", 0)
        except OSError as e:
            raise Fail("cannot make a memory cgroup under %s (the test runs as "
                       "root): %s" % (parent, e))

    def put(self, name, v):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(str(v))

    def cmd(self, argv):
        """argv run inside the cgroup (a shell moves itself, then execs)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"',
                self.dir] + argv

    def __enter__(self):
        return self

    def __exit__(self, *a):
        for _ in range(50):  # its last process may still be leaving
            try:
                os.rmdir(self.dir)
                return
            except OSError:
                time.sleep(0.1)
        raise Fail("cannot remove the test's cgroup %s" % self.dir)


def hog_process(rep):
    ps = [p for p in rep["trace"]["processes"] if (p["exe"] or "").endswith("/oomhog")]
    if len(ps) != 1:
        raise Fail("want one oomhog process, got %r" % [p["exe"] for p in rep["trace"]["processes"]])
    return ps[0]


with t.section("killed by the OOM killer in a 64 MiB cgroup"):
    with Tmp() as d, Cgroup(LIMIT) as cg:
        r = run(cg.cmd([app("oomhog")]), d, timeout=60)
        t.eq(r.rc, -signal.SIGKILL, "oomhog: killed by SIGKILL", r)
        rep = analyze(r.traces)
        p = hog_process(rep)
        t.eq((p["truncated"], p["killed_by"]), (True, None),
             "its trace is truncated, no traced process killed it", p)
        snaps = [x for x in dump(p["file"]) if x.get("type") == "snapshot"]
        limits = {x["v"][10] for x in snaps if len(x["v"]) > 10}
        t.eq(limits, {LIMIT}, "every snapshot: the cgroup's limit", limits)
        use = [x["v"][9] for x in snaps]
        t.ok(use and max(use) >= LIMIT * 3 // 4 and all(u > 0 for u in use),
             "the snapshots: the cgroup's use, up to near the limit", use)
        gaps = [b["ts"] - a["ts"] for a, b in zip(snaps, snaps[1:])]
        # (at the limit it may hover a while, its page cache reclaimed
        # first: then they go back to the interval)
        t.ok(len([g for g in gaps if g < 40e6]) >= 3,
             "climbing to the limit: snapshots every 10 ms or so, not 100",
             [(x["ts"], x["v"][9]) for x in snaps])
        o = p["oom_suspect"]
        t.ok(o and o["cgroup_limit"] == LIMIT and
             o["cgroup_usage"] + o["heap_growth_after"] >= LIMIT * 9 // 10 and
             0 < o["time_ns"], "oom_suspect: near its 64 MiB limit at the end", o)
        text = analyze(r.traces, fmt="text")
        t.ok("killer   probably the kernel's OOM killer: its memory cgroup held" in text and
             "of its 64.0 MiB limit" in text, "text: says so", text[:2000])
        page = os.path.join(d, "report.html")
        run_plain([ANALYZE, "--format", "html", "-o", page] + r.traces, d)
        drawn = run_plain([need("node"), RENDER, page], d).out
        t.ok("probably the OOM killer (" in drawn and "64.0 MiB limit)" in drawn,
             "html: the table of processes says so, drawn", drawn[:2000])

with t.section("not the OOM killer"):
    with Tmp() as d, Cgroup(1 << 30) as cg:
        # 8 MiB, then it waits: killed from outside, far from 1 GiB
        argv = cg.cmd([app("oomhog"), "8"])
        e = clean_env({"LD_PRELOAD": LIB})
        before = kpz_files(d)
        pr = subprocess.Popen(argv, cwd=d, env=e, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        time.sleep(0.6)
        pr.send_signal(signal.SIGKILL)
        pr.wait()
        traces = sorted(kpz_files(d) - before)
        rep = analyze(traces)
        p = hog_process(rep)
        t.eq((pr.returncode, p["oom_suspect"]), (-signal.SIGKILL, None),
             "killed by another SIGKILL, 8 MiB of 1 GiB: no OOM suspect", p)
    with Tmp() as d:
        r = run([app("leaky"), "quiet"], d)
        rep = analyze(r.traces)
        t.eq([p["oom_suspect"] for p in rep["trace"]["processes"]], [None],
             "a process that exits: none")

t.done()
