"""Host-key trust per zone: unknown keys are refused, changed keys are an error, and a key is
recorded only when the operator confirmed its fingerprint."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko

from lightkeeper.backup.zones.errors import ChangedHostKey, UnknownHostKey, ZoneError
from lightkeeper.backup.zones.model import Zone
from lightkeeper.logs import get_logger

log = get_logger("zones.hostkeys")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint (``SHA256:base64`` without padding)."""
    return key.fingerprint


def recorded_keys(zone: Zone) -> dict[str, paramiko.PKey]:
    """Keys recorded for the zone's address, by key type (empty when none or no file)."""
    path = zone.known_hosts
    if not path.exists():
        return {}
    hk = paramiko.HostKeys()
    try:
        hk.load(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise ZoneError(zone.name, f"cannot read known_hosts {path}: {exc}") from None
    entry = hk.lookup(zone.address)
    return dict(entry) if entry else {}


def check(zone: Zone, key: paramiko.PKey) -> None:
    """Raise unless ``key`` is the recorded key of the zone's server."""
    known = recorded_keys(zone)
    presented = f"{key.get_name()} {fingerprint(key)}"
    if not known:
        raise UnknownHostKey(zone.name, zone.address, key.get_name(), fingerprint(key))
    same_type = known.get(key.get_name())
    if same_type is not None and same_type == key:
        return
    recorded = same_type if same_type is not None else next(iter(known.values()))
    log.error("zones.host_key_changed", zone=zone.name, host=zone.address,
              recorded=fingerprint(recorded), presented=fingerprint(key))
    raise ChangedHostKey(zone.name, zone.address, f"{recorded.get_name()} {fingerprint(recorded)}",
                         presented, str(zone.known_hosts))


def preferred_key_types(zone: Zone, offered: tuple[str, ...]) -> tuple[str, ...]:
    """Put the key types we already know first, so the server presents a recorded key."""
    known = recorded_keys(zone)
    if not known:
        return offered
    first = [t for t in offered if t in known]
    return tuple(first + [t for t in offered if t not in known])


def record(zone: Zone, key: paramiko.PKey) -> Path:
    """Append the zone's key to its known_hosts file (owner-only), refusing to overwrite a
    different recorded key of the same type."""
    known = recorded_keys(zone)
    existing = known.get(key.get_name())
    if existing is not None:
        if existing == key:
            return zone.known_hosts
        raise ChangedHostKey(zone.name, zone.address,
                             f"{existing.get_name()} {fingerprint(existing)}",
                             f"{key.get_name()} {fingerprint(key)}", str(zone.known_hosts))
    path = zone.known_hosts
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{zone.address} {key.get_name()} {key.get_base64()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if os.fstat(fd).st_size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = "\n" + line
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    log.info("zones.host_key_trusted", zone=zone.name, host=zone.address,
             key_type=key.get_name(), fingerprint=fingerprint(key))
    return path


def normalise_fingerprint(text: str) -> str:
    text = text.strip()
    if not text.startswith("SHA256:"):
        raise ValueError(f"fingerprint {text!r} must look like SHA256:… (as printed by "
                         "`ssh-keygen -lf` or `lightkeeper zones trust`)")
    return text.rstrip("=")
