# SPDX-License-Identifier: MIT
"""A throw-away PostgreSQL server for the query tests: initdb in a temp
dir, a Unix socket in that dir and no TCP at all (listen_addresses=''),
run as an unprivileged user when the tests run as root (setpriv to
nobody), stopped by its PID.

    with PgServer() as pg:
        run(["psql", "-h", pg.dir, "-p", pg.port, "-U", pg.user, ...])
"""
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from kptest import Fail, need, clean_env

PG_BIN_DIRS = ["/usr/lib/postgresql/%s/bin" % v for v in ("17", "16", "15", "14", "13")]


def pg_tool(name):
    """A PostgreSQL server binary (initdb, postgres), from PATH or Debian's
    versioned directory; Fail if missing."""
    p = shutil.which(name)
    if p:
        return p
    for d in PG_BIN_DIRS:
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return need(name)  # raises Fail with the install hint


class PgServer:
    """fsync: whether the server syncs its WAL and data files (off by
    default: faster, and the query tests need no sync); wrap: a command
    line the server starts under (strace -f ..., which can set the
    server's environment: -E LD_PRELOAD=...).
    stop() stops it (SIGINT, by PID) and gives its exit status."""
    user = "kp"
    port = "5432"

    def __init__(self, fsync=False, wrap=()):
        self.fsync = fsync
        self.wrap = list(wrap)  # a command the server runs under (strace)

    def __enter__(self):
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="kprof-pg-")
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self):
        initdb, postgres = pg_tool("initdb"), pg_tool("postgres")
        pre = []
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            pre = [need("setpriv"), "--reuid=%d" % nobody.pw_uid,
                   "--regid=%d" % nobody.pw_gid, "--clear-groups"]
        os.chmod(self.dir, 0o755)
        data = os.path.join(self.dir, "data")
        env = clean_env({"HOME": self.dir})
        p = subprocess.run(pre + [initdb, "-D", data, "-U", self.user, "-A", "trust",
                                  "--no-sync", "-E", "UTF8"],
                           env=env, cwd=self.dir, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=300)
        if p.returncode != 0:
            raise Fail("initdb failed: %s" % p.stdout.decode()[-2000:])
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(
            self.wrap + pre + [postgres, "-D", data, "-k", self.dir, "-p", self.port,
                   "-c", "listen_addresses=",
                   "-c", "fsync=%s" % ("on" if self.fsync else "off"),
                   "-c", "shared_buffers=16MB", "-c", "max_connections=20"],
            env=env, cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        sock = os.path.join(self.dir, ".s.PGSQL." + self.port)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Fail("postgres exited: %s" % self.server_log())
            if os.path.exists(sock):
                r = subprocess.run([need("pg_isready"), "-h", self.dir, "-p", self.port,
                                    "-U", self.user], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if r.returncode == 0:
                    return
            time.sleep(0.2)
        raise Fail("postgres did not start in 120 s: %s" % self.server_log())

    def server_log(self):
        try:
            return open(os.path.join(self.dir, "server.log")).read()[-2000:]
        except OSError:
            return ""

    def postmaster_pid(self):
        """The postmaster's PID, from its pid file (under wrap, the process
        started here is the wrapper); None if it is not running."""
        try:
            with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def stop(self):
        """Fast shutdown (SIGINT to the postmaster, by PID); the exit status
        of the process started here (the postmaster, or its wrapper)."""
        if self.proc is not None and self.proc.poll() is None:
            pid = self.postmaster_pid() if self.wrap else self.proc.pid
            os.kill(pid or self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for p in {pid, self.proc.pid} - {None}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode if self.proc is not None else None

    def conninfo(self, db="postgres"):
        return "host=%s port=%s user=%s dbname=%s" % (self.dir, self.port, self.user, db)

    def __exit__(self, *exc):
        self.stop()
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False
