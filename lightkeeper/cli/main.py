"""``lightkeeper``: the console, and every action as a subcommand for scripts and cron."""

from __future__ import annotations

import argparse
import importlib
import sys

from lightkeeper import __version__
from lightkeeper.cli.common import EXIT_AGENT, EXIT_FAILED, EXIT_USAGE, CliContext, CliError
from lightkeeper.client import AgentError, AgentUnavailable

# Each module exposes register(subparsers). Listed in the order `--help` shows them.
COMMAND_MODULES = [
    "lightkeeper.cli.console",
    "lightkeeper.cli.agent",
    "lightkeeper.cli.status",
    "lightkeeper.cli.config",
    "lightkeeper.cli.alerts",
    "lightkeeper.cli.events",
    "lightkeeper.cli.metrics",
    "lightkeeper.cli.processes",
    "lightkeeper.cli.jobs",
    "lightkeeper.cli.rag",
    "lightkeeper.cli.offline_llm",
    "lightkeeper.cli.serve",
    "lightkeeper.cli.demo",
    "lightkeeper.cli.bench",
    "lightkeeper.cli.backup",
    "lightkeeper.cli.restore",
    "lightkeeper.cli.zones",
    "lightkeeper.cli.replicate",
    "lightkeeper.cli.tuning",
]

EPILOG = """exit codes:
  0    success
  1    the operation failed
  2    bad arguments or configuration
  3    the agent is not reachable and could not be started
  4    a check found problems (verify found damage, alerts firing with --check)
  5    partly done (for example one zone of several failed)
  130  cancelled
"""


# The command each module registers: its own name (offline_llm -> offline-llm).
COMMANDS = {name.rsplit(".", 1)[1].replace("_", "-"): name for name in COMMAND_MODULES}
# Global options that take a value (the token after them is not the command).
_VALUED = {"--config", "--state-dir", "--data-root", "--set"}


def command_of(argv: list[str]) -> str | None:
    """The command named on a command line (``lightkeeper --config F backup run`` ->
    ``backup``), or None (no command, ``--help``, or a name no module registers)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token.startswith("--") and "=" not in token and \
                any(v.startswith(token) for v in _VALUED):  # argparse takes abbreviations
            skip = True
        elif not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightkeeper",
        description="Console and agent for servers that run LightRAG for many users. "
        "Without a command, opens the console (starting the agent if none runs).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lightkeeper {__version__}")
    parser.add_argument("--config", metavar="FILE",
                        help="config file (overrides LIGHTKEEPER_CONFIG and the default files)")
    parser.add_argument("--state-dir", metavar="DIR", help="sets paths.state_dir")
    parser.add_argument("--data-root", metavar="DIR", help="sets paths.data_root")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="set any configuration key (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # One command's module when the command line names one: a command run from a script
    # does not import and build the other eighteen (about 0.1 s of every invocation).
    for name in [COMMANDS[only]] if only in COMMANDS else COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(command_of(sys.argv[1:] if argv is None else argv))
    # `serve` passes what it does not know to lightrag-server (its arguments are that server's)
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "passthrough", False):
            args.server_args = extra
        else:
            parser.parse_args(argv)  # the usual error for unknown arguments (exit 2)
    if not getattr(args, "func", None):
        if args.command is None:
            args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "console"])
        else:
            parser.print_help()
            return EXIT_USAGE
    ctx = CliContext(args)
    try:
        return int(args.func(args, ctx) or 0)
    except CliError as exc:
        print(f"lightkeeper: {exc}", file=sys.stderr)
        return exc.code
    except AgentError as exc:  # the agent refused the request: its message, never a traceback
        print(f"lightkeeper: {exc}", file=sys.stderr)
        # 409: refused as unauthenticated or conflicting (e.g. a forged snapshot)
        return EXIT_USAGE if exc.status in (400, 404, 409, 422) else EXIT_FAILED
    except AgentUnavailable as exc:
        print(f"lightkeeper: {exc}", file=sys.stderr)
        return EXIT_AGENT
    except KeyboardInterrupt:
        print("lightkeeper: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
