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


def _truth(root) -> dict:
    return {u.name: scan_user(str(u)) for u in root.iterdir()
            if u.is_dir() and not u.is_symlink() and u.name in ("alice", "bob", "carol")}


def test_changed_files_alone_bring_a_user_up_to_date_and_agree_with_a_rescan(root, tmp_path):
    """Random in-place rewrites, appends, deletions, new files and directories, a file turned
    into a symlink, each reported as the watcher reports it (the changed paths): after every
    pass each user's bytes and files equal a fresh scan's."""
    import random

    rng = random.Random(13)
    write(root / "carol" / "a.json", 10)
    c = UserDirCollector(root, watch=False, full_rescan=10**9)
    c.collect()
    outside = tmp_path / "outside.bin"
    write(outside, 99_999)
    updated = scanned = 0
    for _ in range(300):
        user = rng.choice(["alice", "bob", "carol"])
        udir = root / user
        files = [p for p in udir.rglob("*") if p.is_file() and not p.is_symlink()]
        op = rng.random()
        if op < 0.6 and files:  # LightRAG's way: rewrite a store in place
            target = rng.choice(files)
            write(target, rng.randrange(0, 5000))
            c.mark_dirty(user, str(target))
        elif op < 0.7 and files:
            target = rng.choice(files)
            target.unlink()
            c.mark_dirty(user, str(target))
        elif op < 0.8:
            target = udir / rng.choice(["", "ws1/", "ws1/deep/"]) / f"n{rng.randrange(9)}.json"
            write(target, rng.randrange(1, 3000))
            c.mark_dirty(user, str(target.parent))
            c.mark_dirty(user, str(target))
        elif op < 0.85 and files:  # a file replaced by a link to a big file elsewhere
            target = rng.choice(files)
            target.unlink()
            os.symlink(outside, target)
            c.mark_dirty(user, str(target))
        else:  # several files at once
            for target in files[:3]:
                with open(target, "ab") as fh:
                    fh.write(b"y" * rng.randrange(1, 100))
                c.mark_dirty(user, str(target))
        got = as_dict(c.collect())
        updated += int(got[("userdir_updated_users", "")])
        scanned += int(got[("userdir_scanned_users", "")])
        for u, (size, count) in _truth(root).items():
            assert got[("userdir_bytes", u)] == size, u
            assert got[("userdir_files", u)] == count, u
    assert updated > 100 and scanned > 20  # both ways were taken


def test_a_symlinked_directory_is_never_followed_by_an_update(root, tmp_path):
    """A remembered file in a subdirectory that becomes a symlink to another directory: the
    update sees the link and rescans (which does not follow it) instead of stat-ing through."""
    c = UserDirCollector(root, watch=False, full_rescan=10**9)
    c.collect()
    hot = root / "alice" / "sub" / "graph_chunk_entity_relation.graphml"
    write(hot, 300)
    c.mark_dirty("alice", str(hot))
    assert as_dict(c.collect())[("userdir_bytes", "alice")] == 1300  # rescanned: now known
    write(hot, 400)
    c.mark_dirty("alice", str(hot))
    got = as_dict(c.collect())
    assert got[("userdir_bytes", "alice")] == 1400 and got[("userdir_updated_users", "")] == 1
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / hot.name, 1_000_000)
    shutil.rmtree(root / "alice" / "sub")
    os.symlink(elsewhere, root / "alice" / "sub")
    c.mark_dirty("alice", str(hot))  # as if the directory's own events were lost
    got = as_dict(c.collect())
    assert got[("userdir_bytes", "alice")] == 1000 and got[("userdir_files", "alice")] == 1
    assert got[("userdir_updated_users", "")] == 0 and got[("userdir_scanned_users", "")] == 1


def test_the_first_change_of_a_file_a_scan_found_costs_no_rescan(root):
    """A scan remembers the size of every file it finds: the first rewrite of any of them
    after the agent started is one lstat, not a rescan of the user's directory."""
    c = UserDirCollector(root, watch=False, full_rescan=10**9)
    first = as_dict(c.collect())
    files = sorted(p for p in (root / "bob").rglob("*") if p.is_file())
    assert files
    target = files[-1]
    write(target, target.stat().st_size + 77)
    c.mark_dirty("bob", str(target))
    got = as_dict(c.collect())
    assert got[("userdir_bytes", "bob")] == first[("userdir_bytes", "bob")] + 77
    assert got[("userdir_updated_users", "")] == 1 and got[("userdir_scanned_users", "")] == 0
    assert c._hot_count == sum(int(v) for (m, _), v in first.items() if m == "userdir_files")


def test_remembered_sizes_and_changed_paths_are_bounded(root, monkeypatch):
    from lightkeeper.collectors import userdirs

    monkeypatch.setattr(userdirs, "HOT_FILES_MAX", 3)
    c = UserDirCollector(root, watch=False, full_rescan=10**9)
    c.collect()
    for i in range(6):
        write(root / "bob" / f"f{i}.json", 10)
        c.mark_dirty("bob", str(root / "bob" / f"f{i}.json"))
    got = as_dict(c.collect())
    assert got[("userdir_bytes", "bob")] == 110 and got[("userdir_scanned_users", "")] == 1
    assert c._hot_count == sum(len(v) for v in c._hot.values()) <= 3
    for i in range(userdirs.DIRTY_PATHS_MAX + 1):  # more changes than are worth listing
        c.mark_dirty("alice", str(root / "alice" / f"x{i}"))
    assert c._dirty["alice"] is None
    c.collect()
    assert c._hot_count == sum(len(v) for v in c._hot.values()) <= 3


def test_the_watcher_reports_paths_and_a_rewrite_costs_no_rescan(root):
    c = UserDirCollector(root, full_rescan=3600)
    store = root / "alice" / "kv_store_doc_status.json"
    try:
        c.collect()

        def rewrite_until_reported(size: int) -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                write(store, size)
                poll_until = time.monotonic() + 3
                while time.monotonic() < poll_until:
                    with c._dirty_lock:
                        paths = c._dirty.get("alice")
                    if paths and str(store) in paths:
                        return
                    time.sleep(0.05)
            raise AssertionError("the watcher did not report the rewrite")

        rewrite_until_reported(2000)
        got = as_dict(c.collect())  # the first scan remembered its size: no rescan either
        assert got[("userdir_bytes", "alice")] == 2234
        assert got[("userdir_updated_users", "")] == 1 and got[("userdir_scanned_users", "")] == 0
        rewrite_until_reported(3000)
        got = as_dict(c.collect())
        assert got[("userdir_bytes", "alice")] == 3234
        assert got[("userdir_updated_users", "")] == 1 and got[("userdir_scanned_users", "")] == 0
    finally:
        c.close()


def test_a_full_rescan_remembers_the_files_that_changed(root):
    c = UserDirCollector(root, watch=False, full_rescan=0)
    c.collect()
    store = root / "bob" / "vdb_chunks.json"
    write(store, 70)
    c.mark_dirty("bob", str(store))
    got = as_dict(c.collect())  # a full rescan: every user scanned, nobody updated
    assert got[("userdir_full_rescan", "")] == 1 and got[("userdir_updated_users", "")] == 0
    assert got[("userdir_bytes", "bob")] == 70
    c.full_rescan = 10**9
    write(store, 90)
    c.mark_dirty("bob", str(store))
    got = as_dict(c.collect())
    assert got[("userdir_bytes", "bob")] == 90 and got[("userdir_updated_users", "")] == 1


def test_a_changed_path_is_given_to_the_user_whose_directory_holds_it(tmp_path):
    c = UserDirCollector(tmp_path / "data", watch=False)
    root = str(tmp_path / "data")
    assert c._user_of(f"{root}/alice/kv_store_0.json", root) == "alice"
    assert c._user_of(f"{root}/alice", root) == "alice"
    assert c._user_of(f"{root}/bob/sub/dir/f.graphml", root + "/") == "bob"
    assert c._user_of(root, root) is None  # the root itself
    assert c._user_of(f"{root}2/alice/x", root) is None  # a sibling sharing the prefix
    assert c._user_of(f"{root}/Not_A_User/x", root) is None
    assert c._user_of(f"{root}/../etc/passwd", root) is None
    assert c._user_of(os.path.join("data", "carol", "x"), "data") == "carol"  # relative root
    assert c._user_of(f"{tmp_path}/other/x", root) is None
