"""Errors of replication to remote zones; every message names the zone."""

from __future__ import annotations

from collections.abc import Iterable


class ZoneError(Exception):
    """A replication problem the operator must see (bad config, refused key, remote failure)."""

    def __init__(self, zone: str, message: str) -> None:
        super().__init__(f"zone {zone!r}: {message}" if zone else message)
        self.zone = zone


class UnknownZone(ZoneError):
    pass


def unknown_zone(name: str, known: Iterable[str]) -> UnknownZone:
    """The error for a zone name the configuration does not declare, listing those it does."""
    names = ", ".join(sorted(known)) or "none configured (add zones.NAME.host, .user, " \
        ".remote_path)"
    return UnknownZone(name, f"no such zone; zones: {names}")


class UnknownHostKey(ZoneError):
    """The zone's host key is not in its known_hosts file: refused until trusted."""

    def __init__(self, zone: str, host: str, key_type: str, fingerprint: str) -> None:
        super().__init__(
            zone,
            f"unknown host key for {host} ({key_type} {fingerprint}); refused. Check the "
            f"fingerprint with the zone's administrator, then run `lightkeeper zones trust {zone}`",
        )
        self.key_type = key_type
        self.fingerprint = fingerprint


class ChangedHostKey(ZoneError):
    """The zone presented a key other than the recorded one: never re-trusted silently."""

    def __init__(self, zone: str, host: str, recorded: str, presented: str,
                 known_hosts: str) -> None:
        super().__init__(
            zone,
            f"HOST KEY CHANGED for {host}: recorded {recorded}, presented {presented}. This may "
            f"be an attack or a reinstalled server; refused. If the change is expected, remove "
            f"the old entry from {known_hosts} and trust the new key",
        )
        self.recorded = recorded
        self.presented = presented


class ZoneUnreachable(ZoneError):
    """Network-level failure (connect, dropped connection, timeout): worth a retry."""


class RemotePathError(ZoneError):
    """A remote path that would leave the zone's remote_path."""


class RemoteSpaceError(ZoneError):
    """The zone ran out of disk space or quota."""


class RemoteIntegrityError(ZoneError):
    """The remote copy is damaged or not the repository we expect."""
