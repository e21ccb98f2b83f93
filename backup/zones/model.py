"""Zones as configured (``zones.NAME.*``), validated, with their local state directory."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkeeper.backup.zones.errors import ZoneError, unknown_zone
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
    kind: str = "sftp"  # "sftp" or "s3"
    s3: S3Settings | None = None  # set for kind "s3"

    @property
    def address(self) -> str:
        """The known_hosts name of the server (OpenSSH form: ``[host]:port`` unless port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def where(self) -> str:
        """Where the zone's copy lives, for people (lists, console, messages)."""
        if self.s3 is not None:
            return self.s3.where
        return f"{self.user}@{self.host}:{self.port}{self.remote_path}"

    def describe(self) -> dict[str, Any]:
        common = {"name": self.name, "kind": self.kind, "where": self.where,
                  "bandwidth_limit_kbps": self.bandwidth_limit_kbps, "schedule": self.schedule}
        if self.s3 is not None:
            # never the credentials themselves: only where they come from
            return {**common, **self.s3.describe()}
        return {**common, "host": self.host, "port": self.port, "user": self.user,
                "remote_path": self.remote_path, "key_file": self.key_file or "(ssh-agent)",
                "known_hosts": str(self.known_hosts)}


@dataclass(frozen=True)
class S3Settings:
    """An S3 zone's bucket and where its credentials come from (never the secrets)."""

    endpoint_url: str  # "" = AWS's endpoint for the region
    bucket: str
    prefix: str  # "" or "a/b" (no leading or trailing slash)
    region: str
    profile: str = ""
    credentials_file: str = ""
    storage_class: str = ""
    part_size: int = 16 << 20
    concurrency: int = 16

    @property
    def where(self) -> str:
        base = self.endpoint_url.rstrip("/") if self.endpoint_url else f"s3 ({self.region})"
        return f"{base}/{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def credentials_source(self) -> str:
        if self.credentials_file:
            return f"file {self.credentials_file}" + (f" [{self.profile}]" if self.profile
                                                      else "")
        if self.profile:
            return f"profile {self.profile}"
        return "environment"

    def describe(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "bucket": self.bucket, "prefix": self.prefix,
                "region": self.region, "credentials": self.credentials_source,
                "storage_class": self.storage_class, "host": self.endpoint_url or "s3",
                "port": None, "user": "", "remote_path": self.prefix}


_S3_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def normalise_prefix(zone: str, prefix: str) -> str:
    parts = [p for p in prefix.strip().split("/") if p]
    if any(p in (".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise ZoneError(zone, f"prefix {prefix!r} must not contain '.', '..' or backslashes")
    return "/".join(parts)


def s3_settings(name: str, entry: dict[str, Any]) -> S3Settings:
    bucket = str(entry.get("bucket") or "")
    if not _S3_NAME.match(bucket):
        raise ZoneError(name, f"bucket {bucket!r} is not a valid bucket name (3-63 lower-case "
                        "letters, digits, dots and hyphens)")
    endpoint = str(entry.get("endpoint_url") or "")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ZoneError(name, f"endpoint_url {endpoint!r} must start with http:// or https://")
    if "@" in endpoint.partition("://")[2].partition("/")[0]:
        raise ZoneError(name, "endpoint_url must not contain credentials; use profile or "
                        "credentials_file")
    return S3Settings(
        endpoint_url=endpoint, bucket=bucket,
        prefix=normalise_prefix(name, str(entry.get("prefix") or "")),
        region=str(entry.get("region") or "us-east-1"),
        profile=str(entry.get("profile") or ""),
        credentials_file=str(entry.get("credentials_file") or ""),
        storage_class=str(entry.get("storage_class") or ""),
        part_size=int(entry.get("part_size_mb") or 16) << 20,
        concurrency=int(entry.get("concurrency") or 16))


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
    if (entry.get("kind") or "sftp") == "s3":
        return Zone(name=name, host="", port=0, user="", key_file="", remote_path="",
                    known_hosts=Path(known),
                    bandwidth_limit_kbps=int(entry.get("bandwidth_limit_kbps") or 0),
                    schedule=entry.get("schedule") or cfg["replication.schedule"] or "",
                    keep=keep, kind="s3", s3=s3_settings(name, entry))
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
        raise unknown_zone(name, zones)
    return zones[name]


def select_zones(cfg: Config, names: list[str] | None) -> list[Zone]:
    zones = load_zones(cfg)
    if not names:
        return [zones[n] for n in sorted(zones)]
    return [get_zone(cfg, n) for n in names]


def zone_state_dir(cfg: Config, name: str) -> Path:
    """Local state of one zone: listing cache, status, metadata mirror."""
    return cfg.path("paths.state_dir") / "zones" / name
