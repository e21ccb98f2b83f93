"""``lightkeeper serve``: the stock LightRAG server (lightrag-hku 1.5.7's own API application,
in this process), with lightkeeper's instrumentation, write gate and tuning attached.

    lightkeeper serve --user alice [lightrag-server arguments...]

Every argument after ``--user`` that lightkeeper does not know is lightrag-server's (``--host``,
``--port``, ``--llm-binding``..., see ``lightrag-server --help``), and its environment variables
(``LLM_BINDING_HOST``, ``EMBEDDING_DIM``, ``LIGHTRAG_API_KEY``...) apply as they do to it.
``--user U`` is the workspace (``--workspace U``) and the working directory defaults to
``paths.data_root``, so the files are ``<data_root>/U/``. Port 0 lets the OS pick: the first
line on standard output (and ``--ready-file``) is JSON with the URL. ``--restart`` asks a
running server to restart in place (SIGHUP; requests in flight finish, none are refused).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import Any

from lightkeeper.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliContext, CliError
from lightkeeper.ids import InvalidUserId, validate_user_id


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the stock LightRAG server for a user, under watch",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       allow_abbrev=False)
    p.add_argument("--user", help="user id: the LightRAG workspace served")
    p.add_argument("--ready-file", metavar="FILE",
                   help="write the server's address here (JSON) once it accepts connections")
    p.add_argument("--restart", action="store_true",
                   help="restart the running server of --user in place, then exit")
    p.add_argument("--no-instrument", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-gate", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve, passthrough=True)


def _user(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_user_id(value)
    except InvalidUserId as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def cmd_restart(ctx: CliContext, user: str | None) -> int:
    from lightkeeper.rag.serve import status_path
    from lightkeeper.tuning.serve_restart import StatusUnreadable, read_status

    if user is None:
        raise CliError("--restart needs --user", EXIT_USAGE)
    path = status_path(ctx.cfg, user)
    if not os.path.lexists(path):
        raise CliError(f"no lightkeeper serve runs for {user} (no {path})", EXIT_FAILED)
    try:  # written by the server: no symlink followed, size-capped, validated
        pid = read_status(path).pid
    except StatusUnreadable as exc:
        raise CliError(f"{path}: unreadable status ({exc})", EXIT_FAILED) from None
    import psutil

    try:
        if "serve" not in psutil.Process(pid).cmdline():
            raise psutil.NoSuchProcess(pid)
        os.kill(pid, signal.SIGHUP)
    except (psutil.NoSuchProcess, ProcessLookupError):
        raise CliError(f"lightkeeper serve for {user} (pid {pid}) is not running",
                       EXIT_FAILED) from None
    print(f"{user}: restart requested (pid {pid}); requests in flight finish first")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, ctx: CliContext) -> int:
    from lightkeeper.cli.offline_llm import write_ready_file

    user = _user(args.user)
    if args.restart:
        return cmd_restart(ctx, user)
    from lightkeeper.rag import lightrag_api
    from lightkeeper.rag.serve import ServeError, run

    ready_file = Path(args.ready_file) if args.ready_file else None

    def ready(status: dict[str, Any]) -> None:
        if ready_file is not None:
            write_ready_file(ready_file, status)
        print(json.dumps(status), flush=True)

    cfg = ctx.cfg
    try:
        return run(cfg, user, list(getattr(args, "server_args", None) or []), ready=ready,
                   instrumented=not args.no_instrument, gated=not args.no_gate)
    except lightrag_api.VersionMismatch as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except ServeError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot serve: {exc.strerror or exc}", EXIT_FAILED) from None
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
