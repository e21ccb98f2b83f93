"""``lightkeeper demo``: demo users from the shipped corpus, the agent, a background workload.

1. Makes sure the agent runs (starting it in the background if needed).
2. Starts ``lightkeeper offline-llm`` and two ``lightkeeper serve`` processes (free loopback
   ports), one per served demo user's workspace in the data root: the stock LightRAG server
   under watch, with no model and no network.
3. Seeds four demo users from the Saltmere corpus and asks each a first question per mode,
   so the charts have points at once: the two served users over their server's REST API,
   the others through the library runtime (offline provider unless configured otherwise).
4. Starts a gentle background workload as a detached process (pid file in the state dir;
   ``demo --status``, ``demo --stop``): REST requests to the served users' servers, library
   calls for the others. With the offline provider it simulates model latency
   (``rag.simulate_*``, unless you set them) so the latency charts look like a deployment.
5. Opens the console, unless ``--no-console``. ``demo --stop`` stops the workload and the
   servers.
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
    g.add_argument("--stop", action="store_true",
                   help="stop the background workload and the demo's LightRAG servers")
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


def _latency(ctx: CliContext) -> dict[str, float]:
    """The offline endpoint's simulated model latency: the demo's unless configured."""
    cfg = ctx.cfg
    sim = {k: float(cfg[k]) for k in DEMO_SIMULATION}
    if cfg["rag.provider"] == "offline":
        sim.update({k: v for k, v in DEMO_SIMULATION.items() if cfg.origin(k) == "default"})
    return {"llm_ms": sim["rag.simulate_llm_ms"],
            "llm_ms_per_token": sim["rag.simulate_llm_ms_per_token"],
            "embed_ms": sim["rag.simulate_embed_ms"]}


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
    import aiohttp

    from lightkeeper.cli import demo_servers
    from lightkeeper.rag.rest_workload import TIMEOUT, Served
    from lightkeeper.rag.runtime import RagRuntime
    from lightkeeper.rag.workload import DEMO_USERS, SERVED_USERS, background

    pid_file, status_file, _log = _paths(ctx)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    started = time.time()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        urls = {u: e["url"] for u, e in (demo_servers.read_state(ctx).get("servers")
                                         or {}).items()
                if u in SERVED_USERS and demo_servers.alive(e, "serve")}
        # a served user without its server is left alone: the library runtime must never
        # become a second writer on a served workspace
        users = [u for u in DEMO_USERS if u not in SERVED_USERS or u in urls]
        async with RagRuntime(ctx.cfg, watch_tuning=True) as rt, \
                aiohttp.ClientSession(timeout=TIMEOUT) as session:
            served = {u: Served(u, url, session) for u, url in urls.items()}
            task = asyncio.create_task(background(rt, stop, rate=rate, served=served,
                                                  users=users))
            while not stop.is_set():
                stats = rt.stats()
                tmp = status_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"started": started, "updated": time.time(),
                                           "rate": rate, "ops": stats["spool_written"],
                                           "open_users": stats["open_users"],
                                           "rss_bytes": stats["rss_bytes"],
                                           "tuning_version": stats["tuning_version"],
                                           "served": urls}))
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


def _seed(ctx: CliContext, servers: Any) -> dict[str, Any]:
    """Library users through the runtime (while the servers start), then the served users
    over their servers' REST API."""
    import aiohttp

    from lightkeeper.rag import corpus, rest_workload
    from lightkeeper.rag.runtime import RagRuntime
    from lightkeeper.rag.workload import (
        DEMO_USERS,
        QUERY_MODES,
        SERVED_USERS,
        documents_for,
        first_queries,
        seed_demo,
    )

    library = tuple(u for u in DEMO_USERS if u not in SERVED_USERS)

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

    async def served(state: dict[str, Any]) -> tuple[dict[str, Any], int]:
        qs = corpus.questions()
        async with aiohttp.ClientSession(timeout=rest_workload.TIMEOUT) as session:
            srvs = [rest_workload.Served(u, state["servers"][u]["url"], session)
                    for u in SERVED_USERS]
            seeded = await asyncio.gather(*[rest_workload.seed(
                s, [(d.text, d.file_path) for d in documents_for(DEMO_USERS[s.user])],
                progress=progress) for s in srvs])
            asked = await asyncio.gather(*[rest_workload.first_queries(
                s, qs, QUERY_MODES, offset=list(DEMO_USERS).index(s.user) * 5) for s in srvs])
        return {s.user: r for s, r in zip(srvs, seeded, strict=True)}, sum(asked)

    async def main() -> dict[str, Any]:
        t0 = time.perf_counter()
        async with RagRuntime(ctx.cfg) as rt:
            seeded = await seed_demo(rt, progress=progress, users=library)
            asked = await first_queries(rt, users=library)
        t1 = time.perf_counter()
        state = await asyncio.to_thread(servers.ready)
        t2 = time.perf_counter()
        rest, rest_asked = await served(state)
        t3 = time.perf_counter()
        return {"users": {**seeded, **rest}, "library_s": round(t1 - t0, 2),
                "servers_wait_s": round(t2 - t1, 2), "served_s": round(t3 - t2, 2),
                "seed_s": round(t3 - t0, 2), "queries": asked + rest_asked,
                "served": list(SERVED_USERS)}

    if bar is None:
        return asyncio.run(main())
    with bar:
        return asyncio.run(main())


def cmd_demo(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.run_workload:
        return _run_worker(ctx, args.rate)
    if args.stop:
        from lightkeeper.cli import demo_servers

        res = stop_workload(ctx)
        res["servers"] = demo_servers.stop(ctx)

        def stopped(r: dict[str, Any]) -> str:
            lines = [f"stopped the demo workload (pid {r['pid']})" if r["stopped"]
                     else "the demo workload is not running"]
            lines += [f"stopped {s['name']} (pid {s['pid']})" for s in r["servers"]
                      if s["stopped"]]
            return "\n".join(lines)

        ctx.emit(res, stopped)
        return EXIT_OK
    if args.status:
        from lightkeeper.cli import demo_servers

        st = workload_status(ctx)
        st["servers"] = demo_servers.status(ctx)

        def human(s: dict[str, Any]) -> str:
            if not s["running"]:
                text = "the demo workload is not running"
            else:
                text = (f"the demo workload is running (pid {s['pid']}), {s.get('ops', '?')} "
                        f"operations, {s.get('rate', '?')}/s; log {s['log']}")
            for user, srv in s["servers"]["servers"].items():
                text += (f"\nlightkeeper serve for {user}: "
                         f"{'running' if srv['running'] else 'not running'} "
                         f"(pid {srv['pid']}, {srv['url']})")
            return text

        ctx.emit(st, human)
        return EXIT_OK if st["running"] else EXIT_FAILED
    if args.rate <= 0 or args.rate > 1000:
        raise CliError("--rate must be between 0 and 1000 operations per second", 2)

    from lightkeeper.cli.demo_servers import DemoServers
    from lightkeeper.rag.workload import SERVED_USERS

    out: dict[str, Any] = {"data_root": str(ctx.cfg.path("paths.data_root"))}
    _step(ctx, 1, "starting the agent, offline-llm and two `lightkeeper serve` servers; "
          "seeding demo users with real LightRAG data (offline models; 30-90 s)")
    agent_ok = True
    try:  # first: the servers read the tuning version the agent initializes
        ctx.client()
        out["agent"] = "running"
    except CliError as exc:
        agent_ok = False
        out["agent"] = f"unavailable: {exc}"
        print(f"lightkeeper: warning: {exc}; the spool is kept until an agent ingests it",
              file=sys.stderr)
    servers = DemoServers(ctx, SERVED_USERS, _latency(ctx), ctx.cfg.source_args())
    try:
        servers.start()
        out["seed"] = _seed(ctx, servers)
    except BaseException:
        servers.stop_started()  # nothing this run started is left behind
        raise
    out["servers"] = {u: {"pid": e["pid"], "url": e["url"]}
                      for u, e in servers.state["servers"].items()}
    out["offline_llm"] = servers.state["llm"]["url"]
    if not ctx.json:
        users = ", ".join(out["seed"]["users"])
        print(f"seeded {len(out['seed']['users'])} demo users ({users}) in "
              f"{out['seed']['seed_s']} s; {out['seed']['queries']} first queries")
        for user, e in out["servers"].items():
            print(f"  {user}: lightkeeper serve (pid {e['pid']}) at {e['url']} "
                  f"(WebUI {e['url']}/webui)")
    _step(ctx, 2, "starting the background workload, then the console")
    if not args.no_workload:
        out["workload"] = start_workload(ctx, args.rate)
        if not ctx.json:
            w = out["workload"]
            print(f"background workload {'started' if w['started'] else 'already running'} "
                  f"(pid {w['pid']}, {args.rate}/s); stop it and the servers with "
                  "'lightkeeper demo --stop'")
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
