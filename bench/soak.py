"""Soak bench: 30 days of an agent's life in about 12 minutes, on an accelerated wall clock.

    .venv/bin/python bench/soak.py [--days 30] [--speed 3600] [--json]

It starts a real agent (``python -m lightkeeper.cli.main agent``, as tests/conftest.py does) on a
temporary state directory, loads it the way a busy server would and, at day 1, 7 and the last
day, prints the agent's RSS, the store's size on disk and the p95 of every call the console
makes while idle, then whether each stayed flat (within 20 %) from day 7 to the last day (for
the calls' p95 only a rise fails: a call that got faster is no cost growing with uptime).

How time is simulated (what is real and what is compressed)
-----------------------------------------------------------
The agent process runs the real agent code. Only its wall clock is accelerated: a launcher
replaces ``time.time`` and ``time.time_ns`` before the agent is imported, so that
``time.time()`` runs ``--speed`` times faster than real time (3600: one real second is one
simulated hour). ``time.monotonic``, sleeps and timeouts stay real. libfaketime was tried and
rejected: with a speed-up it broke CPython's ``time.sleep`` (EINVAL from clock_nanosleep) and
hung ``threading.Event.wait`` with a faked monotonic clock.

Everything the agent dates with ``time.time()`` therefore sees 30 days pass: every sample,
rollup bucket and retention cut-off, every job, event and alert record, the schedules
(``is_due`` compares wall-clock times), snapshot times and the backup retention policy, zone
probe times and lags, and the in-memory job lists. What stays at its real rate per real second
is the work itself: collector rounds (every 5 real s, so one per 5 simulated hours), alert
evaluations, store flushes, ingest passes, the console's polls and the spool writer. So:

- real: the agent's code and process, its socket API, DuckDB store, backup repository on disk,
  the jobs (hourly backups, a daily forget + prune), zone probes on their simulated schedule
  (every 5 simulated minutes, to a closed loopback port, so each records "unreachable"), the
  spool files and their ingestion, alert and event records, and the console's exact calls
  (tui/panes/*.py ``fetch`` through ``AgentClient``), each timed over the Unix socket;
- compressed: densities per simulated time. 100 spool operations per *real* second from 1,000
  user ids is 100 per simulated hour at speed 3600, and system samples arrive once per 5
  simulated hours. The store therefore holds ``speed`` times fewer rows per simulated day than
  a real month would, and calls over a window (rag.*, series) scan that many fewer rows.
  The bench prints the rows each table holds, so growth is visible table by table.

Loop intervals the bench sets (real seconds): schedules checked every 0.25 s (a simulated
quarter-hour), probes every 0.1 s (the setting's minimum: at speed 3600 the 5-minute probe runs
every 6 simulated minutes), alerts every 0.5 s, maintenance (rollups and retention) every 1 s
(a simulated hour; set in a config file, ``LIGHTKEEPER_CONFIG``, which the real-time phase
rewrites and reloads). ``backup.schedule_jitter`` is 0 (it is a real sleep). Two alert
rules measure real-time delays against the wall clock and are meaningless on an accelerated
one (``collector_stale``: a 5 s collector looks 5 hours stale; ``ingest_lag``): they are
disabled. Retention of 1-minute rollups and operation records is 7 days (the default is 30):
a table kept 30 days grows until day 30 by design, so "flat from day 7" can only hold with a
horizon inside the first week; ``--retention-days 30`` shows the default's growth. The
history tables (hourly rollups 400 days, events 90, jobs 180, resolved alerts 365) keep their
defaults and so grow through the month by design; ``--history-days 7`` shows that their
retention works too.

Load: the spool writer alternates 40 real seconds with 30 % failed queries and 40 s without,
so the rag_error_rate_high alert fires and resolves; the zone's unreachable alert fires once;
one user's files are rewritten every simulated 6 hours, so backups add data; the console polls
the six panes in turn (status first, as the console does), one pane every 0.3 real s.

Measurement: at each checkpoint the bench reads the agent's RSS (psutil) and the store's size
on disk (file + WAL), then polls all six panes ``--rounds`` times back to back and takes the
p95 of each call: over all of them, and over those made while no job ran (at speed 3600 a
backup runs every real second, so jobs overlap far more polls than in real life, where an
hourly backup takes well under a second). Then the real-time phase: the bench switches
the agent's clock (and its own) to real speed (SIGUSR1 and a clock file; both clocks go on from
where they were), waits for a running job to end, and polls the panes the same way again. That
is what an operator's idle console meets at this uptime and with this data: the spool writer
goes on at its real rate, jobs come as often as they would in those real seconds (an hourly
backup, mostly none), and maintenance runs at its default pace, once a minute (a config
reload; a pass that retention made delete rows ends with a checkpoint, which readers wait
for). Then maintenance goes back to every real second, a pass runs, and the clock speeds up
again. The ≤ 10 ms goal is printed for both phases.
``GET /v1/health``, timed the same way, is the
reference for the machine's own noise: a p95 change smaller than the reference's p95 + 1 ms
counts as flat. Numbers on a loaded machine are noisy: the load average is printed with them.
The report also gives the store's blocks at each checkpoint (``store.stats``: used, free, WAL)
and its compactions so far, with the size the last one left (the data, packed).
DuckDB's file runs at about twice its data (a copy written fresh): free blocks it keeps for
reuse, row groups that hold deleted rows, one or more 256 KiB blocks per table and per index.
That share stays the same with uptime, so the file follows the data: with the history tables'
default retention they grow through the month (their density per simulated day is the real one,
while the operation tables are ``speed`` times thinner), and with ``--history-days 7`` the store
is flat from day 7.

Every process the bench starts (the agent) is stopped at the end, and the temporary directory
is removed, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from lightkeeper.agent import memory  # noqa: E402
from lightkeeper.client import AgentClient, AgentError  # noqa: E402
from lightkeeper.rag.spool import SpoolWriter  # noqa: E402
from lightkeeper.tui.actions import window_for_age  # noqa: E402
from lightkeeper.tui.panes.backups import BackupsPane  # noqa: E402
from lightkeeper.tui.panes.base import Request  # noqa: E402
from lightkeeper.tui.panes.events import EventsPane  # noqa: E402
from lightkeeper.tui.panes.lightrag import LightRagPane  # noqa: E402
from lightkeeper.tui.panes.overview import OverviewPane  # noqa: E402
from lightkeeper.tui.panes.tuning import TuningPane  # noqa: E402
from lightkeeper.tui.panes.zones import ZonesPane  # noqa: E402

DAY = 86400.0
FLAT = 0.20  # the allowed change from day 7 to the last day
# The reference request, timed beside the console's calls: on a loaded machine a p95 that moves
# by less than the reference's own p95 at that checkpoint (plus 1 ms) is within the noise.
REFERENCE = "reference: GET /v1/health"
NOISE_FLOOR_MS = 1.0

# The agent's wall clock: simulated = SIM_BASE + (real - REAL_BASE) * SPEED, set before the agent
# imports anything. SIGUSR1 makes it read a new (REAL_BASE, SIM_BASE, SPEED) from the clock file
# that the bench wrote (the bench's SimClock switches the same way), so both clocks go on from
# where they were at another speed: 1 for the real-time phase of each checkpoint.
LAUNCHER = r"""
import os, runpy, signal, sys, time
_real = time.time
_r0 = float(os.environ["LK_SOAK_R0"])
_state = (_r0, _r0, float(os.environ["LK_SOAK_SPEED"]))
def _sim():
    br, bs, sp = _state
    return bs + (_real() - br) * sp
def _reclock(*_):
    global _state
    with open(os.environ["LK_SOAK_CLOCK_FILE"]) as f:
        br, bs, sp = (float(x) for x in f.read().split())
    _state = (br, bs, sp)
signal.signal(signal.SIGUSR1, _reclock)
time.time = _sim
time.time_ns = lambda: int(_sim() * 1e9)
sys.argv = ["lightkeeper", "agent"]
runpy.run_module("lightkeeper.cli.main", run_name="__main__", alter_sys=True)
"""


class SimClock:
    """The same clock as the agent's: ``speed`` simulated seconds per real second."""

    def __init__(self, r0: float, speed: float) -> None:
        self.r0, self.speed = r0, speed
        self._state = (r0, r0, speed)

    def now(self) -> float:
        br, bs, sp = self._state
        return bs + (time.time() - br) * sp

    def day(self) -> float:
        return (self.now() - self.r0) / DAY

    def switch(self, speed: float, clock_file: Path) -> None:
        """Go on from now at ``speed``: the agent's clock does the same on SIGUSR1."""
        real = time.time()
        self._state = (real, self.now(), speed)
        tmp = clock_file.with_suffix(".tmp")
        tmp.write_text(" ".join(repr(x) for x in self._state))
        tmp.replace(clock_file)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return free_port()


# -- the console's calls, timed ---------------------------------------------------------------
class TimingClient:
    """An AgentClient whose every request is timed under the name the console's code uses."""

    def __init__(self, client: AgentClient, record: Any) -> None:
        self._c = client
        self._record = record

    def _timed(self, name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            self._record(name, time.perf_counter() - t0)

    def reference(self) -> bool:
        return self._timed(REFERENCE, self._c.ping)

    def status(self) -> dict[str, Any]:
        return self._timed("status", self._c.status)

    def call(self, name: str, **params: Any) -> Any:
        return self._timed(f"call {name}", self._c.call, name, **params)

    def series(self, metric: str, **kw: Any) -> Any:
        return self._timed(f"series {metric}", self._c.series, metric, **kw)

    def jobs(self, **kw: Any) -> Any:
        return self._timed("jobs", self._c.jobs, **kw)

    def events(self, **kw: Any) -> Any:
        return self._timed("events", self._c.events, **kw)


class Console:
    """Polls every pane in turn exactly as the console's poll worker does: ``status()``, then
    the pane's ``fetch`` (tui/panes/*.py) with the window the console would choose.

    In the background it polls one pane every ``pause`` real seconds (load). At a checkpoint,
    :meth:`burst` pauses that and polls all six panes ``rounds`` times back to back; those
    calls are the ones measured, each tagged with whether a job was running (the status call
    that opened its poll said so)."""

    PANES = (OverviewPane, LightRagPane, BackupsPane, ZonesPane, TuningPane, EventsPane)

    def __init__(self, client: AgentClient, clock: SimClock, pause: float) -> None:
        self.clock = clock
        self.pause = pause
        self.measured: list[tuple[str, float, bool]] = []  # (call, seconds, a job ran)
        self.measuring = False
        self.busy = False
        self.client = TimingClient(client, self._record)
        self.last_event = 0
        self.model_loaded = False
        self.errors: dict[str, int] = defaultdict(int)
        self.polls = 0
        self._turn = threading.Lock()  # one poll at a time, as in the console

    def _record(self, name: str, seconds: float) -> None:
        if self.measuring:
            self.measured.append((name, seconds, self.busy))

    def _params(self, pane: type) -> dict[str, Any]:
        if pane is EventsPane:  # the live tail: only what is newer than the last event shown
            return {"since": self.last_event, "level": None, "q": None, "gen": 0}
        if pane is TuningPane:
            return {"need_model": not self.model_loaded}
        if pane is LightRagPane:
            return {"user": None}
        return {}

    def poll(self, pane: type) -> None:
        # the reference: the agent's cheapest request (GET /v1/health), timed the same way
        self.client.reference()
        status = self.client.status()
        self.busy = bool((status.get("jobs") or {}).get("running"))
        started = status.get("data_since") or status.get("started") or self.clock.now()
        window = window_for_age(self.clock.now() - float(started))
        req = Request(window=window, now=self.clock.now(), params=self._params(pane),
                      status=status)
        data = pane.fetch(None, self.client, req)  # fetch reads only the client and req
        if pane is EventsPane and data:
            self.last_event = max(self.last_event, max(e["id"] for e in data))
        if pane is TuningPane and "model" in data:
            self.model_loaded = True
        self.polls += 1

    def _safe_poll(self, pane: type) -> None:
        try:
            self.poll(pane)
        except (AgentError, OSError, RuntimeError) as exc:
            self.errors[f"{pane.pane_id}: {type(exc).__name__}: {exc}"[:160]] += 1

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            for pane in self.PANES:
                with self._turn:
                    if stop.is_set():
                        return
                    self._safe_poll(pane)
                stop.wait(self.pause)

    def burst(self, rounds: int) -> list[tuple[str, float, bool]]:
        with self._turn:
            self.measured, self.measuring = [], True
            try:
                for _ in range(rounds):
                    for pane in self.PANES:
                        self._safe_poll(pane)
            finally:
                self.measuring = False
            return self.measured


# -- load ----------------------------------------------------------------------------------------
OPS = [("query", "mix", 0.55), ("query", "hybrid", 0.15), ("query", "local", 0.1),
       ("insert", "upload", 0.1), ("insert", "pipeline", 0.05), ("delete", None, 0.02),
       ("graph", "read", 0.03)]


def spool_writer(spool: Path, clock: SimClock, rate: float, users: int,
                 stop: threading.Event, counts: dict[str, int]) -> None:
    """``rate`` operations per real second from ``users`` user ids, stamped with the agent's
    clock; 40 real seconds with 30 % failed queries alternate with 40 s without."""
    writer = SpoolWriter(spool, max_bytes=1024 * 1024)
    rng = random.Random(5)
    kinds = [(op, mode) for op, mode, _ in OPS]
    weights = [w for _, _, w in OPS]
    t_start = time.monotonic()
    sent = 0
    while not stop.is_set():
        due = int((time.monotonic() - t_start) * rate)
        failing = int((time.monotonic() - t_start) // 40) % 2 == 1
        while sent < due:
            op, mode = rng.choices(kinds, weights)[0]
            error = failing and op == "query" and rng.random() < 0.3
            dur = rng.lognormvariate(-1.0, 0.8) * (6 if op == "insert" else 1)
            writer.write({
                "v": 1, "op_id": uuid.uuid4().hex, "ts": clock.now(),
                "user": f"u{rng.randrange(users):04d}", "op": op, "mode": mode,
                "duration_s": dur, "llm_s": dur * 0.6, "llm_calls": 1, "embed_s": dur * 0.1,
                "embed_calls": 1, "embed_items": 4, "tokens_in": 900, "tokens_out": 120,
                "result_bytes": 2048, "outcome": "error" if error else "ok",
                "error_class": "TimeoutError" if error else None, "tuning_version": 1,
                "pid": os.getpid(), "run_id": None})
            sent += 1
        counts["ops"] = sent
        stop.wait(0.05)
    writer.close()


def rewriter(data_root: Path, clock: SimClock, every_s: float, stop: threading.Event,
             counts: dict[str, int]) -> None:
    """Rewrite a few files of one user every ``every_s`` simulated seconds (backups add data)."""
    import datagen  # bench/datagen.py

    last = clock.now()
    seed = 100
    while not stop.wait(0.2):
        if clock.now() - last < every_s:
            continue
        last = clock.now()
        users = sorted(p for p in data_root.iterdir() if p.is_dir())
        user = users[seed % len(users)]
        datagen.scatter_edits(user, fraction=0.05, record_fraction=0.02, seed=seed)
        seed += 1
        counts["rewrites"] = counts.get("rewrites", 0) + 1


# -- the agent -------------------------------------------------------------------------------------
HISTORY_TABLES = ("1H", "EVENTS", "JOBS", "ALERTS", "QUARANTINE", "BENCH")


def agent_env(base: Path, sock: Path, clock: SimClock, retention_days: float,
              history_days: float | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
    home = base / "home"
    home.mkdir()
    zone_dir = base / "zone-remote"
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "LIGHTKEEPER_PATHS__STATE_DIR": str(base / "state"),
        "LIGHTKEEPER_PATHS__DATA_ROOT": str(base / "data"),
        "LIGHTKEEPER_PATHS__SPOOL_DIR": str(base / "spool"),
        "LIGHTKEEPER_AGENT__SOCKET": str(sock),
        "LIGHTKEEPER_HTTP__LISTEN": f"127.0.0.1:{free_port()}",
        "LK_SOAK_R0": repr(clock.r0),
        "LK_SOAK_SPEED": repr(clock.speed),
        "LK_SOAK_CLOCK_FILE": str(base / "clock"),
        # loop checks in real seconds, so that simulated schedules fire on time
        "LIGHTKEEPER_AGENT__SCHEDULE_INTERVAL": "0.25",
        "LIGHTKEEPER_AGENT__PROBE_INTERVAL": "0.1",
        "LIGHTKEEPER_AGENT__ALERT_INTERVAL": "0.5",
        "LIGHTKEEPER_AGENT__TIMESTAMP_INTERVAL": "1",
        # maintenance (rollups, retention) every simulated hour: in a file the real-time phase
        # rewrites to the default's 60 s (agent reload)
        "LIGHTKEEPER_CONFIG": str(base / "soak.toml"),
        # what an operator of this server configures
        "LIGHTKEEPER_BACKUP__SCHEDULE": "hourly",
        "LIGHTKEEPER_BACKUP__PRUNE_SCHEDULE": "daily",
        "LIGHTKEEPER_BACKUP__SCHEDULE_JITTER": "0",
        "LIGHTKEEPER_STORE__RETENTION_1M_DAYS": str(retention_days),
        "LIGHTKEEPER_STORE__RETENTION_OPS_DAYS": str(retention_days),
        "LIGHTKEEPER_ZONES__FAR__HOST": "127.0.0.1",
        "LIGHTKEEPER_ZONES__FAR__PORT": str(closed_port()),
        "LIGHTKEEPER_ZONES__FAR__USER": "soak",
        "LIGHTKEEPER_ZONES__FAR__REMOTE_PATH": str(zone_dir),
        "LIGHTKEEPER_REPLICATION__RETRIES": "0",
        "LIGHTKEEPER_REPLICATION__TIMEOUT_SECONDS": "2",
        # these two compare real delays with the wall clock: meaningless when it is accelerated
        "LIGHTKEEPER_ALERTS__COLLECTOR_STALE__ENABLED": "false",
        "LIGHTKEEPER_ALERTS__INGEST_LAG__ENABLED": "false",
    })
    write_maintenance(base / "soak.toml", 1.0)
    if history_days is not None:
        for table in HISTORY_TABLES:
            env[f"LIGHTKEEPER_STORE__RETENTION_{table}_DAYS"] = str(history_days)
    return env


def write_maintenance(path: Path, seconds: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"[store]\nmaintenance_interval = {seconds!r}\n")
    tmp.replace(path)


class Agent:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.client = AgentClient(env["LIGHTKEEPER_AGENT__SOCKET"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115  closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], env=self.env, cwd=REPO,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.ping():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited at start: {self.tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"agent did not answer in {timeout} s: {self.tail()}")

    def switch_clock(self, clock: SimClock, speed: float) -> None:
        assert self.proc is not None
        clock.switch(speed, Path(self.env["LK_SOAK_CLOCK_FILE"]))
        self.proc.send_signal(signal.SIGUSR1)

    def set_maintenance(self, seconds: float, clock: SimClock) -> None:
        """Maintenance every ``seconds`` real seconds (config file and reload); returns once
        a pass ran at the new pace (the loop was sleeping out the old interval)."""
        assert self.proc is not None
        write_maintenance(Path(self.env["LIGHTKEEPER_CONFIG"]), seconds)
        since = clock.now()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = ((self.client.status().get("store") or {}).get("maintenance") or {}).get("ts")
            if done is not None and done > since:
                return
            time.sleep(0.2)
        raise RuntimeError(f"no maintenance pass within 90 s of a reload: {self.tail()}")

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def rss(self) -> int:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# -- measurement -----------------------------------------------------------------------------------
def p95(values: list[float]) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]


def store_bytes(path: Path) -> int:
    total = 0
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2]


def measure(console: Console, rounds: int, bursts: int
            ) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]], float]:
    """``bursts`` bursts of console polls a few real seconds apart: each call's p95 (the
    lowest of its bursts': the machine is shared, a burst that met another session's load
    spike says nothing about the agent), the same over the calls made while no job ran, every
    burst's p95, and the share of calls made while a job ran."""
    per_burst: dict[str, list[float]] = defaultdict(list)
    idle_burst: dict[str, list[float]] = defaultdict(list)
    busy = total = 0
    for i in range(bursts):
        if i:
            time.sleep(3)
        calls: dict[str, list[float]] = defaultdict(list)
        idle: dict[str, list[float]] = defaultdict(list)
        for name, s, was_busy in console.burst(rounds):
            calls[name].append(s)
            total += 1
            busy += was_busy
            if not was_busy:
                idle[name].append(s)
        for n, v in calls.items():
            per_burst[n].append(p95(v) * 1000)
        for n, v in idle.items():
            if len(v) >= 10:
                idle_burst[n].append(p95(v) * 1000)
    return ({n: min(v) for n, v in sorted(per_burst.items())},
            {n: min(v) for n, v in sorted(idle_burst.items())}, dict(sorted(per_burst.items())),
            busy / max(1, total))


def real_time_phase(agent: Agent, console: Console, clock: SimClock, speed: float,
                    rounds: int, bursts: int) -> dict[str, float]:
    """The console's calls at the checkpoint's uptime and data, the agent's clock at real
    time: what an operator's idle console meets. At ``speed`` an hourly backup runs every
    real second and maintenance every simulated hour, so the accelerated figures measure the
    agent under a month's work compressed into minutes; here the spool writer goes on at its
    real rate, maintenance runs once a minute as by default (a backup still running is
    waited for, up to a minute). Then the clock speeds up again."""
    agent.switch_clock(clock, 1.0)
    try:
        agent.set_maintenance(60.0, clock)  # the default: a pass a minute
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and \
                (agent.client.status().get("jobs") or {}).get("running"):
            time.sleep(0.5)
        time.sleep(2)
        return measure(console, rounds, bursts)[0]
    finally:
        agent.set_maintenance(1.0, clock)  # a pass a simulated hour again, then speed up
        agent.switch_clock(clock, speed)


def checkpoint(day: int, agent: Agent, console: Console, clock: SimClock,
               footprint: list[tuple[float, int, int]], rounds: int,
               bursts: int, speed: float) -> dict[str, Any]:
    """Figures at simulated ``day``: the median RSS and store size over the last simulated
    day (sampled every 0.2 real s: one sample catches a backup's buffers or not), the
    console's calls (:func:`measure`) on the accelerated clock, then again in
    :func:`real_time_phase`."""
    recent = [(r, b) for d, r, b in footprint if d >= clock.day() - 1.0]
    sim_day = clock.day()
    p95_ms, p95_no_job_ms, p95_bursts_ms, busy_share = measure(console, rounds, bursts)
    burst_days = round(clock.day() - sim_day, 2)
    p95_real_time_ms = real_time_phase(agent, console, clock, speed, rounds, bursts)
    status = agent.client.status()
    stats = agent.client.call("store.stats")
    try:
        snaps = len(agent.client.call("backup.snapshots")["snapshots"])
    except AgentError:
        snaps = 0
    compactions = agent.client.events(kind="audit", q="store.compact", limit=1000)
    packed = [e["context"].get("packed_bytes", 0) for e in compactions
              if e["event"] == "store.compacted"]
    return {
        "day": day, "sim_day": round(sim_day, 2),
        "rss": median([r for r, _ in recent]), "store_bytes": median([b for _, b in recent]),
        "rss_range": (min(r for r, _ in recent), max(r for r, _ in recent)),
        "p95_ms": p95_ms, "p95_bursts_ms": p95_bursts_ms, "p95_no_job_ms": p95_no_job_ms,
        "p95_real_time_ms": p95_real_time_ms, "busy_share": busy_share,
        "burst_days": burst_days,
        "rows": stats["rows"], "table_bytes": stats["table_bytes"], "snapshots": snaps,
        "compactions": len(packed), "compactions_failed": len(compactions) - len(packed),
        "packed_bytes": packed[-1] if packed else 0,  # what the last compaction left
        "blocks": stats.get("blocks") or {},
        "jobs_in_memory": (status.get("jobs") or {}).get("in_memory"),
        "memory": status.get("memory") or {},  # the agent's own split, at its last maintenance
        "alerts_active": len(status.get("alerts") or []),
        "load": os.getloadavg(),
    }


def flat(a: float, b: float, floor: float = 0.0, one_sided: bool = False) -> bool:
    """``b`` within FLAT of ``a`` (or within ``floor`` of it). One-sided (latencies): only a
    rise fails; a call that got faster by day 30 costs nothing more with uptime."""
    if one_sided:
        return b <= a * (1 + FLAT) or b - a <= floor
    return a * (1 - FLAT) <= b <= a * (1 + FLAT) or abs(b - a) <= floor


def report(points: list[dict[str, Any]], out: Any = sys.stdout) -> bool:
    mib = 1024 * 1024
    days = [p["day"] for p in points]
    w = 44
    print("\n" + "day".ljust(w) + "".join(f"{d:>12}" for d in days) + "   d_last/d7  flat",
          file=out)
    ok = True

    def row(label: str, values: list[float], fmt: str, floor: float = 0.0,
            one_sided: bool = False) -> None:
        nonlocal ok
        verdict, ratio = "", ""
        if len(values) >= 3:
            a, b = values[1], values[-1]
            good = flat(a, b, floor, one_sided)
            ok = ok and good
            ratio = f"{b / a:9.2f}" if a else "        -"
            verdict = "yes" if good else "NO"
        print(label[:w].ljust(w) + "".join(format(v, fmt).rjust(12) for v in values)
              + f"   {ratio}  {verdict}", file=out)

    row("agent RSS (MiB)", [p["rss"] / mib for p in points], ".1f")
    row("store on disk (MiB)", [p["store_bytes"] / mib for p in points], ".2f")
    ref = [p["p95_ms"].get(REFERENCE, 0.0) for p in points]
    floor = NOISE_FLOOR_MS + max(ref[1:] or ref)
    print("-- p95 ms of every call the console makes (lowest of the bursts; only a rise "
          "fails)", file=out)
    names = sorted(set().union(*(p["p95_ms"] for p in points)) - {REFERENCE})
    for n in names:
        row(f"  {n}", [p["p95_ms"].get(n, float("nan")) for p in points], ".2f", floor,
            one_sided=True)
    print(f"  {REFERENCE}".ljust(w) + "".join(f"{v:12.2f}" for v in ref)
          + "   (noise reference)", file=out)
    rt_ref = [p["p95_real_time_ms"].get(REFERENCE, 0.0) for p in points]
    rt_floor = NOISE_FLOOR_MS + max(rt_ref[1:] or rt_ref)
    print("-- the same at real time: the console idle, the agent's clock at real speed, at "
          "this uptime and data (only a rise fails)", file=out)
    for n in sorted(set().union(*(p["p95_real_time_ms"] for p in points)) - {REFERENCE}):
        row(f"  {n}", [p["p95_real_time_ms"].get(n, float("nan")) for p in points], ".2f",
            rt_floor, one_sided=True)
    print(f"  {REFERENCE}".ljust(w) + "".join(f"{v:12.2f}" for v in rt_ref)
          + "   (noise reference)", file=out)
    print("-- context (not judged): p95 ms of the calls made while no job ran (accelerated)",
          file=out)
    for n in sorted(set().union(*(p["p95_no_job_ms"] for p in points)) - {REFERENCE}):
        print(f"  {n}".ljust(w) + "".join(
            f"{p['p95_no_job_ms'].get(n, float('nan')):12.2f}" for p in points), file=out)
    print("-- context (not judged)", file=out)
    print("agent RSS min-max over the day (MiB)".ljust(w) + "".join(
        f"{p['rss_range'][0] / mib:>6.0f}-{p['rss_range'][1] / mib:<5.0f}" for p in points),
        file=out)
    for table in sorted(points[-1]["rows"]):
        print(f"rows {table}".ljust(w) + "".join(f"{p['rows'][table]:>12}" for p in points),
              file=out)
    for table in sorted(points[-1]["table_bytes"]):
        print(f"MiB {table} (checkpointed blocks)".ljust(w) + "".join(
            f"{p['table_bytes'][table] / mib:>12.2f}" for p in points), file=out)
    for key, label in (("used_blocks", "used"), ("free_blocks", "free")):
        print(f"MiB store blocks {label} (at the checkpoint)".ljust(w) + "".join(
            f"{p['blocks'].get(key, 0) * p['blocks'].get('block_size', 0) / mib:>12.2f}"
            for p in points), file=out)
    print("MiB store WAL (at the checkpoint)".ljust(w) + "".join(
        f"{p['blocks'].get('wal_bytes', 0) / mib:>12.2f}" for p in points), file=out)
    print("MiB store after the last compaction".ljust(w) + "".join(
        f"{p['packed_bytes'] / mib:>12.2f}" for p in points), file=out)
    for part in memory.PARTS:
        print(f"MiB agent memory: {part} (last maintenance)".ljust(w) + "".join(
            f"{p['memory'].get(part, float('nan')) / mib:>12.2f}" for p in points), file=out)
    for key in ("compactions", "compactions_failed", "snapshots", "jobs_in_memory",
                "alerts_active", "busy_share", "burst_days"):
        print(key.ljust(w) + "".join(f"{round(p[key], 2)!s:>12}" for p in points), file=out)
    print("load average (1/5/15 min)".ljust(w) + "  " + "  ".join(
        "/".join(f"{x:.1f}" for x in p["load"]) for p in points), file=out)
    since = days[1] if len(days) > 1 else days[0]
    for key, label in (("p95_ms", "accelerated"), ("p95_real_time_ms", "at real time")):
        slowest = max((v, n) for p in points[1:] or points for n, v in p[key].items()
                      if n != REFERENCE)
        print(f"{chr(10) if key == 'p95_ms' else ''}worst p95 from day {since} on, {label}: "
              f"{slowest[0]:.2f} ms ({slowest[1]}); goal <= 10 ms: "
              f"{'met' if slowest[0] <= 10 else 'not met'}", file=out)
    print(f"flat within {FLAT:.0%} from day {days[1] if len(days) > 1 else '-'} to day "
          f"{days[-1]} (a p95 change under {floor:.1f} ms, the reference's p95 + "
          f"{NOISE_FLOOR_MS:g} ms, counts as flat; a p95 may fall): "
          f"{'YES' if ok else 'NO'}", file=out)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=30.0, help="simulated days (default 30)")
    ap.add_argument("--speed", type=float, default=3600.0,
                    help="simulated seconds per real second (default 3600: 30 days in 12 min)")
    ap.add_argument("--ops", type=float, default=100.0, help="spool operations per real second")
    ap.add_argument("--users", type=int, default=1000, help="user ids in the spool records")
    ap.add_argument("--data-users", type=int, default=3,
                    help="users with real LightRAG-like data under the data root (backed up)")
    ap.add_argument("--data-mb", type=float, default=6.0, help="their data in MB")
    ap.add_argument("--retention-days", type=float, default=7.0,
                    help="retention of 1-minute rollups and operation records (default 7)")
    ap.add_argument("--history-days", type=float, default=None,
                    help="retention of hourly rollups, events, jobs, alerts, quarantine and bench "
                         "runs (default: the agent's, 90 to 400 days)")
    ap.add_argument("--pause", type=float, default=0.3,
                    help="real seconds between the console's background pane polls")
    ap.add_argument("--rounds", type=int, default=20,
                    help="rounds of all six panes polled back to back in one burst")
    ap.add_argument("--bursts", type=int, default=3,
                    help="bursts at each checkpoint; a call's p95 is its lowest burst's")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()
    if args.days < 1:
        ap.error("--days must be at least 1")
    import datagen  # bench/datagen.py

    base = Path(tempfile.mkdtemp(prefix="lk-soak-"))
    sock_dir = Path(tempfile.mkdtemp(prefix="lks", dir="/tmp"))
    agent: Agent | None = None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        data = base / "data"
        data.mkdir()
        gen = datagen.generate(data, users=args.data_users, total_mb=args.data_mb)
        for d in data.iterdir():
            d.chmod(0o700)
        (base / "spool").mkdir()
        clock = SimClock(time.time(), args.speed)
        env = agent_env(base, sock_dir / "agent.sock", clock, args.retention_days,
                        args.history_days)
        agent = Agent(env, base / "agent.log")
        agent.start()
        store_path = Path(agent.client.status()["store"]["path"])
        print(f"soak: {args.days:g} simulated days at {args.speed:g}x "
              f"({args.days * DAY / args.speed / 60:.1f} real minutes); data root "
              f"{gen['files']} files, {gen['bytes'] / 1e6:.1f} MB in {args.data_users} users; "
              f"{args.ops:g} spool ops/real s from {args.users} user ids; agent pid "
              f"{agent.proc.pid if agent.proc else '?'}", flush=True)
        counts: dict[str, int] = {}
        console = Console(agent.client, clock, args.pause)
        threads = [
            threading.Thread(target=spool_writer, args=(base / "spool", clock, args.ops,
                                                        args.users, stop, counts), daemon=True),
            threading.Thread(target=rewriter, args=(data, clock, 6 * 3600, stop, counts),
                             daemon=True),
            threading.Thread(target=console.run, args=(stop,), daemon=True),
        ]
        for t in threads:
            t.start()
        marks = sorted({1, min(7, int(args.days)), int(args.days)})
        points = []
        footprint: list[tuple[float, int, int]] = []  # (sim day, agent RSS, store bytes)
        next_print = 0.0
        for mark in marks:
            while clock.day() < mark:
                if agent.proc is not None and agent.proc.poll() is not None:
                    raise RuntimeError(f"the agent exited: {agent.tail()}")
                footprint.append((clock.day(), agent.rss(), store_bytes(store_path)))
                if clock.day() >= next_print:
                    st = agent.client.status()
                    print(f"  day {clock.day():5.1f}: rss {agent.rss() / 2**20:6.1f} MiB, "
                          f"store {store_bytes(store_path) / 2**20:6.2f} MiB, "
                          f"ops {counts.get('ops', 0)}, polls {console.polls}, "
                          f"jobs held {(st.get('jobs') or {}).get('in_memory')}, "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
                    next_print = clock.day() + 1
                time.sleep(0.2)
            points.append(checkpoint(mark, agent, console, clock, footprint, args.rounds,
                                     args.bursts, args.speed))
        stop.set()
        for t in threads:
            t.join(10)
        ok = report(points)
        if console.errors:
            print("\nconsole calls that failed:")
            for k, v in sorted(console.errors.items(), key=lambda kv: -kv[1])[:10]:
                print(f"  {v:6d}  {k}")
        if args.json:
            print(json.dumps({"points": points, "args": vars(args), "counts": counts}))
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 130
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        if agent is not None:
            agent.stop()
            if agent.proc is not None and agent.proc.returncode not in (0, None, -15):
                print(f"agent exited {agent.proc.returncode}: {agent.tail()}", file=sys.stderr)
        shutil.rmtree(sock_dir, ignore_errors=True)
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
