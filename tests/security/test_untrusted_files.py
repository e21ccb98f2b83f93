"""The same class as High 2 elsewhere: files the agent reads that other accounts write (a
watched service's pid file, a user's LightRAG files) are opened without following symlinks,
never block on a FIFO and are read only when regular."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lightkeeper.collectors.processes import _read_pidfile
from lightkeeper.ids import UnsafePath, read_regular
from lightkeeper.rag import inventory


def _in_thread(fn, *args):
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "blocked (a FIFO was opened for reading)"
    return out[0]


def test_same_class_pidfile_fifo_symlink_and_device_are_not_read(tmp_path: Path) -> None:
    """On main a FIFO at a watched pid file blocked the processes collector forever, and a
    symlink to /dev/zero made it read without end."""
    fifo = tmp_path / "svc.pid"
    os.mkfifo(fifo)
    assert _in_thread(_read_pidfile, str(fifo)) is None
    target = tmp_path / "real.pid"
    target.write_text(f"{os.getpid()}\n")
    link = tmp_path / "link.pid"
    link.symlink_to(target)
    assert _read_pidfile(str(link)) is None
    zero = tmp_path / "zero.pid"
    zero.symlink_to("/dev/zero")
    assert _in_thread(_read_pidfile, str(zero)) is None
    assert _read_pidfile(str(target)) == os.getpid()


def test_same_class_user_files_not_read_through_links_or_fifos(tmp_path: Path) -> None:
    user = tmp_path / "alice"
    user.mkdir()
    secret = tmp_path / "other-users-status.json"
    secret.write_text('{"d": {"status": "processed"}}')
    (user / inventory.STATUS_FILE).symlink_to(secret)
    os.mkfifo(user / inventory.GRAPH_FILE)
    assert _in_thread(inventory._graph_counts, user / inventory.GRAPH_FILE) == (0, 0)
    assert inventory._doc_counts(user / inventory.STATUS_FILE) == {"unreadable": 1}
    with pytest.raises(UnsafePath):
        read_regular(user / inventory.STATUS_FILE)
    size, files, _ = inventory._dir_size(user)
    assert size == len(os.readlink(user / inventory.STATUS_FILE))  # the link, not its target
