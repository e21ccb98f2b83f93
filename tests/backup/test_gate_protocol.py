"""The backup speaks the same gate protocol as LightRAG writers (lightkeeper/gate.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lightkeeper.backup.gate import GateTimeout, exclusive_gate, read_gate
from lightkeeper.rag.gate import read_stamp, write_gate


def test_in_place_restore_stamps_the_gate_so_lightrag_processes_reload(tmp_path: Path) -> None:
    (tmp_path / "alice").mkdir()
    before = read_stamp(tmp_path, "alice")
    with exclusive_gate(tmp_path / "alice", timeout=5):
        pass
    after = read_stamp(tmp_path, "alice")
    assert after.raw != before.raw and after.last_write_ns > 0


def test_backup_reader_waits_for_a_lightrag_writer(tmp_path: Path) -> None:
    (tmp_path / "bob").mkdir()
    released = threading.Event()

    def writer() -> None:
        with write_gate(tmp_path, "bob", timeout=5):
            time.sleep(0.5)
        released.set()

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.1)
    with pytest.raises(GateTimeout, match="busy"):
        with read_gate(tmp_path / "bob", timeout=0.1):
            pass
    with read_gate(tmp_path / "bob", timeout=5):
        assert released.is_set()
    t.join()
