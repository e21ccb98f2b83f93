"""The write gate by (data_root, user), for LightRAG writers and readers.

The protocol and its implementation live in ``lightkeeper/gate.py`` (shared with ``backup``);
this module validates the user id and finds the directory.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AbstractContextManager
from pathlib import Path
from typing import Any

from lightkeeper import gate as _gate
from lightkeeper.gate import LOCK_NAME, GateTimeout, Stamp
from lightkeeper.ids import user_dir

__all__ = ["LOCK_NAME", "GateTimeout", "Stamp", "lock_path", "write_gate", "read_gate",
           "read_stamp", "async_write_gate", "async_read_gate"]


def lock_path(data_root: Path, user: str) -> Path:
    return _gate.lock_path(user_dir(data_root, user))


def write_gate(data_root: Path, user: str, timeout: float = 60.0) -> AbstractContextManager[None]:
    """Hold ``LOCK_EX`` on the user's gate (a writer: insert, delete, merge)."""
    return _gate.write_gate(user_dir(data_root, user), timeout)


def read_gate(data_root: Path, user: str, timeout: float = 60.0) -> AbstractContextManager[None]:
    """Hold ``LOCK_SH`` on the user's gate (a reader that needs a quiet moment)."""
    return _gate.read_gate(user_dir(data_root, user), timeout)


def read_stamp(data_root: Path, user: str) -> Stamp:
    return _gate.read_stamp(user_dir(data_root, user))


def async_write_gate(data_root: Path, user: str,
                     timeout: float = 60.0) -> AbstractAsyncContextManager[Any]:
    return _gate.async_write_gate(user_dir(data_root, user), timeout)


def async_read_gate(data_root: Path, user: str,
                    timeout: float = 60.0) -> AbstractAsyncContextManager[None]:
    return _gate.async_read_gate(user_dir(data_root, user), timeout)
