"""A zone's SSH session kept open after a sync or a probe, for the zone's next sync or probe.

Opening a session costs a TCP connect, the key exchange, authentication and, above all, the
server starting ``sftp-server`` through the account's login shell: 0.2 s on a loopback zone
(bench/replication_bench.py), most of a sync that finds nothing to send and a third of a full
one. rsync and ``sftp -b`` pay it at every run; OpenSSH users avoid it with ``ControlPersist``.
Here a sync or the agent's periodic probe hands its healthy session back and the next sync or
probe of the *same zone* within ``keep_open`` seconds takes it (with the channels it has). With
``keep_open`` longer than the probe interval (the defaults: 600 s and 5 minutes) the agent
holds one session per zone (one ``sshd`` child and one ``sftp-server`` per channel on the
zone), and an operator's sync starts sending at once.

What keeps this safe:
- a session is only reused for the zone it was opened for, with the same host, port, user,
  key file and known_hosts file, both files unchanged since (size and mtime): a key or trust
  change takes effect at the next sync, never later;
- only a session whose transports are all still active and whose first channel answers a
  request within ``CHECK_TIMEOUT_S`` is handed out: a connection that died silently (a
  network path that went away, no reset) costs that wait and a fresh session, not a sync
  stalled on the channel's 60-s timeout; a session that failed in any way is closed, never
  pooled;
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

DEFAULT_KEEP_OPEN_S = 600.0
# how long a kept session may take to answer before it counts as dead (one round trip)
CHECK_TIMEOUT_S = 5.0


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


def _answers(sess: ZoneSession, timeout: float) -> bool:
    """One request on the session's first channel, waiting at most ``timeout`` seconds."""
    try:
        channel = sess.sftp.get_channel()
        if channel is None or channel.closed:
            return False
        before = channel.gettimeout()
        channel.settimeout(timeout)
        try:
            sess.sftp.normalize(".")
        finally:
            channel.settimeout(before)
    except Exception:  # noqa: BLE001 - any failure: not usable, a fresh session instead
        return False
    return True


class SessionPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[object, ...], tuple[ZoneSession, float]] = {}

    def take(self, zone: Zone) -> ZoneSession | None:
        """The zone's idle session, if one is open, still matches the zone and answers within
        ``CHECK_TIMEOUT_S``; else None."""
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
        if not sess.transports or not all(t.is_active() for t in sess.transports) or \
                not _answers(sess, CHECK_TIMEOUT_S):
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

    def retain(self, zones: set[str]) -> int:
        """Close the kept sessions of zones not in ``zones`` (removed from the configuration,
        which no probe or sync will take again); returns how many were closed."""
        with self._lock:
            gone = [k for k in self._idle if k[0] not in zones]
            sessions = [self._idle.pop(k)[0] for k in gone]
        for sess in sessions:
            sess.close()
        return len(sessions)

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
