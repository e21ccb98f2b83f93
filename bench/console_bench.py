"""Console benchmark in a real terminal (tmux): startup to first full frame, idle CPU, key-press
to repaint delay, against a live agent.

    .venv/bin/python bench/console_bench.py [--runs N] [--idle SECONDS] [--calls SECONDS]
                                            [--json]

Goals (issue 7): first full frame <= 1 s after launching ``lightkeeper``; an idle console uses
<= 5 % of one core at its default refresh rate; a key press is repainted within 100 ms.

Reference run: a minimal Textual app (one Static and the Footer, the same interpreter and
Textual version) measured the same way, i.e. the floor that Textual itself costs here.

How it measures: tmux runs the command in a 100x30 pseudo-terminal; ``capture-pane`` is polled
every ~5 ms until the expected text is on screen, so each figure includes up to one poll
interval. A key press switches screens; "repaint" is the new screen's content on the terminal
(each screen visited once before, as an operator would), the footer legend is timed apart.
"Full frame" means the overview with data from the agent: chart titles, the footer
legend and the mounts table filled from the agent's latest metrics. CPU is the console process's
user+system time over the idle period (psutil), as a share of one core.

Calls while idle (``--calls SECONDS``, issue 13): the console runs headless in this process
(Textual's ``run_test``) on each screen in turn with a client that counts every request it
makes, for SECONDS per screen, twice: following the agent's pushed changes (``changes.wait``)
and polling only (the console before push), at the configured refresh rates. A long poll counts
as one call.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

REFERENCE_APP = """
from textual.app import App
from textual.widgets import Footer, Static

class Hello(App):
    BINDINGS = [("q", "quit", "Quit"), ("2", "two", "Two")]
    def compose(self):
        yield Static("reference ready", id="s")
        yield Footer()
    def action_two(self):
        self.query_one("#s", Static).update("reference two")

Hello().run()
"""


class Term:
    """One tmux server (own socket) with one 100x30 session."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"lk-bench-{uuid.uuid4().hex[:8]}"
        self.env = env

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, text=True,
                              capture_output=True).stdout

    def start(self, argv: list[str]) -> float:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        cmd = (f"cd {shlex.quote(str(REPO))} && env {env} TERM=xterm-256color "
               + " ".join(shlex.quote(a) for a in argv) + "; sleep 30")
        t0 = time.perf_counter()
        self.tmux("new-session", "-d", "-x", "100", "-y", "30", "-s", "b", cmd)
        return t0

    def screen(self) -> str:
        try:
            return self.tmux("capture-pane", "-p", "-t", "b")
        except subprocess.CalledProcessError:
            return ""

    def wait(self, *texts: str, timeout: float = 30.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            screen = self.screen()
            if all(t in screen for t in texts):
                return time.perf_counter()
            time.sleep(0.005)
        raise RuntimeError(f"{texts} not on screen after {timeout} s:\n{self.screen()}")

    def keys(self, *keys: str) -> float:
        t0 = time.perf_counter()
        self.tmux("send-keys", "-t", "b", *keys)
        return t0

    def app_process(self, marker: str) -> psutil.Process:
        pane_pid = int(self.tmux("display", "-p", "-t", "b", "#{pane_pid}").strip())
        for p in psutil.Process(pane_pid).children(recursive=True):
            try:
                if marker in " ".join(p.cmdline()):
                    return p
            except psutil.NoSuchProcess:
                continue
        raise RuntimeError(f"no process matching {marker!r} under the pane")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def idle_cpu(proc: psutil.Process, seconds: float) -> float:
    t0 = proc.cpu_times()
    time.sleep(seconds)
    t1 = proc.cpu_times()
    used = (t1.user - t0.user) + (t1.system - t0.system)
    return 100.0 * used / seconds


# key -> (text unique to that screen's content, text of its footer legend)
SCREENS = (("5", "active version", "a Apply"), ("6", "level all", "l Level"),
           ("3", "snapshot  time", "b Backup"), ("1", "CPU used", "w Window"),
           ("2", "filter:", "u User"), ("4", "zone  host", "s Sync"))


def measure_console(env: dict[str, str], runs: int, idle_s: float) -> dict[str, Any]:
    startup, keys, legends = [], [], []
    cpu = None
    for i in range(runs):
        term = Term(env)
        try:
            t0 = term.start([PY, "-m", "lightkeeper.cli.main"])
            # the full frame: charts, footer legend and the mounts table from the agent
            t1 = term.wait("CPU used", "q Quit", "Mounts", "GiB")
            startup.append(t1 - t0)
            for key, content, _legend in SCREENS:  # first visits load each screen's data
                term.keys(key)
                term.wait(content)
            for key, content, legend in SCREENS * 2:
                k0 = term.keys(key)
                keys.append(term.wait(content) - k0)
                legends.append(term.wait(legend) - k0)
            term.keys("1")
            term.wait("CPU used")
            if i == runs - 1:
                time.sleep(2)
                cpu = idle_cpu(term.app_process("lightkeeper.cli.main"), idle_s)
            term.keys("q")
        finally:
            term.kill()
    return {"startup_s": startup, "keypress_s": keys, "legend_s": legends,
            "idle_cpu_pct": cpu}


def measure_reference(env: dict[str, str], runs: int, idle_s: float, tmp: Path
                      ) -> dict[str, Any]:
    script = tmp / "reference_app.py"
    script.write_text(REFERENCE_APP)
    startup, keys = [], []
    cpu = None
    for i in range(runs):
        term = Term(env)
        try:
            t0 = term.start([PY, str(script)])
            startup.append(term.wait("reference ready", "q Quit") - t0)
            k0 = term.keys("2")
            keys.append(term.wait("reference two") - k0)
            if i == runs - 1:
                time.sleep(2)
                cpu = idle_cpu(term.app_process("reference_app.py"), idle_s)
            term.keys("q")
        finally:
            term.kill()
    return {"startup_s": startup, "keypress_s": keys, "idle_cpu_pct": cpu}


class CountingClient:
    """Passes every request to ``client`` and counts it by method (calls by name)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            key = f"call {args[0]}" if name == "call" and args else name
            with self._lock:
                self.counts[key] += 1
            return attr(*args, **kwargs)
        return counted

    def take(self) -> collections.Counter[str]:
        with self._lock:
            counts, self.counts = self.counts, collections.Counter()
        return counts


async def _idle_calls(env: dict[str, str], push: bool, seconds: float) -> dict[str, Any]:
    from lightkeeper import config as config_mod
    from lightkeeper.client import AgentClient
    from lightkeeper.tui.app import LightkeeperApp

    cfg = config_mod.load(env={**os.environ, **env}, read_system=False)
    client = CountingClient(AgentClient(cfg.path("agent.socket"), timeout=10.0))
    app = LightkeeperApp(client, refresh_s=cfg["console.refresh_seconds"],
                         chart_s=cfg["console.chart_refresh_seconds"], window="5m", push=push)
    out: dict[str, Any] = {}
    async with app.run_test(size=(100, 30)) as pilot:
        for key, _content, _legend in SCREENS:
            await pilot.press(key)
            await pilot.pause(2.0)  # the switch's own fetch is not idle traffic
            client.take()
            app.topics_seen.clear()
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            counts = client.take()
            minutes = (time.monotonic() - t0) / 60
            out[app.active] = {"per_min": sum(counts.values()) / minutes,
                               "by_request": {k: round(v / minutes, 1)
                                              for k, v in counts.most_common()},
                               "topics_moved_per_min": {k: round(v / minutes, 1) for k, v
                                                        in app.topics_seen.most_common()}}
    return out


def measure_idle_calls(env: dict[str, str], seconds: float) -> dict[str, Any]:
    """Requests per minute of an idle console on each screen: pushed changes vs polling."""
    return {"push": asyncio.run(_idle_calls(env, True, seconds)),
            "poll": asyncio.run(_idle_calls(env, False, seconds))}


def summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"median": statistics.median(s), "p95": s[min(len(s) - 1, int(0.95 * len(s)))],
            "max": s[-1], "n": len(s)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="console launches (default 5)")
    ap.add_argument("--idle", type=float, default=30.0, help="idle CPU period in seconds")
    ap.add_argument("--calls", type=float, default=0.0, metavar="SECONDS",
                    help="also count an idle console's requests per screen for SECONDS each, "
                         "with pushed changes and polling only (default: skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="lkbench", dir="/tmp"))
    env = {
        "HOME": os.environ.get("HOME", str(tmp)),
        "XDG_STATE_HOME": str(tmp / "xdg-state"),  # the console's remembered window stays here
        "LIGHTKEEPER_PATHS__STATE_DIR": str(tmp / "state"),
        "LIGHTKEEPER_PATHS__DATA_ROOT": str(tmp / "data"),
        "LIGHTKEEPER_AGENT__SOCKET": str(tmp / "agent.sock"),
        "LIGHTKEEPER_HTTP__ENABLED": "false",
    }
    (tmp / "data").mkdir()
    full_env = {**os.environ, **env}
    subprocess.run([PY, "-m", "lightkeeper.cli.main", "agent", "--detach"], env=full_env,
                   check=True, capture_output=True, cwd=REPO)
    try:
        time.sleep(6)  # one collection round, so the overview has data to show
        console = measure_console(env, args.runs, args.idle)
        reference = measure_reference(env, args.runs, args.idle, tmp)
        calls = measure_idle_calls(env, args.calls) if args.calls > 0 else None
    finally:
        subprocess.run([PY, "-m", "lightkeeper.cli.main", "agent", "--stop"], env=full_env,
                       capture_output=True, cwd=REPO)
    out = {
        "console": {"startup_s": summary(console["startup_s"]),
                    "keypress_s": summary(console["keypress_s"]),
                    "footer_legend_s": summary(console["legend_s"]),
                    "idle_cpu_pct_one_core": console["idle_cpu_pct"]},
        "reference_minimal_textual_app": {
            "startup_s": summary(reference["startup_s"]),
            "keypress_s": summary(reference["keypress_s"]),
            "idle_cpu_pct_one_core": reference["idle_cpu_pct"]},
        "goals": {"startup_s": 1.0, "idle_cpu_pct_one_core": 5.0, "keypress_s": 0.1},
        "idle_calls_per_min": calls,
        "idle_seconds": args.idle, "runs": args.runs,
        "load_1min": {"start": load_start, "end": os.getloadavg()[0]},
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    c, r = out["console"], out["reference_minimal_textual_app"]
    print(f"console benchmark ({args.runs} launches in tmux 100x30, live agent)")
    print(f"{'':34}{'console':>12}{'reference':>12}{'goal':>10}")
    print(f"{'launch -> first full frame (med)':34}{c['startup_s']['median']:>11.3f}s"
          f"{r['startup_s']['median']:>11.3f}s{'<= 1 s':>10}")
    print(f"{'launch -> first full frame (max)':34}{c['startup_s']['max']:>11.3f}s"
          f"{r['startup_s']['max']:>11.3f}s")
    print(f"{'key press -> repaint (median)':34}{c['keypress_s']['median'] * 1000:>10.0f}ms"
          f"{r['keypress_s']['median'] * 1000:>10.0f}ms{'<= 100 ms':>10}")
    print(f"{'key press -> repaint (p95)':34}{c['keypress_s']['p95'] * 1000:>10.0f}ms"
          f"{r['keypress_s']['p95'] * 1000:>10.0f}ms")
    print(f"{'key press -> new footer (median)':34}"
          f"{c['footer_legend_s']['median'] * 1000:>10.0f}ms")
    print(f"{'load average (1 min) start / end':34}{load_start:>7.2f} / {os.getloadavg()[0]:.2f}"
          "   (2 cores; figures above ~1.5 are other sessions' load)")
    print(f"{f'idle CPU over {args.idle:g} s (% of a core)':34}"
          f"{c['idle_cpu_pct_one_core']:>11.2f}%{r['idle_cpu_pct_one_core']:>11.2f}%"
          f"{'<= 5 %':>10}")
    if calls:
        print(f"idle console requests per minute, {args.calls:g} s per screen "
              "(pushed changes / polling only)")
        total = {"push": 0.0, "poll": 0.0}
        for pane in calls["push"]:
            push, poll = calls["push"][pane]["per_min"], calls["poll"][pane]["per_min"]
            total["push"] += push
            total["poll"] += poll
            print(f"  {pane:32}{push:>10.1f}{poll:>10.1f}   {poll / push if push else 0:5.1f}x")
        print(f"  {'all screens':32}{total['push']:>10.1f}{total['poll']:>10.1f}   "
              f"{total['poll'] / total['push'] if total['push'] else 0:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
