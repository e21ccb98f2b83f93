"""Schedules for jobs: '' (off), 'hourly', 'daily', 'daily HH:MM', 'every 30m', 'every 6h'.

The last start of each scheduled entry is kept in the store's ``meta`` table, so a restarted agent
neither repeats a run nor forgets one that is due.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

EVERY_RE = re.compile(r"every\s+(\d+(?:\.\d+)?)\s*([smhd])\Z")  # with fullmatch
DAILY_AT_RE = re.compile(r"daily\s+(\d{1,2}):(\d{2})\Z")  # with fullmatch


class ScheduleError(ValueError):
    pass


def parse(text: str) -> tuple[str, float] | None:
    """Return ("interval", seconds) or ("daily_at", seconds after midnight UTC), or None."""
    s = (text or "").strip().lower()
    if not s or s == "off":
        return None
    if s == "hourly":
        return ("interval", 3600.0)
    if s == "daily":
        return ("interval", 86400.0)
    m = EVERY_RE.fullmatch(s)
    if m:
        value = float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
        if value < 60:
            raise ScheduleError(f"schedule {text!r}: the shortest interval is 1 minute")
        return ("interval", value)
    m = DAILY_AT_RE.fullmatch(s)
    if m and int(m[1]) < 24 and int(m[2]) < 60:
        return ("daily_at", int(m[1]) * 3600 + int(m[2]) * 60)
    raise ScheduleError(
        f"schedule {text!r} not understood: use 'hourly', 'daily', 'daily HH:MM' (UTC), "
        "'every 30m' or 'every 6h', or '' to turn it off")


def is_due(spec: tuple[str, float], last: float | None, now: float) -> bool:
    kind, value = spec
    if kind == "interval":
        return last is None or now - last >= value
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0,
                                                          microsecond=0).timestamp()
    target = day + value
    if now < target:
        target -= 86400
    return last is None or last < target


def entry_key(kind: str, params: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return f"schedule:{kind}:{digest}"
