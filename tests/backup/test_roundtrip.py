"""Backup and restore of real LightRAG-shaped directories, dedup, keys, encryption at rest."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench.datagen import scatter_edits
from lightkeeper.backup.crypto import KeyFileError
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreError, RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.backup.verify import verify
from tests.backup.conftest import tree_digest


def test_round_trip_restores_identical_files_and_records_counts(data_root: Path,
                                                                repo: Repository,
                                                                tmp_path: Path) -> None:
    s = run_backup(repo, BackupOptions(data_root))
    assert s["files"] == sum(1 for p in data_root.rglob("*") if p.is_file()
                             and p.name not in (".lightkeeper.lock", ".lightkeeper.intent"))
    assert s["bytes_read"] == s["bytes_total"] > 0
    for key in ("duration_s", "bytes_read", "bytes_added", "dedup_ratio", "repository_size"):
        assert s[key] is not None
    m = repo.read_snapshot(s["snapshot_id"])
    for user in ("user00", "user01", "user02"):
        docs = json.loads((data_root / user / "kv_store_full_docs.json").read_text())
        graph = (data_root / user / "graph_chunk_entity_relation.graphml").read_text()
        assert m["users"][user]["documents"] == len(docs)
        assert m["users"][user]["entities"] == graph.count("<node ")
        assert m["users"][user]["relations"] == graph.count("<edge ")
    out = tmp_path / "restored"
    r = restore(repo, s["short_id"], RestoreOptions(target=out))
    assert r.get("state") is None and r["verified_files"] == s["files"]
    assert tree_digest(out) == tree_digest(data_root)
    # modes and mtimes come back too
    src = data_root / "user01" / "kv_store_full_docs.json"
    dst = out / "user01" / "kv_store_full_docs.json"
    assert src.stat().st_mtime_ns == dst.stat().st_mtime_ns


def test_restore_one_user_and_refuse_nonempty_target(data_root: Path, repo: Repository,
                                                    tmp_path: Path) -> None:
    s = run_backup(repo, BackupOptions(data_root))
    out = tmp_path / "one"
    restore(repo, s["snapshot_id"], RestoreOptions(target=out, users=["user02"]))
    assert sorted(p.name for p in out.iterdir()) == ["user02"]
    assert tree_digest(out / "user02") == tree_digest(data_root / "user02")
    with pytest.raises(RestoreError, match="not empty"):
        restore(repo, s["snapshot_id"], RestoreOptions(target=out, users=["user02"]))
    with pytest.raises(RestoreError, match="not in snapshot"):
        restore(repo, s["snapshot_id"], RestoreOptions(target=tmp_path / "x", users=["nobody"]))


def test_unchanged_backup_reads_nothing_and_scattered_edits_add_little(
        data_root: Path, repo: Repository) -> None:
    first = run_backup(repo, BackupOptions(data_root))
    second = run_backup(repo, BackupOptions(data_root))
    assert second["bytes_read"] == 0
    assert second["files_unmodified"] == first["files"]
    assert second["bytes_added"] < first["bytes_added"] / 20
    changed = scatter_edits(data_root, fraction=0.2, seed=5)
    changed_bytes = sum((data_root / c).stat().st_size for c in changed)
    third = run_backup(repo, BackupOptions(data_root))
    assert third["files_changed"] == len(changed)
    assert third["bytes_read"] == changed_bytes
    # most of every rewritten file is shared with its previous version
    assert third["bytes_new_raw"] < changed_bytes * 0.5
    assert third["bytes_added"] < changed_bytes * 0.3


def test_parent_cache_rereads_a_file_whose_inode_changed(data_root: Path,
                                                         repo: Repository) -> None:
    run_backup(repo, BackupOptions(data_root))
    p = data_root / "user00" / "kv_store_doc_status.json"
    st = p.stat()
    tmp = p.with_name("replacement")
    shutil.copy2(p, tmp)
    os.replace(tmp, p)  # same size and mtime, new inode: LightRAG's atomic replace
    assert p.stat().st_mtime_ns == st.st_mtime_ns
    s = run_backup(repo, BackupOptions(data_root))
    assert s["files_changed"] == 1 and s["bytes_read"] == st.st_size


def test_encrypted_at_rest_and_key_checks(data_root: Path, repo: Repository,
                                          tmp_path: Path) -> None:
    run_backup(repo, BackupOptions(data_root))
    key = tmp_path / "keys" / "repo.key"
    assert key.stat().st_mode & 0o777 == 0o600
    needle = b"kv_store_full_docs"  # appears in manifests and in every text chunk's file_path
    word = json.loads((data_root / "user00" / "kv_store_full_docs.json").read_text())
    sample = next(iter(word.values()))["content"][:40].encode()
    for p in repo.path.rglob("*"):
        if p.is_file() and p.parent.name != "locks" and p.name != "config":
            blob = p.read_bytes()
            assert needle not in blob and sample not in blob, p
    # another key is refused with a clear message, not a decryption error
    other = tmp_path / "other.key"
    Repository.init(tmp_path / "repo2", other)
    with pytest.raises(KeyFileError, match="does not belong"):
        Repository.open(repo.path, other)
    os.chmod(key, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        Repository.open(repo.path, key)
    os.chmod(key, 0o600)
    with pytest.raises(KeyFileError, match="not found"):
        Repository.open(repo.path, tmp_path / "missing.key")


def test_referenced_files_are_enough_to_restore(data_root: Path, repo: Repository,
                                                tmp_path: Path) -> None:
    run_backup(repo, BackupOptions(data_root, users=["user00"]))
    s = run_backup(repo, BackupOptions(data_root, users=["user01"]))
    refs = repo.referenced_files(s["snapshot_id"])
    assert refs and all(r.startswith(("data/", "index/")) for r in refs)
    assert all((repo.path / r).is_file() for r in refs)
    copy = tmp_path / "copy"
    for sub in ("data", "index", "snapshots", "locks"):
        (copy / sub).mkdir(parents=True)
    shutil.copy(repo.path / "config", copy / "config")
    for r in refs:
        (copy / r).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo.path / r, copy / r)
    shutil.copy(repo.path / "snapshots" / s["snapshot_id"], copy / "snapshots")
    c = Repository.open(copy, tmp_path / "keys" / "repo.key")
    assert verify(c, full=True)["ok"]
    out = tmp_path / "out"
    restore(c, s["snapshot_id"], RestoreOptions(target=out))
    assert tree_digest(out / "user01") == tree_digest(data_root / "user01")


def test_excludes_temp_files_and_lock(data_root: Path, repo: Repository) -> None:
    (data_root / "user00" / "vdb_chunks.json.tmp.1234").write_text("half written")
    (data_root / "user00" / ".lightkeeper.lock").write_text("1 2\n")
    s = run_backup(repo, BackupOptions(data_root))
    paths = {f["path"] for f in repo.read_snapshot(s["snapshot_id"])["files"]}
    assert not any(".tmp." in p or p.endswith(".lightkeeper.lock") for p in paths)


def test_in_place_restore_takes_a_safety_snapshot_first(data_root: Path, repo: Repository,
                                                        tmp_path: Path) -> None:
    before = tree_digest(data_root / "user01")
    s = run_backup(repo, BackupOptions(data_root))
    scatter_edits(data_root / "user01", fraction=0.5, seed=9)
    (data_root / "user01" / "extra.json").write_text("{}")
    edited = tree_digest(data_root / "user01")
    r = restore(repo, s["snapshot_id"], RestoreOptions(in_place=True, data_root=data_root,
                                                       users=["user01"]))
    assert tree_digest(data_root / "user01") == before
    safety = repo.read_snapshot(r["safety_snapshot"])
    assert "pre-restore" in safety["tags"]
    out = tmp_path / "undo"
    restore(repo, r["safety_snapshot"], RestoreOptions(target=out))
    assert tree_digest(out / "user01") == edited


def test_large_files_are_streamed_and_progress_is_reported(data_root: Path, repo: Repository,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import lightkeeper.backup.snapshot as snap
    from lightkeeper.progress import LocalContext

    monkeypatch.setattr(snap, "WHOLE_FILE_LIMIT", 64 * 1024)  # stream anything bigger
    (data_root / "user00" / "big.bin").write_bytes(os.urandom(3 << 20))
    updates: list[dict] = []
    s = run_backup(repo, BackupOptions(data_root), LocalContext(on_progress=updates.append))
    last = [u for u in updates if u["phase"] == "backup"][-1]
    assert last["bytes_total"] == s["bytes_total"] and last["percent"] is not None
    assert {"files_done", "bytes_done", "rate_bytes_s", "eta_s", "current"} <= set(last)
    out = tmp_path / "out"
    restore(repo, s["snapshot_id"], RestoreOptions(target=out))
    assert tree_digest(out) == tree_digest(data_root)


def test_file_names_that_are_not_utf8_round_trip(data_root: Path, repo: Repository,
                                                 tmp_path: Path) -> None:
    """A name with bytes that are not UTF-8 (lone surrogates in Python) is stored in the file
    list (orjson refuses it; the standard encoder takes it) and restored byte for byte."""
    odd = os.fsencode(data_root / "user01") + b"/caf\xe9-\xff.json"
    with open(odd, "wb") as f:
        f.write(b'{"k": 1}\n')
    s = run_backup(repo, BackupOptions(data_root))
    assert os.fsdecode(b"users/user01/caf\xe9-\xff.json") in {
        f["path"] for f in repo.read_snapshot(s["snapshot_id"])["files"]}
    out = tmp_path / "out"
    r = restore(repo, s["snapshot_id"], RestoreOptions(target=out))
    assert r.get("state") is None
    with open(os.fsencode(out / "user01") + b"/caf\xe9-\xff.json", "rb") as f:
        assert f.read() == b'{"k": 1}\n'
    assert tree_digest(out) == tree_digest(data_root)
