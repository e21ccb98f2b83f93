"""``lightkeeper alerts``: active alerts (or the history with --all), Alertmanager silences, and
the Prometheus rule file generated from the rules the agent evaluates."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lightkeeper.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    CliContext,
    CliError,
    add_json_flag,
    table,
)
from lightkeeper.contracts.alerts import Silence


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="list active alerts; silences; Prometheus rules",
                       description="Without an action: the active alerts (--all: the history).")
    add_json_flag(p)
    p.add_argument("--all", action="store_true", help="include resolved alerts")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--check", action="store_true", help="exit 4 if any alert is active")
    p.set_defaults(func=run)
    asub = p.add_subparsers(dest="alerts_cmd", metavar="ACTION")
    ex = asub.add_parser("export-rules",
                         help="write the Prometheus rule file for the effective configuration")
    ex.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    ex.set_defaults(func=run_export)
    sl = asub.add_parser("silences", help="silences in Alertmanager (through the agent)")
    add_json_flag(sl)
    sl.add_argument("--all", action="store_true", help="include expired silences")
    sl.set_defaults(func=run_silences)
    mk = asub.add_parser("silence", help="silence an alert in Alertmanager (audited)")
    mk.add_argument("alert", help="alert name as the agent knows it (e.g. disk_free_low)")
    mk.add_argument("--on", metavar="LABEL", help="only this mount, zone, collector...")
    mk.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                    help="how long: 30m, 2h, 1d")
    mk.add_argument("--comment", required=True, help="why (shown to everyone on call)")
    add_json_flag(mk)
    mk.set_defaults(func=run_silence)
    ex2 = asub.add_parser("expire", help="end a silence early (audited)")
    ex2.add_argument("silence_id")
    ex2.set_defaults(func=run_expire)


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


def run_export(args: argparse.Namespace, ctx: CliContext) -> int:
    from lightkeeper.agent.rules_export import export
    from lightkeeper.config import ConfigError

    try:
        text = export(ctx.cfg)
    except ConfigError as exc:
        raise CliError(f"configuration error: {exc}", EXIT_USAGE) from None
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _agent_call(ctx: CliContext, name: str, **params: object) -> Any:
    from lightkeeper.client import AgentError

    try:
        return ctx.client().call(name, **params)
    except AgentError as exc:
        raise CliError(str(exc), EXIT_USAGE if exc.status in (400, 404) else 1) from None


def run_silences(args: argparse.Namespace, ctx: CliContext) -> int:
    rows: list[Silence] = _agent_call(ctx, "alerts.silences", all=bool(args.all))
    ctx.emit(rows, lambda _: table(rows, [
        ("id", "ID"), ("state", "STATE"), ("matchers_text", "MATCHES"), ("ends", "UNTIL"),
        ("created_by", "BY"), ("comment", "COMMENT")], empty="no silences"))
    return EXIT_OK


def run_silence(args: argparse.Namespace, ctx: CliContext) -> int:
    from lightkeeper.client import default_actor

    out: Silence = _agent_call(ctx, "alerts.silence", alert=args.alert, label=args.on,
                      duration=args.duration, comment=args.comment, actor=default_actor())
    ctx.emit(out, f"silence {out['id']} on {out['matchers_text']} until {out['ends']}")
    return EXIT_OK


def run_expire(args: argparse.Namespace, ctx: CliContext) -> int:
    from lightkeeper.client import default_actor

    _agent_call(ctx, "alerts.expire_silence", id=args.silence_id, actor=default_actor())
    print(f"silence {args.silence_id} expired")
    return EXIT_OK
