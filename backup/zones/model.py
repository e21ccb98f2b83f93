"""Zones as configured (``zones.NAME.*``), validated, with their local state directory."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkeeper.backup.zones.errors import UnknownZone, ZoneError
from lightkeeper.config import Config

KEEP_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True)
class Zone:
    name: str
    host: str
    port: int
    user: str
    key_file: str  # "" means the operator's ssh-agent
    remote_path: str  # absolute, normalised, never "/"
    known_hosts: Path
    bandwidth_limit_kbps: int = 0
    schedule: str = ""
    keep: dict[str, int] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The known_hosts name of the server (OpenSSH form: ``[host]:port`` unless port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "port": self.port, "user": self.user,
                "remote_path": self.remote_path, "key_file": self.key_file or "(ssh-agent)",
                "known_hosts": str(self.known_hosts),
                "bandwidth_limit_kbps": self.bandwidth_limit_kbps, "schedule": self.schedule}


def normalise_remote_path(zone: str, path: str) -> str:
    if not path.startswith("/"):
        raise ZoneError(zone, f"remote_path {path!r} must be absolute")
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm == "/":
        raise ZoneError(zone, "remote_path '/' is not allowed: use a directory of its own")
    if any(part == ".." for part in path.split("/")):
        raise ZoneError(zone, f"remote_path {path!r} must not contain '..'")
    return norm


def zone_from_entry(cfg: Config, name: str, entry: dict[str, Any]) -> Zone:
    known = entry.get("known_hosts") or str(cfg.path("paths.state_dir") / "known_hosts")
    keep: dict[str, int] = {}
    for rule in KEEP_RULES:
        own = entry.get(f"keep_{rule}", -1)
        keep[rule] = int(cfg[f"backup.keep_{rule}"]) if own is None or own < 0 else int(own)
    return Zone(
        name=name,
        host=entry["host"],
        port=int(entry["port"]),
        user=entry["user"],
        key_file=entry.get("key_file") or "",
        remote_path=normalise_remote_path(name, entry["remote_path"]),
        known_hosts=Path(known),
        bandwidth_limit_kbps=int(entry.get("bandwidth_limit_kbps") or 0),
        schedule=entry.get("schedule") or cfg["replication.schedule"] or "",
        keep=keep,
    )


def load_zones(cfg: Config) -> dict[str, Zone]:
    return {name: zone_from_entry(cfg, name, entry) for name, entry in cfg.table("zones").items()}


def get_zone(cfg: Config, name: str) -> Zone:
    zones = load_zones(cfg)
    if name not in zones:
        known = ", ".join(sorted(zones)) or "none configured (add zones.NAME.host, .user, " \
            ".remote_path)"
        raise UnknownZone(name, f"no such zone; zones: {known}")
    return zones[name]


def select_zones(cfg: Config, names: list[str] | None) -> list[Zone]:
    zones = load_zones(cfg)
    if not names:
        return [zones[n] for n in sorted(zones)]
    return [get_zone(cfg, n) for n in names]


def zone_state_dir(cfg: Config, name: str) -> Path:
    """Local state of one zone: listing cache, status, metadata mirror."""
    return cfg.path("paths.state_dir") / "zones" / name
