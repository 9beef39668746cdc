"""kprof-analyze --format html: one page that draws the JSON report.

The page must carry the JSON report exactly as --format json writes it,
the script tools/analyze/report_html.js exactly as it is, and the flame
graphs exactly as `kprof-analyze flame` draws them. What the script draws
is checked too: node runs it on the page's data (tests/integ/
html_render.js, as a browser would) and the tables must hold the report's
numbers for programs with known behaviour (tests/apps/demo.c, sqlite_app.c,
cpuwork.c). Strings from the trace (a program's arguments here) can
neither end the page's script element nor become markup.
"""
import base64
import html
import html.parser
import json
import os
import re
import subprocess
from decimal import ROUND_HALF_UP, Decimal

from kptest import (ANALYZE, SRC, Fail, Tap, Tmp, analyze, analyze_raw, app,
                    clean_env, need, run)

t = Tap()
RENDER = os.path.join(SRC, "tests", "integ", "html_render.js")
VOID = {"br", "img", "input", "meta", "link", "hr", "wbr"}


class Page(html.parser.HTMLParser):
    """Tables by class (rows of cell texts), the open/close balance, the
    iframes, every start tag, the (term, value) pairs of the kv lists."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tables, self.tags, self.iframes, self.errors = {}, [], [], []
        self.open = []
        self.rows = self.cell = None
        self.kv, self.term, self.kvtext = [], None, None
        self.feed(text)
        self.close()
        if self.open:
            self.errors.append("left open: %r" % self.open)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "iframe":
            self.iframes.append(a)
        if tag == "table":
            self.rows = self.tables.setdefault(a.get("class", ""), [])
        elif tag == "tr" and self.rows is not None:
            self.rows.append([])
        elif tag in ("td", "th") and self.rows is not None:
            self.cell = []
        elif tag in ("dt", "dd"):
            self.kvtext = []
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.errors.append("</%s> closes %r" % (tag, self.open[-3:]))
            return
        self.open.pop()
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "table":
            self.rows = None
        elif tag in ("dt", "dd") and self.kvtext is not None:
            text = " ".join("".join(self.kvtext).split())
            if tag == "dt":
                self.term = text
            else:
                self.kv.append((self.term, text))
            self.kvtext = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        if self.kvtext is not None:
            self.kvtext.append(data)

    def body(self, cls):
        """The rows of the table of that class, without its header."""
        return self.tables.get(cls, [])[1:]


def page_parts(text):
    """The page's JSON texts (the report, its frames) and its script, as a
    browser finds them."""
    d = re.search(r'<script type="application/json" id="kprof-data">'
                  r'(.*?)</script>', text, re.S)
    f = re.search(r'<script type="application/json" id="kprof-frames">'
                  r'(.*?)</script>', text, re.S)
    s = re.search(r"<script>\n(.*?)</script>", text, re.S)
    if not d or not f or not s:
        raise Fail("no data, frames or script element in the page")
    return d.group(1), f.group(1), s.group(1)


def page_data(text):
    """The page's data as the JSON report: each stack {"@": [i, ...]}
    made the frames at those indices (their table holds each once)."""
    data, frames, _ = page_parts(text)
    frames = json.loads(frames)
    seen = {json.dumps(f, sort_keys=True) for f in frames}
    if len(seen) != len(frames):
        raise Fail("the page's frame table repeats %d frames" %
                   (len(frames) - len(seen)))

    def stack(o):
        return [frames[i] for i in o["@"]] if list(o) == ["@"] else o
    return json.loads(data, object_hook=stack)


def render(path):
    p = subprocess.run([need("node"), RENDER, path], capture_output=True,
                       text=True, timeout=60)
    if p.returncode:
        raise Fail("the page's script failed under node: %s" % p.stderr)
    return p.stdout


def html_report(traces, d, extra=()):
    """(page text, its data as the JSON report, drawn Page) of the
    traces."""
    out = os.path.join(d, "report.html")
    rc, so, se = analyze_raw(["--format", "html", "-o", out] + list(extra) +
                             list(traces))
    if rc or so or se:
        raise Fail("kprof-analyze --format html: %d %r %r" % (rc, so, se))
    with open(out) as f:
        text = f.read()
    return text, page_data(text), Page(render(out))


def flames(text):
    """The page's flame graphs: {title: SVG text}."""
    got = {}
    for m in re.finditer(r'<iframe title="([^"]*)" loading="lazy" '
                         r'height="\d+" '
                         r'src="data:image/svg\+xml;base64,([^"]*)"', text):
        got[m.group(1)] = base64.b64decode(m.group(2)).decode()
    return got


def html_size(n):
    """A byte count as the page shows it (toFixed(1) rounds a tie up)."""
    units, i, v = ["B", "KiB", "MiB", "GiB", "TiB"], 0, float(n)
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    if not i:
        return "{:,} B".format(n)
    return "%s %s" % (Decimal(v).quantize(Decimal("0.1"), ROUND_HALF_UP),
                      units[i])


def flame_svg(traces, what):
    rc, out, err = analyze_raw(["flame", "--what", what] + list(traces))
    if rc:
        raise Fail("flame --what %s: %d %s" % (what, rc, err))
    return out if "<g class=\"f\">" in out else None


with open(os.path.join(SRC, "tools", "analyze", "report_html.js")) as f:
    SCRIPT = f.read()

# demo: a known leak (10,000 blocks of 64 bytes at parse_request), I/O to
# its log with fsyncs, allocations; no CPU samples.
with t.section("demo"):
    with Tmp() as d:
        r = run([app("demo")], d)
        t.eq(r.rc, 0, "demo runs")
        rep = analyze(r.traces)
        text, data, pg = html_report(r.traces, d)
        t.ok(text.startswith("<!DOCTYPE html>\n"), "an HTML5 page")
        t.ok(re.search(r"<title>kprof report: demo \(%d\)</title>" % r.pid,
                       text), "titled with the program and its pid")
        t.eq(data, rep, "the page's data is the JSON report")
        t.eq(page_parts(text)[2], SCRIPT, "the page's script is "
             "report_html.js as it is")
        t.eq(pg.errors, [], "the drawn report's elements nest and close")
        procs = pg.body("procs")
        t.eq([(p[0], p[5]) for p in procs], [(str(r.pid), "exit(0)")],
             "processes: demo's pid, ended exit(0)", procs)
        t.eq([a[2] for a in pg.body("advice")],
             [a["code"] for a in rep["advice"]],
             "advice: the report's findings in its order")
        leaks = pg.body("leaks")
        t.eq(len(leaks), len(rep["memory"]["leaks"]),
             "leaks: one row a group")
        t.eq(leaks[0][:2], ["625.0 KiB", "10,000"],
             "leaks: the first, 625.0 KiB in 10,000 blocks", leaks[:1])
        t.ok(leaks[0][2].startswith("high") and
             leaks[0][3].startswith("parse_request (demo.c:32)"),
             "leaks: high confidence, at parse_request (demo.c:32)",
             leaks[:1])
        tl = rep["trace"]["processes"][0]["memory"]["timeline"]["max_in_use"]
        poly = [a for tag, a in pg.tags if tag == "polygon"]
        t.eq([len(p["points"].split()) for p in poly], [len(tl) + 2],
             "the heap over time: one chart, a point per slice")
        lo = rep["trace"]["processes"][0]["memory"]["timeline"]["min_in_use"]
        line = [a["points"].split() for tag, a in pg.tags
                if tag == "polyline" and a.get("class") == "floor"]
        top = float(poly[0]["points"].split()[0].split(",")[1]) if poly \
            else 0
        t.ok(len(line) == 1 and len(line[0]) == len(lo) and
             [float(p.split(",")[1]) == top for p in line[0]] ==
             [x == 0 for x in lo],
             "and its floor, a point per slice, on the axis where it is 0")
        got = flames(text)
        t.eq(sorted(got), ["Allocated bytes"],
             "flame graphs: allocated bytes only (no CPU samples)")
        t.eq(got.get("Allocated bytes"), flame_svg(r.traces, "alloc"),
             "its SVG is `flame --what alloc`'s")
        nav = re.search(r"<nav>(.*?)</nav>", render(os.path.join(
            d, "report.html")), re.S).group(1)
        t.eq(re.findall(r'href="#(\w+)"', nav),
             ["advice", "memory", "io", "app", "flame"],
             "the sections it has, linked in order")

# sqlite_app: known queries (an autocommit storm, N+1 loops, full scans,
# a duplicate); CPU samples of cpuwork.
with t.section("queries and CPU"):
    with Tmp() as d:
        r = run([app("sqlite_app"), os.path.join(d, "app.db")], d)
        t.eq((r.rc, r.err), (0, ""), "sqlite_app runs")
        rep = analyze(r.traces)
        text, data, pg = html_report(r.traces, d)
        q = rep["queries"]
        fps = pg.body("fps")
        t.eq([(f[0], f[2]) for f in fps],
             [(" ".join(f["fingerprint"].split()), "{:,}".format(f["calls"]))
              for f in q["fingerprints"]],
             "fingerprints: each with its calls, by total time")
        # the time distribution, as the text report prints it
        names = ["<1us", "1us", "10us", "100us", "1ms", "10ms", "100ms", "1s", "10s+"]
        want = []
        for f in q["fingerprints"]:
            nz = [i for i, c in enumerate(f["distribution"]) if c]
            want.append(", ".join("%s %s" % (names[i], "{:,}".format(f["distribution"][i]))
                                  for i in range(nz[0], nz[-1] + 1)))
        t.eq([f[9] for f in fps], want, "fingerprints: the time distribution of each")
        t.eq(len(pg.body("nplus1")), len(q["n_plus_one"]),
             "N+1: a row each (%d)" % len(q["n_plus_one"]))
        t.eq([i[2] for i in pg.body("index")],
             [i["statement"] for i in q["index_advice"]],
             "index advice: the CREATE INDEX statements")
        t.eq(len(pg.body("storms")), len(q["write_storms"]),
             "write storms: a row each")
        t.ok(("N+1 from", "5 queries in a row") in pg.kv and
             ("write storm from", "10 writes in a row") in pg.kv,
             "the N+1 and storm thresholds in use", pg.kv)
        with Tmp() as d2:
            text, data, pg = html_report(r.traces, d2, extra=["--order-by", "calls"])
            fps = pg.body("fps")
            t.ok("Fingerprints, by calls" in render(os.path.join(d2, "report.html")) and
                 [f[0] for f in fps] == [" ".join(f["fingerprint"].split())
                                         for f in data["queries"]["fingerprints"]],
                 "--order-by calls: the table in the JSON's order, titled so")
        t.eq(pg.body("threads"), [], "no CPU section without samples")
    with Tmp() as d:
        r = run([app("cpuwork"), "split", "20000"], d,
                prof={"MEMORY": "0", "CPU": "1", "CPU_HZ": "1000"})
        t.eq(r.rc, 0, "cpuwork runs")
        rep = analyze(r.traces)
        text, data, pg = html_report(r.traces, d)
        funcs = pg.body("funcs")
        t.ok(rep["cpu"]["samples"] >= 50 and funcs and
             funcs[0][0] == rep["cpu"]["functions"][0]["function"],
             "CPU: the functions by self time, %s first" %
             rep["cpu"]["functions"][0]["function"], funcs[:2])
        t.eq(len(funcs), min(50, len(rep["cpu"]["functions"])),
             "CPU: at most 50 functions")
        got = flames(text)
        t.eq(sorted(got), ["CPU time"], "flame graphs: CPU time only "
             "(memory not recorded)")
        t.eq(got.get("CPU time"), flame_svg(r.traces, "cpu"),
             "its SVG is `flame --what cpu`'s")
        t.eq(pg.body("leaks"), [], "no memory tables: not recorded")

# cc1plus leaves thousands of small leak groups: the page draws the
# largest 200 and says how many more (and their bytes) its data holds.
# Their stacks share a few thousand frames, each written once.
with t.section("many leak groups"):
    with Tmp() as d:
        with open(os.path.join(d, "x.cc"), "w") as f:
            f.write("#include <map>\n#include <string>\n#include <vector>\n"
                    "int main() { std::map<std::string, std::vector<int>> m;"
                    " m[\"a\"].push_back(1); return (int)m.size() - 1; }\n")
        r = run([need("g++"), "-O2", "-c", "x.cc"], d,
                prof={"PROGRAMS": "cc1plus"}, timeout=120)
        t.eq((r.rc, len(r.traces)), (0, 1), "g++ -c runs, cc1plus traced")
        text, data, pg = html_report(r.traces, d)
        rc, js, se = analyze_raw(["--format", "json"] + r.traces)
        t.ok(rc == 0 and data == json.loads(js),
             "the page's data is the JSON report")
        t.ok(len(text) * 4 < len(js), "the page (%d bytes) under a quarter "
             "of the JSON (%d): each frame once" % (len(text), len(js)))
        leaks = data["memory"]["leaks"]
        rows = pg.body("leaks")
        t.ok(len(leaks) > 1000 and len(rows) == 200,
             "%d groups in the data, the largest 200 drawn" % len(leaks))
        t.eq([row[0] for row in rows[:3]], [
            html_size(g["bytes"]) for g in leaks[:3]],
             "drawn in the report's order")
        drawn = render(os.path.join(d, "report.html"))
        rest = sum(g["bytes"] for g in leaks[200:])
        t.ok("And {:,} smaller groups, {} in all".format(
            len(leaks) - 200, html_size(rest)) in drawn,
             "the rest counted with their bytes")

# forkstorm: a process tree of tens of traces, merged. The heap charts
# are the 12 highest peaks' (a chart needs two slices and some heap).
with t.section("many processes"):
    with Tmp() as d:
        r = run([app("forkstorm")], d)
        t.ok(r.rc == 0 and len(r.traces) > 20, "forkstorm runs: %d traces"
             % len(r.traces))
        text, data, pg = html_report(r.traces, d)
        procs = data["trace"]["processes"]
        t.eq(len(pg.body("procs")), len(procs), "a row each process")
        tl = [p for p in procs if p["memory"]["recorded"] and
              len(p["memory"]["timeline"]["max_in_use"]) > 1 and
              max(p["memory"]["timeline"]["max_in_use"])]
        tl.sort(key=lambda p: -p["memory"]["peak_bytes"])
        drawn = render(os.path.join(d, "report.html"))
        shown = [int(x) for x in re.findall(
            r"<figcaption>Process (\d+) ", drawn)]
        t.ok(len(tl) > 12 and shown == [p["pid"] for p in tl[:12]],
             "the heap over time of the 12 highest peaks of %d" % len(tl),
             shown)
        t.ok("The heap over time of %d more processes" % (len(tl) - 12)
             in drawn, "the others counted")

# A program's arguments are the trace's strings that anyone can choose.
HOSTILE = ("</script><script>alert(1)</script><!--<img src=x "
           "onerror=alert(2)>\u00e9\u2028")
with t.section("strings from the trace"):
    with Tmp() as d:
        r = run(["/bin/true", HOSTILE], d)
        t.eq(r.rc, 0, "/bin/true runs")
        text, data, pg = html_report(r.traces, d)
        t.eq(data["trace"]["processes"][0]["argv"], ["/bin/true", HOSTILE],
             "the argument survives in the page's data")
        t.eq(len(re.findall(r"</script", text, re.I)), 3,
             "no </script> but the page's own three")
        t.ok("<!--" not in text and "<img" not in text,
             "no comment or img start in the page")
        drawn = render(os.path.join(d, "report.html"))
        t.ok("<script" not in drawn and "<img" not in drawn,
             "the drawn report has no script or img element")
        t.ok(html.escape(HOSTILE) in drawn.replace("&#39;", "&#x27;"),
             "the argument is drawn as text")
        t.eq(pg.errors, [], "the drawn report's elements nest and close")

with t.section("options"):
    with Tmp() as d:
        r = run([app("demo")], d)
        out = os.path.join(d, "env.html")
        p = subprocess.run([ANALYZE, "-o", out] + r.traces,
                           env=clean_env({"KOTOBA_REPORT_FORMAT": "html"}),
                           capture_output=True, text=True, timeout=60)
        with open(out) as f:
            t.ok(p.returncode == 0 and f.read().startswith("<!DOCTYPE"),
                 "KOTOBA_REPORT_FORMAT=html writes the page", p.stderr)
        rc, so, se = analyze_raw(["diff", "--format", "html", "--base"] +
                                 r.traces + r.traces)
        t.eq((rc, se.splitlines()[:1]),
             (2, ["kprof-analyze: diff writes text or json, not html"]),
             "diff: no html, a usage error")
        rc, so, se = analyze_raw(["--format", "xml"] + r.traces)
        t.ok(rc == 2 and "(text, json, html)" in se,
             "an unknown format names the three", se)

t.done()
