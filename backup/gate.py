"""The write gate as the backup uses it (protocol: ``lightkeeper/gate.py``).

The backup copies a user's directory under ``read_gate`` (``LOCK_SH``); an in-place restore
replaces it under ``exclusive_gate``, the writer side, which stamps the gate on release so that a
LightRAG process holding that user in memory reloads instead of writing its stale copy back.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from lightkeeper import gate as _gate
from lightkeeper.gate import LOCK_NAME, GateTimeout, Stamp

__all__ = ["LOCK_NAME", "GateTimeout", "read_gate", "exclusive_gate", "read_stamp",
           "writer_active"]


def read_gate(user_dir: Path, timeout: float = 60.0) -> AbstractContextManager[None]:
    """Hold ``LOCK_SH``: writers that honour the gate wait until we are done."""
    return _gate.read_gate(Path(user_dir), timeout)


def exclusive_gate(user_dir: Path, timeout: float = 60.0) -> AbstractContextManager[None]:
    """Hold ``LOCK_EX`` (an in-place restore replacing the user's files)."""
    return _gate.write_gate(Path(user_dir), timeout)


def read_stamp(user_dir: Path) -> Stamp:
    """The gate's stamp: when the last gated write finished (0: never)."""
    return _gate.read_stamp(Path(user_dir))


def writer_active(user_dir: Path) -> bool:
    """Whether a gated writer holds the gate now (its writes are in flight under it)."""
    return _gate.writer_active(Path(user_dir))
