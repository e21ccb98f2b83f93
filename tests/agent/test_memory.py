"""The agent caps glibc's malloc arenas (agent/memory.py): its RSS crept up with uptime in
bench/soak.py, held in one arena per thread that ever allocated."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lightkeeper.agent import memory

# Eight threads allocate at once, then the process counts its arenas with malloc_info.
PROBE = r"""
import ctypes, ctypes.util, re, sys, threading
from lightkeeper.agent import memory
if sys.argv[1] == "limit":
    assert memory.limit_arenas()
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    for _ in range(200):
        blocks = [bytearray(4096) for _ in range(200)]
        del blocks
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.open_memstream.restype = ctypes.c_void_p
buf, size = ctypes.c_char_p(), ctypes.c_size_t()
stream = ctypes.c_void_p(libc.open_memstream(ctypes.byref(buf), ctypes.byref(size)))
libc.malloc_info(0, stream)
libc.fclose(stream)
print(len(re.findall(rb'<heap nr="[0-9]+">', ctypes.string_at(buf, size.value))))
print(memory.trim())
"""


def arenas(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out[1] in ("True", "False")  # trim ran (whether it found pages to release or not)
    return int(out[0])


@pytest.mark.skipif(memory._libc() is None, reason="not glibc")
def test_threads_share_at_most_two_arenas_once_limited() -> None:
    assert arenas("none") > memory.ARENAS  # the default: an arena per concurrent thread
    assert arenas("limit") <= memory.ARENAS
