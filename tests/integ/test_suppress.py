"""kprof-analyze --suppress RULE and --suppressions FILE: findings of the
advice the user has ruled out, as valgrind's suppressions are for its
errors. A rule is CODE or CODE:PATTERN (globs); the pattern matches the
finding's key or any frame of its stack (function, module, source file).
What a rule takes leaves the advice, --fail-on and diff's findings, and
is counted and listed (text, JSON, the HTML page), never dropped
silently; a rule naming no advice code is a usage error.

tests/apps/sqlite_app.c's advice (test_advise.py checks it exactly) and
demo.c's high-severity leak are the findings suppressed here.
"""
import json
import os
import re
import subprocess

from kptest import SRC, Tap, Tmp, analyze, analyze_raw, app, need, run

t = Tap()
NO_SLOW = ["--slow-ms", "100000"]  # sqlite_app has no slow query by design


def pairs(adv):
    return [(a["code"], a["key"]) for a in adv]


with t.section("sqlite_app"):
    with Tmp() as d:
        r = run([app("sqlite_app"), os.path.join(d, "app.db")], d)
        t.eq((r.rc, r.err), (0, ""), "sqlite_app runs")
        full = analyze(r.traces, extra=NO_SLOW)
        adv = full["advice"]
        t.eq(full["advice_suppressed"], {"rules": [], "findings": []},
             "no rule: advice_suppressed is empty")
        ins = "insert into users(name, city) values(?+)"
        rules = ["Q06", "Q01:insert into *", "Q03:*city*",
                 # by a frame, not the key: a function, the executable
                 "Q04:insert_users", "Q02:sqlite_app",
                 "CPU*:no_such_function"]

        def rule_of(a):
            if a["code"] == "Q06":
                return "Q06"
            if a["code"] == "Q01" and a["key"].startswith("insert into "):
                return "Q01:insert into *"
            if a["code"] == "Q03" and "city" in a["key"]:
                return "Q03:*city*"
            if a["code"] == "Q04":
                return "Q04:insert_users"
            if a["code"] == "Q02":
                return "Q02:sqlite_app"
            return None
        taken = [a for a in adv if rule_of(a)]
        kept = [a for a in adv if not rule_of(a)]
        t.ok(len(taken) == 9 and kept and
             all("insert_users" not in a["key"] and "sqlite_app" not in a["key"]
                 for a in adv if a["code"] in ("Q02", "Q04")),
             "the rules' findings are there without them (9; Q02's and "
             "Q04's keys name neither the function nor the executable)",
             pairs(adv))
        args = NO_SLOW + sum((["--suppress", x] for x in rules), [])
        rep = analyze(r.traces, extra=args)
        t.eq(pairs(rep["advice"]), pairs(kept),
             "--suppress: the other findings stay, in their order")
        t.eq([a["rank"] for a in rep["advice"]],
             list(range(1, len(kept) + 1)), "--suppress: ranked 1..n again")
        sup = rep["advice_suppressed"]
        t.eq(sorted((f["code"], f["key"], f["rule"]) for f in sup["findings"]),
             sorted((a["code"], a["key"], rule_of(a)) for a in taken),
             "advice_suppressed: each finding taken, with its rule")
        t.eq([(x["rule"], x["from"], x["findings"]) for x in sup["rules"]],
             [(x, "--suppress", sum(1 for a in taken if rule_of(a) == x))
              for x in rules],
             "advice_suppressed: each rule, where given, what it took "
             "(0 for the stale one)")

        # the same rules from a file: comments, blank lines, spaces
        path = os.path.join(d, "kprof.supp")
        with open(path, "w") as f:
            f.write("# sqlite_app's accepted findings\n\n")
            for x in rules:
                f.write("  %s   # why\n" % x)
        rep2 = analyze(r.traces, extra=NO_SLOW + ["--suppressions", path])
        t.eq((pairs(rep2["advice"]),
              [(x["rule"], x["findings"]) for x in rep2["advice_suppressed"]["rules"]]),
             (pairs(rep["advice"]),
              [(x["rule"], x["findings"]) for x in sup["rules"]]),
             "--suppressions FILE: the same as the rules given one by one")
        t.eq([x["from"] for x in rep2["advice_suppressed"]["rules"]],
             ["%s:%d" % (path, 3 + i) for i in range(len(rules))],
             "--suppressions: each rule's from is FILE:LINE")

        text = analyze(r.traces, fmt="text", extra=["advise"] + args)
        t.ok(text.count("\n       evidence  ") == len(kept) and
             ("ADVICE: %d findings, the most at stake first (%d suppressed)"
              % (len(kept), len(taken))) in text,
             "advise: the findings left, and how many were suppressed",
             text[:3000])
        tail = text[text.find("\nSUPPRESSED: "):]
        t.ok(tail.startswith("\nSUPPRESSED: 9 findings, by 6 rules\n") and
             "  Q06 (--suppress): 3 findings\n" in tail and
             "  CPU*:no_such_function (--suppress): matched nothing\n" in tail and
             len(re.findall(r"^  - \[(info|warn|high)\] Q\d\d .* \(by .*\)$",
                            tail, re.M)) == 9,
             "advise: SUPPRESSED lists each rule with its count (a stale "
             "one says so) and each finding taken", tail)
        summ = analyze(r.traces, fmt="text", extra=args)
        t.ok("(9 suppressed)" in summ and "\nSUPPRESSED" not in summ,
             "summary: the count only", summ[summ.find("ADVICE"):][:300])
        every = analyze(r.traces, fmt="text", extra=NO_SLOW + ["--suppress", "*"])
        t.ok("ADVICE: none left, %d findings suppressed" % len(adv) in every,
             "--suppress '*': none left, all counted",
             every[every.find("ADVICE"):][:200])

        # the HTML page says it too
        need("node")
        page = os.path.join(d, "r.html")
        rc, out, err = analyze_raw(["--format", "html", "-o", page] + args +
                                   r.traces)
        p = subprocess.run(["node", os.path.join(SRC, "tests", "integ",
                                                 "html_render.js"), page],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r'<p class="dim" id="suppressed">([^<]*)</p>', p.stdout)
        t.eq((rc, p.returncode, m and m.group(1)),
             (0, 0, "9 suppressed (Q01 3, Q02 1, Q03 1, Q04 1, Q06 3)."),
             "the HTML page's advice: how many were suppressed, by code",
             p.stderr[-300:])

with t.section("--fail-on and diff"):
    with Tmp() as d:
        r = run([app("demo")], d)
        rep = analyze(r.traces)
        high = [a for a in rep["advice"] if a["severity"] == "high"]
        t.ok(high and all(a["code"] == "MEM01" and "parse_request" in a["key"]
                          for a in high),
             "demo: its high findings are parse_request's leak", pairs(high))
        rc, out, err = analyze_raw(["--fail-on", "high", "--suppress",
                                    "MEM01:parse_request*"] + r.traces)
        t.eq((rc, err), (0, ""), "--fail-on high, the leak suppressed: exit 0")
        rc, out, err = analyze_raw(["--fail-on", "high", "--suppress",
                                    "MEM01:no_such_function"] + r.traces)
        t.eq(rc, 4, "--fail-on high, a rule that takes nothing: exit 4", err)
        base = run(["/bin/true"], d).traces
        for extra, want in (([], 4), (["--suppress", "*"], 0)):
            rc, out, err = analyze_raw(["diff", "--fail-on", "info", "--base"] +
                                       base + extra + r.traces)
            t.eq(rc, want, "diff --fail-on info %s: exit %d" % (" ".join(extra), want),
                 err)

with t.section("bad rules"):
    with Tmp() as d:
        r = run(["/bin/true"], d)
        for rule, what in (("MEMO1", "'MEMO1' names no advice code"),
                           (":x", "has no code"), ("Q01:", "empty pattern")):
            rc, out, err = analyze_raw(["--suppress", rule] + r.traces)
            t.ok(rc == 2 and out == "" and err.count("\n") == 1 and
                 err.startswith("kprof-analyze: --suppress: ") and what in err,
                 "--suppress %s: one line, exit 2" % rule, (rc, err))
        path = os.path.join(d, "bad.supp")
        with open(path, "w") as f:
            f.write("# fine\nMEM01\n\nIO7\n")
        rc, out, err = analyze_raw(["--suppressions", path] + r.traces)
        t.ok(rc == 2 and err.startswith("kprof-analyze: %s:4: 'IO7'" % path)
             and err.count("\n") == 1,
             "a file's bad rule: FILE:LINE named, exit 2", (rc, err))
        rc, out, err = analyze_raw(["--suppressions", os.path.join(d, "none")] +
                                   r.traces)
        t.ok(rc == 2 and "cannot read suppressions" in err and
             "no such file" in err, "a missing file: exit 2", (rc, err))

        # every code a finding may have is one a rule may name
        src = ""
        for name in os.listdir(os.path.join(SRC, "tools", "analyze")):
            if name.endswith(".c"):
                with open(os.path.join(SRC, "tools", "analyze", name)) as f:
                    src += f.read()
        found = sorted(set(re.findall(r'"((?:MEM|IO|Q|CPU)\d\d)"', src)))
        refused = [c for c in found
                   if analyze_raw(["--suppress", c] + r.traces)[0] != 0]
        t.ok(len(found) >= 20 and not refused,
             "each of the %d codes in the analyzer's sources may be suppressed"
             % len(found), refused)
        man = open(os.path.join(SRC, "man", "kprof-analyze.1")).read()
        t.ok(all(c in man for c in found), "each code is in kprof-analyze(1)",
             [c for c in found if c not in man])

t.done()
