"""The systemd notification protocol (sd_notify), for a ``Type=notify`` service.

A datagram to the socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace): ``READY=1`` once the agent serves, ``WATCHDOG=1`` while its loops run, ``RELOADING=1``
and ``STOPPING=1``. Ten lines of standard library, so no dependency. Without ``$NOTIFY_SOCKET``
(not started by systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError:  # systemd went away (or a stale variable): nothing to tell
        return False
    return True


def reloading() -> bool:
    """Tell systemd a reload started (it waits for the next READY=1)."""
    usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def watchdog_seconds() -> float | None:
    """The watchdog period systemd expects pings within (``WatchdogSec=``), if any."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000
