# SPDX-License-Identifier: MIT
"""A python3 program whose allocations and I/O come from known lines, for
test_python.py: 37 bytearrays of 4000 bytes kept from keep_some() (one
malloc each: larger than pymalloc's 512 bytes), 50 of 3000 bytes made and
dropped from churn(), a file written from write_log(), and the same in a
thread. It ends with os._exit, before the interpreter frees its objects,
so the kept blocks are in use at exit.

    /usr/bin/python3 py_frames.py DIR
"""
import os
import sys
import threading

kept = []


def keep_some(n):
    for _ in range(n):
        kept.append(bytearray(4000))  # KEEP


def churn(n):
    for _ in range(n):
        b = bytearray(3000)  # CHURN
        del b


def write_log(path):
    with open(path, "w") as f:
        f.write("x" * 100)  # WRITE


def worker():
    keep_some(5)


keep_some(37)
churn(50)
write_log(os.path.join(sys.argv[1], "log.txt"))
t = threading.Thread(target=worker)
t.start()
t.join()
sys.stdout.write("ok\n")
sys.stdout.flush()
os._exit(0)
