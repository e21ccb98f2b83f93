"""Retention semantics (restic's keep-*) and hostile manifest paths on restore."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lightkeeper.backup.prune import PruneError, forget
from lightkeeper.backup.repository import Repository, SnapshotInfo
from lightkeeper.backup.restore import RestoreError, RestoreOptions, restore
from lightkeeper.backup.retention import Policy, apply
from lightkeeper.backup.snapshot import BackupOptions, run_backup


def _snaps(times: list[str]) -> list[SnapshotInfo]:
    out = []
    for i, t in enumerate(times):
        ts = time.mktime(time.strptime(t, "%Y-%m-%d %H:%M"))
        out.append(SnapshotInfo(f"{i:064x}", ts, "h", [], ["u"], {}, None))
    return out


def _kept(snaps: list[SnapshotInfo], policy: Policy, protected: set[str] = frozenset()
          ) -> list[int]:
    kept, removed = apply(snaps, policy, {s.id: "g" for s in snaps}, protected)
    assert len(kept) + len(removed) == len(snaps)
    return sorted(int(k["id"], 16) for k in kept)


def test_keep_rules_follow_restic() -> None:
    snaps = _snaps(["2026-01-01 10:00", "2026-01-01 10:30", "2026-01-01 11:10",
                    "2026-01-02 09:00", "2026-01-09 09:00", "2026-02-01 09:00",
                    "2026-02-01 09:20"])
    assert _kept(snaps, Policy(last=2)) == [5, 6]
    # the newest snapshot of each of the 3 most recent hours that have one
    assert _kept(snaps, Policy(hourly=3)) == [3, 4, 6]
    assert _kept(snaps, Policy(daily=3)) == [3, 4, 6]
    assert _kept(snaps, Policy(weekly=2)) == [4, 6]
    assert _kept(snaps, Policy(monthly=2)) == [4, 6]
    assert _kept(snaps, Policy(yearly=5)) == [6]
    assert _kept(snaps, Policy(last=1, daily=2)) == [4, 6]
    # the newest is always kept, and so is a protected one (the newest verified)
    assert _kept(snaps, Policy(monthly=1), protected={f"{1:064x}"}) == [1, 6]


def test_groups_keep_one_user_snapshots_apart(data_root: Path, repo: Repository) -> None:
    full = run_backup(repo, BackupOptions(data_root))
    one = [run_backup(repo, BackupOptions(data_root, users=["user00"])) for _ in range(3)]
    r = forget(repo, Policy(last=1))
    assert {s["id"] for s in r["removed"]} == {one[0]["snapshot_id"], one[1]["snapshot_id"]}
    assert set(repo.snapshot_ids()) == {full["snapshot_id"], one[2]["snapshot_id"]}
    with pytest.raises(PruneError, match="no retention policy"):
        forget(repo, Policy())
    dry = forget(repo, Policy(last=1), dry_run=True)
    assert dry["removed_count"] == 0 and dry["kept_count"] == 2


def test_forget_summary_names_snapshots_without_their_users(tmp_path: Path,
                                                             repo: Repository) -> None:
    """The summary is stored twice (the job's record, its audit event) for months: each
    snapshot in it is a short reference, its size not growing with the users it holds (with
    1,000 users the full form was ~10 KB a snapshot)."""
    root = tmp_path / "many"
    names = [f"tenant-{i:03d}" for i in range(60)]
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "kv_store_doc_status.json").write_text(f'{{"{name}": {{}}}}')
    first = run_backup(repo, BackupOptions(root))
    second = run_backup(repo, BackupOptions(root))
    r = forget(repo, Policy(last=1))
    assert r["removed"] == [{"id": first["snapshot_id"], "short_id": first["snapshot_id"][:8],
                             "time": r["removed"][0]["time"], "tags": [], "users": 60,
                             "bytes_total": first["bytes_total"]}]
    assert [(k["id"], k["users"], k["reasons"]) for k in r["kept"]] == [
        (second["snapshot_id"], 60, ["last", "newest"])]
    text = json.dumps(r)
    assert not any(name in text for name in names)
    assert len(text) < 1000


@pytest.mark.parametrize("bad", ["users/user00/../../escape.txt", "users/../x",
                                 "users/USER/x", "users/user00//etc/passwd",
                                 "users/user00/sub/../../../../tmp/x"])
def test_hostile_manifest_paths_are_refused(data_root: Path, repo: Repository,
                                            tmp_path: Path, bad: str) -> None:
    s = run_backup(repo, BackupOptions(data_root, users=["user00"]))
    m = repo.read_snapshot(s["snapshot_id"])
    m.pop("id")
    evil = dict(m["files"][0], path=bad)
    m["files"].append(evil)
    sid = repo.write_snapshot(m)
    target = tmp_path / "t"
    with pytest.raises(RestoreError, match="refusing manifest path|invalid user id"):
        restore(repo, sid, RestoreOptions(target=target))
    assert not any(p.is_file() for p in target.rglob("*"))  # validated before writing
    assert not (tmp_path / "escape.txt").exists()


def test_symlink_escape_in_target_is_refused(data_root: Path, repo: Repository,
                                             tmp_path: Path) -> None:
    s = run_backup(repo, BackupOptions(data_root, users=["user00"]))
    target = tmp_path / "t"
    target.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "user00").symlink_to(outside)
    with pytest.raises(RestoreError, match="escapes"):
        restore(repo, s["snapshot_id"], RestoreOptions(target=target, overwrite=True))
    assert not list(outside.iterdir())


def test_excluded_names_are_exactly_those_the_patterns_match() -> None:
    """``sources.excluded`` (a substring and a set lookup, run for every scanned file) says
    what the documented ``EXCLUDE`` patterns say, for names near and far from them."""
    import fnmatch
    import re

    from lightkeeper.backup import sources
    from lightkeeper.gate import GATE_FILES

    patterns = re.compile("|".join(fnmatch.translate(p) for p in sources.EXCLUDE))
    names = ["a.tmp.b", ".tmp.", "x.tmp", "tmp.x", "a.tmp.", ".tmp.z", "a\n.tmp.b", "a.TMP.b",
             "kv_store_full_docs.json", "graph.graphml.tmp.123", "", *GATE_FILES,
             *(f"x{g}" for g in GATE_FILES), *(f"{g}.1" for g in GATE_FILES)]
    for name in names:
        assert sources.excluded(name) == (patterns.match(name) is not None), name
    assert sum(map(sources.excluded, names)) == 8
