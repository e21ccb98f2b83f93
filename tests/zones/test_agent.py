"""Zones through the real agent: the replicate job streams progress and records audit events
and samples; the CLI reaches it without --local."""

from __future__ import annotations

import json

from tests.zones.repo_helper import write_user_files


def test_replicate_and_verify_as_agent_jobs(lab, start_agent, run_cli):
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 3, 300_000, 1)
    sid = lab.backup()
    lab.repo.close()
    agent = start_agent()
    r = run_cli("replicate", "--json")
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert any(m["type"] == "status" for m in lines)
    final = lines[-1]
    assert final["type"] == "summary" and final["job"]["state"] == "succeeded"
    assert final["job"]["summary"]["zones"]["a"]["snapshots_published"] == [sid]
    r = run_cli("zones", "verify", "a", "--full")
    assert "OK" in r.stdout
    zones = agent.client.call("zones.list")
    assert zones[0]["name"] == "a" and zones[0]["lag_seconds"] == 0
    assert zones[0]["remote_snapshots"] == 1
    events = agent.client.events(limit=200)
    assert any(e.get("event") == "zone.sync" for e in events), events
    probe = agent.client.call("zones.trust_probe", zone="a")
    assert probe["state"] == "trusted" and probe["fingerprint"].startswith("SHA256:")


def test_trust_through_the_agent(lab, start_agent, run_cli):
    import subprocess

    server = lab.add_zone("b", trusted=False)
    fp = subprocess.run(["ssh-keygen", "-lf", str(server.host_key) + ".pub"], check=True,
                        capture_output=True, text=True).stdout.split()[1]
    agent = start_agent()
    probe = agent.client.call("zones.trust_probe", zone="b")
    assert probe["state"] == "unknown" and probe["fingerprint"] == fp
    r = run_cli("zones", "trust", "b", input="yes\n")
    assert fp in r.stdout
    assert agent.client.call("zones.trust_probe", zone="b")["state"] == "trusted"
    events = agent.client.events(limit=200)
    assert any(e.get("event") == "zone.host_key_trusted" for e in events)


def test_zone_probes_are_samples_not_jobs_and_keep_their_session(lab, start_agent):
    """The agent probes every zone on replication.status_schedule: zone_up and the lag arrive as
    samples, and no job record is written for it (288 a day otherwise). The probe's SSH session
    stays open (replication.keep_open_seconds), and the operator's sync takes it: no new
    connection and no new sftp-server on the zone."""
    import time

    import psutil

    server = lab.add_zone("p")
    write_user_files(lab.data_root, "alice", 2, 50_000, 5)
    sid = lab.backup()
    lab.repo.close()
    agent = start_agent()
    deadline = time.monotonic() + 60
    up = None
    while time.monotonic() < deadline:
        series = agent.client.series("zone_up", "p", window=300)["series"].get("p") or []
        up = [v for _, v in series if v is not None]
        if up:
            break
        time.sleep(0.5)
    assert up == [1.0] or (up and up[-1] == 1.0), up
    kinds = {j["kind"] for j in agent.client.jobs(limit=100)}
    assert "zone_status" not in kinds
    sessions = psutil.Process(server.proc.pid).children
    assert len(sessions()) == 1  # the probe's, kept while the agent is idle
    job = agent.client.wait_job(agent.client.start_job("replicate", {"zones": ["p"]}))
    assert job["state"] == "succeeded", job
    result = job["summary"]["zones"]["p"]
    assert result["session"] == "kept" and result["snapshots_published"] == [sid]
    assert len(sessions()) == 1


def test_zone_lag_gauge_grows_without_probe_or_sync(lab, start_agent, run_cli):
    """lightkeeper_zone_lag_seconds read 0 while `zones list` showed minutes of lag: it was
    refreshed only at a sync or probe. Now a local backup the zone lacks makes the gauge grow,
    computed at scrape time, with no probe and no sync."""
    import re
    import time
    import urllib.request

    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 2, 50_000, 1)
    lab.backup()
    lab.repo.close()
    agent = start_agent()
    run_cli("replicate")
    assert agent.client.call("zones.list")[0]["lag_seconds"] == 0
    run_cli("backup", "run")  # a snapshot the zone does not have yet

    def scraped() -> float:
        text = urllib.request.urlopen(agent.http + "/metrics", timeout=10).read().decode()
        m = re.search(r'^lightkeeper_zone_lag_seconds\{zone="a"\} (\S+)$', text, re.M)
        return float(m[1]) if m else -1.0

    deadline = time.monotonic() + 90
    while scraped() <= 0:
        assert time.monotonic() < deadline, "the zone lag gauge stayed at 0"
        time.sleep(1)
    first = scraped()
    time.sleep(1.5)
    assert scraped() > first  # computed when read, not a value stored at the last event
    assert agent.client.call("zones.list")[0]["lag_seconds"] > 0


def test_a_backup_works_out_its_references_for_the_sync_to_come(lab, start_agent):
    """With zones configured, the agent's backup leaves which files the new snapshot
    references in the state directory (the sync then reads no content list and no index),
    equal to the repository's own answer; the sync that follows publishes the snapshot."""
    import time

    lab.add_zone("r")
    write_user_files(lab.data_root, "alice", 3, 200_000, 71)
    agent = start_agent()
    job = agent.client.wait_job(agent.client.start_job("backup", {}))
    assert job["state"] == "succeeded", job
    sid = job["summary"]["snapshot_id"]
    cache = lab.cfg().path("paths.state_dir") / "snapshot-references.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not cache.exists():
        time.sleep(0.05)
    kept = json.loads(cache.read_text())["snapshots"]
    assert set(kept) == {sid}
    assert set(kept[sid]["files"]) == set(lab.repo.referenced_files(sid))
    sync = agent.client.wait_job(agent.client.start_job("replicate", {"zones": ["r"]}))
    assert sync["state"] == "succeeded", sync
    assert sync["summary"]["zones"]["r"]["snapshots_published"] == [sid]
