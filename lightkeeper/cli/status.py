"""``lightkeeper status``: agent uptime, collectors, store, ingestion, jobs and active alerts."""

from __future__ import annotations

import argparse
import time
from typing import Any

from lightkeeper.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    CliContext,
    add_json_flag,
    human_bytes,
    human_duration,
    table,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="agent health: uptime, collectors, store, alerts")
    add_json_flag(p)
    p.add_argument("--no-start", action="store_true",
                   help="do not start an agent if none runs (exit 3 instead)")
    p.add_argument("--check", action="store_true",
                   help="exit 4 if the agent is not ready or an alert is firing")
    p.set_defaults(func=run)


def render(s: dict[str, Any]) -> str:
    lines = [
        f"agent      pid {s['pid']} on {s['host']}, up {human_duration(s['uptime_s'])}, "
        f"{'ready' if s['ready'] else 'NOT READY'}",
        f"socket     {s['socket']}",
        f"http       {s['http'] or 'off'}",
        f"data root  {s['data_root']}",
        f"store      {s['store']['path']}  {human_bytes(s['store']['size_bytes'])} of "
        f"{human_bytes(s['store']['budget_bytes'])} budget, {s['store']['rows_written']} rows "
        f"written, {s['store']['pending']} pending",
        f"ingest     {s['ingest']['rows']} operations, {s['ingest']['quarantined']} quarantined, "
        f"lag {s['ingest']['lag_s']} s",
    ]
    if s.get("memory"):
        lines.append(f"memory     {memory_line(s['memory'])}")
    for p in s.get("problems", []):
        lines.append(f"problem    {p}")
    lines.append("")
    now = time.time()
    rows = [{**c, "last": "never" if not c["last_ok"] else f"{now - c['last_ok']:.0f} s ago"}
            for c in s["collectors"]]
    lines.append(table(rows, [("name", "COLLECTOR"), ("interval_s", "EVERY(S)"), ("last", "LAST OK"),
                              ("runs", "RUNS"), ("errors", "ERRORS"), ("last_error", "LAST ERROR")],
                       empty="(no collectors)"))
    lines.append("")
    running = s["jobs"]["running"]
    lines.append(table(running, [("id", "JOB"), ("kind", "KIND"), ("state", "STATE")],
                       empty="no jobs running"))
    lines.append("")
    lines.append(table(s["alerts"], [("severity", "SEVERITY"), ("rule", "ALERT"),
                                     ("label", "ON"), ("message", "MESSAGE")],
                       empty="no active alerts"))
    return "\n".join(lines)


def memory_line(m: dict[str, Any]) -> str:
    """``152.0 MiB resident (anonymous 80.1 MiB, file 71.9 MiB): store buffers ...``"""
    def part(name: str) -> str:
        return human_bytes(m.get(name))
    text = f"{part('resident')} resident (anonymous {part('anonymous')}, file {part('file')})"
    held = [f"store buffers {part('store_buffers')}"] if "store_buffers" in m else []
    if "malloc_in_use" in m:
        held.append(f"C heap {part('malloc_in_use')} in use, {part('malloc_free')} free")
    return text + (": " + ", ".join(held) if held else "")


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    s = ctx.client(autostart=not args.no_start).status()
    ctx.emit(s, render)
    if args.check and (not s["ready"] or s["alerts"]):
        return EXIT_PROBLEMS
    return EXIT_OK
