"""Formatting shared by the CLI and the console: sizes, durations, ages, percentages."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["human_bytes", "human_duration", "age", "pct", "rate", "clock_time", "ms", "shorten"]


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def age(ts: float | None, now: float | None = None) -> str:
    """'12 s ago', '3 min ago', '2.0 h ago'; '-' when unknown."""
    if ts is None:
        return "-"
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - float(ts))) + " ago"


def pct(ratio: float | None, digits: int = 0) -> str:
    if ratio is None:
        return "-"
    return f"{100.0 * float(ratio):.{digits}f}%"


def rate(bytes_per_s: float | None) -> str:
    if bytes_per_s is None:
        return "-"
    return human_bytes(bytes_per_s) + "/s"


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 10:
        return f"{s * 1000:.0f} ms"
    return f"{s:.1f} s"


def clock_time(ts: float | None, with_date: bool = False) -> str:
    if ts is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M" if with_date else "%H:%M:%S"
    return time.strftime(fmt, time.localtime(float(ts)))


def shorten(text: Any, width: int) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= width else s[: max(1, width - 1)] + "…"


def plural(n: int | float, noun: str, nouns: str | None = None) -> str:
    """``1 snapshot``, ``3 snapshots`` (``nouns`` for irregular plurals)."""
    return f"{n:g} {noun if n == 1 else nouns or noun + 's'}"
