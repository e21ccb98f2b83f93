"""Sync to real sshd zones: first and incremental sync, idempotence, snapshots published last,
and the listing cache."""

from __future__ import annotations

import json
import os

from lightkeeper.backup.zones.local_repo import scan_files, scan_snapshot_files
from tests.zones.repo_helper import write_user_files


def remote_state(root) -> dict[str, tuple[int, int]]:
    """rel path -> (size, inode) of every repository file on the zone (temp files aside)."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".lktmp"):
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_ino)
    return out


def local_files(repo_path) -> set[str]:
    return set(scan_files(repo_path)) | {f"snapshots/{s}" for s in scan_snapshot_files(repo_path)}


def test_first_and_incremental_sync_to_two_zones(lab, run_cli):
    lab.add_zone("a")
    lab.add_zone("b")
    write_user_files(lab.data_root, "alice", 6, 200_000, 1)
    write_user_files(lab.data_root, "bob", 4, 150_000, 2)
    s1 = lab.backup()
    services = lab.services()
    summary = lab.run_job("replicate", services)
    assert set(summary["zones"]) == {"a", "b"} and not summary["failed"]
    for name in ("a", "b"):
        r = summary["zones"][name]
        assert r["snapshots_published"] == [s1]
        assert r["listing"] == "full"
        assert set(remote_state(lab.remote(name))) == local_files(lab.repo.path)
    # the remote copy is byte-identical
    for rel in local_files(lab.repo.path):
        assert (lab.remote("a") / rel).read_bytes() == (lab.repo.path / rel).read_bytes()
    assert not (lab.remote("a") / "locks").exists()
    events = [e for e, _ in services.events]
    assert events.count("zone.sync") == 2
    assert services.latest("zone_lag_seconds", "a") == 0.0
    assert services.latest("zone_up", "b") == 1.0
    assert services.latest("zone_sent_bytes_total", "a") > 0

    before = remote_state(lab.remote("a"))
    # incremental: one user changes, one is added
    write_user_files(lab.data_root, "alice", 2, 200_000, 3)
    write_user_files(lab.data_root, "carol", 2, 50_000, 4)
    s2 = lab.backup()
    new_files = local_files(lab.repo.path) - set(before)
    summary = lab.run_job("replicate", zones=["a"])
    r = summary["zones"]["a"]
    assert r["snapshots_published"] == [s2]
    assert r["listing"] == "cached"
    assert r["files_uploaded"] == len([f for f in new_files if not f.startswith("snapshots/")])
    after = remote_state(lab.remote("a"))
    for rel, (size, ino) in before.items():
        assert after[rel] == (size, ino), f"{rel} was sent again"
    assert set(after) == local_files(lab.repo.path)

    # no change: nothing sent, cached listing, still complete
    r = lab.run_job("replicate", zones=["a"])["zones"]["a"]
    assert r["bytes_sent"] == 0 and r["files_uploaded"] == 0 and r["listing"] == "cached"
    assert remote_state(lab.remote("a")) == after

    # through the CLI: zone b catches up, zones list shows both current
    out = run_cli("replicate", "b", "--local", "--json").stdout.strip().splitlines()
    final = json.loads(out[-1])
    assert final["job"]["state"] == "succeeded"
    assert final["job"]["summary"]["zones"]["b"]["snapshots_published"] == [s2]
    zones = json.loads(run_cli("zones", "list", "--local", "--json").stdout)
    assert {z["name"]: z["lag_seconds"] for z in zones} == {"a": 0, "b": 0}
    assert all(z["remote_snapshots"] == 2 for z in zones)
    text = run_cli("zones", "list", "--local").stdout
    assert "ZONE" in text and "LAG" in text


def test_cache_is_revalidated_when_the_zone_changes(lab):
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 3, 100_000, 1)
    lab.backup()
    lab.run_job("replicate")
    # someone else rewrites the zone (token changes): the next sync lists in full and repairs
    remote = lab.remote("a")
    victim = next(p for p in (remote / "data").rglob("*") if p.is_file())
    victim.unlink()
    (remote / ".lightkeeper-sync").write_text("someone-else")
    r = lab.run_job("replicate")["zones"]["a"]
    assert r["listing"] == "full"
    assert r["files_uploaded"] == 1
    assert victim.exists()


def test_interrupted_upload_temp_files_are_discarded(lab):
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 3, 100_000, 1)
    lab.backup()
    remote = lab.remote("a")
    (remote / "data" / "ab").mkdir(parents=True)
    stale = remote / "data" / "ab" / ("ab" + "0" * 62 + ".lktmp")
    stale.write_bytes(b"half a pack")
    r = lab.run_job("replicate")["zones"]["a"]
    assert r["temps_removed"] == 1
    assert not stale.exists()
    assert not [p for p in remote.rglob("*.lktmp")]
    os.sync()


def test_cancelled_sync_publishes_nothing_and_resumes(lab):
    from lightkeeper.progress import JobCancelled, LocalContext

    lab.add_zone("a", bandwidth_limit_kbps=8192)
    lab.repo.config["pack_size"] = 1 << 20
    write_user_files(lab.data_root, "alice", 4, 2_000_000, 9)
    sid = lab.backup()
    ctx = LocalContext()

    def on_progress(p: dict) -> None:
        if p.get("phase") == "upload" and p.get("bytes_done", 0) > 1 << 20:
            ctx.cancel()

    ctx._on_progress = on_progress
    import pytest

    with pytest.raises(JobCancelled):
        lab.run_job("replicate", ctx=ctx)
    remote = lab.remote("a")
    assert not list((remote / "snapshots").glob("*"))
    partial = remote_state(remote)
    assert partial, "some files should have arrived before the cancel"
    r = lab.run_job("replicate")["zones"]["a"]
    assert r["snapshots_published"] == [sid]
    after = remote_state(remote)
    assert all(after[k] == v for k, v in partial.items())
    assert set(after) == local_files(lab.repo.path)


def test_several_channels_over_several_connections(lab):
    from lightkeeper.backup.zones.local_repo import LocalRepo
    from lightkeeper.backup.zones.sync import SyncOptions, sync_zone
    from lightkeeper.progress import LocalContext

    lab.add_zone("a")
    lab.repo.config["pack_size"] = 1 << 19
    write_user_files(lab.data_root, "alice", 6, 600_000, 21)
    write_user_files(lab.data_root, "bob", 30, 4_000, 22)
    sid = lab.backup()
    opts = SyncOptions(channels=4, connections=2, adaptive=False)
    r = sync_zone(lab.zone("a"), LocalRepo(lab.repo.path), lab.zone_dir("a"), LocalContext(),
                  opts)
    assert r["channels"] == 4 and r["snapshots_published"] == [sid]
    assert set(remote_state(lab.remote("a"))) == local_files(lab.repo.path)
    for rel in local_files(lab.repo.path):
        assert (lab.remote("a") / rel).read_bytes() == (lab.repo.path / rel).read_bytes()
    r = lab.run_job("replicate")["zones"]["a"]
    assert r["bytes_sent"] == 0 and r["files_uploaded"] == 0


def test_a_backup_can_run_while_a_sync_is_in_progress(lab):
    from lightkeeper.progress import LocalContext

    lab.add_zone("a", bandwidth_limit_kbps=8192)
    lab.repo.config["pack_size"] = 1 << 20
    write_user_files(lab.data_root, "alice", 3, 2_000_000, 31)
    s1 = lab.backup()
    backups: list[str] = []

    def on_progress(p: dict) -> None:
        if not backups and p.get("phase") == "upload" and p.get("bytes_done", 0) > 1 << 20:
            write_user_files(lab.data_root, "bob", 2, 300_000, 32)
            backups.append(lab.backup())  # would fail if the sync held the repository

    r = lab.run_job("replicate", ctx=LocalContext(on_progress=on_progress))["zones"]["a"]
    assert backups, "the backup should have run during the upload"
    assert s1 in r["snapshots_published"]
    r = lab.run_job("replicate")["zones"]["a"]
    assert backups[0] in r["remote_snapshots"]
    assert set(remote_state(lab.remote("a"))) == local_files(lab.repo.path)


def test_a_kept_session_serves_the_next_sync_of_the_same_zone_only(lab):
    """With replication.keep_open_seconds, the next sync of the zone takes the open session
    (no new SSH connection on the server); a changed known_hosts file, a server that went away
    or keep_open 0 means a fresh session, and the sync still succeeds at its first attempt."""
    import psutil

    from lightkeeper.backup.zones.local_repo import LocalRepo
    from lightkeeper.backup.zones.session_pool import POOL
    from lightkeeper.backup.zones.sync import SyncOptions, sync_zone

    server = lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 3, 5_000, 31)
    sid = lab.backup()
    opts = SyncOptions(keep_open=30)

    def sync() -> dict:
        return sync_zone(lab.zone("a"), LocalRepo(lab.repo.path), lab.zone_dir("a"), None,
                         opts)

    def sessions() -> int:  # sshd's per-connection children
        return len(psutil.Process(server.proc.pid).children())

    assert sync()["snapshots_published"] == [sid]
    assert len(POOL) == 1 and sessions() == 1
    for _ in range(2):
        r = sync()
        assert r["listing"] == "cached" and r["bytes_sent"] == 0 and r["attempts"] == 1
        assert sessions() == 1  # the same connection, nothing new on the server
    # known_hosts rewritten (same content, new mtime): trust is checked again on a new session
    kh = lab.zone("a").known_hosts
    kh.write_text(kh.read_text())
    os.utime(kh, ns=(kh.stat().st_atime_ns, kh.stat().st_mtime_ns + 10**9))
    assert sync()["attempts"] == 1
    assert len(POOL) == 1
    # the server restarted while the session was idle: a fresh session, not a failed attempt
    server.kill()
    server.start()
    write_user_files(lab.data_root, "alice", 1, 3_000, 32)
    sid2 = lab.backup()
    r = sync()
    assert r["attempts"] == 1 and r["snapshots_published"] == [sid2]
    # keep_open 0: closed at the end, nothing kept
    POOL.close_all()
    opts.keep_open = 0
    sync()
    assert len(POOL) == 0


def test_a_probe_keeps_its_session_for_the_next_sync_and_probe(lab):
    """The agent's periodic probe hands its session to the pool: the operator's next sync of
    the zone takes it (no new connection, no new sftp-server on the zone), and so does the
    next probe; with keep_open 0 the probe keeps nothing."""
    import psutil

    from lightkeeper.backup.zones.local_repo import LocalRepo
    from lightkeeper.backup.zones.session_pool import POOL
    from lightkeeper.backup.zones.status import probe
    from lightkeeper.backup.zones.sync import SyncOptions, sync_zone

    server = lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 3, 5_000, 31)
    sid = lab.backup()

    def sessions() -> int:  # sshd's per-connection children
        return len(psutil.Process(server.proc.pid).children())

    ok, err, snaps = probe(lab.zone("a"), keep_open=30)
    assert (ok, err, snaps) == (True, None, {})
    assert len(POOL) == 1 and sessions() == 1
    r = sync_zone(lab.zone("a"), LocalRepo(lab.repo.path), lab.zone_dir("a"), None,
                  SyncOptions(keep_open=30))
    assert r["session"] == "kept" and r["attempts"] == 1 and r["snapshots_published"] == [sid]
    assert sessions() == 1
    ok, _, snaps = probe(lab.zone("a"), keep_open=30)
    assert ok and snaps is not None and set(snaps) == {sid}
    assert len(POOL) == 1 and sessions() == 1
    POOL.close_all()
    ok, _, _ = probe(lab.zone("a"), keep_open=0)
    assert ok and len(POOL) == 0
    # a zone no longer configured: the probe round closes its kept session
    assert probe(lab.zone("a"), keep_open=30)[0] and len(POOL) == 1
    assert POOL.retain({"a", "b"}) == 0 and len(POOL) == 1
    assert POOL.retain({"b"}) == 1 and len(POOL) == 0


def test_a_kept_session_that_stopped_answering_is_not_handed_out(lab, monkeypatch):
    """A kept connection can die without a reset (the path to the zone went away): the
    transport still looks active. It must not be handed out, or the next sync waits on the
    channel's 60-s timeout; the probe then opens a fresh session and finds the zone up."""
    import signal

    import psutil

    from lightkeeper.backup.zones import session_pool
    from lightkeeper.backup.zones.local_repo import LocalRepo
    from lightkeeper.backup.zones.session_pool import POOL
    from lightkeeper.backup.zones.status import probe
    from lightkeeper.backup.zones.sync import SyncOptions, sync_zone

    server = lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 2, 5_000, 33)
    sid = lab.backup()
    monkeypatch.setattr(session_pool, "CHECK_TIMEOUT_S", 0.5)
    assert probe(lab.zone("a"), keep_open=30)[0]
    (child,) = psutil.Process(server.proc.pid).children()
    stuck = [child, *child.children(recursive=True)]  # the session's sshd and sftp-server
    for proc in stuck:
        proc.send_signal(signal.SIGSTOP)
    try:
        assert POOL.take(lab.zone("a")) is None
        assert len(POOL) == 0
        assert probe(lab.zone("a"), keep_open=30)[0]  # not reported unreachable
        r = sync_zone(lab.zone("a"), LocalRepo(lab.repo.path), lab.zone_dir("a"), None,
                      SyncOptions(keep_open=30))
        assert r["session"] == "kept" and r["attempts"] == 1
        assert r["snapshots_published"] == [sid]
    finally:
        for proc in stuck:
            try:
                proc.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass


def test_a_loopback_zone_is_synced_on_one_channel(lab):
    """Extra channels only hide latency: to a zone on this host the sync uses one, whatever
    replication.connections says (a second would cost the server another sftp-server)."""
    from lightkeeper.backup.zones.local_repo import LocalRepo
    from lightkeeper.backup.zones.sync import SyncOptions, sync_zone

    lab.add_zone("a")
    lab.repo.config["pack_size"] = 1 << 19
    write_user_files(lab.data_root, "alice", 4, 600_000, 41)
    sid = lab.backup()
    r = sync_zone(lab.zone("a"), LocalRepo(lab.repo.path), lab.zone_dir("a"), None,
                  SyncOptions(channels=4))
    assert r["channels"] == 1 and r["snapshots_published"] == [sid]
    assert set(remote_state(lab.remote("a"))) == local_files(lab.repo.path)


def test_uploads_write_as_much_as_openssh_takes(lab, tmp_path):
    """OpenSSH states its write limit (limits@openssh.com); a file many such writes long
    arrives whole under its final name, with no temp file left."""
    from lightkeeper.backup.zones import remote_ops
    from lightkeeper.backup.zones.connection import session
    from lightkeeper.backup.zones.remote_path import RemoteRoot

    lab.add_zone("a")
    lab.trust("a")
    zone = lab.zone("a")
    body = os.urandom(3 * 1024 * 1024 + 12345)
    with session(zone) as sess:
        size = remote_ops.write_size(sess.sftp)
        assert size > remote_ops.WRITE_DEFAULT  # OpenSSH 8.5+: 255 KiB
        root = RemoteRoot(zone.name, zone.remote_path)
        remote_ops.ensure_dir(sess.sftp, root.root)
        src = tmp_path / "big"
        src.write_bytes(body)
        with open(src, "rb") as fh:
            sent = remote_ops.upload_stream(sess.sftp, root, "config", fh, len(body))
    assert sent == len(body)
    assert (lab.remote("a") / "config").read_bytes() == body
    assert [p.name for p in lab.remote("a").iterdir()] == ["config"]


def test_references_worked_out_ahead_are_those_asked_for(lab):
    """prefetch_references answers referenced_files as the repository does, and raises what
    the repository raises for a snapshot it cannot read."""
    import pytest

    from lightkeeper.backup.zones.local_repo import LocalRepo, default_opener

    write_user_files(lab.data_root, "alice", 3, 100_000, 51)
    s1 = lab.backup()
    write_user_files(lab.data_root, "bob", 2, 100_000, 52)
    s2 = lab.backup()
    local = LocalRepo(lab.repo.path, default_opener(lab.cfg()))
    local.prefetch_references([s1, s2, "0" * 64])
    try:
        assert local.referenced_files(s2) == set(lab.repo.referenced_files(s2))
        assert local.referenced_files(s1) == set(lab.repo.referenced_files(s1))
        with pytest.raises(Exception) as ahead:
            local.referenced_files("0" * 64)
        with pytest.raises(Exception) as direct:
            lab.repo.referenced_files("0" * 64)
        assert type(ahead.value) is type(direct.value)
    finally:
        local.close()
