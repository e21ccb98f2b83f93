"""``lightkeeper alerts``: active alerts (or the history with --all)."""

from __future__ import annotations

import argparse
import time

from lightkeeper.cli.common import EXIT_OK, EXIT_PROBLEMS, CliContext, add_json_flag, table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="list active alerts")
    add_json_flag(p)
    p.add_argument("--all", action="store_true", help="include resolved alerts")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--check", action="store_true", help="exit 4 if any alert is active")
    p.set_defaults(func=run)


def _fmt(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    rows = ctx.client().alerts(active=not args.all, limit=args.limit)
    view = [{**r, "started": _fmt(r["started"]), "ended": _fmt(r["ended"]) or "active"}
            for r in rows]
    ctx.emit(rows if ctx.json else view, lambda _: table(view, [
        ("severity", "SEVERITY"), ("rule", "ALERT"), ("label", "ON"), ("started", "SINCE"),
        ("ended", "ENDED"), ("message", "MESSAGE")], empty="no active alerts"))
    active = [r for r in rows if r["ended"] is None]
    return EXIT_PROBLEMS if args.check and active else EXIT_OK
