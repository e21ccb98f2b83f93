"""Per-user directory usage: incremental scans driven by a real watcher, faults mid-scan."""

from __future__ import annotations

import logging
import os
import shutil
import time

import pytest

from lightkeeper.collectors.userdirs import UserDirCollector, _Growth, scan_user


def as_dict(triples):
    return {(m, lab): v for m, lab, v in triples}


def write(path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "data"
    write(r / "alice" / "kv_store_doc_status.json", 1000)
    write(r / "alice" / "sub" / "graph_chunk_entity_relation.graphml", 234)
    write(r / "bob" / "vdb_chunks.json", 50)
    (r / "Not A User").mkdir()
    (r / ".hidden").mkdir()
    write(r / "stray-file", 7)
    return r


def test_scan_user_counts_nested_files_and_skips_symlinks(root):
    os.symlink(root / "bob" / "vdb_chunks.json", root / "alice" / "link.json")
    assert scan_user(str(root / "alice")) == (1234, 2)


def test_first_pass_reports_valid_users_only(root):
    c = UserDirCollector(root, watch=False)
    got = as_dict(c.collect())
    assert got[("userdir_bytes", "alice")] == 1234
    assert got[("userdir_files", "alice")] == 2
    assert got[("userdir_bytes", "bob")] == 50
    assert got[("userdir_users", "")] == 2
    assert got[("userdir_total_bytes", "")] == 1284
    assert got[("userdir_scanned_users", "")] == 2
    assert got[("userdir_data_root_present", "")] == 1
    assert ("userdir_scan_seconds", "") in got
    assert {lab for (m, lab) in got if m == "userdir_bytes"} == {"alice", "bob"}
    # growth needs two observations
    assert not any(m == "userdir_growth_bytes_per_second" for m, _ in got)


def test_a_written_file_shows_up_after_the_watcher_marks_the_user_dirty(root):
    c = UserDirCollector(root, full_rescan=3600)
    try:
        assert as_dict(c.collect())[("userdir_bytes", "alice")] == 1234
        # the watcher needs a moment to set up its inotify watches
        deadline = time.monotonic() + 15
        while True:
            write(root / "alice" / "new.json", 5000)
            if "alice" in c._dirty or time.monotonic() > deadline:
                break
            poll_until = time.monotonic() + 3
            while "alice" not in c._dirty and time.monotonic() < poll_until:
                time.sleep(0.05)
            if "alice" in c._dirty:
                break
        assert "alice" in c._dirty, "the watcher did not report the write"
        got = as_dict(c.collect())
        assert got[("userdir_bytes", "alice")] == 6234
        assert got[("userdir_files", "alice")] == 3
        assert got[("userdir_scanned_users", "")] == 1  # only the dirty user was rescanned
        assert got[("userdir_full_rescan", "")] == 0
        assert got[("userdir_growth_bytes_per_second", "alice")] > 0
        assert got[("userdir_growth_bytes_per_second", "bob")] == 0
    finally:
        c.close()
    assert c._thread is None


def test_without_events_only_the_full_rescan_sees_changes(root):
    c = UserDirCollector(root, watch=False, full_rescan=3600)
    c.collect()
    write(root / "bob" / "more.json", 10)
    got = as_dict(c.collect())
    assert got[("userdir_bytes", "bob")] == 50  # not dirty, not rescanned
    assert got[("userdir_scanned_users", "")] == 0
    c.full_rescan = 0
    got = as_dict(c.collect())
    assert got[("userdir_bytes", "bob")] == 60
    assert got[("userdir_full_rescan", "")] == 1
    assert got[("userdir_scanned_users", "")] == 2


def test_new_and_removed_users_are_found_without_a_full_rescan(root):
    c = UserDirCollector(root, watch=False, full_rescan=3600)
    c.collect()
    write(root / "carol" / "a.json", 3)
    shutil.rmtree(root / "bob")
    got = as_dict(c.collect())
    assert got[("userdir_bytes", "carol")] == 3
    assert ("userdir_bytes", "bob") not in got
    assert got[("userdir_users", "")] == 2


class RemovesBobMidScan(UserDirCollector):
    """Lists the root, then bob's directory is removed before his scan runs."""

    def _list_users(self):
        users = super()._list_users()
        if users and "bob" in users:
            shutil.rmtree(self.data_root / "bob")
        return users


def test_user_dir_removed_mid_scan_is_skipped_and_its_series_dropped(root):
    c = RemovesBobMidScan(root, watch=False, full_rescan=0)
    write(root / "bob" / "x.json", 1)
    got = as_dict(c.collect())
    assert ("userdir_bytes", "bob") not in got
    assert got[("userdir_bytes", "alice")] == 1234
    assert got[("userdir_users", "")] == 1
    # bob known from an earlier pass, then removed mid-scan: dropped too
    c2 = UserDirCollector(root, watch=False, full_rescan=0)
    write(root / "bob" / "x.json", 1)
    assert ("userdir_bytes", "bob") in as_dict(c2.collect())
    c2.__class__ = RemovesBobMidScan
    assert ("userdir_bytes", "bob") not in as_dict(c2.collect())


def test_missing_data_root_is_reported_once_and_collection_resumes(tmp_path, caplog):
    root = tmp_path / "absent"
    c = UserDirCollector(root, watch=True)
    try:
        with caplog.at_level(logging.INFO, logger="lightkeeper"):
            for _ in range(3):
                got = as_dict(c.collect())
                assert got[("userdir_data_root_present", "")] == 0
                assert got[("userdir_users", "")] == 0
        missing = [r for r in caplog.records if r.getMessage() == "userdirs.data_root_missing"]
        assert len(missing) == 1
        assert missing[0].levelno == logging.ERROR
        write(root / "dave" / "f.json", 42)
        got = as_dict(c.collect())
        assert got[("userdir_data_root_present", "")] == 1
        assert got[("userdir_bytes", "dave")] == 42
    finally:
        c.close()


def test_growth_rate_over_the_window():
    g = _Growth(0.0, 1000)
    assert g.rate(0.0, 3600) is None
    g.add(60.0, 1000, 3600)
    assert g.rate(60.0, 3600) == 0
    g.add(120.0, 1600, 3600)
    assert g.rate(120.0, 3600) == pytest.approx(600 / 120)
    # an hour later without change the window no longer covers the growth
    g.add(120.0 + 3600 + 60, 1600, 3600)
    assert g.rate(120.0 + 3600 + 60, 3600) == 0
    assert len(g.points) == 1
    g.add(5000.0, 400, 3600)  # shrinking gives a negative rate
    assert g.rate(5000.0, 3600) < 0


def _collect_as(uid: int | None, root) -> dict:
    """Two passes of a collector on ``root``, as ``uid`` (in a forked child) or as we are."""
    import json

    def run() -> dict:
        seen: list[str] = []

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record.getMessage())

        handler = Handler()
        logging.getLogger("lightkeeper").addHandler(handler)
        try:
            c = UserDirCollector(root, watch=False)
            return {"passes": [c.collect(), c.collect()], "logged": seen}
        finally:
            logging.getLogger("lightkeeper").removeHandler(handler)

    if uid is None:
        return run()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges, collect, report, exit without cleanup
        code = 1
        try:
            os.close(r)
            os.setgid(uid)
            os.setuid(uid)
            os.write(w, json.dumps(run()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)


def test_an_unreadable_user_dir_is_counted_and_logged_once():
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="lk-unreadable-", dir="/tmp"))
    try:
        base.chmod(0o755)
        root = base / "data"
        write(root / "alice" / "a.json", 10)
        write(root / "secret" / "s.json", 10)
        for d in (root, root / "alice"):
            d.chmod(0o755)
        (root / "alice" / "a.json").chmod(0o644)
        (root / "secret").chmod(0o000)
        # root reads everything: collect as an unprivileged user in that case
        doc = _collect_as(65534 if os.geteuid() == 0 else None, str(root))
        for triples in doc["passes"]:
            got = {(m, lab): v for m, lab, v in triples}
            assert got[("userdir_bytes", "alice")] == 10
            assert ("userdir_bytes", "secret") not in got
            assert got[("userdir_unreadable_users", "")] == 1
            assert got[("userdir_users", "")] == 1
        assert doc["logged"].count("userdirs.unreadable") == 1
    finally:
        (base / "data" / "secret").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
