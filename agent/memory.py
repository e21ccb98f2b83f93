"""Keep the agent's resident memory from creeping up with uptime (glibc's malloc), and say
where it goes (:func:`usage`).

The agent runs short-lived work on many threads (every job has one, blocking calls run in the
event loop's thread pool). glibc gives each thread that allocates concurrently an arena of its
own, up to 8 per core, and returns little of what is freed in an arena to the system: in
bench/soak.py the agent's RSS climbed from 110 to 340 MB over five simulated days, 240 MB of it
in 15 such arenas. Two arenas are plenty for the agent's concurrency, and a periodic
``malloc_trim`` hands freed pages back after a job's temporary buffers are gone.

Both are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
ARENAS = 2
# the parts :func:`usage` reports, in this order (lightkeeper_agent_memory_bytes{part})
PARTS = ("resident", "anonymous", "file", "store_buffers", "malloc_in_use", "malloc_free")


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded once: ``ctypes.util.find_library`` runs ``ldconfig -p`` in a
    child process on every call, which a maintenance pass must not pay each time."""
    try:
        lib = ctypes.CDLL("libc.so.6")
    except OSError:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
    return lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else None


class _MallInfo2(ctypes.Structure):  # struct mallinfo2 (glibc 2.33+): every field a size_t
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap malloc arenas (call before the agent starts its threads). True if applied."""
    lib = _libc()
    return bool(lib is not None and lib.mallopt(M_ARENA_MAX, arenas) == 1)


def trim() -> bool:
    """Give memory freed in every arena back to the system. True if some was released."""
    lib = _libc()
    return bool(lib is not None and lib.malloc_trim(0) == 1)


def _status_kib(fields: tuple[str, ...], path: Path = Path("/proc/self/status")) -> dict[str, int]:
    """``VmRSS``-style lines of ``/proc/self/status`` (kernel counters: no page-table walk)."""
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in fields and value.strip().endswith("kB"):
            out[name] = int(value.split()[0]) * 1024
    return out


def heap() -> dict[str, int]:
    """glibc's C heap, every arena: ``malloc_in_use`` (allocated, mmapped blocks included)
    and ``malloc_free`` (freed and kept by malloc, part of it already given back to the
    system by :func:`trim`). Empty where the C library has no ``mallinfo2``. It walks the
    free lists under each arena's lock: for a maintenance pass, not for every status call."""
    lib = _libc()
    fn = getattr(lib, "mallinfo2", None) if lib is not None else None
    if fn is None:
        return {}
    fn.restype = _MallInfo2
    info = fn()
    return {"malloc_in_use": int(info.uordblks + info.hblkhd), "malloc_free": int(info.fordblks)}


def usage(store_buffers: int | None = None) -> dict[str, int]:
    """Where the process's memory is, in bytes: ``resident`` (RSS) = ``anonymous`` (heaps,
    stacks, the store's buffers) + ``file`` (mapped code and libraries: DuckDB's alone is
    about 40 MB) + shared memory; ``store_buffers``, when given (the store's own count of its
    buffer-managed memory); and :func:`heap`."""
    kib = _status_kib(("VmRSS", "RssAnon", "RssFile"))
    out = {name: kib[key] for name, key in (("resident", "VmRSS"), ("anonymous", "RssAnon"),
                                            ("file", "RssFile")) if key in kib}
    if store_buffers is not None:
        out["store_buffers"] = store_buffers
    out.update(heap())
    return out
