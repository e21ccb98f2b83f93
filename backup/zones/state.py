"""Local state of each zone: the remote listing cache and the status record (last success,
bytes sent, failures, what the zone holds), kept under state_dir/zones/NAME/."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a damaged cache is rebuilt from the zone


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # exclusive, unpredictable temp name, owner-only: never written through a planted link
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ListingCache:
    """What we believe the zone holds, valid while the zone's sync token matches and no write
    of ours was interrupted (``dirty``)."""

    def __init__(self, zone_dir: Path) -> None:
        self.path = zone_dir / "listing.json"

    def load(self) -> dict[str, Any] | None:
        return _read_json(self.path)

    def save(self, token: str | None, files: dict[str, int], snapshots: dict[str, int],
             dirty: bool) -> None:
        _write_json(self.path, {"token": token, "dirty": dirty, "saved": time.time(),
                                "files": files, "snapshots": snapshots})

    def mark_dirty(self) -> None:
        data = self.load() or {"token": None, "files": {}, "snapshots": {}}
        data["dirty"] = True
        _write_json(self.path, data)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


STATUS_DEFAULTS: dict[str, Any] = {
    "last_attempt": None, "last_success": None, "last_error": None, "reachable": None,
    "last_reachable": None, "unreachable_since": None, "bytes_sent_total": 0,
    "failures_total": 0, "remote_snapshots": {}, "remote_bytes": None, "remote_files": None,
}


class ZoneStatus:
    def __init__(self, zone_dir: Path) -> None:
        self.path = zone_dir / "status.json"
        self.lock_path = zone_dir / "status.lock"

    def read(self) -> dict[str, Any]:
        return {**STATUS_DEFAULTS, **(_read_json(self.path) or {})}

    @contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            data = self.read()
            yield data
            _write_json(self.path, data)

    def record_reachability(self, data: dict[str, Any], reachable: bool, now: float) -> None:
        data["reachable"] = reachable
        if reachable:
            data["last_reachable"] = now
            data["unreachable_since"] = None
        elif data.get("unreachable_since") is None:
            data["unreachable_since"] = now


@contextmanager
def zone_lock(zone_dir: Path, what: str) -> Iterator[None]:
    """One writer per zone at a time (sync, prune, rebuild); raises BlockingIOError if taken."""
    zone_dir.mkdir(parents=True, exist_ok=True)
    with open(zone_dir / "zone.lock", "a+") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lk.seek(0)
        lk.truncate()
        lk.write(f"{os.getpid()} {what}\n")
        lk.flush()
        yield


class ForgottenSnapshots:
    """Snapshots the zone's own retention forgot: a sync must not send them back."""

    LIMIT = 100_000

    def __init__(self, zone_dir: Path) -> None:
        self.path = zone_dir / "forgotten.json"

    def load(self) -> set[str]:
        data = _read_json(self.path) or {}
        return set(data.get("ids", []))

    def add(self, ids: list[str]) -> None:
        if not ids:
            return
        data = _read_json(self.path) or {}
        old = [i for i in data.get("ids", []) if i not in set(ids)]
        _write_json(self.path, {"ids": (old + list(ids))[-self.LIMIT:]})


def expected_checks(cache: ListingCache, zone_dir: Path,
                    local_snaps: dict[str, tuple[int, float]], full_listing: bool) -> list[str]:
    """The local snapshots whose referenced files the pass will most likely ask for, known
    before the zone answers: those the cached listing does not hold (all of them with no
    cache, or when the zone will be listed in full), minus those the zone forgot."""
    cached = None if full_listing else cache.load()
    held = set(cached.get("snapshots") or ()) if cached and not cached.get("dirty") else set()
    forgotten = ForgottenSnapshots(zone_dir).load()
    return sorted(sid for sid in local_snaps if sid not in held and sid not in forgotten)
