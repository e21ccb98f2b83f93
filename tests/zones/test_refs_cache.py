"""Which files a snapshot references, kept between syncs (backup/zones/refs_cache.py): the
cached answer is the repository's own, it serves a later sync without opening the repository,
and it is dropped when a prune moved chunks, a file it names vanished, it belongs to another
repository, or the file is damaged."""

from __future__ import annotations

import json
from pathlib import Path

from lightkeeper.backup.prune import forget, prune
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.retention import Policy
from lightkeeper.backup.zones.local_repo import LocalRepo, default_opener
from tests.zones.repo_helper import make_repo, write_user_files


def _answers(lab, cache: Path, sids: list[str], opener: bool = True) -> dict[str, set | None]:
    local = LocalRepo(lab.repo.path, default_opener(lab.cfg()) if opener else None,
                      refs_cache=cache)
    try:
        local.files()
        return {sid: local.referenced_files(sid) for sid in sids}
    finally:
        local.close()


def test_cached_references_match_the_repository_and_serve_without_it(lab, tmp_path):
    cache = tmp_path / "state" / "snapshot-references.json"
    write_user_files(lab.data_root, "alice", 3, 100_000, 61)
    s1 = lab.backup()
    write_user_files(lab.data_root, "bob", 2, 100_000, 62)
    s2 = lab.backup()
    truth = {s: set(lab.repo.referenced_files(s)) for s in (s1, s2)}
    assert _answers(lab, cache, [s1, s2]) == truth
    assert cache.stat().st_mode & 0o077 == 0
    # a later sync answers from the cache: without any way to open the repository
    assert _answers(lab, cache, [s1, s2], opener=False) == truth
    # a snapshot the repository no longer holds leaves the cache when it is next used
    lab.repo.delete_snapshot(s1)  # as a forget does
    _answers(lab, cache, [s2], opener=False)
    assert set(json.loads(cache.read_text())["snapshots"]) == {s2}


def test_a_prune_that_moves_chunks_invalidates_the_cached_answer(lab, tmp_path):
    cache = tmp_path / "snapshot-references.json"
    write_user_files(lab.data_root, "alice", 2, 200_000, 63)
    lab.backup()  # the snapshot the forget removes
    write_user_files(lab.data_root, "alice", 1, 200_000, 64)  # file 0 rewritten
    s2 = lab.backup()
    before = set(lab.repo.referenced_files(s2))
    assert _answers(lab, cache, [s2]) == {s2: before}
    forget(lab.repo, Policy(last=1))
    out = prune(lab.repo, low_priority=False)
    assert out["packs_repack"] > 0  # chunks of s2 moved to new packs and index files
    cfg = lab.cfg()
    after = set(Repository.open(cfg.path("backup.repository"),
                                cfg.path("backup.key_file")).referenced_files(s2))
    assert after != before
    # the cached answer relied on index files the prune deleted: not served any more
    assert _answers(lab, cache, [s2], opener=False) == {s2: None}
    assert _answers(lab, cache, [s2]) == {s2: after}
    assert _answers(lab, cache, [s2], opener=False) == {s2: after}


def test_a_vanished_file_another_repository_or_a_damaged_cache_is_not_served(lab, tmp_path):
    cache = tmp_path / "snapshot-references.json"
    write_user_files(lab.data_root, "alice", 2, 100_000, 65)
    s1 = lab.backup()
    truth = set(lab.repo.referenced_files(s1))
    assert _answers(lab, cache, [s1]) == {s1: truth}
    # the same cache file seen from another repository
    other = make_repo(tmp_path / "other", tmp_path / "other.key")
    other.close()
    local = LocalRepo(other.path, None, refs_cache=cache)
    local.files()
    assert local.referenced_files(s1) is None
    # a file the answer names is gone (its pack deleted by hand): worked out again
    saved = cache.read_bytes()
    doc = json.loads(saved)
    doc["snapshots"][s1]["files"].append("data/00/" + "0" * 64)
    cache.write_text(json.dumps(doc))
    assert _answers(lab, cache, [s1], opener=False) == {s1: None}
    assert _answers(lab, cache, [s1]) == {s1: truth}
    # damaged: ignored, and rewritten whole by the next answer
    cache.write_bytes(saved[: len(saved) // 2])
    assert _answers(lab, cache, [s1], opener=False) == {s1: None}
    assert _answers(lab, cache, [s1]) == {s1: truth}
    assert json.loads(cache.read_text())["snapshots"][s1]["files"] == sorted(truth)
