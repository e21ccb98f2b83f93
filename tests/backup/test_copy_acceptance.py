"""A user's copy enters a snapshot only when the directory stayed quiet and its LightRAG stores
agree; otherwise the user is carried forward from the last good snapshot and the job is
``partial`` with the reason. Real LightRAG working directories (bench/datagen.py's and ones the
LightRAG library writes), a real writer process that ignores the gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.backup.storecheck import check_directory
from lightkeeper.gate import write_gate
from tests.backup.conftest import REPO_ROOT, run_child, tree_digest

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py


def _drop_first_vdb_chunk(udir: Path) -> str:
    """Tear the stores the way a copy taken across a flush is torn: a chunk of a processed
    document missing from vdb_chunks.json."""
    path = udir / "vdb_chunks.json"
    doc = json.loads(path.read_text())
    gone = doc["data"].pop(0)["__id__"]
    path.write_text(json.dumps(doc))
    return gone


def test_datagen_and_lightrag_written_stores_pass_the_check(data_root: Path) -> None:
    r = check_directory(data_root / "user00")
    assert r.ok and r.checked and r.documents > 0 and r.entities > 0 and r.relations > 0, r
    empty = data_root / "empty"
    empty.mkdir()
    assert not check_directory(empty).checked


def test_torn_stores_are_carried_forward_and_reported(data_root: Path, repo: Repository,
                                                      tmp_path: Path) -> None:
    parent = run_backup(repo, BackupOptions(data_root))
    assert parent.get("state") is None
    good = tree_digest(data_root / "user01")
    _drop_first_vdb_chunk(data_root / "user01")
    assert not check_directory(data_root / "user01").ok
    s = run_backup(repo, BackupOptions(data_root, retries=1, retry_delay=0.01))
    assert s["state"] == "partial" and s["failed_users"] == ["user01"], s
    assert "LightRAG stores disagree" in s["errors"]["user01"]
    assert "vdb_chunks.json" in s["errors"]["user01"]
    m = repo.read_snapshot(s["snapshot_id"])
    u1 = m["users"]["user01"]
    assert u1["carried_from"] == parent["snapshot_id"]
    assert u1["check"]["accepted"] is False and u1["check"]["stores"]["ok"] is False
    assert m["users"]["user00"]["check"]["accepted"] is True
    assert m["users"]["user00"]["check"]["stores"]["ok"] is True
    out = tmp_path / "out"
    restore(repo, s["snapshot_id"], RestoreOptions(target=out))
    assert tree_digest(out / "user01") == good          # the last good copy, not the torn one
    assert check_directory(out / "user01").ok


def test_an_unchanged_user_reuses_the_parents_check(data_root: Path, repo: Repository) -> None:
    run_backup(repo, BackupOptions(data_root))
    s = run_backup(repo, BackupOptions(data_root))
    assert s["files_unmodified"] == s["files"] and s["bytes_read"] == 0
    m = repo.read_snapshot(s["snapshot_id"])
    assert all(u["check"]["stores"]["ok"] for u in m["users"].values())


def test_a_quiet_directory_is_scanned_once_per_backup(data_root: Path, repo: Repository,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The quiet check looks under the gate first: a directory nobody wrote in for
    ``quiet_seconds`` is listed once, not once to wait for quiet and again under the gate (an
    unchanged data root's backup is mostly these listings)."""
    from lightkeeper.backup import sources

    run_backup(repo, BackupOptions(data_root))
    old = time.time() - 60
    for f in (data_root / "user02").rglob("*"):
        os.utime(f, (old, old))  # quiet for a minute
    scanned: list[str] = []
    real_scan = sources.scan

    def counting_scan(udir: Path) -> Any:
        scanned.append(Path(udir).name)
        return real_scan(udir)

    monkeypatch.setattr(sources, "scan", counting_scan)
    s = run_backup(repo, BackupOptions(data_root, users=["user02"], quiet_seconds=2, retries=0))
    assert s.get("state") is None, s
    assert scanned == ["user02"]


def test_ungated_change_waits_for_the_quiet_period(data_root: Path, repo: Repository) -> None:
    run_backup(repo, BackupOptions(data_root))
    p = data_root / "user02" / "kv_store_full_docs.json"
    p.write_bytes(p.read_bytes() + b"\n")  # a writer that ignores the gate, just now
    s = run_backup(repo, BackupOptions(data_root, users=["user02"], quiet_seconds=0.5,
                                       retries=0))
    assert s.get("state") is None, s
    check = repo.read_snapshot(s["snapshot_id"])["users"]["user02"]["check"]
    assert check["accepted"] and check["quiet"] == {"ok": True, "required_s": 0.5,
                                                      "gated_writes": False}


def test_gated_writes_need_no_quiet_period(data_root: Path, repo: Repository) -> None:
    p = data_root / "user02" / "kv_store_full_docs.json"
    with write_gate(data_root / "user02"):
        p.write_bytes(p.read_bytes() + b"\n")
    # were the gated write taken for an ungated one, the copy would wait 60 s and be refused
    s = run_backup(repo, BackupOptions(data_root, users=["user02"], quiet_seconds=30,
                                       retries=0))
    assert s.get("state") is None, s
    quiet = repo.read_snapshot(s["snapshot_id"])["users"]["user02"]["check"]["quiet"]
    assert quiet["gated_writes"] is True


GATED_WRITER = """
import sys, time
from pathlib import Path
from lightkeeper.gate import write_gate
p, hold = Path(sys.argv[1]), float(sys.argv[2])
with write_gate(p.parent, timeout=10):
    p.write_bytes(p.read_bytes() + b"\\n")
    print("WRITING", flush=True)
    end = time.monotonic() + hold
    while time.monotonic() < end:  # a long batch: several flushes under one hold
        time.sleep(0.2)
        p.write_bytes(p.read_bytes() + b" ")
print("DONE", flush=True)
"""


def test_a_gated_write_in_flight_is_waited_for_not_refused(data_root: Path,
                                                           repo: Repository) -> None:
    """Files modified under a gate that is still held are not an ungated writer's: the backup
    does not wait for them to go quiet (the hold outlasts twice the quiet period here) but
    for the gate, and the writer's release stamp covers them."""
    p = data_root / "user02" / "kv_store_full_docs.json"
    proc = run_child(GATED_WRITER, str(p), "2.0")
    try:
        assert proc.stdout.readline().strip() == "WRITING"
        s = run_backup(repo, BackupOptions(data_root, users=["user02"], quiet_seconds=0.5,
                                           retries=0))
        assert proc.stdout.readline().strip() == "DONE"
    finally:
        proc.wait(30)
    assert s.get("state") is None, s
    check = repo.read_snapshot(s["snapshot_id"])["users"]["user02"]["check"]
    assert check["accepted"] and check["attempts"] == 1 and check["quiet"]["gated_writes"]
    out = data_root.parent / "restored"
    restore(repo, s["snapshot_id"], RestoreOptions(target=out, users=["user02"]))
    # the copy holds every write of the hold: it was taken after the hold ended
    assert (out / "user02" / p.name).read_bytes() == p.read_bytes()


TOUCHER = """
import os, sys, time
from pathlib import Path
p, stop = Path(sys.argv[1]), Path(sys.argv[2])
print("READY", flush=True)
while not stop.exists():
    os.utime(p)
    time.sleep(0.05)
"""


def test_a_directory_that_never_goes_quiet_is_partial(data_root: Path, repo: Repository,
                                                      tmp_path: Path) -> None:
    parent = run_backup(repo, BackupOptions(data_root))
    stop = tmp_path / "stop"
    proc = run_child(TOUCHER, str(data_root / "user00" / "kv_store_text_chunks.json"), str(stop))
    try:
        assert proc.stdout.readline().strip() == "READY"
        s = run_backup(repo, BackupOptions(data_root, quiet_seconds=0.3, retries=1,
                                           retry_delay=0.01))
    finally:
        stop.touch()
        proc.wait(30)
    assert s["state"] == "partial" and s["failed_users"] == ["user00"], s
    assert "not quiet" in s["errors"]["user00"]
    assert "kv_store_text_chunks.json" in s["errors"]["user00"]
    m = repo.read_snapshot(s["snapshot_id"])
    assert m["users"]["user00"]["carried_from"] == parent["snapshot_id"]


def _start_writer(root: Path, user: str, tmp: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(tmp / "writer.log", "wb") as log:  # LightRAG logs a lot: never a full pipe
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.backup.ungated_writer", str(root), user,
             str(tmp / "stop"), str(tmp / "progress"), *extra],
            cwd=REPO_ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "READY", line + (tmp / "writer.log").read_text()[-3000:]
    return proc


def _progress(tmp: Path) -> int:
    try:
        return int((tmp / "progress").read_text())
    except (FileNotFoundError, ValueError):
        return 0


def test_twenty_backups_during_an_ungated_lightrag_writer(tmp_path: Path,
                                                          repo: Repository) -> None:
    """The LightRAG library used directly, no gate, inserting in bursts (an operator's own
    service): every snapshot restores to stores that agree; copies that could not be taken
    quietly or whose stores disagreed are partial with the reason."""
    root = tmp_path / "data"
    user = "ungated"
    # bursts of 8 inserts (a few seconds of writes, longer than a copy's quiet wait and its
    # retries), then 1 s of quiet
    proc = _start_writer(root, user, tmp_path, "0", "1.0", "8")
    try:
        deadline = time.monotonic() + 120
        while _progress(tmp_path) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        results = []
        for _ in range(20):
            before = _progress(tmp_path)
            results.append(run_backup(repo, BackupOptions(root, quiet_seconds=0.3, retries=2,
                                                          retry_delay=0.05)))
            deadline = time.monotonic() + 60
            while _progress(tmp_path) == before and time.monotonic() < deadline:
                time.sleep(0.02)  # the writer moved on since this backup
        inserted = _progress(tmp_path)
    finally:
        (tmp_path / "stop").touch()
        proc.wait(60)
    assert proc.returncode == 0, (tmp_path / "writer.log").read_text()[-3000:]
    assert inserted >= 20
    accepted_docs = set()
    for i, s in enumerate(results):
        m = repo.read_snapshot(s["snapshot_id"])
        u = m["users"].get(user)
        if s.get("state") == "partial":
            reason = s["errors"][user]
            assert any(r in reason for r in ("not quiet", "stores disagree",
                                             "changed while being copied")), reason
            assert u["check"]["accepted"] is False
        else:
            assert u["check"]["accepted"] and u["check"]["stores"]["ok"], u
            accepted_docs.add(u["check"]["stores"]["documents"])
        if u is None or not u.get("files"):
            continue  # nothing good to carry yet
        out = tmp_path / f"restore{i}"
        restore(repo, s["snapshot_id"], RestoreOptions(target=out, users=[user]))
        r = check_directory(out / user)
        assert r.ok and r.checked, (i, r.problems)
    assert len(accepted_docs) > 1, "no copy was accepted while the writer ran"
