"""Failures against real sshd zones: sshd killed mid-sync (resume), a zone down while others
replicate (lag, alert), a full remote disk, corruption found by verify --full."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from lightkeeper.backup.zones.errors import RemoteSpaceError, ZoneUnreachable
from lightkeeper.backup.zones.local_repo import LocalRepo
from lightkeeper.backup.zones.sync import SyncOptions, sync_zone
from lightkeeper.progress import LocalContext
from tests.zones.repo_helper import write_user_files
from tests.zones.test_sync import local_files, remote_state


def _killer(server, total_fraction: float, restart_after: float | None = None):
    """A progress callback that SIGKILLs the zone's sshd once a fraction of the bytes went."""
    fired = threading.Event()

    def on_progress(p: dict) -> None:
        if fired.is_set() or p.get("phase") != "upload" or not p.get("bytes_total"):
            return
        if p["bytes_done"] >= total_fraction * p["bytes_total"]:
            fired.set()
            server.kill()
            if restart_after is not None:
                threading.Timer(restart_after, server.start).start()

    return on_progress, fired


def test_sshd_killed_mid_sync_then_resume_sends_only_the_rest(lab, run_cli):
    # 20 MiB of incompressible data in 1 MiB packs, sent at 16 MiB/s so the kill lands mid-way
    server = lab.add_zone("a", bandwidth_limit_kbps=16384)
    lab.set("replication.retries", "0")
    lab.repo.config["pack_size"] = 1 << 20
    write_user_files(lab.data_root, "alice", 10, 2_000_000, 1)
    sid = lab.backup()
    on_progress, fired = _killer(server, 0.4)
    with pytest.raises(ZoneUnreachable):
        lab.run_job("replicate", ctx=LocalContext(on_progress=on_progress))
    assert fired.is_set()
    remote = lab.remote("a")
    arrived = remote_state(remote)
    # nothing half-visible: no snapshot, and whatever has a final name is whole
    assert not (remote / "snapshots").exists() or not list((remote / "snapshots").iterdir())
    for rel, (size, _ino) in arrived.items():
        assert size == (lab.repo.path / rel).stat().st_size
    assert 0 < len(arrived) < len(local_files(lab.repo.path))
    status = json.loads(run_cli("zones", "status", "a", "--local", "--json").stdout)
    assert status["failures_total"] == 1 and status["reachable"] is False
    assert "a" in status["last_error"]

    server.start()
    r = lab.run_job("replicate")["zones"]["a"]
    assert r["snapshots_published"] == [sid]
    after = remote_state(remote)
    for rel, (size, ino) in arrived.items():
        assert after[rel] == (size, ino), f"{rel} was sent again"
    missing = local_files(lab.repo.path) - set(arrived)
    assert r["files_uploaded"] == len([m for m in missing if not m.startswith("snapshots/")])
    assert not list(remote.rglob("*.lktmp"))
    v = lab.run_job("zone_verify", zone="a", full=True)
    assert v["problems"] == [] and v["snapshots"] == 1


def test_connection_lost_and_back_within_the_retries(lab):
    server = lab.add_zone("a", bandwidth_limit_kbps=16384)
    lab.repo.config["pack_size"] = 1 << 20
    write_user_files(lab.data_root, "alice", 6, 2_000_000, 2)
    sid = lab.backup()
    on_progress, fired = _killer(server, 0.3, restart_after=0.5)
    r = lab.run_job("replicate", ctx=LocalContext(on_progress=on_progress))["zones"]["a"]
    assert fired.is_set()
    assert r["attempts"] >= 2 and r["snapshots_published"] == [sid]
    assert lab.run_job("zone_verify", zone="a", full=True)["problems"] == []


def _age_snapshot(lab, sid: str, seconds: float) -> str:
    """Rewrite a snapshot as if taken ``seconds`` ago (its manifest carries the time)."""
    repo = lab.repo
    doc = repo.read_snapshot(sid)
    doc.pop("id")
    doc["time"] = doc["time"] - seconds
    new = repo.write_snapshot(doc)
    repo.delete_snapshot(sid)
    return new


def test_one_zone_down_others_replicate_and_the_lag_alert_fires_then_clears(lab, tmp_path):
    lab.add_zone("a")
    down = lab.add_zone("b")
    lab.set("replication.retries", "1")
    lab.set("replication.max_lag_minutes", "1")
    write_user_files(lab.data_root, "alice", 3, 100_000, 1)
    sid = _age_snapshot(lab, lab.backup(), 3600)
    down.kill()
    services = lab.services()
    summary = lab.run_job("replicate", services)
    assert summary["state"] == "partial"
    assert summary["zones"]["a"]["snapshots_published"] == [sid]
    assert "b" in summary["failed"] and "cannot connect" in summary["failed"]["b"]
    assert services.latest("zone_up", "b") == 0.0
    assert services.latest("zone_up", "a") == 1.0
    assert services.latest("zone_lag_seconds", "b") >= 3600
    assert services.latest("zone_lag_seconds", "a") == 0.0
    assert services.latest("zone_failures_total", "b") == 1.0
    failed = [c for e, c in services.events if e == "zone.sync" and c.get("outcome") == "failed"]
    assert [c["zone"] for c in failed] == ["b"]

    # the agent's own alert rules, evaluated on these samples with a real metrics store
    from lightkeeper.agent.alerts import AlertEvaluator, default_rules
    from lightkeeper.agent.store.db import Store

    store = Store(tmp_path / "metrics.duckdb")
    try:
        ev = AlertEvaluator(default_rules(lab.cfg()), store, lambda *a, **k: None)

        def current(samples):
            return {(m, lab_): (ts, v) for ts, m, lab_, v in samples}

        changes = ev.evaluate(current(services.samples))
        assert {"rule": "zone_lag", "label": "b", "change": "firing",
                "severity": "critical"} in changes
        assert not [c for c in changes if c["label"] == "a"]
        # the periodic status job keeps the lag growing while the zone stays down
        st = lab.run_job("zone_status", services)
        assert st["zones"]["b"]["reachable"] is False
        down.start()
        lab.run_job("replicate", services, zones=["b"])
        assert services.latest("zone_lag_seconds", "b") == 0.0
        assert services.latest("zone_up", "b") == 1.0
        changes = ev.evaluate(current(services.samples))
        assert {"rule": "zone_lag", "label": "b", "change": "resolved"} in changes
    finally:
        store.close()


@pytest.fixture
def small_tmpfs(small_disk: Any) -> Path:
    return small_disk(4)


@pytest.mark.parametrize("pack_size", [1 << 21, 1 << 18], ids=["large-files", "small-batches"])
def test_remote_disk_full_is_a_clear_error_with_no_half_visible_snapshot(lab, small_tmpfs,
                                                                        pack_size):
    lab.add_zone("a", remote_path=small_tmpfs / "repo")
    lab.repo.config["pack_size"] = pack_size
    write_user_files(lab.data_root, "alice", 4, 2_000_000, 5)
    lab.backup()
    remote = small_tmpfs / "repo"
    # refused before sending anything
    with pytest.raises(RemoteSpaceError) as info:
        lab.run_job("replicate")
    assert "remote disk full" in str(info.value) and "'a'" in str(info.value)
    assert not remote_state(remote)
    # without the up-front check the disk fills mid-transfer: same clear error, no snapshot,
    # no temp file left behind
    local = LocalRepo(lab.repo.path)
    with pytest.raises(RemoteSpaceError) as info:
        sync_zone(lab.zone("a"), local, lab.zone_dir("a"), LocalContext(),
                  SyncOptions(check_space=False, retries=0))
    assert "remote disk full" in str(info.value)
    assert not (remote / "snapshots").exists() or not list((remote / "snapshots").iterdir())
    assert not list(remote.rglob("*.lktmp"))
    for rel, (size, _ino) in remote_state(remote).items():
        assert size == (lab.repo.path / rel).stat().st_size


def test_verify_full_finds_a_corrupted_remote_object(lab, run_cli):
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 3, 300_000, 7)
    sid = lab.backup()
    lab.run_job("replicate")
    remote = lab.remote("a")
    pack = max((p for p in (remote / "data").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))  # same size: only hashing can tell
    quick = run_cli("zones", "verify", "a", "--local")
    assert quick.returncode == 0 and "OK" in quick.stdout
    full = run_cli("zones", "verify", "a", "--full", "--local", check=False)
    assert full.returncode == 4, full.stdout + full.stderr
    rel = str(pack.relative_to(remote))
    assert rel in full.stdout and "corrupted" in full.stdout and sid[:12] in full.stdout
    # a missing object makes the snapshot incomplete even for the quick check
    pack.unlink()
    v = lab.run_job("zone_verify", zone="a")
    assert v["state"] == "problems"
    assert v["snapshots_affected"] == [sid]
