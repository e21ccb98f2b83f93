"""The agent caps glibc's malloc arenas (agent/memory.py): its RSS crept up with uptime in
bench/soak.py, held in one arena per thread that ever allocated."""

from __future__ import annotations

import subprocess
import sys

import psutil
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


def test_the_c_library_is_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """find_library runs ``ldconfig -p`` in a child process: a maintenance pass (every 60 s,
    every simulated minute in bench/soak.py) must not pay that each time."""
    calls: list[str] = []
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: calls.append(name))
    for _ in range(3):
        memory.trim()
        memory.usage()
    assert memory._libc() is memory._libc()
    assert calls == []


@pytest.mark.skipif(memory._libc() is None, reason="not glibc")
def test_usage_says_where_the_memory_is() -> None:
    """``resident`` is the kernel's RSS (what psutil and top show), split into anonymous and
    file-backed pages; a block malloc hands out shows in ``malloc_in_use`` and ``anonymous``
    while it lives."""
    before = memory.usage(store_buffers=123)
    rss = psutil.Process().memory_info().rss
    assert abs(before["resident"] - rss) < 4 * 1024 * 1024, (before, rss)
    assert before["anonymous"] + before["file"] <= before["resident"]
    assert before["store_buffers"] == 123
    assert {"malloc_in_use", "malloc_free"} <= set(before)
    block = b"x" * (64 * 1024 * 1024)  # touched: every page is resident
    during = memory.usage()
    assert during["malloc_in_use"] - before["malloc_in_use"] >= 64 * 1024 * 1024
    assert during["anonymous"] - before["anonymous"] >= 60 * 1024 * 1024
    del block
    after = memory.usage()
    assert during["malloc_in_use"] - after["malloc_in_use"] >= 64 * 1024 * 1024
