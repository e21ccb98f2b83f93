"""``lightkeeper events``: the agent's events and audit log, with filters and --follow."""

from __future__ import annotations

import argparse
import json
import time

from lightkeeper.cli.common import EXIT_OK, CliContext, add_json_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="events and audit log")
    add_json_flag(p)
    p.add_argument("--level", choices=["debug", "info", "warning", "error"],
                   help="minimum level")
    p.add_argument("--kind", help="audit, alert, ...")
    p.add_argument("--search", "-q", help="text to look for")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.set_defaults(func=run)


def _line(e: dict) -> str:
    ctx = " ".join(f"{k}={v}" for k, v in (e.get("context") or {}).items() if v is not None)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
    actor = f" by {e['actor']}" if e.get("actor") else ""
    return f"{stamp} {e['level']:<7} {e['kind']:<6} {e['event']}{actor}  {ctx}".rstrip()


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client()
    since = 0
    first = True
    while True:
        rows = client.events(since=since, limit=args.limit if first else 1000, level=args.level,
                             kind=args.kind, q=args.search)
        first = False
        for e in rows:
            print(json.dumps(e, default=str) if ctx.json else _line(e), flush=True)
            since = max(since, e["id"])
        if not args.follow:
            return EXIT_OK
        time.sleep(1.0)
