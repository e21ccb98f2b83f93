"""``lightkeeper config``: show the effective configuration and where each value came from."""

from __future__ import annotations

import argparse

from lightkeeper import config as config_mod
from lightkeeper.cli.common import EXIT_OK, CliContext, add_json_flag, table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show or check the configuration")
    csub = p.add_subparsers(dest="config_cmd", metavar="ACTION", required=True)
    show = csub.add_parser("show", help="every effective value")
    show.add_argument("--origin", action="store_true", help="also show the source of each value")
    add_json_flag(show)
    show.set_defaults(func=run_show)
    check = csub.add_parser("check", help="validate the configuration (exit 2 if invalid)")
    check.set_defaults(func=run_check)
    ref = csub.add_parser("reference", help="print the configuration reference (Markdown)")
    ref.set_defaults(func=run_reference)


def run_show(args: argparse.Namespace, ctx: CliContext) -> int:
    items = ctx.cfg.items()
    data = [{"key": k, "value": v, "origin": o} for k, v, o in items]
    cols = [("key", "KEY"), ("value", "VALUE")] + ([("origin", "ORIGIN")] if args.origin else [])
    ctx.emit(data, lambda d: table(d, cols))
    return EXIT_OK


def run_check(args: argparse.Namespace, ctx: CliContext) -> int:
    from lightkeeper.cli.agent import check_config

    cfg = ctx.cfg  # raises a clear error (exit 2) when invalid
    check_config(ctx)  # and everything the agent would refuse (schedules, alert names)
    print("configuration is valid (files read: " + (", ".join(cfg.files_read) or "none") + ")")
    return EXIT_OK


def run_reference(args: argparse.Namespace, ctx: CliContext) -> int:
    print(config_mod.reference_markdown(), end="")
    return EXIT_OK
