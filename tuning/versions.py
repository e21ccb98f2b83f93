"""Append-only tuning history in the agent's store (table ``tuning_versions``).

This module owns the table: its definition (``TABLE``, which the agent's schema migration
applies) and every statement that reads or writes it. Only the agent holds the store; these
functions take it as an argument (``services.store``, an ``agent.store.db.Store``) and never
import the agent package.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from lightkeeper.contracts.tuning import VersionSummary
from lightkeeper.tuning.params import NAMES, defaults
from lightkeeper.tuning.tuningset import TuningSet
from lightkeeper.tuning.validate import TuningError


@dataclass
class Version:
    version: int
    ts: float
    actor: str | None
    note: str | None
    source: str | None
    reverted_from: int | None
    tuning: TuningSet

    def summary(self) -> VersionSummary:
        return {"version": self.version, "ts": self.ts, "actor": self.actor, "note": self.note,
                "source": self.source, "reverted_from": self.reverted_from}


class UnknownVersion(LookupError):
    pass


def _row_to_version(row: dict[str, Any]) -> Version:
    doc = row["params"]
    if isinstance(doc, str):
        doc = json.loads(doc)
    try:
        tset = TuningSet.from_json(doc)
    except TuningError:
        # A version recorded under an older model: keep what still validates field by field.

        params = {**defaults(), **{k: v for k, v in (doc.get("params") or {}).items()
                                   if k in NAMES}}
        tset = TuningSet(params, {u: {k: v for k, v in o.items() if k in NAMES}
                                  for u, o in (doc.get("users") or {}).items()})
    return Version(int(row["version"]), float(row["ts"] or 0), row["actor"], row["note"],
                   row["source"], row["reverted_from"], tset)


TABLE = ("CREATE TABLE IF NOT EXISTS tuning_versions (version INTEGER PRIMARY KEY, ts DOUBLE,"
         " actor VARCHAR, note VARCHAR, source VARCHAR, params JSON NOT NULL,"
         " reverted_from INTEGER)")
_COLS = "version, ts, actor, note, source, params, reverted_from"


def latest(store: Any) -> Version | None:
    rows = store.read_dicts(f"SELECT {_COLS} FROM tuning_versions ORDER BY version DESC LIMIT 1")
    return _row_to_version(rows[0]) if rows else None


def get(store: Any, version: int) -> Version:
    rows = store.read_dicts(f"SELECT {_COLS} FROM tuning_versions WHERE version = ?",
                            [int(version)])
    if not rows:
        last = latest(store)
        known = f"versions are 1..{last.version}" if last else "no versions recorded yet"
        raise UnknownVersion(f"tuning version {version} does not exist ({known})")
    return _row_to_version(rows[0])


def history(store: Any, limit: int = 100, before: int | None = None) -> list[Version]:
    sql = f"SELECT {_COLS} FROM tuning_versions"
    params: list[Any] = []
    if before is not None:
        sql += " WHERE version < ?"
        params.append(int(before))
    sql += " ORDER BY version DESC LIMIT ?"
    params.append(int(limit))
    return [_row_to_version(r) for r in store.read_dicts(sql, params)]


def marks(store: Any, since: float) -> list[dict[str, Any]]:
    """When the version changed since ``since`` (markers on latency charts)."""
    return store.read_dicts(
        "SELECT version, ts, actor, note FROM tuning_versions WHERE ts >= ? ORDER BY ts", [since])


def next_version(store: Any) -> int:
    row = store.execute("SELECT coalesce(max(version), 0) FROM tuning_versions")
    return int(row[0][0]) + 1


def append(store: Any, version: int, tset: TuningSet, actor: str, note: str, source: str,
           reverted_from: int | None = None, ts: float | None = None) -> Version:
    """Insert ``version`` (which must be the next number). Raises if it already exists."""
    ts = time.time() if ts is None else ts
    store.execute(
        "INSERT INTO tuning_versions (version, ts, actor, note, source, params, reverted_from)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [version, ts, actor, note, source, json.dumps(tset.to_json()), reverted_from])
    return Version(version, ts, actor, note, source, reverted_from, tset.copy())
