# SPDX-License-Identifier: MIT
"""libkprof.so exports only what it interposes and the kprof_* API
(issue #2 test 9): `nm -D --defined-only build/libkprof.so`. Anything else
exported would interpose on the app (a static helper named like one of the
app's functions, or a library symbol of zstd/msgpack/libunwind linked in).

Keep ALLOWED in step with preload/libkprof.map: the I/O issue adds its
interposers here.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kptest import *  # noqa: E402,F401,F403

ALLOWED = """
malloc free calloc realloc reallocarray posix_memalign aligned_alloc memalign
valloc pvalloc malloc_usable_size
_exit _Exit abort daemon __assert_fail __assert_perror_fail __assert
execve execv execvp execvpe fexecve execl execlp execle
pipe pipe2 capset prctl unshare setns
read write pread pread64 pwrite pwrite64 readv writev preadv preadv64 pwritev
pwritev64 preadv2 preadv64v2 pwritev2 pwritev64v2 lseek lseek64 fsync fdatasync
sync_file_range msync ftruncate ftruncate64 fallocate fallocate64
posix_fallocate posix_fallocate64 copy_file_range sendfile sendfile64
__read_chk __pread_chk __pread64_chk
open open64 openat openat64 __open_2 __open64_2 __openat_2 __openat64_2 creat
creat64 close close_range dup dup2 dup3 fcntl fcntl64 socket accept accept4
memfd_create
send sendto sendmsg recv __recv_chk recvfrom __recvfrom_chk recvmsg
fopen fopen64 fdopen freopen freopen64 fclose fflush fread __fread_chk fwrite
fgets __fgets_chk fputs getline getdelim fprintf vfprintf __fprintf_chk
__vfprintf_chk
sqlite3_prepare sqlite3_prepare_v2 sqlite3_prepare_v3 sqlite3_prepare16
sqlite3_prepare16_v2 sqlite3_prepare16_v3 sqlite3_step
sqlite3_reset sqlite3_finalize sqlite3_exec
PQexec PQexecParams PQprepare PQexecPrepared PQsendQuery PQsendQueryParams
PQsendQueryPrepared PQsendPrepare PQgetResult PQfinish
usleep sleep nanosleep clock_nanosleep
pthread_create pthread_cancel pthread_setname_np sigaction signal dlopen dlclose clone syscall
mincore chroot kill killpg sigqueue tgkill pidfd_send_signal
setpgid setpgrp setsid
stat stat64 lstat lstat64 fstatat fstatat64 statx
""".split()
ALLOWED_PREFIXES = ("kprof_",)

t = Tap()

with t.section("exports"):
    nm = need("nm")
    if not os.path.exists(LIB):
        raise Fail("%s not built" % LIB)
    p = subprocess.run([nm, "-D", "--defined-only", LIB], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    t.eq(p.returncode, 0, "nm -D --defined-only runs", p.stderr.decode())
    syms = {}
    for line in p.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            syms[parts[2].split("@")[0]] = parts[1]
        elif len(parts) == 2:
            syms[parts[1].split("@")[0]] = parts[0]
    extra = sorted(s for s in syms
                   if s not in ALLOWED and not s.startswith(ALLOWED_PREFIXES))
    t.eq(extra, [], "libkprof.so exports nothing outside the allow-list")
    missing = sorted(s for s in ALLOWED if s not in syms)
    t.eq(missing, [], "every interposer of the allow-list is exported")
    notfunc = sorted(s for s in ALLOWED if s in syms and syms[s] not in ("T", "W", "i"))
    t.eq(notfunc, [], "the interposers are functions (T/W)")
    # and the analyzer-side of lib/ is not linked into the preload
    t.ok(not any(s.startswith(("ZSTD_", "msgpack_", "_U", "unw_", "kp_")) for s in syms),
         "no zstd/msgpack/libunwind/kp_ internals exported", sorted(syms))

t.done()
