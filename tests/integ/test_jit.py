# SPDX-License-Identifier: MIT
"""Code compiled at run time, named from perf's map files.

A JIT's code lies in no module, so its frames have no symbols; JITs that
support perf write /tmp/perf-<pid>.map ("START SIZE NAME" per piece of
code), and kprof-analyze reads it for a frame in no module (directory
from --perf-map-dir, default /tmp).

The recorder copies /tmp/perf-<pid>.map into the trace (JIT_CODE
records) when the process ends and before an exec; the analyzer prefers
that copy to the file.

tests/apps/jitcode.c writes two functions into an anonymous executable
mapping (one calls malloc, one loops) and names them in its map, under an
older line for the whole mapping that the later lines must override; the
leak, the allocation site, the CPU profile, the folded stacks and the
pprof export must all carry the map's names, from the file (in a
directory of the test's) and from the trace (the map in /tmp, removed
before the analysis). The copy: once per line, across the failed execs of
a shell's PATH search; never through a symbolic link. Then two real
JITs: the JVM with -XX:+DumpPerfMapAtExit and node with --perf-basic-prof,
whose hottest functions must be the programs' own.
"""
import gzip
import json
import os
import re
import subprocess

from kptest import Fail, Tap, Tmp, analyze, analyze_raw, app, dump, funcs, \
    go_pprof, need, run

t = Tap()
CPU = {"CPU": "1", "CPU_HZ": "1000"}
NLEAK = 7


def hot(rep):
    """(function, self share) of the CPU report's hottest function."""
    fs = sorted(rep["cpu"]["functions"], key=lambda f: -f["self_share"])
    if not fs:
        raise Fail("no functions in the CPU report")
    return fs[0]["function"], fs[0]["self_share"]


def real_jit(name, cmd, d):
    """Run a real JIT that prints "true" under CPU sampling; remove the
    map it wrote in /tmp, so the names can come only from the trace.
    Returns the report and its hottest function with its share."""
    r = run(cmd, cwd=d, prof=dict(CPU, MEMORY="0", IO="0"))
    mapfile = "/tmp/perf-%d.map" % r.pid
    t.eq((r.rc, r.out.strip()), (0, "true"), "%s runs" % name, r.err)
    t.ok(os.path.exists(mapfile), "%s wrote %s" % (name, mapfile))
    if os.path.exists(mapfile):
        os.unlink(mapfile)
    rep = analyze(r.traces)
    return (rep,) + hot(rep)


def jit_leak(rep):
    """The leak groups of jitcode's NLEAK blocks of 4000 bytes."""
    return [g for g in rep["memory"]["leaks"]
            if g["blocks"] == NLEAK and g["bytes"] == NLEAK * 4000]


with t.section("jitcode: frames named from its map"):
    with Tmp() as d:
        maps = os.path.join(d, "maps")
        os.mkdir(maps)
        r = run([app("jitcode"), maps, str(NLEAK), "300"], cwd=d, prof=CPU)
        t.eq((r.rc, r.out.split()[:2]), (0, ["ok", str(NLEAK)]), "runs",
             r.err)
        mapfile = os.path.join(maps, "perf-%d.map" % r.pid)
        t.ok(os.path.exists(mapfile), "the app wrote its map")
        rep = analyze(r.traces, extra=["--perf-map-dir", maps])
        g = jit_leak(rep)
        t.eq(len(g), 1, "one leak group of %d x 4000 bytes" % NLEAK,
             json.dumps(rep["memory"]["leaks"])[:1500])
        if g:
            st = g[0]["stack"]
            t.eq(funcs(st)[:2], ["jit:alloc", "main"],
                 "its stack: the JIT's function (the map's later line), "
                 "then main", json.dumps(st[:3]))
            t.eq((st[0]["module"], st[0]["file"], st[0]["line"]),
                 (mapfile, None, None),
                 "the JIT frame's module is the map, without file:line")
        name, share = hot(rep)
        t.eq(name, "jit:spin [hot loop]",
             "the hottest function is the JIT's loop, its name whole")
        t.ge(share, 0.8, "with most of the CPU time")
        text = analyze(r.traces, fmt="text",
                       extra=["--perf-map-dir", maps, "leaks"])
        t.ok(re.search(r"at jit:alloc \(perf-%d\.map\+0x[0-9a-f]+\)" % r.pid,
                       text), "text: 'at jit:alloc (perf-PID.map+0x...)'",
             text[:1500])
        t.ok("jit:stale" not in text and "jit:stale" not in json.dumps(rep),
             "the older line for the whole mapping is overridden")
        rc, folded, err = analyze_raw(["flame", "--folded", "--perf-map-dir",
                                       maps] + r.traces)
        t.ok(rc == 0 and re.search(r";main;jit:spin \[hot loop\] \d+$",
                                   folded, re.M),
             "folded stacks: main;jit:spin [hot loop]", folded[:800] + err)

        # pprof: the JIT's function by name, its location inside its
        # mapping's range (the pc is its own offset there, above 2^40)
        pb = os.path.join(d, "cpu.pb.gz")
        rc, out, err = analyze_raw(["export", "--pprof", pb, "--perf-map-dir",
                                    maps] + r.traces)
        t.eq(rc, 0, "export --pprof", err)
        rc, raw, err = go_pprof(["-raw", pb], d)
        t.eq(rc, 0, "go tool pprof -raw reads it", err[-800:])
        locs = raw.split("Locations", 1)[-1].split("Mappings", 1)[0]
        mapsec = raw.split("Mappings", 1)[-1]
        m = re.search(r"^\s*(\d+):\s+0x([0-9a-f]+)\s+M=(\d+)\s+"
                      r"jit:spin \[hot loop\]", locs, re.M)
        rng = m and re.search(r"^\s*%s:\s+0x([0-9a-f]+)/0x([0-9a-f]+)\S*\s+"
                              r"(\S+)" % m.group(3), mapsec, re.M)
        t.ok(m and rng and int(rng.group(1), 16) <= int(m.group(2), 16) <
             int(rng.group(2), 16) and rng.group(3) == mapfile,
             "pprof: a location named jit:spin, in the map's mapping",
             locs[:800] + mapsec[:800])

        # where the map is not found, or symbols are off: no names
        empty = os.path.join(d, "empty")
        os.mkdir(empty)
        for extra, what in ((["--perf-map-dir", empty], "no map there"),
                            (["--perf-map-dir", maps, "--no-symbols"],
                             "--no-symbols")):
            rep = analyze(r.traces, extra=extra)
            g = jit_leak(rep)
            t.ok(len(g) == 1 and not g[0]["stack"][0]["function"] and
                 not g[0]["stack"][0]["module"],
                 "%s: the JIT frame has neither name nor module" % what,
                 json.dumps(g[:1])[:800])
            t.ok("jit:" not in json.dumps(rep), "%s: no JIT name anywhere"
                 % what)

with t.section("the map carried by the trace"):
    # jitcode's map in /tmp, where kprof copies it into the trace at exit
    with Tmp() as d:
        r = run([app("jitcode"), "/tmp", str(NLEAK), "100"], cwd=d, prof=CPU)
        mapfile = "/tmp/perf-%d.map" % r.pid
        try:
            t.eq(r.rc, 0, "runs", r.err)
            with open(mapfile) as f:
                lines = f.read().splitlines()
        finally:
            if os.path.exists(mapfile):
                os.unlink(mapfile)
        recs = [x for x in dump(r.traces) if x["type"] == "jit_code"]
        t.eq(["%x %x %s" % (x["lo"], x["size"], x["name"]) for x in recs],
             lines, "one jit_code record per line of the map, in its order")
        decoy = os.path.join(d, "decoy")
        os.mkdir(decoy)
        with open(os.path.join(decoy, "perf-%d.map" % r.pid), "w") as f:
            f.write("".join("%s %s decoy\n" % tuple(ln.split()[:2])
                            for ln in lines))
        rep = analyze(r.traces, extra=["--perf-map-dir", decoy])
        g = jit_leak(rep)
        t.ok(len(g) == 1 and funcs(g[0]["stack"])[:2] == ["jit:alloc", "main"]
             and g[0]["stack"][0]["module"] == "[perf-%d.map]" % r.pid,
             "with the file gone: named from the trace, module "
             "[perf-PID.map] (a map file elsewhere does not override it)",
             json.dumps(g[:1])[:800])
        t.eq(hot(rep)[0], "jit:spin [hot loop]", "the CPU profile too")

    # killed, the process could not copy its map: the analyzer reads the
    # file in /tmp (the trace was recorded on this machine)
    with Tmp() as d:
        r = run([app("jitcode"), "/tmp", str(NLEAK), "300", "kill"], cwd=d,
                prof=CPU)
        mapfile = "/tmp/perf-%d.map" % r.pid
        try:
            recs = [x for x in dump(r.traces) if x["type"] == "jit_code"]
            rep = analyze(r.traces)
        finally:
            if os.path.exists(mapfile):
                os.unlink(mapfile)
        g = jit_leak(rep)
        t.ok(r.rc == -9 and not recs and len(g) == 1 and
             funcs(g[0]["stack"])[:1] == ["jit:alloc"] and
             g[0]["stack"][0]["module"] == mapfile,
             "SIGKILL: no jit_code record, names from " + mapfile,
             json.dumps(g[:1])[:800])

    # any program's map is read the same, only if it is a regular file
    # of the user's, not through a symbolic link. sh's exec tries PATH's
    # directories in turn; the first two hold a "true" without the x bit,
    # so two execs fail (EACCES) before the third succeeds: each of those
    # ends the trace (a missing file would not: preload/lifecycle.c)
    with Tmp() as d:
        src = os.path.join(d, "lines")
        with open(src, "w") as f:
            f.write("1000 10 first\n2000 10 %s\nnot a line\n3000 10 tail"
                    % ("x" * 70000))
        dirs = [os.path.join(d, b) for b in ("bin1", "bin2")]
        for b in dirs:
            os.mkdir(b)
            open(os.path.join(b, "true"), "w").close()
        path = ":".join(dirs + ["/usr/bin", "/bin"])
        for how in ("ln -s", "cp"):
            r = run(["sh", "-c", '%s "$1" /tmp/perf-$$.map; exec true' % how,
                     "sh", src], cwd=d, env={"PATH": path})
            mapfile = "/tmp/perf-%d.map" % r.pid
            try:
                got = {os.path.basename(f): [x["name"] for x in dump(f)
                                             if x["type"] == "jit_code"]
                       for f in r.traces}
            finally:
                if os.path.lexists(mapfile):
                    os.unlink(mapfile)
            sh_t, true_t = "kprof.%d.kpz" % r.pid, "kprof.%d.1.kpz" % r.pid
            if how == "ln -s":
                t.eq((r.rc, sorted(set(sum(got.values(), [])))), (0, []),
                     "map through a symbolic link: not read")
                continue
            execs = [x["path"] for x in dump(os.path.join(d, sh_t))
                     if x["type"] == "exec"]
            t.eq(execs, [os.path.join(b, "true") for b in dirs] +
                 ["/usr/bin/true"], "sh's trace: three EXECs")
            t.eq((r.rc, got.pop(sh_t, None), got.pop(true_t, None)),
                 (0, ["first"], ["first", "tail"]),
                 "map made by cp: copied once into sh's trace (two "
                 "failed execs and the third each end it), "
                 "the 70 KB line and the non-line skipped, the last line "
                 "without its newline only at the process's end (true's "
                 "trace)", got)
            t.eq(list(got.values()), [[]], "cp, another pid: no map")

with t.section("java -XX:+DumpPerfMapAtExit"):
    # the JVM (17 and later) writes its map as it exits, before kprof's
    # last flush, which copies it
    java, javac = need("java"), need("javac")
    with Tmp() as d:
        with open(os.path.join(d, "Hot.java"), "w") as f:
            f.write("public class Hot {\n"
                    "  static long spin(long n) { long s = 0;\n"
                    "    for (long i = 0; i < n; i++) s += i % 7; return s; }\n"
                    "  public static void main(String[] a) { long t = 0;\n"
                    "    long end = System.nanoTime() + 400000000L;\n"
                    "    while (System.nanoTime() < end) t += spin(100000);\n"
                    "    System.out.println(t > 0); } }\n")
        c = subprocess.run([javac, "Hot.java"], cwd=d, capture_output=True,
                           text=True)
        t.eq(c.returncode, 0, "javac", c.stderr)
        rep, name, share = real_jit("java", [
            java, "-XX:+UnlockDiagnosticVMOptions", "-XX:+DumpPerfMapAtExit",
            "Hot"], d)
        t.ok("Hot.spin" in name and share >= 0.3,
             "the hottest function is Hot.spin, compiled, named by the "
             "JVM's map as the trace carries it (%r, %.0f %%)"
             % (name, 100 * share), json.dumps(rep["cpu"]["functions"][:5]))

with t.section("node --perf-basic-prof"):
    node = need("node")
    with Tmp() as d:
        js = os.path.join(d, "hot.js")
        with open(js, "w") as f:
            f.write("function hotLoop(n) { let s = 0;\n"
                    "  for (let i = 0; i < n; i++) s += Math.sqrt(i) * (i % 7);\n"
                    "  return s; }\n"
                    "let t = 0; const end = Date.now() + 400;\n"
                    "while (Date.now() < end) t += hotLoop(100000);\n"
                    "console.log(t > 0);\n")
        rep, name, share = real_jit("node", [node, "--perf-basic-prof", js], d)
        t.ok(name.startswith("JS:") and "hotLoop" in name and share >= 0.4,
             "the hottest function is the script's hotLoop, named by "
             "node's map as the trace carries it (%r, %.0f %%)"
             % (name, 100 * share), json.dumps(rep["cpu"]["functions"][:5]))

t.done()
