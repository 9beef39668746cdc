# SPDX-License-Identifier: MIT
"""Query plugins and the query API of kprof.h (issue 4): the example plugin
tests/apps/plugins/kpq_minidb_plugin.c teaches kprof the "minidb" library
(KOTOBA_PROFILE_QUERY_PLUGIN), through the versioned ABI (host->hook
redirects the app's calls, host->query_begin/end record them);
tests/apps/minidb_app.c also records one query with kprof_query_begin/end.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
APP = app("minidb_app")
PLUGIN = os.path.join(APPS, "plugins", "kpq_minidb_plugin.so")
OUT = "rows=13 loaded=1 api_ctx=1\n"


def strings(recs):
    return [x.get("str") or "" for x in recs]


with t.section("plugin"):
    with Tmp() as d:
        r = run_plain([APP], d)
        t.eq((r.rc, r.out), (0, "rows=13 loaded=0 api_ctx=0\n"),
             "without kprof: the API does nothing")
        r = run([APP], d, prof={"QUERY_PLUGIN": PLUGIN})
        t.eq((r.rc, r.err, r.out), (0, "", OUT), "with the plugin: runs, no warning")
        q = analyze(r.traces)["queries"]
        got = {f["fingerprint"]: (f["source"], f["calls"], f["rows"])
               for f in q["fingerprints"]}
        t.eq(got, {"select a, b from t where id = ?": ("plugin", 6, 12),
                   "update t set a = ?": ("plugin", 1, 1),
                   "select k from kv where k = ?": ("api", 1, 3)},
             "the plugin's queries (source plugin) and the API's (source api)")
        sel = [f for f in q["fingerprints"] if f["source"] == "plugin"]
        t.ok(all(f["alloc_calls"] == f["calls"] and f["alloc_bytes"] > 0 for f in sel),
             "each minidb_query's result allocation is attributed to it", sel)
        t.eq([(n["fingerprint"], n["queries"]) for n in q["n_plus_one"]],
             [("select a, b from t where id = ?", 6)], "the plugin's N+1 is found")
        t.ok(all(f["call_sites"] and stack_has(f["call_sites"][0]["stack"], "main")
                 for f in q["fingerprints"]), "call sites lead to main")
        api = [f for f in q["fingerprints"] if f["source"] == "api"]
        # (kprof.h's inline kprof_query_begin_if_loaded is a frame of
        # its own where debug info names inlined calls)
        t.eq([[x.get("function") for x in c["stack"]
               if not (x.get("function") or "").startswith("kprof_")][:2]
              for f in api for c in f["call_sites"]],
             [["start_lookup", "main"]],
             "the API query's call site is its kprof_query_begin's "
             "(start_lookup), not its end's (main)")
        recs = dump(r.traces)
        t.ok(not any("secret_plugin_zq" in s or "4242" in s for s in strings(recs)),
             "no literal of the app in any string of the trace")

        r = run([APP], d)
        q = analyze(r.traces)["queries"]
        t.eq([(f["fingerprint"], f["source"]) for f in q["fingerprints"]],
             [("select k from kv where k = ?", "api")],
             "without the plugin: only the API query")
        r = run([APP], d, prof={"QUERY": "0"})
        t.eq((r.rc, r.out, analyze(r.traces)["queries"]["calls"]),
             (0, "rows=13 loaded=1 api_ctx=0\n", 0),
             "QUERY=0: the API returns 0 and nothing is recorded")
        r = run([APP], d, prof={"QUERY_PLUGIN": os.path.join(d, "missing.so")})
        lines = r.err.splitlines()
        t.ok(r.rc == 0 and r.out == OUT and len(lines) == 1 and
             "KOTOBA_PROFILE_QUERY_PLUGIN" in lines[0],
             "a plugin that cannot load: one warning, the app runs on", r.err)
        r = run([APP], d, prof={"QUERY_PLUGIN": os.path.join(APPS, "plugins",
                                                             "libkpminidb.so")})
        lines = r.err.splitlines()
        t.ok(r.rc == 0 and r.out == OUT and len(lines) == 1 and
             "kprof_query_plugin_init" in lines[0],
             "a library that is no plugin: one warning, the app runs on", r.err)
t.done()
