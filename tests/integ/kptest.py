# SPDX-License-Identifier: MIT
"""Shared helper of the integration tests (tests/integ/test_*.py).

Stdlib only, run with /usr/bin/python3. Each test file:

    from kptest import *
    t = Tap()
    with t.section("leaky runs"):        # an exception becomes "not ok"
        with Tmp() as d:
            r = run([app("leaky")], d)   # under LD_PRELOAD=libkprof.so
            rep = analyze(r.traces)      # kprof-analyze --format json
            t.eq(rep["memory"]["alloc_calls"], 10, "alloc calls")
    t.done()                             # exit 1 if anything failed

Environment (set by tests/run.sh): KPROF_BUILD (abs build dir), KPROF_SRC.
Nothing is skipped silently: a missing tool is a failure (need()).
"""
import contextlib
import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback

SRC = os.environ.get("KPROF_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("KPROF_BUILD") or os.path.join(SRC, "build")
LIB = os.path.join(BUILD, "libkprof.so")
ANALYZE = os.path.join(BUILD, "kprof-analyze")
APPS = os.path.join(BUILD, "tests", "apps")
PY = "/usr/bin/python3"


def app(name):
    """Absolute path of a built test app (tests/apps/NAME.c or .cc)."""
    return os.path.join(APPS, name)


# ---- TAP ---------------------------------------------------------------------

class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0
        sys.stdout.reconfigure(line_buffering=True)

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            print("# " + line)

    def ok(self, cond, name, diag=None):
        self.n += 1
        name = " ".join(str(name).split())
        if cond:
            print("ok %d - %s" % (self.n, name))
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name))
            if diag is not None:
                self.diag(diag)
        return bool(cond)

    def eq(self, got, want, name, diag=None):
        return self.ok(got == want, name,
                       "got:  %r\nwant: %r%s" % (got, want,
                                                 "\n" + str(diag) if diag is not None else ""))

    def le(self, got, bound, name):
        return self.ok(got is not None and got <= bound, name,
                       "got %r, want <= %r" % (got, bound))

    def ge(self, got, bound, name):
        return self.ok(got is not None and got >= bound, name,
                       "got %r, want >= %r" % (got, bound))

    @contextlib.contextmanager
    def section(self, name):
        """Run a block; an exception in it is one 'not ok' line."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - report, never crash
            self.ok(False, "%s: %s: %s" % (name, type(e).__name__,
                                          str(e).splitlines()[0] if str(e) else ""),
                    traceback.format_exc())

    def done(self):
        print("# %d tests, %d failed" % (self.n, self.failed))
        if self.n == 0:
            print("not ok 1 - no test ran")
            sys.exit(1)
        sys.exit(1 if self.failed else 0)


class Fail(Exception):
    """A precondition of a test did not hold (message says which)."""


def need(tool):
    """Path of a required tool, or raise Fail("TOOL not installed")."""
    p = shutil.which(tool) if not os.path.isabs(tool) else (
        tool if os.access(tool, os.X_OK) else None)
    if not p:
        raise Fail("%s not installed (make test installs it via "
                   "tools/install-deps.sh)" % tool)
    return p


def build_id(path):
    """The GNU build-id of the ELF file at path (readelf -n), or None."""
    p = subprocess.run(["readelf", "-n", path], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if "Build ID:" in line:
            return line.split()[-1]
    return None


def debug_file(path):
    """The separate debug file of the ELF file at path where kprof-analyze
    looks first (/usr/lib/debug/.build-id), or None if there is none."""
    bid = build_id(path)
    dbg = bid and "/usr/lib/debug/.build-id/%s/%s.debug" % (bid[:2], bid[2:])
    return dbg if dbg and os.path.exists(dbg) else None


# ---- temp dirs and processes -------------------------------------------------

class Tmp:
    """A fresh temp dir (mkdtemp), removed on exit."""

    def __init__(self, mode=None):
        self.mode = mode

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="kprof-test-")
        if self.mode is not None:
            os.chmod(self.path, self.mode)
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
        return False


def clean_env(extra=None):
    """The environment for a child: no inherited LD_PRELOAD or KOTOBA_*;
    the analyzer's copies of debug files kept in the build directory, not
    in the user's ~/.cache (test_symbols_cache.py tests that default)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KOTOBA_") and k != "LD_PRELOAD"}
    env["LC_ALL"] = "C"
    env["KOTOBA_REPORT_CACHE"] = os.path.join(BUILD, "debug-cache")
    if extra:
        env.update(extra)
    return env


class Result:
    def __init__(self, rc, out, err, traces, pid):
        self.rc, self.out, self.err, self.traces, self.pid = rc, out, err, traces, pid

    def __repr__(self):
        return "Result(rc=%r, traces=%r, out=%r, err=%r)" % (
            self.rc, self.traces, self.out[-2000:], self.err[-2000:])


def kpz_files(d):
    return set(glob.glob(os.path.join(d, "**", "*.kpz"), recursive=True))


def run(cmd, cwd, prof=None, kprof=True, env=None, timeout=60, stdin=None,
        trace_dir=None, preload=None, preexec_fn=None, text=True):
    """Run cmd in cwd (under libkprof.so when kprof), wait for it.

    prof: {"MEMORY": "0", ...} -> KOTOBA_PROFILE_MEMORY=0 ...
    Returns Result(rc, out, err, traces, pid); traces are the *.kpz files that
    appeared under trace_dir (default cwd), sorted. On timeout the process
    group is killed (by its id) and Fail raised.
    """
    e = clean_env(env)
    if kprof:
        e["LD_PRELOAD"] = preload or LIB
    for k, v in (prof or {}).items():
        e["KOTOBA_PROFILE_" + k] = v
    td = trace_dir or cwd
    before = kpz_files(td)
    p = subprocess.Popen(cmd, cwd=cwd, env=e, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, preexec_fn=preexec_fn)
    try:
        out, err = p.communicate(stdin.encode() if (stdin is not None and text) else stdin,
                                 timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise Fail("%s timed out after %ss" % (cmd, timeout))
    if text:
        out = out.decode("utf-8", "replace")
        err = err.decode("utf-8", "replace")
    traces = sorted(kpz_files(td) - before)
    return Result(p.returncode, out, err, traces, p.pid)


def ab_pairs_ok(t, r, pairs, label):
    """make bench's in-process pairs (tests/apps/abpairs.h): r exited 0 and
    printed its line for that many pairs, with the four medians."""
    kv = dict(x.split("=", 1) for x in r.out.split() if "=" in x)
    t.ok(r.rc == 0 and kv.get("pairs") == str(pairs) and
         all(k in kv for k in ("hook_ns", "direct_ns", "added_ns",
                               "added_cpu_ns")),
         "%s: %d pairs, the four medians" % (label, pairs), r.out + r.err)


def go_pprof(args, d):
    """`go tool pprof ARGS` with its caches in d: (rc, stdout, stderr)."""
    env = dict(os.environ, HOME=d, GOCACHE=os.path.join(d, "gocache"),
               PPROF_TMPDIR=d)
    p = subprocess.run([need("go"), "tool", "pprof"] + list(args), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def run_plain(cmd, cwd, **kw):
    """The same command without kprof."""
    return run(cmd, cwd, kprof=False, **kw)


# ---- the analyzer ------------------------------------------------------------

def analyze_raw(args, timeout=60, cwd=None):
    """Run kprof-analyze ARGS under `timeout`; return (rc, stdout, stderr)."""
    if not os.access(ANALYZE, os.X_OK):
        raise Fail("%s not built" % ANALYZE)
    p = subprocess.run(["timeout", "-k", "5", str(timeout), ANALYZE] + list(args),
                       cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def analyze(files, fmt="json", extra=(), schema="kprof-report/1"):
    """kprof-analyze --format json FILES... -> dict (exit 0 required; the
    report's schema is checked)."""
    if isinstance(files, str):
        files = [files]
    if not files:
        raise Fail("no trace file to analyze")
    rc, out, err = analyze_raw(["--format", fmt] + list(extra) + list(files))
    if rc != 0:
        raise Fail("kprof-analyze exited %d: %s" % (rc, err.strip()[:500]))
    if fmt != "json":
        return out
    try:
        rep = json.loads(out)
    except ValueError as e:
        raise Fail("kprof-analyze printed invalid JSON (%s): %r" % (e, out[:300]))
    if rep.get("schema") != schema:
        raise Fail("unexpected schema %r" % rep.get("schema"))
    return rep


def dump(files):
    """kprof-analyze dump FILES... -> list of record dicts (file order)."""
    if isinstance(files, str):
        files = [files]
    if not files:
        raise Fail("no trace file to dump")
    rc, out, err = analyze_raw(["dump"] + list(files))
    if rc != 0:
        raise Fail("kprof-analyze dump exited %d: %s" % (rc, err.strip()[:500]))
    try:
        return [json.loads(line) for line in out.splitlines() if line]
    except ValueError as e:
        raise Fail("kprof-analyze dump printed invalid JSON (%s)" % e)


# ---- the trace header: magic, u16 major, u16 minor, u32 len, msgpack map -----

def _mp_count(b, i, c, fix_max, c16):
    """The element count of a map or array whose first byte c was read:
    in c (fix form, up to fix_max) or in the 16/32-bit field at i."""
    if c <= fix_max:
        return c & 0x0f, i
    fmt = ">H" if c == c16 else ">I"
    return struct.unpack_from(fmt, b, i)[0], i + struct.calcsize(fmt)


def _mp(b, i):
    c = b[i]
    i += 1
    if c <= 0x7f:
        return c, i
    if c >= 0xe0:
        return c - 0x100, i
    if 0x80 <= c <= 0x8f or c in (0xde, 0xdf):
        n, i = _mp_count(b, i, c, 0x8f, 0xde)
        d = {}
        for _ in range(n):
            k, i = _mp(b, i)
            v, i = _mp(b, i)
            d[k] = v
        return d, i
    if 0x90 <= c <= 0x9f or c in (0xdc, 0xdd):
        n, i = _mp_count(b, i, c, 0x9f, 0xdc)
        a = []
        for _ in range(n):
            v, i = _mp(b, i)
            a.append(v)
        return a, i
    if 0xa0 <= c <= 0xbf:
        n = c & 0x1f
        return b[i:i + n].decode("utf-8", "replace"), i + n
    if c in (0xd9, 0xda, 0xdb, 0xc4, 0xc5, 0xc6):
        fmt = {0xd9: ">B", 0xda: ">H", 0xdb: ">I",
               0xc4: ">B", 0xc5: ">H", 0xc6: ">I"}[c]
        n = struct.unpack_from(fmt, b, i)[0]
        i += struct.calcsize(fmt)
        s = bytes(b[i:i + n])
        return (s.decode("utf-8", "replace") if c >= 0xd9 else s), i + n
    if c in (0xc0, 0xc2, 0xc3):
        return {0xc0: None, 0xc2: False, 0xc3: True}[c], i
    fmt = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q", 0xd0: ">b",
           0xd1: ">h", 0xd2: ">i", 0xd3: ">q", 0xca: ">f", 0xcb: ">d"}.get(c)
    if fmt is None:
        raise Fail("msgpack type 0x%02x in a trace header" % c)
    return struct.unpack_from(fmt, b, i)[0], i + struct.calcsize(fmt)


def trace_header(path):
    """The header map of a trace file (see lib/record.h)."""
    with open(path, "rb") as f:
        b = f.read(16)
        if len(b) != 16 or b[:8] != b"KPROFTRC":
            raise Fail("%s: not a kprof trace" % path)
        _, _, n = struct.unpack("<HHI", b[8:])
        h, _ = _mp(f.read(n), 0)
    if not isinstance(h, dict):
        raise Fail("%s: header is not a map" % path)
    return h


def trace_records(path):
    """(major, minor, the records of every frame as msgpack arrays): the
    frames decompressed with libzstd through ctypes (a dependency of the
    build; the zstd CLI is not)."""
    import ctypes
    z = ctypes.CDLL("libzstd.so.1")
    z.ZSTD_findFrameCompressedSize.restype = ctypes.c_size_t
    z.ZSTD_findFrameCompressedSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    z.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
    z.ZSTD_getFrameContentSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    z.ZSTD_decompress.restype = ctypes.c_size_t
    z.ZSTD_decompress.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                  ctypes.c_char_p, ctypes.c_size_t]
    z.ZSTD_isError.argtypes = [ctypes.c_size_t]
    with open(path, "rb") as f:
        data = f.read()
    major, minor, n = struct.unpack("<HHI", data[8:16])
    off, recs = 16 + n, []
    while off < len(data):
        src = data[off:]
        k = z.ZSTD_findFrameCompressedSize(src, len(src))
        size = z.ZSTD_getFrameContentSize(src, len(src))
        if z.ZSTD_isError(k) or size >= 1 << 40:
            raise Fail("%s: no whole zstd frame at %d" % (path, off))
        out = ctypes.create_string_buffer(max(size, 1))
        got = z.ZSTD_decompress(out, size, src, k)
        if z.ZSTD_isError(got) or got != size:
            raise Fail("%s: frame at %d does not decompress" % (path, off))
        b, i = out.raw[:size], 0
        while i < len(b):
            r, i = _mp(b, i)
            recs.append(r)
        off += k
    return major, minor, recs


# ---- report helpers ----------------------------------------------------------

def funcs(stack):
    """Function names of a stack, innermost first ('' for unknown)."""
    return [(f.get("function") or "") for f in (stack or [])]


def _fname_match(have, want):
    """'leak_thousand' matches 'leak_thousand', 'make_widget()' and
    'ns::make_widget(int)' match 'make_widget' (C++ demangled names)."""
    if not have:
        return False
    if have == want:
        return True
    base = have.split("(")[0]
    return base == want or base.endswith("::" + want)


def stack_has(stack, fn):
    return any(_fname_match(f.get("function"), fn) for f in (stack or []))


def frame_of(stack, fn):
    for f in stack or []:
        if _fname_match(f.get("function"), fn):
            return f
    return None


def leaks_with(rep, fn):
    """Leak groups whose stack contains function fn."""
    return [l for l in rep["memory"]["leaks"] if stack_has(l.get("stack"), fn)]


def leak_with(rep, fn):
    """The one leak group whose stack contains fn (Fail if not exactly one)."""
    ls = leaks_with(rep, fn)
    if len(ls) != 1:
        raise Fail("want exactly 1 leak group with %s in its stack, found %d: %s"
                   % (fn, len(ls), json.dumps([{k: l.get(k) for k in ("bytes", "blocks")}
                                               | {"funcs": funcs(l.get("stack"))}
                                               for l in rep["memory"]["leaks"]])[:3000]))
    return ls[0]


def leak_summary(rep):
    return "\n".join("%d bytes in %d blocks: %s" % (l["bytes"], l["blocks"],
                                                   " <- ".join(funcs(l.get("stack"))[:8]))
                     for l in rep["memory"]["leaks"])


def kill_once_flushed(cmd, d, env, min_bytes, wait=0.5, limit=20):
    """Start cmd in d with env (a process that prints a line, then sleeps
    long), read that line, wait until a trace in d holds more than
    min_bytes (`limit` seconds at most), then `wait` seconds more (flush
    intervals), and SIGKILL it. Returns (line, returncode, traces)."""
    p = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        line = p.stdout.readline().decode()
        deadline = time.time() + limit
        while time.time() < deadline:
            fs = [f for f in os.listdir(d) if f.endswith(".kpz")]
            if fs and os.path.getsize(os.path.join(d, fs[0])) > min_bytes:
                break
            time.sleep(0.05)
        time.sleep(wait)
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    traces = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".kpz"))
    return line, p.returncode, traces


def io_file(rep, path):
    """The io report's entry of the file path (Fail if it has none)."""
    for f in rep["io"]["files"]:
        if f["path"] == path:
            return f
    raise Fail("no file %s in the io report: %s" % (
        path, [f["path"] for f in rep["io"]["files"]]))


def counts_from(out):
    """Parse 'key=value' words printed by the test apps into a dict of ints."""
    d = {}
    for line in out.splitlines():
        for w in line.split():
            if "=" in w:
                k, v = w.split("=", 1)
                try:
                    d[k] = int(v, 0)
                except ValueError:
                    d[k] = v
    return d


def process_by_pid(rep, pid):
    for p in rep["trace"]["processes"]:
        if p.get("pid") == pid:
            return p
    return None


def lost_of(rep, *names):
    """events_lost_by_type entries for the given type names (any case)."""
    by = {k.lower(): v for k, v in (rep["trace"].get("events_lost_by_type") or {}).items()}
    return sum(by.get(n.lower(), 0) for n in names)


VOLATILE_KEYS = {"start_wall_ns", "duration_ns", "peak_time_ns", "address",
                 "pid", "ppid", "pids", "peak_pid", "file", "files", "threads",
                 # the most a site held at once: how the threads overlapped
                 "peak_bytes"}


def normalize(obj):
    """A report with run-specific values (times, pids, addresses, paths of
    trace files) removed, for comparing two runs of one program."""
    if isinstance(obj, dict):
        return {k: normalize(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [normalize(v) for v in obj]
    return obj


def valgrind_summary(text):
    """Parse valgrind's HEAP SUMMARY: dict in_use_bytes, in_use_blocks,
    allocs, frees, bytes_allocated."""
    import re
    r = {}
    m = re.search(r"in use at exit: ([\d,]+) bytes in ([\d,]+) blocks", text)
    if m:
        r["in_use_bytes"] = int(m.group(1).replace(",", ""))
        r["in_use_blocks"] = int(m.group(2).replace(",", ""))
    m = re.search(r"total heap usage: ([\d,]+) allocs, ([\d,]+) frees, ([\d,]+) bytes allocated", text)
    if m:
        r["allocs"] = int(m.group(1).replace(",", ""))
        r["frees"] = int(m.group(2).replace(",", ""))
        r["bytes_allocated"] = int(m.group(3).replace(",", ""))
    if len(r) != 5:
        raise Fail("cannot parse valgrind's HEAP SUMMARY:\n" + text[-3000:])
    return r
