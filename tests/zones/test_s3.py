"""S3 zones against a real S3 server (SeaweedFS on 127.0.0.1): the whole lifecycle (sync,
an agent killed mid-upload and the resume, corruption found by verify and repaired by the next
sync, prune, rebuild of a lost repository, restore), an S3 zone next to an SFTP zone, and an
S3 server that is down while the other zone goes on."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from lightkeeper.backup.zones.errors import ZoneError
from tests.zones.repo_helper import tree_digest, write_user_files

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

REPO = Path(__file__).resolve().parents[2]


def objects(lab, name: str) -> dict[str, int]:
    """Repository-relative name -> size of every object of the zone."""
    store = lab.store(name)
    try:
        listing = store.full_listing()
        return {**listing.files, **{f"snapshots/{s}": n for s, n in listing.snapshots.items()}}
    finally:
        store.close()


def _wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_s3_zone_lifecycle(lab, seaweed, tmp_path, start_agent):
    lab.add_s3_zone("s3", seaweed, keep_last=1, keep_hourly=0, keep_daily=0, keep_weekly=0,
                    keep_monthly=0, keep_yearly=0)
    lab.repo.config["pack_size"] = 12 << 20  # packs above part_size_mb: multipart uploads
    write_user_files(lab.data_root, "alice", 4, 100_000, 1)
    write_user_files(lab.data_root, "bob", 3, 4_000_000, 2)
    s1 = lab.backup()
    local = {r: (lab.repo.path / r).stat().st_size for r in lab.repo.referenced_files(s1)}
    assert max(local.values()) > 5 << 20, "test data should hold a multipart-sized pack"

    # 1. the agent dies (SIGKILL) in the middle of a multipart upload of its replicate job
    lab.zones["s3"]["bandwidth_limit_kbps"] = 1024
    lab.write_config()
    lab.repo.close()
    lab._repo = None
    agent = start_agent()
    agent.client.start_job("replicate", {})
    store = lab.store("s3")

    def part_uploaded():
        for up in store.uploads():
            if store.list_parts(up.key, up.upload_id):
                return up
        return None

    up = _wait_for(part_uploaded, 120, "a multipart upload with a part on the zone")
    agent.kill()
    # nothing is visible as a snapshot: manifests go last
    assert not [r for r in objects(lab, "s3") if r.startswith("snapshots/")]
    assert store.uploads(), "the interrupted upload should still be on the zone"
    lab.zones["s3"].pop("bandwidth_limit_kbps")
    lab.write_config()

    # 2. the next sync resumes it (parts already there are kept) and leaves no upload behind
    r = lab.run_job("replicate")["zones"]["s3"]
    assert r["snapshots_published"] == [s1]
    assert r["uploads_resumed"] >= 1 and r["parts_reused"] >= 1, r
    assert store.uploads() == []
    remote = objects(lab, "s3")
    for rel, size in local.items():
        assert remote[rel] == size
    assert up.key.split("/", 2)[2] in remote  # the same file, now whole

    # a no-change sync trusts the listing cache and sends nothing
    again = lab.run_job("replicate")["zones"]["s3"]
    assert again["listing"] == "cached" and again["bytes_sent"] == 0
    assert lab.run_job("zone_verify", zone="s3", full=True)["problems"] == []

    # 3. an object corrupted on the zone (same size, other bytes): verify --full finds it...
    victim = sorted(r for r in local if r.startswith("data/"))[0]
    data = bytearray((lab.repo.path / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    store.client.put_object(Bucket=store.bucket, Key=store.key(victim), Body=bytes(data))
    quick = lab.run_job("zone_verify", zone="s3")
    assert quick["problems"] == []  # sizes match: only hashing can tell
    v = lab.run_job("zone_verify", zone="s3", full=True)
    assert {"file": victim, "problem": "hash mismatch (corrupted)"} in v["problems"]
    assert s1 in v["snapshots_affected"] and v["state"] == "problems"
    # ...and the next sync sends it again from the local repository
    fix = lab.run_job("replicate")["zones"]["s3"]
    assert fix["files_repaired"] == 1 and fix["listing"] == "full"
    assert lab.run_job("zone_verify", zone="s3", full=True)["problems"] == []

    # 4. prune: keep_last=1 forgets s1 and deletes only what s2 does not reference
    # everything rewritten: s1's packs are referenced by s1 alone
    lab.repo.config["pack_size"] = 1 << 20
    write_user_files(lab.data_root, "alice", 4, 100_000, 4)
    write_user_files(lab.data_root, "bob", 3, 1_000_000, 3)
    s2 = lab.backup()
    assert lab.run_job("replicate")["zones"]["s3"]["snapshots_published"] == [s2]
    needed = set(lab.repo.referenced_files(s2))
    only_s1 = set(lab.repo.referenced_files(s1)) - needed
    assert only_s1
    p = lab.run_job("zone_prune", zone="s3")
    assert p["forgotten"] == [s1] and p["kept"] == [s2] and p["retained"] == []
    after = objects(lab, "s3")
    assert f"snapshots/{s1}" not in after and needed <= set(after)
    assert not (only_s1 & set(after))
    assert lab.run_job("zone_verify", zone="s3", full=True)["problems"] == []
    # the zone's retention is not undone by the next sync
    assert lab.run_job("replicate")["zones"]["s3"]["snapshots_published"] == []

    # 5. the local repository is lost: rebuild it from the bucket, then restore
    repo_path = lab.repo.path
    lab.repo.close()
    lab._repo = None
    shutil.rmtree(repo_path)
    rb = lab.run_job("zone_rebuild", zone="s3")
    assert rb["snapshots"] == 1 and rb["problems"] == []
    target = tmp_path / "restored"
    res = lab.run_job("zone_restore", zone="s3", snapshot="latest", target=str(target))
    assert res["snapshot"] == s2 and not res.get("failures")
    assert tree_digest(target) == tree_digest(lab.data_root)
    store.close()


def test_s3_and_sftp_zones_replicate_rebuild_and_restore_through_the_cli(lab, seaweed,
                                                                         run_cli, tmp_path):
    lab.add_zone("ssh")
    lab.add_s3_zone("s3", seaweed, storage_class="STANDARD")
    write_user_files(lab.data_root, "alice", 5, 300_000, 11)
    write_user_files(lab.data_root, "bob", 2, 2_000_000, 12)
    sid = lab.backup()
    out = json.loads(run_cli("replicate", "--local", "--json").stdout.splitlines()[-1])
    zones = out["job"]["summary"]["zones"]
    assert zones["ssh"]["snapshots_published"] == [sid]
    assert zones["s3"]["snapshots_published"] == [sid]
    assert f"snapshots/{sid}" in objects(lab, "s3")
    assert (lab.remote("ssh") / "snapshots" / sid).is_file()
    listed = json.loads(run_cli("zones", "list", "--local", "--json").stdout)
    by = {z["name"]: z for z in listed}
    assert by["s3"]["kind"] == "s3" and by["s3"]["where"].endswith("/lk/repo")
    assert by["s3"]["lag_seconds"] == 0 and by["ssh"]["lag_seconds"] == 0
    # the credentials never show: only where they come from
    shown = run_cli("config", "show").stdout + json.dumps(listed)
    assert lab.s3_servers["s3"].secret_key not in shown
    assert lab.s3_servers["s3"].access_key not in shown
    # an S3 zone has no host key to trust: said so, nothing recorded
    r = run_cli("zones", "trust", "s3", "--local", check=False)
    assert r.returncode != 0 and "no SSH host key" in r.stderr

    repo_path = lab.repo.path
    lab.repo.close()
    lab._repo = None
    shutil.rmtree(repo_path)
    run_cli("zones", "rebuild", "s3", "--local")
    assert (repo_path / "snapshots" / sid).is_file()
    target = tmp_path / "restored"
    run_cli("zones", "restore", "s3", "latest", "--target", str(target), "--local")
    assert tree_digest(target) == tree_digest(lab.data_root)
    # the rebuilt repository is the one both zones hold: the next sync sends nothing
    out = json.loads(run_cli("replicate", "--local", "--json").stdout.splitlines()[-1])
    assert out["job"]["summary"]["zones"]["s3"]["bytes_sent"] == 0
    assert out["job"]["summary"]["zones"]["ssh"]["bytes_sent"] == 0


def test_s3_server_down_other_zone_goes_on_and_the_unreachable_alert_fires(
        lab, seaweed, tmp_path):
    """The S3 endpoint stops answering (connections refused) while the SFTP zone works. The
    endpoint is a relay in front of the shared S3 server, so stopping it closes the port the
    zone points at without starting a SeaweedFS of the test's own (about 15 s)."""
    from tests.zones.faulty_proxy import FaultyProxy

    server = FaultyProxy(seaweed.endpoint, slowdown_every=0, drop_every=0).start()
    lab.add_zone("ssh")
    lab.add_s3_zone("s3", seaweed, endpoint_url=server.endpoint)
    lab.set("replication.retries", "1")
    lab.set("replication.unreachable_minutes", "5")
    write_user_files(lab.data_root, "alice", 3, 100_000, 1)
    sid = lab.backup()
    server.stop()
    services = lab.services()
    summary = lab.run_job("replicate", services)
    assert summary["state"] == "partial"
    assert summary["zones"]["ssh"]["snapshots_published"] == [sid]
    assert "s3" in summary["failed"] and server.endpoint in summary["failed"]["s3"]
    assert services.latest("zone_up", "s3") == 0.0
    assert services.latest("zone_up", "ssh") == 1.0
    st = lab.run_job("zone_status", services)
    assert st["zones"]["s3"]["reachable"] is False and st["zones"]["ssh"]["reachable"] is True

    from lightkeeper.agent.alerts import AlertEvaluator, default_rules
    from lightkeeper.agent.store.db import Store

    db = Store(tmp_path / "metrics.duckdb")
    try:
        ev = AlertEvaluator(default_rules(lab.cfg()), db, lambda *a, **k: None)
        current = {(m, lab_): (ts, v) for ts, m, lab_, v in services.samples}
        now = time.time()
        assert not [c for c in ev.evaluate(current, now) if c["rule"] == "zone_unreachable"]
        changes = ev.evaluate(current, now + 5 * 60 + 1)
        assert {"rule": "zone_unreachable", "label": "s3", "change": "firing"} in [
            {k: c[k] for k in ("rule", "label", "change")} for c in changes]
        assert not [c for c in changes if c["label"] == "ssh"]
    finally:
        db.close()


def test_s3_sync_rides_out_slowdown_and_dropped_connections(lab, seaweed):
    """Every 3rd request answered 503 SlowDown, every 7th PUT's connection dropped with no
    answer: the sync still completes (the SDK's backoff retries), with multipart uploads, and
    what arrived is whole."""
    from tests.zones.faulty_proxy import FaultyProxy

    proxy = FaultyProxy(seaweed.endpoint).start()
    try:
        lab.add_s3_zone("s3", seaweed)
        lab.zones["s3"]["endpoint_url"] = proxy.endpoint
        lab.write_config()
        lab.repo.config["pack_size"] = 6 << 20
        write_user_files(lab.data_root, "alice", 30, 200_000, 5)
        write_user_files(lab.data_root, "bob", 2, 3_500_000, 6)
        sid = lab.backup()
        r = lab.run_job("replicate")["zones"]["s3"]
        assert r["snapshots_published"] == [sid]
        assert proxy.slowdowns > 0 and proxy.drops > 0, (proxy.slowdowns, proxy.drops)
        proxy.slowdown_every = proxy.drop_every = 0
        assert lab.run_job("zone_verify", zone="s3", full=True)["problems"] == []
    finally:
        proxy.stop()


def test_s3_prune_never_deletes_objects_under_object_lock_retention(lab, seaweed):
    import datetime as dt

    lab.add_s3_zone("s3", seaweed, object_lock=True, keep_last=1, keep_hourly=0,
                    keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0)
    lab.repo.config["pack_size"] = 1 << 20
    sids = []
    for seed in (1, 2, 3):  # every snapshot's data is its own
        write_user_files(lab.data_root, "alice", 3, 300_000, seed)
        sids.append(lab.backup())
    s1, s2, s3 = sids
    assert lab.run_job("replicate")["zones"]["s3"]["snapshots_published"] == sids
    refs = {s: set(lab.repo.referenced_files(s)) for s in sids}
    only_s2 = sorted(r for r in refs[s2] - refs[s1] - refs[s3] if r.startswith("data/"))
    store = lab.store("s3")
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    for rel in (f"snapshots/{s1}", only_s2[0]):
        store.client.put_object_retention(Bucket=store.bucket, Key=store.key(rel),
                                          Retention={"Mode": "GOVERNANCE",
                                                     "RetainUntilDate": until})
    v = lab.run_job("zone_verify", zone="s3")
    assert v["object_lock"] is True and v["versioning"] == "Enabled"

    p = lab.run_job("zone_prune", zone="s3")
    # s1's manifest is retained: s1 stays, and with it every object it references
    assert p["forgotten"] == [s2] and set(p["kept"]) == {s1, s3}
    assert {r["file"] for r in p["retained"]} == {f"snapshots/{s1}", only_s2[0]}
    after = objects(lab, "s3")
    assert f"snapshots/{s1}" in after and f"snapshots/{s2}" not in after
    assert refs[s1] | refs[s3] <= set(after)
    assert only_s2[0] in after  # under retention: not deleted
    assert not (set(only_s2[1:]) & set(after))
    assert lab.run_job("zone_verify", zone="s3", full=True)["problems"] == []
    store.close()


def test_s3_config_errors_are_specific(lab, seaweed, tmp_path):
    bucket = lab.add_s3_zone("s3", seaweed)
    write_user_files(lab.data_root, "alice", 1, 1000, 1)
    lab.backup()
    from lightkeeper.backup.zones.s3_store import S3Store

    # a credentials file other accounts can read is refused, naming the fix
    creds = Path(str(lab.zones["s3"]["credentials_file"]))
    creds.chmod(0o644)
    with pytest.raises(ZoneError, match="chmod 600"):
        S3Store(lab.zone("s3"))
    creds.chmod(0o600)
    # a bucket that does not exist
    lab.zones["s3"]["bucket"] = "lk-no-such-bucket"
    lab.write_config()
    with pytest.raises(ZoneError, match="bucket 'lk-no-such-bucket' does not exist"):
        lab.run_job("replicate")
    # keys the server does not know
    lab.zones["s3"]["bucket"] = bucket
    bad = tmp_path / "bad-creds"
    bad.write_text("[default]\naws_access_key_id = NOPE\naws_secret_access_key = nope\n")
    bad.chmod(0o600)
    lab.zones["s3"]["credentials_file"] = str(bad)
    lab.write_config()
    with pytest.raises(ZoneError, match="denied"):
        lab.run_job("replicate")
    # a bucket name that cannot be one, and a prefix that climbs out
    from lightkeeper.backup.zones.model import s3_settings

    with pytest.raises(ZoneError, match="not a valid bucket name"):
        s3_settings("z", {"bucket": "Bad_Bucket"})
    with pytest.raises(ZoneError, match="must not contain"):
        s3_settings("z", {"bucket": "fine", "prefix": "a/../b"})
    with pytest.raises(ZoneError, match="must not contain credentials"):
        s3_settings("z", {"bucket": "fine", "endpoint_url": "http://k:s@127.0.0.1:1"})
