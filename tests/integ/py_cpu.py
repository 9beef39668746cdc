# SPDX-License-Identifier: MIT
"""A python3 program that spends its CPU time in hot(), called from a
generator in warm(), for test_python.py's CPU samples.

    /usr/bin/python3 py_cpu.py N
"""
import sys


def hot(n):
    x = 0
    for i in range(n):
        x += i * i  # HOT
    return x


def warm(n):
    return sum(hot(20000) for _ in range(n))


print(warm(int(sys.argv[1])) > 0)
