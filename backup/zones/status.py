"""Zone status for lists, alerts and metrics: reachable, last success, lag, bytes sent,
failures, what the zone holds.

Lag is the age of the oldest local snapshot newer than the zone's newest snapshot, i.e. how
long the zone has been missing a snapshot that exists locally (0 when it has everything
newer than what it holds). Measured this way it keeps growing while a zone is down even as
new local snapshots keep arriving."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import cast

from lightkeeper.backup.zones import remote_ops
from lightkeeper.backup.zones.connection import ZoneSession, is_network_error
from lightkeeper.backup.zones.errors import ZoneError
from lightkeeper.backup.zones.local_repo import LocalRepo
from lightkeeper.backup.zones.model import Zone
from lightkeeper.backup.zones.remote_path import RemoteRoot
from lightkeeper.backup.zones.session_pool import POOL
from lightkeeper.backup.zones.state import ZoneStatus
from lightkeeper.contracts import zones as contracts
from lightkeeper.logs import get_logger

log = get_logger("zones.status")


def oldest_lacking(local_times: dict[str, float], remote_ids: Iterable[str]
                   ) -> tuple[float | None, int]:
    """(time of the oldest local snapshot newer than the zone's newest that the zone lacks, or
    None when it lacks none; how many such snapshots)."""
    remote = set(remote_ids)
    held = [t for sid, t in local_times.items() if sid in remote]
    newest_held = max(held) if held else float("-inf")
    lacking = sorted(t for sid, t in local_times.items()
                     if sid not in remote and t > newest_held)
    return (lacking[0] if lacking else None), len(lacking)


def lag_seconds(local_times: dict[str, float], remote_ids: Iterable[str],
                now: float) -> tuple[float, int]:
    """(lag seconds, number of local snapshots newer than the zone's newest it lacks)."""
    since, behind = oldest_lacking(local_times, remote_ids)
    return (0.0 if since is None else max(0.0, now - since)), behind


def probe(zone: Zone, timeout: float = 10.0, keep_open: float = 0.0
          ) -> tuple[bool, str | None, dict[str, int] | None]:
    """Connect (host key checked), list the zone's snapshots. (reachable, error, snapshots).
    With ``keep_open`` the probe takes the zone's kept session if there is one and hands its
    own back for the zone's next sync or probe (session_pool.py)."""
    if zone.kind == "s3":
        from lightkeeper.backup.zones.s3_jobs import probe_s3  # noqa: PLC0415

        return probe_s3(zone, timeout)
    root = RemoteRoot(zone.name, zone.remote_path)
    sess = POOL.take(zone) if keep_open > 0 else None
    try:
        if sess is not None:
            try:
                snaps, _ = remote_ops.list_snapshots(sess.sftp, root)
            except Exception as exc:  # the kept session died since its check?
                if remote_ops.connected(sess.sftp) and not is_network_error(exc):
                    raise  # the zone's answer (a missing path...), not a lost session
                log.info("zones.kept_session_lost", zone=zone.name, error=str(exc))
                sess.close()
                sess = None
        if sess is None:
            sess = ZoneSession(zone, 1, 1, timeout)
            snaps, _ = remote_ops.list_snapshots(sess.sftp, root)
    except ZoneError as exc:
        if sess is not None:
            sess.close()
        return False, str(exc), None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable now"
        if sess is not None:
            sess.close()
        return False, f"{type(exc).__name__}: {exc}", None
    POOL.give(zone, sess, keep_open)  # closes it when keep_open is 0
    return True, None, snaps


def zone_status(zone: Zone, zone_dir: Path, local: LocalRepo | None,
                local_times: dict[str, float] | None = None, do_probe: bool = False,
                now: float | None = None, keep_open: float = 0.0) -> contracts.ZoneStatus:
    st = ZoneStatus(zone_dir)
    if do_probe:
        ok, err, snaps = probe(zone, keep_open=keep_open)
        t = time.time()
        with st.update() as data:
            st.record_reachability(data, ok, t)
            data["last_probe"] = t
            data["last_probe_error"] = err
            if snaps is not None:
                data["remote_snapshots"] = {s: None for s in snaps}
    data = st.read()
    now = time.time() if now is None else now
    if local_times is None:
        local_times = local.snapshot_times() if local is not None and local.exists() else {}
    since, behind = oldest_lacking(local_times, data.get("remote_snapshots") or {})
    lag = 0.0 if since is None else max(0.0, now - since)
    unreachable_s = None
    if data.get("unreachable_since") is not None:
        unreachable_s = max(0.0, now - float(data["unreachable_since"]))
    return cast("contracts.ZoneStatus", {
        **zone.describe(),  # the settings keys ZoneStatus declares for the zone's kind
        "reachable": data.get("reachable"),
        "unreachable_seconds": unreachable_s,
        "last_success": data.get("last_success"),
        "last_attempt": data.get("last_attempt"),
        "last_error": data.get("last_error"),
        "lag_seconds": round(lag, 1),
        "lag_since": since,
        "snapshots_behind": behind,
        "remote_snapshots": len(data.get("remote_snapshots") or {}),
        "remote_bytes": data.get("remote_bytes"),
        "bytes_sent_total": int(data.get("bytes_sent_total") or 0),
        "failures_total": int(data.get("failures_total") or 0),
    })


def samples(status: contracts.ZoneStatus, now: float) -> list[tuple[float, str, str, float]]:
    """The zone's metrics as (ts, metric, label, value) samples for the agent's store. The lag
    travels as the time of the oldest snapshot the zone lacks (0: none), from which the agent
    computes ``zone_lag_seconds`` whenever it is read (``agent.derived``)."""
    name = status["name"]
    out = [
        (now, "zone_lag_seconds", name, float(status["lag_seconds"])),
        (now, "zone_oldest_unreplicated_timestamp_seconds", name,
         float(status.get("lag_since") or 0.0)),
        (now, "zone_up", name, 1.0 if status.get("reachable") else 0.0),
        (now, "zone_sent_bytes_total", name, float(status["bytes_sent_total"])),
        (now, "zone_failures_total", name, float(status["failures_total"])),
    ]
    if (last_success := status["last_success"]) is not None:
        out.append((now, "zone_last_success_timestamp_seconds", name, float(last_success)))
    if (unreachable := status["unreachable_seconds"]) is not None:
        out.append((now, "zone_unreachable_seconds", name, float(unreachable)))
    return out
