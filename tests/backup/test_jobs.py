"""Job behaviour without the agent: cancellation, low priority, schedules, summaries."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from lightkeeper import config as config_mod
from lightkeeper.backup import calls
from lightkeeper.backup.priority import NICE
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.backup.verify import verify
from lightkeeper.progress import JobCancelled, LocalContext


def test_cancel_mid_backup_commits_nothing_and_releases_the_lock(data_root: Path,
                                                                 repo: Repository) -> None:
    first = run_backup(repo, BackupOptions(data_root))
    (data_root / "user01" / "new.bin").write_bytes(os.urandom(2 << 20))
    seen = []

    def on_progress(p: dict[str, Any]) -> None:
        seen.append(p["phase"])
        if p["phase"] == "backup" and p["files_done"] >= 1:
            ctx.cancel()

    ctx = LocalContext(on_progress=on_progress)
    with pytest.raises(JobCancelled):
        run_backup(repo, BackupOptions(data_root), ctx)
    assert repo.snapshot_ids() == [first["snapshot_id"]]
    assert not list((repo.path / "locks").iterdir())
    assert not repo.temp_files()
    assert verify(Repository.open(repo.path, repo.path.parent / "keys" / "repo.key"),
                  full=True)["ok"]
    assert "scan" in seen and "backup" in seen


def test_jobs_run_at_low_priority(data_root: Path, repo: Repository) -> None:
    got: dict[str, int] = {}

    def on_progress(p: dict[str, Any]) -> None:
        got["during"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def work() -> None:
        got["before"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        run_backup(repo, BackupOptions(data_root), LocalContext(on_progress=on_progress))
        got["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert got["during"] >= NICE > got["before"]
    if os.geteuid() == 0:  # raising it back needs CAP_SYS_NICE
        assert got["after"] == got["before"]


class _Services:
    def __init__(self, cfg: config_mod.Config) -> None:
        self.cfg = cfg
        self.samples: list[tuple[float, str, str, float]] = []

    def add_samples(self, samples: Any) -> None:
        self.samples += list(samples)

    def metrics_snapshot(self, dest: Path) -> Path:
        Path(dest).write_bytes(b"metrics copy")
        return Path(dest)


def test_schedules_and_job_summaries_through_calls(lk_env: dict[str, str], tmp_path: Path
                                                   ) -> None:
    from tests.datacopy import generated

    cfg = config_mod.load(overrides=[("backup.schedule", "hourly"),
                                     ("backup.prune_schedule", "daily"),
                                     ("backup.drill_schedule", "every 7d")], read_system=False)
    services = _Services(cfg)
    kinds = {k: (text, params) for k, text, params in calls.SCHEDULES(services)}
    assert kinds["backup"] == ("hourly", {"tags": ["scheduled"], "jitter_s": 120.0})
    assert kinds["forget"] == ("daily", {"prune": True})
    assert "drill" in kinds and "verify" not in kinds
    generated(cfg.path("paths.data_root"), users=2, seed=8, total_mb=1)
    s = calls.job_backup(LocalContext(), services, {"tags": ["t"]})
    for key in ("duration_s", "bytes_read", "bytes_added", "dedup_ratio", "repository_size",
                "files"):
        assert s[key] is not None, key
    assert {m for _, m, _, _ in services.samples} >= {
        "backup_last_success_timestamp_seconds", "backup_added_bytes",
        "backup_repository_size_bytes", "backup_duration_seconds"}
    snaps = calls.call_snapshots(services, {})["snapshots"]
    assert snaps[0]["tags"] == ["t"]
    shown = calls.call_show(services, {"snapshot": snaps[0]["short_id"]})
    assert shown["databases"]["metrics"]["kind"] == "duckdb"
    key = calls.call_key_export(services, {})
    raw = Path(key["key_file"]).read_text()
    assert key["fingerprint"] in raw and '"enc"' in raw
    assert all(str(v) not in raw or k in ("fingerprint", "repo_id", "key_file")
               for k, v in key.items() if k != "note")
    v = calls.job_verify(LocalContext(), services, {"sample_pct": 50})
    assert v["ok"]
    stats = calls.call_stats(services, {})
    assert stats["verified"]["newest_verified"] == snaps[-1]["id"]
    assert stats["newest_snapshot"]["id"] == snaps[-1]["id"]
    # a scheduled run waits its jitter, cancellably
    ctx = LocalContext(on_progress=lambda p: ctx.cancel() if p["phase"] == "waiting" else None)
    with pytest.raises(JobCancelled):
        calls.job_backup(ctx, services, {"jitter_s": 3600})
    f = calls.job_forget(LocalContext(), services, {"keep_last": 1, "prune": True})
    assert f["kept_count"] == 1 and "prune" in f
    with pytest.raises(calls.CallError, match="sample_pct"):
        calls.job_verify(LocalContext(), services, {"sample_pct": 500})
    with pytest.raises(calls.CallError, match="invalid user id"):
        calls.job_backup(LocalContext(), services, {"users": ["../etc"]})


def test_repository_summary_is_kept_by_jobs_and_follows_outside_changes(
        lk_env: dict[str, str], tmp_path: Path) -> None:
    """backup.stats and backup.snapshots answer from a summary the jobs keep; a change made
    outside the agent's jobs (another process writing the repository) is still seen."""
    from lightkeeper.backup import summary as summary_mod
    from tests.datacopy import generated

    cfg = config_mod.load(read_system=False)
    services = _Services(cfg)
    generated(cfg.path("paths.data_root"), users=2, seed=3, total_mb=1)
    first = calls.job_backup(LocalContext(), services, {})
    repo_path = cfg.path("backup.repository")
    cache_file = cfg.path("paths.state_dir") / "backup" / "summary.json"
    assert cache_file.stat().st_mode & 0o777 == 0o600
    kept = summary_mod.SummaryCache(cache_file).get(repo_path)  # written by the job itself
    assert kept is not None and [s["id"] for s in kept["snapshots"]] == [first["snapshot_id"]]
    assert calls.call_stats(services, {})["snapshots"] == 1
    # another process adds a snapshot: the signature moves, the next call recomputes
    repo = Repository.open(repo_path, cfg.path("backup.key_file"))
    outside = run_backup(repo, BackupOptions(cfg.path("paths.data_root"),
                                             metrics=services.metrics_snapshot))
    repo.close()
    stats = calls.call_stats(services, {})
    assert stats["snapshots"] == 2
    assert stats["newest_snapshot"]["id"] == outside["snapshot_id"]
    assert [s["id"] for s in calls.call_snapshots(services, {})["snapshots"]] == [
        first["snapshot_id"], outside["snapshot_id"]]
    # a forget job refreshes it from the repository it has open
    calls.job_forget(LocalContext(), services, {"keep_last": 1, "prune": True})
    kept = summary_mod.SummaryCache(cache_file).get(repo_path)
    assert kept is not None and len(kept["snapshots"]) == 1
    assert calls.call_stats(services, {})["snapshots"] == 1
    # a backup refreshes it from the summary before it (new snapshots read, the chunk count
    # kept while the index is unchanged): the same figures as a full recomputation
    for _ in range(2):  # one that adds chunks (the metrics store changed), one that may not
        calls.job_backup(LocalContext(), services, {})
        kept = summary_mod.SummaryCache(cache_file).get(repo_path)
        repo = Repository.open(repo_path, cfg.path("backup.key_file"))
        try:
            assert kept == json.loads(json.dumps(summary_mod.compute(repo)))
        finally:
            repo.close()
