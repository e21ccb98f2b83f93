"""A zone's SSH session kept open for a short while after a sync, for the next sync.

Opening a session costs a TCP connect, the key exchange, authentication and, above all, the
server starting ``sftp-server`` through the account's login shell: 0.2 s on a loopback zone
(bench/replication_bench.py), most of a sync that finds nothing to send. rsync pays the same
at every run; OpenSSH users avoid it with ``ControlPersist``. Here a sync hands its healthy
session back and the next sync of the *same zone* within ``keep_open`` seconds takes it (with
the channels it has), so a no-change sync is a few SFTP round trips.

What keeps this safe:
- a session is only reused for the zone it was opened for, with the same host, port, user,
  key file and known_hosts file, both files unchanged since (size and mtime): a key or trust
  change takes effect at the next sync, never later;
- only a session whose transports are all still active is handed out; a session that failed
  in any way is closed, never pooled;
- an idle session is closed after ``keep_open`` seconds by a timer (and all at shutdown).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightkeeper.backup.zones.connection import ZoneSession
    from lightkeeper.backup.zones.model import Zone

DEFAULT_KEEP_OPEN_S = 60.0


def _file_sig(path: str | Path) -> tuple[int, int] | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _key(zone: Zone) -> tuple[object, ...]:
    return (zone.name, zone.host, zone.port, zone.user, str(zone.key_file),
            _file_sig(zone.key_file), str(zone.known_hosts), _file_sig(zone.known_hosts))


class SessionPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[object, ...], tuple[ZoneSession, float]] = {}

    def take(self, zone: Zone) -> ZoneSession | None:
        """The zone's idle session, if one is open and still matches the zone; else None."""
        key = _key(zone)
        with self._lock:
            found = self._idle.pop(key, None)
            stale = [k for k in self._idle if k[0] == zone.name]  # the zone's settings moved
            dropped = [self._idle.pop(k)[0] for k in stale]
        for sess in dropped:
            sess.close()
        if found is None:
            return None
        sess, _ = found
        if not sess.transports or not all(t.is_active() for t in sess.transports):
            sess.close()
            return None
        return sess

    def give(self, zone: Zone, sess: ZoneSession, keep_open: float) -> None:
        """Keep ``sess`` (healthy, done with) for ``keep_open`` seconds; closes it at once
        when ``keep_open`` is 0 or another session of the zone is already kept."""
        if keep_open <= 0 or not sess.transports or \
                not all(t.is_active() for t in sess.transports):
            sess.close()
            return
        key = _key(zone)
        deadline = time.monotonic() + keep_open
        with self._lock:
            old = self._idle.pop(key, None)
            self._idle[key] = (sess, deadline)
        if old is not None:
            old[0].close()
        timer = threading.Timer(keep_open + 0.05, self._expire, args=(key, sess))
        timer.daemon = True
        timer.name = "zone-session-expiry"
        timer.start()

    def _expire(self, key: tuple[object, ...], sess: ZoneSession) -> None:
        with self._lock:
            entry = self._idle.get(key)
            if entry is None or entry[0] is not sess or entry[1] > time.monotonic():
                return
            del self._idle[key]
        sess.close()

    def close_all(self) -> None:
        with self._lock:
            sessions = [s for s, _ in self._idle.values()]
            self._idle.clear()
        for sess in sessions:
            sess.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)


POOL = SessionPool()
atexit.register(POOL.close_all)
