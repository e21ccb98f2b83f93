"""``lightkeeper agent``: run the agent in the foreground, in the background, or stop it."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from lightkeeper import logs
from lightkeeper.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliContext, CliError
from lightkeeper.client import AgentClient, agent_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run the agent (collectors, store, jobs, API)",
                       description="Run the agent. One agent per state directory; it alone opens "
                       "the metrics store. SIGTERM or SIGINT flush pending writes and checkpoint "
                       "the store before exit; SIGHUP re-reads the configuration.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--detach", action="store_true",
                   help="run in the background (log file and pid in the state directory)")
    g.add_argument("--stop", action="store_true", help="stop the running agent")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="with --detach/--stop: how long to wait (default 30)")
    p.set_defaults(func=run)
    asub = p.add_subparsers(dest="agent_cmd", metavar="ACTION")
    rl = asub.add_parser("reload", help="re-read the configuration without a restart",
                         description="The running agent re-reads its configuration from the "
                         "sources it started with. An invalid configuration, or one that changes "
                         "a setting that needs a restart, is refused whole (exit 2) and the agent "
                         "keeps its current configuration.")
    rl.set_defaults(func=run_reload)


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    from lightkeeper.agent.daemon import AgentStartError, prepare_state_dir
    from lightkeeper.agent.pidlock import PidLock

    cfg = ctx.cfg
    if args.stop:
        return _stop(ctx, args.wait)
    check_config(ctx)
    try:
        state = prepare_state_dir(cfg)
    except AgentStartError as exc:
        raise CliError(str(exc)) from None
    if args.detach:
        lock = PidLock(state / "agent.lock")
        try:
            lock.acquire()
            lock.release()
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
        log_dir = cfg.path("log.file").parent
        log_dir.mkdir(parents=True, exist_ok=True)
        err_path = log_dir / "agent.stderr"
        start_at = err_path.stat().st_size if err_path.exists() else 0
        with open(err_path, "ab") as err:
            proc = subprocess.Popen(agent_command(cfg, "agent"), stdin=subprocess.DEVNULL, stdout=err,
                                    stderr=err, start_new_session=True,
                                    env={**os.environ, "LIGHTKEEPER_AGENT_CHILD": "1"})

        client = AgentClient(cfg.path("agent.socket"))
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            if client.ping():
                print(f"agent started (pid {proc.pid}), socket {cfg.path('agent.socket')}")
                return EXIT_OK
            if proc.poll() is not None:
                with open(err_path, "rb") as fh:
                    fh.seek(start_at)
                    tail = fh.read().decode(errors="replace").strip().splitlines()[-5:]
                raise CliError("the agent exited at start: " + " | ".join(tail))
            time.sleep(0.1)
        raise CliError(f"the agent did not answer within {args.wait:g} s; see {err_path} "
                       f"and {cfg['log.file']}")
    # foreground
    logs.setup(cfg["log.level"], cfg.path("log.file"), cfg["log.max_bytes"], cfg["log.backups"],
               console=None if not os.environ.get("LIGHTKEEPER_AGENT_CHILD") else False)
    from lightkeeper.agent import nopandas

    nopandas.install()
    from lightkeeper.agent import daemon

    def ready() -> None:
        if sys.stderr.isatty():
            print(f"lightkeeper agent ready (pid {os.getpid()}), socket "
                  f"{cfg.path('agent.socket')}", file=sys.stderr)

    try:
        daemon.run(cfg, ready)
    except AgentStartError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def check_config(ctx: CliContext) -> None:
    """What the agent would refuse (schedules, alert names...), refused here first."""
    from lightkeeper.agent.configcheck import check
    from lightkeeper.config import ConfigError

    try:
        check(ctx.cfg)
    except ConfigError as exc:
        raise CliError(f"configuration error: {exc}", EXIT_USAGE) from None


def run_reload(args: argparse.Namespace, ctx: CliContext) -> int:
    from lightkeeper.client import default_actor

    keeps = "; the agent was not asked and keeps its current configuration"
    try:
        check_config(ctx)
    except CliError as exc:
        raise CliError(str(exc) + keeps, exc.code) from None
    result = ctx.client(autostart=False).reload(default_actor())
    if not result["ok"]:
        raise CliError(f"configuration error: {result['error']}; the agent keeps its current "
                       "configuration", EXIT_USAGE)
    changed = result.get("changed") or []
    print("configuration reloaded: " + (f"{len(changed)} changed ({', '.join(changed)})"
                                        if changed else "no change"))
    return EXIT_OK


def _stop(ctx: CliContext, wait: float) -> int:
    from lightkeeper.agent.pidlock import PidLock

    lock_path = ctx.cfg.path("paths.state_dir") / "agent.lock"
    if not lock_path.exists():
        print("no agent is running")
        return EXIT_OK
    lock = PidLock(lock_path)
    try:
        lock.acquire()
        lock.release()
        print("no agent is running")
        return EXIT_OK
    except RuntimeError:
        pass
    pid = lock.holder()
    if not pid:
        raise CliError(f"an agent holds {lock_path} but its pid is unknown")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            lock.acquire()
            lock.release()
            print(f"agent (pid {pid}) stopped")
            return EXIT_OK
        except RuntimeError:
            time.sleep(0.1)
    print(f"agent (pid {pid}) did not stop within {wait:g} s", file=sys.stderr)
    return EXIT_FAILED
