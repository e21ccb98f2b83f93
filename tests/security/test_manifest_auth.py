"""Medium 3: with ``backup.encrypt = false`` a snapshot cannot be forged without the key.

Before the fix manifests of an unencrypted repository were plain zstd under an unkeyed
name: anyone who could write the repository (or a zone's copy of it) made a snapshot that
became "latest", passed ``verify --full``, and restored one user's documents into another
user's directory with mode 0777.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import blake3
import pytest
import zstandard

from lightkeeper.backup.crypto import IntegrityError, Unauthenticated
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.backup.verify import verify


def _forge(repo: Repository, genuine: str, with_mac: bool = False) -> str:
    """What an attacker without the key writes: a manifest putting user00's files into
    user01's directory, mode 0777, dated in the future so it becomes 'latest'."""
    m = repo.read_snapshot(genuine)
    files = []
    for f in m["files"]:
        if f["path"].startswith("users/user00/"):
            files.append({**f, "path": "users/user01/" + f["path"].split("/", 2)[2],
                          "mode": 0o777})
    header = {k: v for k, v in m.items() if k not in ("files", "id")}
    header["time"] = time.time() + 3600
    header["users"] = {"user01": m["users"]["user00"]}
    z = zstandard.ZstdCompressor()
    head = z.compress(json.dumps(header).encode())
    body = z.compress(json.dumps(files).encode())
    data = struct.pack("<I", len(head)) + head + body
    if with_mac:  # a guessed MAC in the new envelope
        data = b"LKM1" + bytes(32) + data
    sid = blake3.blake3(data).hexdigest()
    (repo.path / "snapshots" / sid).write_bytes(data)
    return sid


@pytest.mark.parametrize("with_mac", [False, True])
def test_medium3_forged_snapshot_refused_by_list_restore_verify(
        data_root: Path, plain_repo: Repository, tmp_path: Path, with_mac: bool) -> None:
    repo = plain_repo
    genuine = run_backup(repo, BackupOptions(data_root, low_priority=False))["snapshot_id"]
    forged = _forge(repo, genuine, with_mac)

    # list: the forgery is not a snapshot (and never "latest"), and it is named as refused
    assert [s.id for s in repo.snapshots()] == [genuine]
    assert forged in repo.refused
    assert repo.resolve_snapshot("latest") == genuine
    # restore: refused with a clear error, nothing written
    target = tmp_path / "restored"
    with pytest.raises(IntegrityError, match="authentication|sign-snapshots"):
        restore(repo, forged, RestoreOptions(target=target, low_priority=False))
    assert not (target / "user01").exists()
    # verify --full: the repository is not OK
    v = verify(repo, full=True, low_priority=False)
    assert not v["ok"]
    assert forged in v["snapshots_unreadable"]
    # the genuine snapshot still restores
    r = restore(repo, "latest", RestoreOptions(target=tmp_path / "ok", low_priority=False))
    assert not r.get("failures")


def test_medium3_tampered_manifest_mac_detected(data_root: Path, plain_repo: Repository,
                                                tmp_path: Path) -> None:
    repo = plain_repo
    sid = run_backup(repo, BackupOptions(data_root, low_priority=False))["snapshot_id"]
    data = bytearray((repo.path / "snapshots" / sid).read_bytes())
    assert data[:4] == b"LKM1"  # written with a MAC
    data[-1] ^= 1
    bad = blake3.blake3(bytes(data)).hexdigest()
    (repo.path / "snapshots" / bad).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="authentication failed"):
        repo.read_snapshot(bad)


def test_medium3_legacy_snapshots_signed_by_the_operator(data_root: Path, plain_repo: Repository,
                                                         tmp_path: Path) -> None:
    """Migration: a manifest written before the change (no MAC) is refused until the operator
    signs the existing snapshots once; then it restores, under a new id."""
    repo = plain_repo
    sid = run_backup(repo, BackupOptions(data_root, low_priority=False))["snapshot_id"]
    data = (repo.path / "snapshots" / sid).read_bytes()
    legacy = data[4 + 32:]  # what the old code wrote: the same bytes without the envelope
    old = blake3.blake3(legacy).hexdigest()
    (repo.path / "snapshots" / sid).unlink()
    (repo.path / "snapshots" / old).write_bytes(legacy)
    with pytest.raises(Unauthenticated, match="sign-snapshots"):
        repo.read_snapshot(old)
    assert repo.legacy_snapshots() == [old]
    renamed = repo.sign_legacy_snapshots()
    assert list(renamed) == [old]
    assert repo.legacy_snapshots() == []
    r = restore(repo, renamed[old], RestoreOptions(target=tmp_path / "t", low_priority=False))
    assert r["verified_files"] == r["files"] > 0
