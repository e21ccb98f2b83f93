"""``lightkeeper console`` (and ``lightkeeper`` with no command): the Textual console.

The agent is reached (and started in the background when none runs) before the app starts, so
a missing or broken agent is a clear error on the terminal, not a blank screen.
"""

from __future__ import annotations

import argparse
import sys

from lightkeeper.cli.common import EXIT_USAGE, CliContext, CliError

THEMES = {"dark": "textual-dark", "light": "textual-light"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="open the console (the default command)",
                       description="Open the keyboard-driven console. Starts the agent in the "
                       "background if none runs. Jobs started here run in the agent and survive "
                       "the console (and the SSH session) closing.")
    p.add_argument("--window", choices=("5m", "1h", "24h", "7d"),
                   help="initial chart time window (default: console.window if set, else "
                   "the window used last, else one the data fills)")
    p.add_argument("--theme", choices=tuple(THEMES), help="colour theme (default: console.theme)")
    p.add_argument("--refresh", type=float, metavar="SECONDS",
                   help="seconds between polls (default: console.refresh_seconds)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("the console needs a terminal; for scripts use 'lightkeeper status --json' "
                       "and the other subcommands", EXIT_USAGE)
    cfg = ctx.cfg
    client = ctx.client()  # autostarts the agent; exits 3 with a clear message if impossible
    client.timeout = 10.0  # a hung agent shows as a lost connection, not a frozen panel
    from lightkeeper.tui.app import LightkeeperApp  # Textual is imported only for the console
    from lightkeeper.tui.prefs import Prefs

    refresh = args.refresh if args.refresh is not None else cfg["console.refresh_seconds"]
    if refresh is not None and not 0.5 <= refresh <= 60:
        raise CliError("--refresh must be between 0.5 and 60 seconds", EXIT_USAGE)
    app = LightkeeperApp(client, refresh_s=refresh,
                         chart_s=cfg["console.chart_refresh_seconds"],
                         # --window, else a configured window, else the operator's last one,
                         # else the smallest window the agent's data fills
                         window=args.window or (cfg["console.window"] if cfg.origin(
                             "console.window") != "default" else None),
                         prefs=Prefs(),
                         theme=THEMES[args.theme or cfg["console.theme"]])
    code = app.run()
    return int(code or 0)
