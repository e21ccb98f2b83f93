"""Zone schedules and calls without a network: what the agent's scheduler is given."""

from __future__ import annotations

from lightkeeper.backup.zones.calls import CALLS, JOBS, PROBES, SCHEDULES, probe_zones


def test_schedules_follow_zone_then_replication_schedule(lab):
    lab.set("replication.schedule", '"daily"')
    lab.set("replication.status_schedule", '"every 2m"')
    lab.zones["a"] = {"host": "127.0.0.1", "user": "u", "remote_path": "/srv/a",
                      "schedule": "every 6h"}
    lab.zones["b"] = {"host": "127.0.0.1", "user": "u", "remote_path": "/srv/b"}
    lab.write_config()
    entries = SCHEDULES(lab.services())
    assert ("replicate", "every 6h", {"zones": ["a"]}) in entries
    assert ("replicate", "daily", {"zones": ["b"]}) in entries
    assert all(kind != "zone_status" for kind, _, _ in entries)  # probes are not jobs
    assert PROBES(lab.services()) == [("zone_status", "every 2m", probe_zones)]
    assert {"replicate", "zone_verify", "zone_prune", "zone_restore", "zone_rebuild",
            "zone_status"} <= set(JOBS)
    assert {"zones.list", "zones.status", "zones.trust_probe", "zones.trust"} <= set(CALLS)


def test_an_empty_status_schedule_turns_the_probes_off(lab):
    """'' turns a schedule off (agent/scheduler.py); the probe took it for the default and
    probed every 5 minutes anyway, holding a session per zone with keep_open."""
    from lightkeeper.agent import scheduler

    lab.zones["a"] = {"host": "127.0.0.1", "user": "u", "remote_path": "/srv/a"}
    lab.write_config()
    assert PROBES(lab.services()) == [("zone_status", "every 5m", probe_zones)]
    lab.set("replication.status_schedule", '""')
    lab.write_config()
    ((_, text, _),) = PROBES(lab.services())
    assert scheduler.parse(text) is None


def test_no_zones_no_schedules(lab):
    assert SCHEDULES(lab.services()) == []
    assert PROBES(lab.services()) == []
    assert CALLS["zones.list"](lab.services(), {}) == []
