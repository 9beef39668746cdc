# SPDX-License-Identifier: MIT
"""Bad input to kprof-analyze (issue #2 test 10; DESIGN invariant 7: every
trace is untrusted). Each case runs under `timeout 20`: never a crash (exit
status < 128, no signal), never a hang. Errors: exit 3 and one line on
stderr naming the file. A truncated trace (a real one cut in the middle of a
frame, like after SIGKILL) is not an error: exit 0, trace.truncated true,
the frames before the cut counted.
"""
import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

t = Tap()
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def frames(data):
    """Offsets of the zstd frames after the header."""
    hl = struct.unpack_from("<I", data, 12)[0]
    start = 16 + hl
    offs = [m.start() for m in re.finditer(re.escape(ZSTD_MAGIC), data) if m.start() >= start]
    return start, offs


def expect_error(path, label, shown=None):
    rc, out, err = analyze_raw(["--format", "json", path], timeout=20)
    t.ok(0 <= rc < 128 and rc != 124, "%s: no crash, no hang (exit %d)" % (label, rc), err)
    t.eq(rc, 3, "%s: exit status 3" % label, err)
    lines = err.splitlines()
    t.ok(len(lines) == 1 and (shown or path) in lines[0],
         "%s: one line on stderr naming the file" % label, err)
    return rc, out, err


with t.section("bad input"):
    with Tmp() as d:
        # a real trace with many frames: 2 threads x 200000 malloc/free
        r = run([app("storm"), "2", "200000"], d)
        if r.rc != 0 or len(r.traces) != 1:
            raise Fail("cannot make a trace: %r" % r)
        good = r.traces[0]
        with open(good, "rb") as f:
            data = f.read()
        want = counts_from(r.out)
        full = analyze([good])
        t.eq(full["trace"]["truncated"], False, "the intact trace is not truncated")
        start, offs = frames(data)
        t.ge(len(offs), 4, "the trace has several frames (%d)" % len(offs))

        p = os.path.join(d, "not-a-trace.kpz")
        with open(p, "wb") as f:
            f.write(b"#!/bin/sh\necho this is not a kprof trace\n" * 20)
        expect_error(p, "not a trace")

        p = os.path.join(d, "empty.kpz")
        open(p, "wb").close()
        rc, out, err = expect_error(p, "empty file")
        t.ok(err.endswith(": empty file, not a kprof trace (a process killed "
                          "as kprof created it leaves one)\n"),
             "empty file: says what such a file is", err)

        p = os.path.join(d, "adir.kpz")
        os.mkdir(p)
        expect_error(p, "a directory")

        expect_error(os.path.join(d, "missing.kpz"), "a missing file")

        p = os.path.join(d, "prefix-only.kpz")
        with open(p, "wb") as f:
            f.write(data[:12])
        expect_error(p, "cut inside the fixed prefix")

        p = os.path.join(d, "header-cut.kpz")
        with open(p, "wb") as f:
            f.write(data[:start - 5])
        expect_error(p, "cut inside the header")

        p = os.path.join(d, "v99.kpz")
        with open(p, "wb") as f:
            f.write(data[:8] + struct.pack("<H", 99) + data[10:])
        rc, out, err = expect_error(p, "format major 99")
        t.ok("99" in err or "version" in err.lower(), "format major 99: says it is a version problem", err)

        p = os.path.join(d, "hugeheader.kpz")
        with open(p, "wb") as f:
            f.write(data[:12] + struct.pack("<I", 0xFFFFFFF0) + data[16:])
        expect_error(p, "header length 4 GiB")

        # truncated in the middle of a frame (like a process killed mid-write)
        mid = len(offs) // 2
        cut = (offs[mid] + offs[mid + 1]) // 2
        p = os.path.join(d, "truncated.kpz")
        with open(p, "wb") as f:
            f.write(data[:cut])
        rc, out, err = analyze_raw(["--format", "json", p], timeout=20)
        t.eq(rc, 0, "truncated: exit 0", err)
        rep = json.loads(out) if rc == 0 else None
        if rep:
            m = rep["memory"]
            t.eq(rep["trace"]["truncated"], True, "truncated: trace.truncated true")
            t.eq(rep["trace"]["processes"][0]["truncated"], True, "truncated: the process too")
            t.ok(0 < m["alloc_calls"] < want["allocs"],
                 "truncated: the whole frames before the cut are counted", m["alloc_calls"])

        # one corrupted byte in the middle of a frame
        pos = (offs[mid] + offs[mid + 1]) // 2
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        p = os.path.join(d, "corrupt.kpz")
        with open(p, "wb") as f:
            f.write(bytes(bad))
        expect_error(p, "a corrupted byte mid-frame")
        # in the second frame: it says how many frames were good
        bad = bytearray(data)
        bad[(offs[1] + offs[2]) // 2] ^= 0x5A
        with open(p, "wb") as f:
            f.write(bytes(bad))
        rc, out, err = expect_error(p, "a corrupted byte in the second frame")
        t.ok(err.rstrip().endswith("(after 1 good frame)"),
             "the second frame corrupt: 'after 1 good frame'", err)

        # every byte of the header region flipped in turn: never a crash
        crashes = []
        for i in range(8, min(start + 64, len(data)), 3):
            bad = bytearray(data[:offs[2]])
            bad[i] ^= 0xFF
            with open(p, "wb") as f:
                f.write(bytes(bad))
            rc, out, err = analyze_raw(["--format", "json", p], timeout=20)
            if not (0 <= rc < 128) or rc == 124:
                crashes.append((i, rc))
        t.eq(crashes, [], "a flipped byte anywhere in the prefix/header: no crash or hang")

        # several files, one bad: an error naming the bad one
        rc, out, err = analyze_raw(["--format", "json", good, os.path.join(d, "empty.kpz")],
                                   timeout=20)
        t.eq(rc, 3, "a good and a bad file: exit 3", err)
        t.ok("empty.kpz" in err, "a good and a bad file: names the bad one", err)

t.done()
