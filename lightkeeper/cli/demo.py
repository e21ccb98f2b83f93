"""``lightkeeper demo``: demo users from the shipped corpus, the agent, a background workload.

1. Seeds four demo users from the Saltmere corpus (offline provider unless configured
   otherwise) and asks each a first question per mode, so the charts have points at once.
2. Makes sure the agent runs (starting it in the background if needed).
3. Starts a gentle background workload as a detached process (pid file in the state dir;
   ``demo --status``, ``demo --stop``). With the offline provider it simulates model latency
   (``rag.simulate_*``, unless you set them) so the latency charts look like a deployment.
4. Opens the console, unless ``--no-console``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lightkeeper.cli.common import (
    EXIT_AGENT,
    EXIT_FAILED,
    EXIT_OK,
    CliContext,
    CliError,
    add_json_flag,
)

WORKER_FLAG = "--run-workload"
# Simulated model latency of the background workload (offline provider), unless configured.
DEMO_SIMULATION = {"rag.simulate_llm_ms": 150.0, "rag.simulate_llm_ms_per_token": 0.5,
                   "rag.simulate_embed_ms": 20.0}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="demo users, the agent and a background LightRAG workload",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stop", action="store_true", help="stop the background workload")
    g.add_argument("--status", action="store_true", help="is the background workload running?")
    g.add_argument(WORKER_FLAG, dest="run_workload", action="store_true",
                   help=argparse.SUPPRESS)
    p.add_argument("--no-console", action="store_true", help="do not open the console")
    # scripts/run-demo.sh shows its install as step 1: the demo numbers its own steps after it.
    # (A flag, not a LIGHTKEEPER_* variable: those are configuration keys, and unknown ones are
    # refused.)
    p.add_argument("--steps-before", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--no-workload", action="store_true",
                   help="seed only; do not start the background workload")
    p.add_argument("--rate", type=float, default=1.0,
                   help="background operations per second (default 1.0)")
    add_json_flag(p)
    p.set_defaults(func=cmd_demo)


def _paths(ctx: CliContext) -> tuple[Path, Path, Path]:
    state = ctx.cfg.path("paths.state_dir")
    return state / "demo-workload.pid", state / "demo-workload.json", \
        state / "logs" / "demo-workload.log"


def _workload_pid(pid_file: Path) -> int | None:
    """The pid of a running demo workload, or None (a stale pid file is removed)."""
    import psutil

    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        if WORKER_FLAG in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
            return pid
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    pid_file.unlink(missing_ok=True)
    return None


def _child_args(ctx: CliContext) -> list[str]:
    """Global options that reproduce this process's configuration in a child."""
    cfg = ctx.cfg
    args = cfg.source_args()
    if cfg["rag.provider"] == "offline":
        for key, value in DEMO_SIMULATION.items():
            if cfg.origin(key) == "default":
                args += ["--set", f"{key}={value}"]
    return args


def start_workload(ctx: CliContext, rate: float) -> dict[str, Any]:
    pid_file, _status_file, log_file = _paths(ctx)
    pid = _workload_pid(pid_file)
    if pid is not None:
        return {"started": False, "pid": pid, "detail": "already running"}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lightkeeper.cli.main", *_child_args(ctx), "demo",
           WORKER_FLAG, "--rate", str(rate)]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{proc.pid}\n")
    return {"started": True, "pid": proc.pid, "log": str(log_file)}


def stop_workload(ctx: CliContext, timeout: float = 15.0) -> dict[str, Any]:
    pid_file, _status_file, _log = _paths(ctx)
    pid = _workload_pid(pid_file)
    if pid is None:
        return {"stopped": False, "detail": "not running"}
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _workload_pid(pid_file) == pid:
        time.sleep(0.1)
    if _workload_pid(pid_file) == pid:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
    return {"stopped": True, "pid": pid}


def workload_status(ctx: CliContext) -> dict[str, Any]:
    pid_file, status_file, log_file = _paths(ctx)
    pid = _workload_pid(pid_file)
    info: dict[str, Any] = {"running": pid is not None, "pid": pid, "log": str(log_file)}
    try:
        info.update(json.loads(status_file.read_text()))
        info["running"] = pid is not None
        info["pid"] = pid
    except (FileNotFoundError, ValueError):
        pass
    return info


def _run_worker(ctx: CliContext, rate: float) -> int:
    """The detached background workload (``demo --run-workload``)."""
    from lightkeeper.rag.runtime import RagRuntime
    from lightkeeper.rag.workload import background

    pid_file, status_file, _log = _paths(ctx)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    started = time.time()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with RagRuntime(ctx.cfg, watch_tuning=True) as rt:
            task = asyncio.create_task(background(rt, stop, rate=rate))
            while not stop.is_set():
                stats = rt.stats()
                tmp = status_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"started": started, "updated": time.time(),
                                           "rate": rate, "ops": stats["spool_written"],
                                           "open_users": stats["open_users"],
                                           "rss_bytes": stats["rss_bytes"],
                                           "tuning_version": stats["tuning_version"]}))
                os.replace(tmp, status_file)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=2.0)
                except TimeoutError:
                    pass
            await task

    try:
        asyncio.run(main())
    finally:
        try:
            if pid_file.read_text().split()[0] == str(os.getpid()):
                pid_file.unlink()
        except (FileNotFoundError, IndexError):
            pass
    return EXIT_OK


def _step(ctx: CliContext, n: int, text: str) -> None:
    """A numbered step line on the terminal (run-demo.sh counts its install as step 1)."""
    if ctx.json or not sys.stderr.isatty():
        return
    offset = max(0, int(getattr(ctx.args, "steps_before", 0) or 0))
    sys.stderr.write(f"\033[1m[{n + offset}/{2 + offset}]\033[0m {text}\n")
    sys.stderr.flush()


def _seed(ctx: CliContext) -> dict[str, Any]:
    from lightkeeper.rag.runtime import RagRuntime
    from lightkeeper.rag.workload import first_queries, seed_demo

    tty = sys.stderr.isatty() and not ctx.json
    bar: Any = None
    if tty:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(TextColumn("      seeding [bold]{task.description}"), BarColumn(),
                       MofNCompleteColumn(), TextColumn("documents"), TimeElapsedColumn(),
                       console=Console(stderr=True), transient=True)
    tasks: dict[str, Any] = {}

    def progress(user: str, done: int, total: int) -> None:
        if bar is None:
            return
        if user not in tasks:
            tasks[user] = bar.add_task(user, total=total)
        bar.update(tasks[user], completed=done, total=total)

    async def main() -> dict[str, Any]:
        async with RagRuntime(ctx.cfg) as rt:
            t0 = time.perf_counter()
            seeded = await seed_demo(rt, progress=progress)
            t1 = time.perf_counter()
            asked = await first_queries(rt)
            t2 = time.perf_counter()
            return {"users": seeded, "seed_s": round(t1 - t0, 2), "queries": asked,
                    "queries_s": round(t2 - t1, 2)}

    if bar is None:
        return asyncio.run(main())
    with bar:
        return asyncio.run(main())


def cmd_demo(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.run_workload:
        return _run_worker(ctx, args.rate)
    if args.stop:
        res = stop_workload(ctx)
        ctx.emit(res, lambda r: f"stopped the demo workload (pid {r['pid']})" if r["stopped"]
                 else "the demo workload is not running")
        return EXIT_OK
    if args.status:
        st = workload_status(ctx)

        def human(s: dict[str, Any]) -> str:
            if not s["running"]:
                return "the demo workload is not running"
            return (f"the demo workload is running (pid {s['pid']}), {s.get('ops', '?')} "
                    f"operations, {s.get('rate', '?')}/s; log {s['log']}")

        ctx.emit(st, human)
        return EXIT_OK if st["running"] else EXIT_FAILED
    if args.rate <= 0 or args.rate > 1000:
        raise CliError("--rate must be between 0 and 1000 operations per second", 2)

    out: dict[str, Any] = {"data_root": str(ctx.cfg.path("paths.data_root"))}
    _step(ctx, 1, "seeding demo users with real LightRAG data (offline models; 10-30 s)")
    out["seed"] = _seed(ctx)
    if not ctx.json:
        users = ", ".join(out["seed"]["users"])
        print(f"seeded {len(out['seed']['users'])} demo users ({users}) in "
              f"{out['seed']['seed_s']} s; {out['seed']['queries']} first queries in "
              f"{out['seed']['queries_s']} s")
    agent_ok = True
    _step(ctx, 2, "starting the agent and the background workload, then the console")
    try:
        ctx.client()
        out["agent"] = "running"
    except CliError as exc:
        agent_ok = False
        out["agent"] = f"unavailable: {exc}"
        print(f"lightkeeper: warning: {exc}; the spool is kept until an agent ingests it",
              file=sys.stderr)
    if not args.no_workload:
        out["workload"] = start_workload(ctx, args.rate)
        if not ctx.json:
            w = out["workload"]
            print(f"background workload {'started' if w['started'] else 'already running'} "
                  f"(pid {w['pid']}, {args.rate}/s); stop it with 'lightkeeper demo --stop'")
    if ctx.json:
        print(json.dumps(out, indent=2))
    console = importlib.util.find_spec("lightkeeper.cli.console") is not None
    if console and not args.no_console and not ctx.json:
        from lightkeeper.cli.main import main as cli_main

        return cli_main([*_child_args_for_console(ctx), "console"])
    if not agent_ok:
        return EXIT_AGENT
    return EXIT_OK if not out["seed"]["users"] or all(
        not u["failed"] for u in out["seed"]["users"].values()) else EXIT_FAILED


def _child_args_for_console(ctx: CliContext) -> list[str]:
    """Global options for the console: the same configuration, without demo simulation."""
    args = _child_args(ctx)
    cleaned: list[str] = []
    skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == "--set" and i + 1 < len(args) and args[i + 1].split("=", 1)[0] in DEMO_SIMULATION \
                and ctx.cfg.origin(args[i + 1].split("=", 1)[0]) == "default":
            skip = True
            continue
        cleaned.append(a)
    return cleaned
