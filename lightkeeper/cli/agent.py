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
    iu = asub.add_parser("install-unit", help="write the systemd unit for this install",
                         description="Write lightkeeper-agent.service (Type=notify, watchdog, "
                         "hardened, ExecReload sends SIGHUP) with this install's Python, config "
                         "file and paths.")
    iu.add_argument("--user", help="account the agent runs as (default: lightkeeper when run "
                    "as root, else you)")
    iu.add_argument("--group", help="its group (default: the user's name)")
    iu.add_argument("--output", default="/etc/systemd/system/lightkeeper-agent.service",
                    help="where to write it ('-': print it)")
    iu.set_defaults(func=run_install_unit)


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
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        err_path = log_dir / "agent.stderr"
        start_at = err_path.stat().st_size if err_path.exists() else 0
        # private like the log (it may hold tracebacks with paths and values); no symlink
        fd = os.open(err_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "ab") as err:
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


def run_install_unit(args: argparse.Namespace, ctx: CliContext) -> int:
    import getpass
    import tempfile
    from pathlib import Path

    from lightkeeper.cli.unit import render, writable_paths

    check_config(ctx)
    cfg = ctx.cfg
    user = args.user or ("lightkeeper" if os.geteuid() == 0 else getpass.getuser())
    text = render(cfg, sys.executable, user, args.group)
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    out = Path(args.output)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # systemd units are world-readable; this one holds no secret
        os.replace(tmp, out)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror} (run as root to write into "
                       "/etc/systemd/system, or pass --output)") from None
    required, _ = writable_paths(cfg)
    print(f"wrote {out}\nnext, as root:\n"
          f"  id {user} || useradd --system --home-dir {required[0]} --shell /usr/sbin/nologin "
          f"{user}\n"
          f"  install -d -o {user} -g {args.group or user} -m 0700 "
          f"{' '.join([required[0], *required[2:]])}\n"
          f"  systemctl daemon-reload && systemctl enable --now {out.name}\n"
          f"the data root {required[1]} must be readable (and writable, for restores) by {user}")
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
