"""Damage in the repository: verify names the affected snapshots and files, and a snapshot the
damage does not touch still restores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightkeeper.backup.crypto import IntegrityError
from lightkeeper.backup.prune import prune
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.backup.verify import verify
from tests.backup.conftest import tree_digest

DOCS = "users/user02/kv_store_full_docs.json"


@pytest.fixture
def two(data_root: Path, repo: Repository) -> tuple[str, str]:
    """s1 holds user00 and user01; s2 holds only user02, in packs of its own."""
    s1 = run_backup(repo, BackupOptions(data_root, users=["user00", "user01"]))
    s2 = run_backup(repo, BackupOptions(data_root, users=["user02"]))
    return s1["snapshot_id"], s2["snapshot_id"]


def _entry(repo: Repository, sid: str, path: str) -> dict:
    return next(f for f in repo.read_snapshot(sid)["files"] if f["path"] == path)


def _data_loc(repo: Repository, sid: str):
    return repo.index[repo.content_list(_entry(repo, sid, DOCS)["list"])[0]]


def _assert_names(report: dict, bad: str, good: str, path: str) -> None:
    assert not report["ok"] and report["state"] == "problems"
    assert [a["snapshot"] for a in report["affected"]] == [bad]
    files = report["affected"][0]["files"]
    assert path in files and all(f.startswith("users/user02/") for f in files)
    assert good in report["snapshots_ok"]


def _restores(repo: Repository, sid: str, data_root: Path, tmp: Path) -> None:
    out = tmp / f"r-{sid[:8]}"
    r = restore(repo, sid, RestoreOptions(target=out))
    assert r.get("state") is None
    assert tree_digest(out) == {k: v for k, v in tree_digest(data_root).items()
                                if k.split("/")[0] in {p.name for p in out.iterdir()}}


def test_flipped_byte_in_a_chunk(two: tuple[str, str], repo: Repository, data_root: Path,
                                 tmp_path: Path) -> None:
    s1, s2 = two
    loc = _data_loc(repo, s2)
    path = repo.pack_path(loc.pack)
    with open(path, "r+b") as f:
        f.seek(loc.block_off + 40)
        b = f.read(1)
        f.seek(loc.block_off + 40)
        f.write(bytes([b[0] ^ 0x01]))
    assert verify(repo)["ok"]  # structure alone cannot see inside a data block
    for kw in ({"full": True}, {"sample_pct": 100}):
        _assert_names(verify(repo, **kw), s2, s1, DOCS)
    r = restore(repo, s2, RestoreOptions(target=tmp_path / "damaged"))
    assert r["state"] == "problems" and DOCS in r["failures"]
    _restores(repo, s1, data_root, tmp_path)


def test_truncated_pack(two: tuple[str, str], repo: Repository, data_root: Path,
                        tmp_path: Path) -> None:
    s1, s2 = two
    loc = _data_loc(repo, s2)
    path = repo.pack_path(loc.pack)
    os.truncate(path, loc.block_off + loc.block_len // 2)
    report = verify(repo)
    _assert_names(report, s2, s1, DOCS)
    assert any("truncated" in p for p in report["problems"])
    _restores(repo, s1, data_root, tmp_path)


def test_missing_index_is_named_then_rebuilt_from_pack_trailers(
        two: tuple[str, str], repo: Repository, data_root: Path, tmp_path: Path) -> None:
    s1, s2 = two
    loc = _data_loc(repo, s2)
    index_name = repo.index_of_pack()[loc.pack]
    (repo.path / "index" / index_name).unlink()
    fresh = Repository.open(repo.path, tmp_path / "keys" / "repo.key")
    report = verify(fresh)
    _assert_names(report, s2, s1, DOCS)
    assert report["unindexed_packs"] > 0
    _restores(fresh, s1, data_root, tmp_path)
    # prune re-indexes the packs from their trailers: nothing is lost
    prune(fresh)
    assert verify(fresh, full=True)["ok"]
    _restores(fresh, s2, data_root, tmp_path)


def test_damaged_content_list_and_manifest(two: tuple[str, str], repo: Repository,
                                           data_root: Path, tmp_path: Path) -> None:
    s1, s2 = two
    lst = repo.index[bytes.fromhex(_entry(repo, s2, DOCS)["list"])]
    with open(repo.pack_path(lst.pack), "r+b") as f:
        f.seek(lst.block_off + 30)
        b = f.read(1)
        f.seek(lst.block_off + 30)
        f.write(bytes([b[0] ^ 0x80]))
    _assert_names(verify(repo), s2, s1, DOCS)
    _restores(repo, s1, data_root, tmp_path)
    # restoring the damaged snapshot names every file whose list it cannot read (the lists
    # share a block here) and restores any other file intact; none is left out
    out = tmp_path / "damaged"
    r = restore(repo, s2, RestoreOptions(target=out))
    assert r["state"] == "problems" and DOCS in r["failures"]
    assert r["verified_files"] == r["files"] - len(r["failures"])
    assert not (out / "user02" / "kv_store_full_docs.json").exists()
    want = tree_digest(data_root)
    got = tree_digest(out)
    assert all(want[k] == v for k, v in got.items())
    assert {f"users/{k}" for k in got} | set(r["failures"]) == \
        {f"users/{k}" for k in want if k.startswith("user02/")}
    # a damaged manifest is named as unreadable
    snap = repo.path / "snapshots" / s2
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snap.write_bytes(bytes(data))
    report = verify(repo)
    assert s2 in report["snapshots_unreadable"] and s1 in report["snapshots_ok"]


def test_unencrypted_repository_still_detects_damage(data_root: Path, tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "plain", tmp_path / "plain.key", encrypt=False)
    s = run_backup(repo, BackupOptions(data_root))
    assert verify(repo, full=True)["ok"]
    loc = _data_loc(repo, s["snapshot_id"])
    fresh = Repository.open(repo.path, tmp_path / "plain.key")
    with open(fresh.pack_path(loc.pack), "r+b") as f:  # inside the zstd frame of a block
        f.seek(loc.block_off + loc.block_len // 2)
        b = f.read(1)
        f.seek(loc.block_off + loc.block_len // 2)
        f.write(bytes([b[0] ^ 0x04]))
    report = verify(fresh, full=True)
    assert not report["ok"] and report["affected"][0]["snapshot"] == s["snapshot_id"]
    r = restore(fresh, s["snapshot_id"], RestoreOptions(target=tmp_path / "out"))
    assert r["state"] == "problems" and r["failures"]


def test_the_snapshot_list_reads_headers_and_refuses_a_damaged_one(two: tuple[str, str],
                                                                     repo: Repository) -> None:
    """Listing the snapshots of an encrypted repository reads each manifest's header block
    alone: what it lists is what the whole manifest says, and a header that is truncated or
    fails authentication is refused, named, while the other snapshot still lists."""
    s1, s2 = two
    listed = {i.id: i for i in repo.snapshots()}
    assert set(listed) == {s1, s2}
    for sid in (s1, s2):
        whole = repo.read_snapshot(sid)
        assert listed[sid].users == sorted(whole["users"])
        assert listed[sid].time == whole["time"]
    snap = repo.path / "snapshots" / s2
    data = snap.read_bytes()
    hlen = int.from_bytes(data[:4], "little")
    snap.write_bytes(data[:4 + hlen // 2])  # cut inside the header
    assert [i.id for i in repo.snapshots()] == [s1]
    assert "truncated" in repo.refused[s2]
    damaged = bytearray(data)
    damaged[4 + hlen // 2] ^= 0x01  # inside the header block: AES-GCM refuses it
    snap.write_bytes(bytes(damaged))
    assert [i.id for i in repo.snapshots()] == [s1] and s2 in repo.refused
    snap.write_bytes(data[:4 + hlen])  # the header whole, the file list gone: listed, and
    assert {i.id for i in repo.snapshots()} == {s1, s2}  # reading it whole is refused
    with pytest.raises(IntegrityError):
        repo.read_snapshot(s2)
