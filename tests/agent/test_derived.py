"""Ages and lags are computed when read, from their timestamps (never a stale stored value)."""

from __future__ import annotations

from lightkeeper.agent.derived import with_derived


def test_gauges_computed_from_timestamps_at_read_time() -> None:
    current = {
        ("backup_last_success_timestamp_seconds", ""): (100.0, 1000.0),
        ("backup_age_seconds", ""): (100.0, 0.0),  # stale value stored at the backup
        ("zone_oldest_unreplicated_timestamp_seconds", "eu1"): (100.0, 1500.0),
        ("zone_oldest_unreplicated_timestamp_seconds", "us1"): (100.0, 0.0),  # has everything
        ("zone_lag_seconds", "eu1"): (100.0, 0.0),
        ("disk_free_ratio", "/"): (100.0, 0.5),
    }
    at_2000 = with_derived(current, 2000.0)
    assert at_2000[("backup_age_seconds", "")][1] == 1000.0
    assert at_2000[("zone_lag_seconds", "eu1")][1] == 500.0
    assert at_2000[("zone_lag_seconds", "us1")][1] == 0.0
    assert at_2000[("disk_free_ratio", "/")] == (100.0, 0.5)
    at_2180 = with_derived(current, 2180.0)
    assert at_2180[("zone_lag_seconds", "eu1")][1] == 680.0  # grows with no new sample
    # a gauge whose timestamp is unknown is not reported (no made-up zero)
    assert ("backup_drill_age_seconds", "") not in at_2000
    assert current[("backup_age_seconds", "")] == (100.0, 0.0)  # the input is left alone
    # the alert rules' metrics alone: derived gauges among them, their sources and the rest not
    rules = {"zone_lag_seconds", "disk_free_ratio", "backup_drill_age_seconds"}
    only = with_derived(current, 2000.0, only=rules)
    assert only == {("zone_lag_seconds", "eu1"): (2000.0, 500.0),
                    ("zone_lag_seconds", "us1"): (2000.0, 0.0),
                    ("disk_free_ratio", "/"): (100.0, 0.5)}
    assert {k: v for k, v in at_2000.items() if k[0] in rules} == only
