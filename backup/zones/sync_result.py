"""The summary of one zone's sync, typed where it is made (``contracts.zones.ZoneSyncResult``):
both passes (SFTP in sync.py, S3 in s3_sync.py) start it, count into it and finish it here, so
mypy checks every key they write instead of a cast at the agent's boundary (issue 10)."""

from __future__ import annotations

import time

from lightkeeper.contracts.zones import ZoneSyncResult


def new_result(zone: str, listing: str, channels: int, rtt_s: float,
               temps_removed: int = 0) -> ZoneSyncResult:
    """A result with nothing sent yet; ``finish`` fills in what the zone holds at the end and
    ``sync_zone`` the attempts."""
    return {"zone": zone, "listing": listing, "channels": channels,
            "rtt_ms": round(rtt_s * 1000, 2), "files_uploaded": 0, "bytes_sent": 0,
            "snapshots_published": [], "snapshots_unpublished": [],
            "temps_removed": temps_removed, "remote_snapshots": [], "remote_files": 0,
            "remote_bytes": 0, "elapsed_s": 0.0, "attempts": 1}


def finish(result: ZoneSyncResult, files: dict[str, int], snaps: dict[str, int],
           started: float) -> ZoneSyncResult:
    """What the zone holds after the pass (data/index files and manifests) and how long the
    pass took (``started``: a ``time.monotonic()`` reading)."""
    result["remote_snapshots"] = sorted(snaps)
    result["remote_files"] = len(files)
    result["remote_bytes"] = sum(files.values()) + sum(snaps.values())
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    return result
