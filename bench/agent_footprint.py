"""Agent footprint: CPU (% of one core) and peak RSS of a real agent over 60 s.

Generates 1,000 synthetic user directories of 10 files each in a temporary data root, starts
``python -m lightkeeper.cli.main agent`` on a temporary state directory at default intervals,
waits until every collector has run once, then samples the agent's CPU time and RSS (children
included) with psutil for the measurement window. If ``node_exporter`` (Debian:
``prometheus-node-exporter``) or ``glances`` is installed, it runs alongside as a reference,
node_exporter scraped every system interval as Prometheus would. The floor under the agent's
RSS is printed too: its metrics store alone in a bare Python (the agent's DuckDB settings, one
write, one read).

    .venv/bin/python bench/agent_footprint.py [--seconds 60] [--users 1000] [--churn N] [--json]

Goal (issue 2): at most 1 % of one core and 150 MB RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lightkeeper.client import AgentClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_users(root: Path, users: int, files: int) -> int:
    total = 0
    for i in range(users):
        d = root / f"user{i:04d}"
        d.mkdir(parents=True)
        for j in range(files):
            size = 512 + (i * 131 + j * 977) % 8192
            (d / f"kv_store_{j}.json").write_bytes(b"{" + b"x" * (size - 2) + b"}")
            total += size
    return total


class Sampler:
    """CPU seconds and RSS of a process tree, sampled once a second."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self.rss_samples: list[int] = []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak_rss = max(self.peak_rss, total)
        self.rss_samples.append(total)
        return total


def wait_ready(client: AgentClient, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the agent exited with {proc.returncode} before it was ready")
        try:
            st = client.status()
            cols = st.get("collectors", [])
            if cols and all(c.get("last_ok") for c in cols):
                return st
        except Exception as exc:  # noqa: BLE001  not up yet
            last_error = str(exc)
        time.sleep(0.25)
    raise SystemExit(f"the agent was not ready within {timeout:.0f} s ({last_error})")


def churn(root: Path, per_second: int, stop: threading.Event) -> None:
    users = sorted(p for p in root.iterdir())
    i = 0
    while not stop.wait(1.0):
        for _ in range(per_second):
            d = users[i % len(users)]
            (d / "kv_store_0.json").write_bytes(b"{" + b"y" * (1000 + i % 500) + b"}")
            i += 1


def measure(pid: int, seconds: float,
            on_tick: Callable[[], object] | None = None) -> dict:
    s = Sampler(pid)
    c0, t0 = s.cpu_seconds(), time.monotonic()
    s.rss()
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        s.rss()
        if on_tick:
            on_tick()
    c1, t1 = s.cpu_seconds(), time.monotonic()
    return {"cpu_percent_one_core": (c1 - c0) / (t1 - t0) * 100, "cpu_seconds": c1 - c0,
            "peak_rss_mb": s.peak_rss / 1e6, "end_rss_mb": s.rss_samples[-1] / 1e6,
            "seconds": t1 - t0}


COLLECTORS_ONLY = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from lightkeeper.collectors.registry import build_collectors
from lightkeeper.config import load
cols = build_collectors(load(read_system=False))
due = {c.name: 0.0 for c in cols}
rows = 0
while True:
    now = time.monotonic()
    for c in cols:
        if now >= due[c.name]:
            rows += len(c.collect())
            due[c.name] = now + c.interval
    time.sleep(max(0.05, min(due.values()) - time.monotonic()))
"""


# The floor under the agent's RSS: the agent's own metrics store in a bare Python, with the
# agent's engine settings, after one write of 3,000 samples (a user-directory pass of 1,000
# users) and one read. Prints VmRSS, RssAnon and RssFile in kB.
STORE_ONLY = r"""
import sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from lightkeeper.agent.store.db import Store
with tempfile.TemporaryDirectory() as d:
    store = Store(Path(d) / "metrics.duckdb", memory_limit_mb=128, threads=1)
    now = time.time()
    store.add_samples([(now, "userdir_bytes", f"user{i:04d}", float(i)) for i in range(3000)])
    store.flush()
    store.execute("SELECT metric, count(*), avg(value) FROM samples GROUP BY metric")
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print(" ".join(status[k].split()[0] for k in ("VmRSS", "RssAnon", "RssFile")))
    store.close()
"""


def run_store_only(env: dict) -> dict:
    """RSS of the agent's store alone (see STORE_ONLY), in MB."""
    out = subprocess.run([sys.executable, "-c", STORE_ONLY, str(REPO)], env=env, cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    rss, anon, file = (int(x) * 1024 / 1e6 for x in out)
    return {"rss_mb": rss, "anon_mb": anon, "file_mb": file}


def run_collectors_only(env: dict, seconds: float) -> dict:
    """The same collectors at the same intervals in a bare loop: their share of the agent."""
    proc = subprocess.Popen([sys.executable, "-c", COLLECTORS_ONLY, str(REPO)], env=env,
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        return measure(proc.pid, seconds)
    finally:
        proc.terminate()
        proc.wait(10)


def run_node_exporter(binary: str, seconds: float, interval: float) -> dict:
    port = free_port()
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        state = {"next": time.monotonic(), "scrapes": 0, "series": 0}

        def scrape() -> None:
            if time.monotonic() >= state["next"]:
                body = urllib.request.urlopen(url, timeout=5).read().decode()
                state["series"] = sum(1 for line in body.splitlines()
                                      if line and not line.startswith("#"))
                state["scrapes"] += 1
                state["next"] += interval

        result = measure(proc.pid, seconds, scrape)
        result.update(scrapes=state["scrapes"], series=state["series"])
        return result
    finally:
        proc.terminate()
        proc.wait(10)


def run_glances(binary: str, seconds: float, interval: float) -> dict:
    proc = subprocess.Popen([binary, "-q", "-t", str(interval), "--disable-webui"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        return measure(proc.pid, seconds)
    finally:
        proc.terminate()
        proc.wait(10)


def cpu_by_task(before: dict[str, Any], after: dict[str, Any], seconds: float) -> str:
    """Each task's share of one core over the window, largest first; the rest of the process
    (event loop, file watchers' threads) last."""
    used: dict[str, float] = {}
    for name, t in after["tasks"].items():
        used[name] = t["cpu_s"] - before["tasks"].get(name, {}).get("cpu_s", 0.0)
    rest = (after["process_s"] - before["process_s"]) - sum(used.values())
    parts = [f"{name} {100 * v / seconds:.3f} %" for name, v in
             sorted(used.items(), key=lambda kv: -kv[1]) if v > 0]
    return ", ".join(parts + [f"event loop and watchers {100 * rest / seconds:.3f} %"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--churn", type=int, default=0,
                    help="rewrite a file in this many user directories per second")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="lk-footprint-") as d:
        tmp = Path(d)
        root = tmp / "data"
        t0 = time.perf_counter()
        total = make_users(root, args.users, args.files)
        print(f"data root: {args.users:,} user directories x {args.files} files "
              f"({total / 1e6:.1f} MB) made in {time.perf_counter() - t0:.1f} s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
        env.update(LIGHTKEEPER_PATHS__STATE_DIR=str(tmp / "state"),
                   LIGHTKEEPER_PATHS__DATA_ROOT=str(root),
                   LIGHTKEEPER_HTTP__LISTEN=f"127.0.0.1:{free_port()}",
                   XDG_CONFIG_HOME=str(tmp / "config"))
        log = open(tmp / "agent.out", "wb")  # noqa: SIM115  the agent child writes it until killed
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "lightkeeper.cli.main", "agent"],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        client = AgentClient(tmp / "state" / "agent.sock", timeout=5)
        try:
            st = wait_ready(client, proc, 120)
            startup_cpu = Sampler(proc.pid).cpu_seconds()
            report["startup_seconds"] = time.monotonic() - started
            report["startup_cpu_seconds"] = startup_cpu
            print(f"agent pid {proc.pid} ready in {report['startup_seconds']:.1f} s "
                  f"(startup used {startup_cpu:.2f} s CPU); collectors: "
                  + ", ".join(f"{c['name']}/{c['interval_s']:g}s" for c in st["collectors"]))
            stop = threading.Event()
            if args.churn:
                threading.Thread(target=churn, args=(root, args.churn, stop), daemon=True).start()
            time.sleep(2)  # let the first flush and maintenance pass settle
            before = client.status()["cpu"]
            res = measure(proc.pid, args.seconds)
            stop.set()
            st = client.status()
            report["agent"] = res
            rows = st["store"]["rows_written"]
            print(f"agent over {res['seconds']:.0f} s: CPU {res['cpu_percent_one_core']:.2f} % "
                  f"of one core ({res['cpu_seconds']:.2f} s), peak RSS "
                  f"{res['peak_rss_mb']:.1f} MB (end {res['end_rss_mb']:.1f} MB)"
                  + (f", churn {args.churn} user dirs/s" if args.churn else ""))
            print(f"  store: {rows:,} rows written, {st['store']['size_bytes'] / 1e6:.1f} MB; "
                  "collector runs/errors/last ms: "
                  + ", ".join(f"{c['name']} {c['runs']}/{c['errors']}/{c['last_duration_ms']}"
                              for c in st["collectors"]))
            print("  CPU by task over the window (the agent's own accounting, status 'cpu'): "
                  + cpu_by_task(before, st["cpu"], res["seconds"]))
            mem = st.get("memory") or {}
            print("  memory by part at the last maintenance pass (status 'memory'): "
                  + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in mem.items() if k != "ts"))
            met = res["cpu_percent_one_core"] <= 0.5 and res["peak_rss_mb"] <= 80
            print("  goal (issue #13, under --churn 20): <= 0.5 % of one core, <= 80 MB RSS: "
                  + ("met" if met else "not met"))
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"  (agent exited with {proc.returncode}; see its output below)")
            print((tmp / "agent.out").read_text()[-2000:])

        res = run_collectors_only(env, args.seconds)
        report["collectors_only"] = res
        print(f"  breakdown: the same collectors alone in a bare loop (no store, API, alerts): "
              f"CPU {res['cpu_percent_one_core']:.2f} % of one core, peak RSS "
              f"{res['peak_rss_mb']:.1f} MB")
        res = run_store_only(env)
        report["store_only"] = res
        print(f"  floor: the agent's metrics store alone (DuckDB with the agent's settings, one "
              f"write of 3,000 samples and one read): RSS {res['rss_mb']:.1f} MB "
              f"({res['file_mb']:.1f} file-backed, {res['anon_mb']:.1f} anonymous)")
        refs = 0
        node = shutil.which("node_exporter") or shutil.which("prometheus-node-exporter")
        if node:
            refs += 1
            res = run_node_exporter(node, args.seconds, 5.0)
            report["node_exporter"] = res
            print(f"reference node_exporter ({node}), scraped every 5 s ({res['scrapes']} "
                  f"scrapes, {res['series']} series): CPU {res['cpu_percent_one_core']:.2f} % of "
                  f"one core, peak RSS {res['peak_rss_mb']:.1f} MB")
        glances = shutil.which("glances")
        if glances:
            refs += 1
            res = run_glances(glances, args.seconds, 5.0)
            report["glances"] = res
            print(f"reference glances -q -t 5: CPU {res['cpu_percent_one_core']:.2f} % of one "
                  f"core, peak RSS {res['peak_rss_mb']:.1f} MB")
        if not refs:
            print("reference: neither node_exporter nor glances is installed "
                  "(apt-get install prometheus-node-exporter gives one)")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
