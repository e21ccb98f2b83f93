"""The agent: owns the store, runs collectors, ingestion, alerts, jobs and schedules, serves APIs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lightkeeper import __version__, fswatch
from lightkeeper.agent import (
    alertmanager,
    api,
    configcheck,
    memory,
    permissions,
    rag_health,
    registry,
    scheduler,
    sdnotify,
)
from lightkeeper.agent import reload as config_reload
from lightkeeper.agent.alerts import AlertEvaluator, configured_rules
from lightkeeper.agent.derived import DERIVED
from lightkeeper.agent.histograms import RagHistograms
from lightkeeper.agent.ingest import SpoolIngester
from lightkeeper.agent.jobs import JobManager
from lightkeeper.agent.pidlock import PidLock
from lightkeeper.agent.services import AgentServices
from lightkeeper.agent.store import compact, ophist, slowops
from lightkeeper.agent.store.db import Store, StoreError
from lightkeeper.agent.store.rollup import Retention, apply_retention, rollup
from lightkeeper.collectors.registry import build_collectors
from lightkeeper.config import Config, ConfigError
from lightkeeper.logs import get_logger
from lightkeeper.tuning.calls import on_active_file_changed

log = get_logger("agent")

MAX_BUFFERED_SAMPLES = 2_000_000
# the store's rows are counted for the compaction's estimate at most this often
COMPACTION_CHECK_SECONDS = 3600.0
# Retention deletes at most this often (wall-clock seconds, the clock retention cuts by; the
# first maintenance pass, the first after a configuration change and one after the clock went
# back always run it). Every minute it cost a pass 12 deletes and, once raw samples aged out
# (48 h), a checkpoint of the store; what is due now waits at most this long: minutes of rows
# in tables that keep hours to months.
RETENTION_INTERVAL = 600.0


class AgentStartError(RuntimeError):
    """The agent cannot start; the message says why."""


class CollectorHealth:
    def __init__(self, name: str, interval: float) -> None:
        self.name = name
        self.interval = interval
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self.last_error_ts: float | None = None
        self.errors = 0
        self.runs = 0
        self.last_duration: float | None = None

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"name": self.name, "interval_s": self.interval, "last_ok": self.last_ok,
                "age_s": None if self.last_ok is None else round(now - self.last_ok, 1),
                "runs": self.runs, "errors": self.errors, "last_error": self.last_error,
                "last_duration_ms": None if self.last_duration is None
                else round(self.last_duration * 1000, 1)}


def prepare_state_dir(cfg: Config) -> Path:
    state = cfg.path("paths.state_dir")
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = state / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise AgentStartError(
            f"state directory {state} is not writable ({exc.strerror}); set paths.state_dir "
            "to a directory you own") from None
    return state


def check_data_root(cfg: Config) -> Path:
    root = cfg.path("paths.data_root")
    if root.is_dir():
        return root
    if cfg.origin("paths.data_root") == "default":
        root.mkdir(parents=True, exist_ok=True)
        return root
    raise AgentStartError(
        f"data root {root} does not exist (set by {cfg.origin('paths.data_root')}); "
        "create it or point paths.data_root at the directory holding the users' LightRAG "
        "working directories")


class Agent:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.host = socket.gethostname()
        self.started = time.time()
        self._reloads: set[asyncio.Future[Any]] = set()  # SIGHUP reloads in flight
        try:
            configcheck.check(cfg)
        except ConfigError as exc:
            raise AgentStartError(f"configuration error: {exc}") from None
        self.state_dir = prepare_state_dir(cfg)
        self.data_root = check_data_root(cfg)
        self.lock = PidLock(self.state_dir / "agent.lock")
        self.store: Store | None = None
        self.retention = Retention.from_config(cfg)
        self.collector_health: dict[str, CollectorHealth] = {}
        self.rag_histograms = RagHistograms()
        self._rag_health_seen: set[tuple[str, str]] = set()
        self._rag_gauges = rag_health.HealthGauges()
        self._stop = asyncio.Event()
        self._thread_stop = threading.Event()
        self.maintenance: dict[str, Any] = {}
        # the last compaction's time.time() and what it left (from its event, at the first check)
        self._last_compaction: float | None = None
        self._packed: compact.Packed | None = None
        self._compaction_checked = -float("inf")  # the last look at the store's reclaim
        self._retention_due = 0.0  # time.time() of the next retention pass
        self.memory: dict[str, Any] = {}  # where the agent's memory is (status "memory")
        self.http_listen: str | None = None
        self.config_loaded = time.time()
        self._reload_lock = threading.Lock()
        self._beats: dict[str, float] = {}  # periodic task -> when it last completed
        # CPU each of the agent's own tasks used in its worker threads (status "cpu")
        self._task_cpu: dict[str, list[float]] = {}  # name -> [cpu seconds, runs]
        self._task_cpu_lock = threading.Lock()
        self._footing: dict[str, tuple[int, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._collector_tasks: list[asyncio.Task[None]] = []
        self.lost: str | None = None  # why the agent stopped on its own (footing lost)
        # the outcome of the last reload, for status and the console: {ts, ok, changed|error}
        self.last_reload: dict[str, Any] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def open(self) -> None:
        """Take the lock and open the store. Raises AgentStartError with a clear message."""
        try:
            self.lock.acquire()
        except RuntimeError as exc:
            raise AgentStartError(str(exc)) from None
        self.pid_file = self.state_dir / "agent.pid"
        fd = permissions.open_private(self.pid_file)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        try:
            self.store = Store(self.cfg.path("store.path"),
                               memory_limit_mb=self.cfg["store.memory_limit_mb"],
                               threads=self.cfg["store.threads"])
        except StoreError as exc:
            self.lock.release()
            raise AgentStartError(str(exc)) from None
        self.services = AgentServices(self.cfg, self.store)
        self.calls, job_fns, self.schedules = registry.load()
        self.probes = registry.probes()
        self._probe_last: dict[str, float] = {}
        self.jobs = JobManager(self.services, job_fns)
        self.services.jobs = self.jobs
        self.jobs.recover()
        self.alerts = AlertEvaluator(configured_rules(self.cfg), self.store, self.services.audit)
        self.notifier = alertmanager.Notifier(self.cfg, self.host, self.alerts)
        self.alerts.restore_open()
        # block staging files live in the agent's own state dir, never in the spool
        self.ingester = SpoolIngester(self.store, self.cfg.path("paths.spool_dir"), self.host,
                                      stage_dir=self.state_dir)
        self.ingester.on_rows = self.rag_histograms.observe
        try:
            self.cfg.path("paths.spool_dir").mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # ingest passes report it (status, /readyz, the lag alert)
            self.services.audit("ingest.spool_unusable", level="error",
                                spool_dir=str(self.cfg.path("paths.spool_dir")),
                                error=exc.strerror or str(exc))
        self.collectors = self._build_collectors()
        for c in self.collectors:
            if hasattr(c, "snapshot"):  # the process collector: its table for processes.list
                self.services.process_table = c.snapshot
        for c in self.collectors:
            self.collector_health[c.name] = CollectorHealth(c.name, c.interval)
        self._measure_memory()
        self.services.audit("agent.started", component="agent", pid=os.getpid(),
                            version=__version__, state_dir=str(self.state_dir),
                            data_root=str(self.data_root))
        tightened = permissions.secure_state_dir(self.state_dir, self._private_files())
        if tightened:  # an install from before the state dir was private
            self.services.audit("state.permissions_tightened", level="warning",
                                component="agent", changed=tightened[:50])
        self._exposed_users: dict[str, int] = {}  # user -> the mode last warned about
        self._check_user_dirs()
        self._audit_config_change()

    def _audit_config_change(self) -> None:
        """Compare the effective configuration with the one of the previous start; record what
        changed (secrets masked) as an audit event."""
        assert self.store is not None
        current = {k: [v, o] for k, v, o in self.cfg.items()}
        rows = self.store.execute("SELECT value FROM meta WHERE key = 'config_snapshot'")
        if rows:
            previous = json.loads(rows[0][0])
            changed = sorted(k for k in set(current) | set(previous)
                             if (current.get(k) or [None])[0] != (previous.get(k) or [None])[0])
            if changed:
                self.services.audit(
                    "config.changed", component="agent", keys=changed,
                    changes={k: {"old": (previous.get(k) or [None])[0],
                                 "new": (current.get(k) or [None])[0],
                                 "origin": (current.get(k) or [None, "removed"])[1]}
                             for k in changed[:50]})
        self.store_config_snapshot()

    def store_config_snapshot(self) -> None:
        """Remember the effective configuration (secrets masked): the next start, or reload,
        audits what changed against it. The one writer of meta's ``config_snapshot``."""
        assert self.store is not None
        current = {k: [v, o] for k, v, o in self.cfg.items()}
        self.store.execute("INSERT OR REPLACE INTO meta VALUES ('config_snapshot', ?)",
                           [json.dumps(current, default=str)])

    def _build_collectors(self) -> list[Any]:
        return list(build_collectors(self.cfg))

    def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.to_thread(self._cpu_counted, "api", fn, *args)

    def _cpu_counted(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in this worker thread, its thread CPU time (DuckDB's and psutil's C
        code included) added to the task ``name``: where an idle agent's CPU goes."""
        t0 = time.thread_time()
        try:
            return fn(*args)
        finally:
            used = time.thread_time() - t0
            with self._task_cpu_lock:
                acc = self._task_cpu.setdefault(name, [0.0, 0])
                acc[0] += used
                acc[1] += 1

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        runners = [await api.serve_unix(api.build_app(self), self.cfg.path("agent.socket"))]
        self._footing = self._footing_ids()
        if self.cfg["http.enabled"]:
            # the TCP endpoint (prometheus_client loads with its first scrape: http_endpoints.Renderer)
            from lightkeeper.agent import http_endpoints  # noqa: PLC0415
            try:
                runners.append(await http_endpoints.serve_tcp(http_endpoints.build_app(self),
                                                              self.cfg["http.listen"]))
                self.http_listen = self.cfg["http.listen"]
            except OSError as exc:
                self.services.audit("http.listen_failed", level="error",
                                    listen=self.cfg["http.listen"], error=exc.strerror)
        self._loop = loop
        self._collector_tasks = [asyncio.create_task(self._collector_loop(c))
                                 for c in self.collectors]
        tasks = [
            asyncio.create_task(self._periodic(lambda: self.cfg["store.flush_interval"],
                                               self._flush, due=self._flush_due)),
            asyncio.create_task(self._periodic(self._setting("store.maintenance_interval"),
                                               self._maintain, first_delay=5)),
            asyncio.create_task(self._periodic(self._setting("agent.alert_interval"),
                                               self._evaluate_alerts, first_delay=2)),
            asyncio.create_task(self._periodic(self._setting("agent.notify_interval"),
                                               self.notifier.tick, first_delay=3,
                                               due=self._alertmanager_configured)),
            asyncio.create_task(self._periodic(self._setting("agent.schedule_interval"),
                                               self._run_schedules, first_delay=10)),
            asyncio.create_task(self._periodic(self._setting("agent.probe_interval"),
                                               self._run_probes, first_delay=5)),
            asyncio.create_task(self._periodic(self._setting("agent.timestamp_interval"),
                                               self._refresh_timestamps, first_delay=3)),
            asyncio.create_task(self._periodic(self._setting("agent.footing_interval"),
                                               self._check_footing, first_delay=2)),
            asyncio.create_task(self._periodic(self._setting("agent.rag_health_interval"),
                                               self._rag_health, first_delay=4)),
            asyncio.create_task(self._ingest_loop()),
            asyncio.create_task(self._tuning_watch_loop()),
        ]
        watchdog = sdnotify.watchdog_seconds()
        if watchdog:
            tasks.append(asyncio.create_task(self._watchdog_loop(watchdog)))
        log.info("agent.ready", socket=str(self.cfg.path("agent.socket")),
                 http=self.http_listen, collectors=[c.name for c in self.collectors],
                 calls=len(self.calls), jobs=sorted(self.jobs.registry))
        sdnotify.notify("READY=1", f"MAINPID={os.getpid()}", "STATUS=serving")
        if ready:
            ready()
        await self._stop.wait()
        log.info("agent.stopping")
        sdnotify.notify("STOPPING=1")
        self._thread_stop.set()
        tasks += self._collector_tasks
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Long polls (a console's changes.wait, a CLI following a job) answer now, so that the
        # server's cleanup does not wait them out.
        self.services.changes.close()
        self.jobs.feed.close()
        for r in runners:
            await r.close()
        await asyncio.to_thread(self.jobs.shutdown, self.cfg["agent.shutdown_timeout"])

    def close(self) -> None:
        """Flush pending writes and checkpoint the store; release the lock."""
        for c in getattr(self, "collectors", []):
            try:
                c.close()
            except Exception as exc:  # noqa: BLE001  closing one collector must not stop the others from closing
                log.warning("collector.close_failed", collector=c.name, error=str(exc))
        if self.store is not None:
            try:
                self.store.flush()
            except StoreError as exc:
                log.error("agent.final_flush_failed", error=str(exc))
            try:
                self.store.add_event("audit", "agent.stopped", component="agent",
                                     context={"pid": os.getpid(),
                                              "uptime_s": round(time.time() - self.started)})
                log.info("agent.stopped", uptime_s=round(time.time() - self.started))
                self.store.close()
            except Exception as exc:  # noqa: BLE001  shutdown goes on; the error is logged
                log.error("agent.close_failed", error=str(exc))
            self.store = None
        footing = getattr(self, "_footing", {})
        for path in (self.cfg.path("agent.socket"), self.state_dir / "agent.pid"):
            try:
                st = path.stat()
                if str(path) in footing and footing[str(path)] != (st.st_dev, st.st_ino):
                    continue  # not ours any more: another agent's socket, left alone
                path.unlink()
            except FileNotFoundError:
                pass
        self.lock.release()

    def stop(self) -> None:
        self._stop.set()

    # -- footing: the state directory, lock file and socket this agent stands on -------------
    def _footing_ids(self) -> dict[str, tuple[int, int]]:
        ids = {}
        for path in (self.state_dir, self.cfg.path("agent.socket"), self.state_dir / "agent.pid"):
            st = path.stat()
            ids[str(path)] = (st.st_dev, st.st_ino)
        return ids

    def footing_problems(self) -> list[str]:
        """What this agent lost under it: its state directory, lock file or socket deleted or
        replaced. An agent in that state writes to deleted files while a new agent can start
        beside it, so it must stop."""
        problems = []
        for path, ident in self._footing.items():
            if path.endswith("agent.pid"):
                continue  # informational; the lock file is what keeps agents apart
            try:
                st = os.stat(path)
            except FileNotFoundError:
                problems.append(f"{path} was deleted")
                continue
            if (st.st_dev, st.st_ino) != ident:
                problems.append(f"{path} was replaced")
        if not problems and not self.lock.still_held():
            problems.append(f"lock file {self.lock.path} was deleted or replaced")
        return problems

    def _check_footing(self) -> None:
        problems = self.footing_problems()
        if not problems:
            return
        message = "the agent lost its footing and stops: " + "; ".join(problems)
        log.error("agent.lost_footing", problems=problems)
        print(f"lightkeeper agent: {message}", file=sys.stderr, flush=True)  # the journal too
        self.lost = message
        self._stop.set()

    async def _watchdog_loop(self, period: float) -> None:
        """Ping systemd's watchdog while the agent's loops make progress: the alert loop and
        the store flush both ran within the period (a wedged agent gets restarted)."""
        while True:
            now = time.monotonic()
            beats = [self._beats.get(name, 0.0) for name in ("_evaluate_alerts", "_flush")]
            if all(now - b < period for b in beats):
                sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(period / 3)

    # -- configuration ----------------------------------------------------------------------
    def _on_sighup(self) -> None:
        log.info("config.reload_requested", signal="SIGHUP")
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.reload, "SIGHUP"))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def reload(self, actor: str | None = None) -> dict[str, Any]:
        """Re-read the configuration from its sources; see ``agent.reload``."""
        with self._reload_lock:
            sdnotify.reloading()
            try:
                return config_reload.reload(self, actor)
            finally:
                sdnotify.notify("READY=1")

    def apply_config(self, new: Config, changed: Iterable[str] = ()) -> None:
        """Take a checked configuration: every holder of ``self.cfg`` sees it from now on;
        collectors are rebuilt when a ``collect.*`` setting changed."""
        self.cfg.replace_with(new)
        if any(k.startswith("collect.") for k in changed) and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._restart_collectors(), self._loop).result(120)
        self.retention = Retention.from_config(self.cfg)
        self._retention_due = 0.0  # a changed retention applies at the next pass
        self.alerts.set_rules(configured_rules(self.cfg))
        logging.getLogger("lightkeeper").setLevel(self.cfg["log.level"].upper())
        self.config_loaded = time.time()

    # -- loops ------------------------------------------------------------------------------
    def _setting(self, key: str) -> Callable[[], float]:
        """A loop interval read on every round (a reload may change it)."""
        return lambda: float(self.cfg[key])

    def _alertmanager_configured(self) -> bool:
        return bool(self.cfg["alerting.alertmanager_url"])

    async def _periodic(self, interval: float | Callable[[], float], fn: Callable[[], Any],
                        first_delay: float = 0, due: Callable[[], bool] | None = None) -> None:
        """Run ``fn`` in a worker thread every ``interval`` seconds; ``due``, a cheap check on
        the event loop, skips a round without waking a thread (the Alertmanager push every
        second when none is configured, which a reload may change; a flush with nothing
        buffered). A skipped round still counts as the task's heartbeat."""
        every = interval() if callable(interval) else interval
        await asyncio.sleep(min(first_delay, every))
        while True:
            try:
                if due is None or due():
                    await asyncio.to_thread(self._cpu_counted, _task_name(fn), fn)
                self._beats[getattr(fn, "__name__", "")] = time.monotonic()
            except Exception as exc:  # noqa: BLE001  one failed periodic task must not stop the agent
                log.error("agent.task_failed", task=fn.__name__,
                          error=f"{type(exc).__name__}: {exc}")
            every = interval() if callable(interval) else interval  # a reload may change it
            await asyncio.sleep(until_tick(every))

    async def _restart_collectors(self) -> None:
        """Replace the collectors with ones built from the current configuration (a reload
        changed a collect.* setting). Series only the old ones reported disappear."""
        try:
            new = self._build_collectors()
        except Exception as exc:  # noqa: BLE001  a collector that cannot be built: keep the old ones running
            log.error("collectors.rebuild_failed", error=f"{type(exc).__name__}: {exc}")
            return
        old, old_tasks = self.collectors, self._collector_tasks
        for t in old_tasks:
            t.cancel()
        await asyncio.gather(*old_tasks, return_exceptions=True)
        for c in old:
            try:
                await asyncio.to_thread(c.close)
            except Exception as exc:  # noqa: BLE001  one collector failing to close must not keep the others from restarting
                log.warning("collector.close_failed", collector=c.name, error=str(exc))
        health = {}
        for c in new:
            health[c.name] = self.collector_health.get(c.name) or CollectorHealth(c.name,
                                                                                  c.interval)
            health[c.name].interval = c.interval
        self.collectors, self.collector_health = new, health
        self._collector_tasks = [asyncio.create_task(self._collector_loop(c)) for c in new]
        log.info("collectors.rebuilt", collectors=[c.name for c in new])

    async def _collector_loop(self, collector: Any) -> None:
        previous: set[tuple[str, str]] = set()
        try:
            await self._collect_forever(collector, previous)
        except asyncio.CancelledError:
            for key in previous:  # this collector stops: its series leave the current values
                self.services.drop_current(*key)
            raise

    async def _collect_forever(self, collector: Any, previous: set[tuple[str, str]]) -> None:
        health = self.collector_health[collector.name]
        while True:
            t0 = time.monotonic()
            try:
                triples = await asyncio.to_thread(self._cpu_counted,
                                                  f"collector:{collector.name}", collector.collect)
                now = time.time()
                samples = [(now, m, lab, float(v)) for m, lab, v in triples if v is not None]
                self.services.add_samples(samples)
                # series the collector stopped reporting (a removed user, mount, interface or
                # process) leave the current values: /metrics stops showing them and their
                # alerts resolve
                seen = {(m, lab) for _, m, lab, _ in samples}
                for key in previous - seen:
                    self.services.drop_current(*key)
                previous.clear()
                previous.update(seen)
                health.last_ok = now
                health.runs += 1
            except Exception as exc:  # noqa: BLE001  a failing collector is counted in its health, the loop goes on
                health.errors += 1
                health.last_error = f"{type(exc).__name__}: {exc}"
                health.last_error_ts = time.time()
                log.error("collector.failed", collector=collector.name, error=health.last_error,
                          errors=health.errors)
            health.last_duration = time.monotonic() - t0
            await asyncio.sleep(until_tick(collector.interval))

    def _flush_due(self) -> bool:
        """Something to write (or a write to retry): rounds between two collections have none."""
        assert self.store is not None
        return self.store.pending() > 0

    def _flush(self) -> None:
        assert self.store is not None
        dropped = self.store.drop_oldest(MAX_BUFFERED_SAMPLES)  # a long outage: bound memory
        if dropped:
            log.error("store.samples_dropped", dropped=dropped)
        if self.store.flush():  # a collection round landed: the console's charts follow
            self.services.changes.notify("samples")

    def _maintain(self) -> None:
        assert self.store is not None
        t0 = time.monotonic()
        written = rollup(self.store)
        written["rag_ops_1m merged"] = ophist.compact(self.store)
        written["rag_ops_slow trimmed"] = slowops.trim(self.store)
        deleted: dict[str, int] = {}
        wall = time.time()
        if not 0 < self._retention_due - wall <= RETENTION_INTERVAL:
            deleted = apply_retention(self.store, self.retention, now=wall)
            self._retention_due = wall + RETENTION_INTERVAL
        if deleted.get("jobs"):
            self.jobs.forget_records()  # the records the job list holds
        size = self.store.size_bytes()
        budget = self.cfg["store.size_budget_mb"] * 1024 * 1024
        now = time.time()
        self.services.add_samples([
            (now, "lightkeeper_store_size_bytes", "", float(size)),
            (now, "lightkeeper_store_budget_ratio", "", size / budget),
        ])
        self.maintenance = {"ts": now, "rollup": written, "deleted": deleted,
                            "duration_ms": round((time.monotonic() - t0) * 1000, 1)}
        if any(deleted.values()):
            self.store.checkpoint()
        self._compact_if_due(now)
        permissions.secure_state_dir(self.state_dir, self._private_files())  # a new WAL, logs
        self._check_user_dirs()
        memory.trim()  # what finished jobs and queries freed goes back to the system
        self._measure_memory()

    def _compact_if_due(self, now: float) -> None:
        """A fresh copy of the store in place of its file when that gives back a large share of
        it (``store.compact_*``; agent.store.compact), at most once per interval. The store's
        rows are counted for the estimate at most once an hour."""
        assert self.store is not None
        if self._last_compaction is None:
            self._last_compaction, self._packed = compact.last_compaction(self.store)
        interval = self.cfg["store.compact_min_interval_hours"] * 3600
        if (now - self._last_compaction < interval
                or now - self._compaction_checked < COMPACTION_CHECK_SECONDS):
            return
        self._compaction_checked = now
        b = compact.blocks(self.store)
        live = compact.rows(self.store) if self._packed is not None else None
        why = compact.due(b, self._packed, live, self.cfg["store.compact_free_share"],
                          int(self.cfg["store.compact_min_free_mb"] * 1024 * 1024))
        if why is None:
            return
        self._last_compaction = now
        reclaim = compact.reclaimable(b, self._packed, live)
        try:
            done = compact.compact(self.store)
        except StoreError as exc:
            self.services.audit("store.compaction_failed", level="warning", error=str(exc),
                                reason=why, free_bytes=b.free_bytes, file_bytes=b.total_bytes)
            return
        self._packed = compact.Packed(int(done["packed_bytes"]), int(done["rows"]))
        self.maintenance["compacted"] = done
        self.services.audit("store.compacted", reason=why, free_bytes=b.free_bytes,
                            estimated_bytes=reclaim, before_bytes=int(done["before_bytes"]),
                            after_bytes=int(done["after_bytes"]),
                            packed_bytes=self._packed.bytes, rows=self._packed.rows,
                            held_ms=round(done["held_ms"], 1))

    def _measure_memory(self) -> None:
        """Record where the agent's memory is: for status, and as samples to chart and alert on."""
        assert self.store is not None
        now = time.time()
        try:
            buffers: int | None = self.store.memory_bytes()
        except Exception as exc:  # noqa: BLE001  a measurement never stops the agent
            log.warning("memory.store_unmeasured", error=f"{type(exc).__name__}: {exc}")
            buffers = None
        parts = memory.usage(store_buffers=buffers)
        self.memory = {"ts": now, **parts}
        self.services.add_samples([(now, "lightkeeper_agent_memory_bytes", part, float(v))
                                   for part, v in parts.items()])

    def _private_files(self) -> list[Path]:
        """The agent's files that may live outside the state dir: the store, its WAL, logs."""
        assert self.store is not None
        log_file = self.cfg.path("log.file")
        return [self.store.path, self.store.path.with_name(self.store.path.name + ".wal"),
                log_file, *log_file.parent.glob(log_file.name + ".*")]

    def _check_user_dirs(self) -> None:
        """Warn (once per user and mode) about users' directories other accounts can read."""
        root_mode, exposed = permissions.exposed_user_modes(self.data_root)
        for user, mode in exposed.items():
            if self._exposed_users.get(user) != mode:
                self.services.audit(
                    "userdir.readable_by_others", level="warning", component="agent",
                    user=user, mode=f"{mode:04o}", path=str(self.data_root / user),
                    data_root_mode=f"{root_mode:04o}",
                    hint="other accounts can read this user's documents and graph; "
                         "chmod o-rwx it (docs/security.md, 'The data root')")
        self._exposed_users = exposed

    def _evaluate_alerts(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        samples = []
        for h in self.collector_health.values():
            ref = h.last_ok or self.started
            samples.append((now, "lightkeeper_collector_staleness_ratio", h.name,
                            (now - ref) / h.interval))
            samples.append((now, "lightkeeper_collector_errors_total", h.name, float(h.errors)))
        samples.append((now, "lightkeeper_ingest_lag_seconds", "", self.ingester.lag(now)))
        samples.append((now, "lightkeeper_ingested_operations_total", "",
                        float(self.ingester.stats.rows)))
        samples.append((now, "lightkeeper_quarantined_lines_total", "",
                        float(self.ingester.stats.quarantined)))
        self.services.add_samples(samples)
        self.alerts.evaluate(self.services.current_values(now, self.alerts.metrics), now)

    def _rag_health(self) -> None:
        """LightRAG latency, error and silence gauges for the alert rules (agent.rag_health);
        a series no longer computed (a mode gone quiet, a user forgotten) leaves the current
        values, so its alert resolves."""
        assert self.store is not None
        now = time.time()
        triples = self._rag_gauges.samples(self.store, self.ingester.stats.rows, now)
        self.services.add_samples([(now, m, lab, v) for m, lab, v in triples])
        seen = {(m, lab) for m, lab, _ in triples}
        for key in self._rag_health_seen - seen:
            self.services.drop_current(*key)
        self._rag_health_seen = seen

    def _refresh_timestamps(self) -> None:
        """Keep the timestamps that ages and lags are computed from (``agent.derived``)
        current: the newest backup and the newest passing restore drill (seeded from the
        repository after a start), and each zone's oldest missing snapshot (a new local backup
        makes a zone lag without any probe). The computed gauges are stored as samples too, for
        their history."""
        now = time.time()
        cur = self.services.current
        if ("backup_last_success_timestamp_seconds", "") not in cur \
                or ("backup_drill_last_success_timestamp_seconds", "") not in cur:
            self._seed_backup_timestamps(now)
        if self.cfg.table("zones") and "zones.list" in self.calls:
            try:
                zones = self.calls["zones.list"](self.services, {})
            except Exception as exc:  # noqa: BLE001  a zone's state file unreadable: the next pass retries
                log.warning("zones.refresh_failed", error=f"{type(exc).__name__}: {exc}")
            else:
                for st in zones:
                    self.services.set_current(
                        "zone_oldest_unreplicated_timestamp_seconds", st["name"],
                        float(st.get("lag_since") or 0.0), record=False)
                names = {st["name"] for st in zones}
                for metric, label in list(cur):  # a zone removed from the configuration
                    if metric.startswith("zone_") and label not in names:
                        self.services.drop_current(metric, label)
        derived = self.services.current_values(now)
        self.services.add_samples([(now, m, lab, v) for (m, lab), (_ts, v) in derived.items()
                                   if m in DERIVED])

    def _seed_backup_timestamps(self, now: float) -> None:
        if "backup.stats" not in self.calls or now - getattr(self, "_backup_seeded", 0.0) < 600:
            return
        self._backup_seeded = now
        try:
            stats = self.calls["backup.stats"](self.services, {})
        except Exception as exc:  # noqa: BLE001  no repository yet, or unreadable: nothing to report
            log.debug("backup.age_unknown", error=str(exc))
            return
        cur = self.services.current
        newest = stats.get("newest_snapshot") or {}
        if newest.get("time") and ("backup_last_success_timestamp_seconds", "") not in cur:
            self.services.set_current("backup_last_success_timestamp_seconds", "",
                                      float(newest["time"]))
        if ("backup_drill_last_success_timestamp_seconds", "") not in cur:
            drill = ((stats.get("drill") or {}).get("last_success") or {}).get("time")
            # never drilled: the repository's data has gone unproven since its first snapshot
            since = drill or stats.get("oldest_snapshot_time")
            if since:
                self.services.set_current("backup_drill_last_success_timestamp_seconds", "",
                                          float(since))

    def _run_schedules(self) -> None:
        assert self.store is not None
        now = time.time()
        for provider in self.schedules:
            try:
                entries = provider(self.services)
            except Exception as exc:  # noqa: BLE001  one schedule provider's bug must not stop the others
                log.error("schedule.provider_failed", error=str(exc))
                continue
            for kind, text, params in entries:
                try:
                    spec = scheduler.parse(text)
                except scheduler.ScheduleError as exc:
                    log.error("schedule.invalid", kind=kind, error=str(exc))
                    continue
                if spec is None:
                    continue
                key = scheduler.entry_key(kind, params)
                rows = self.store.execute("SELECT value FROM meta WHERE key = ?", [key])
                last = float(rows[0][0]) if rows else None
                if not scheduler.is_due(spec, last, now):
                    continue
                try:
                    job = self.jobs.start(kind, params, actor="schedule")
                except Exception as exc:  # noqa: BLE001  a schedule that cannot start is logged; the others still run
                    log.warning("schedule.start_failed", kind=kind, error=str(exc))
                    continue
                self.store.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, str(now)])
                log.info("schedule.started", kind=kind, job_id=job.id)

    def _run_probes(self) -> None:
        """Periodic probes (zones): samples for alerts and charts, never job records."""
        now = time.time()
        for provider in self.probes:
            for name, text, fn in provider(self.services):
                try:
                    spec = scheduler.parse(text)
                except scheduler.ScheduleError as exc:
                    log.error("probe.invalid_schedule", probe=name, error=str(exc))
                    continue
                if spec is None or not scheduler.is_due(spec, self._probe_last.get(name), now):
                    continue
                self._probe_last[name] = now
                try:
                    fn(self.services)
                except Exception as exc:  # noqa: BLE001  a failing probe is logged; the next runs on time
                    log.warning("probe.failed", probe=name, error=f"{type(exc).__name__}: {exc}")
                self.services.changes.notify("zones")

    async def _ingest_loop(self) -> None:
        """An ingest pass on every change in the spool, or after 2 s at the latest. One watcher
        serves the agent's life: a new one every round cost an inotify instance, a thread and
        their setup every 2 s (issue 13, a small resident)."""
        spool = self.cfg.path("paths.spool_dir")
        await self._ingest_pass()
        while not self._stop.is_set():
            try:
                async with contextlib.aclosing(fswatch.watch_from_loop(
                        spool, debounce_ms=200, timeout_ms=2000)) as batches:
                    async for changes in batches:
                        await self._ingest_pass()
                        if any(path == str(spool) for _, path in changes):
                            break  # the spool itself went away: watch the one made in its place
            except FileNotFoundError:  # the spool went away: made again, watched again
                await asyncio.sleep(2)  # first: a state dir removed whole stops the agent
                if self._stop.is_set():
                    return
                try:
                    spool.mkdir(exist_ok=True)  # not its parents: no state dir made anew
                except OSError as exc:
                    log.error("ingest.spool_unusable", error=f"{type(exc).__name__}: {exc}")
                await self._ingest_pass()

    async def _ingest_pass(self) -> None:
        try:
            if await asyncio.to_thread(self._cpu_counted, "ingest", self.ingester.ingest_once):
                self.services.changes.notify("samples")  # LightRAG operations landed
        except Exception as exc:  # noqa: BLE001  ingestion retries on the next change; the error is logged
            log.error("ingest.failed", error=f"{type(exc).__name__}: {exc}")

    async def _tuning_watch_loop(self) -> None:
        path = self.cfg.path("paths.tuning_file")
        path.parent.mkdir(parents=True, exist_ok=True)
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(on_active_file_changed, self.services)
            except Exception as exc:  # noqa: BLE001  the watch loop keeps running; the error is logged
                log.error("tuning.watch_failed", error=f"{type(exc).__name__}: {exc}")
            async with contextlib.aclosing(fswatch.watch_from_loop(
                    path.parent, debounce_ms=300)) as batches:
                async for changes in batches:
                    if any(Path(p).name == path.name for _, p in changes):
                        break

    # -- status -----------------------------------------------------------------------------
    def readiness_problems(self) -> list[str]:
        problems = []
        assert self.store is not None
        if self.store.last_write_error:
            problems.append(f"store not writable: {self.store.last_write_error}")
        now = time.time()
        for h in self.collector_health.values():
            ref = h.last_ok or self.started
            if now - ref > max(3 * h.interval, 30):
                problems.append(f"collector {h.name} stale ({now - ref:.0f} s)")
        ingest = self.ingester.stats
        if ingest.last_error:
            problems.append(f"spool ingest failing: {ingest.last_error[:300]}")
        lag, limit = self.ingester.lag(now), self._ingest_lag_limit()
        if lag > limit:
            problems.append(f"spool ingest lags {lag:.0f} s (more than {limit:.0f} s)")
        return problems

    def _ingest_lag_limit(self) -> float:
        """The ingest_lag alert's critical level (configurable): past it, not ready."""
        for rule in self.alerts.rules:
            if rule.name == "ingest_lag" and rule.critical is not None:
                return rule.critical
        return 300.0

    def status(self) -> dict[str, Any]:
        assert self.store is not None
        now = time.time()

        return {
            "version": __version__,
            "pid": os.getpid(),
            "host": self.host,
            "started": self.started,
            "uptime_s": round(now - self.started, 1),
            "state_dir": str(self.state_dir),
            "data_root": str(self.data_root),
            "socket": str(self.cfg.path("agent.socket")),
            "http": self.http_listen,
            "store": {"path": str(self.store.path), "size_bytes": self.store.size_bytes(),
                      "rows_written": self.store.rows_written, "pending": self.store.pending(),
                      "last_flush": self.store.last_flush,
                      "last_write_error": self.store.last_write_error,
                      "budget_bytes": self.cfg["store.size_budget_mb"] * 1024 * 1024,
                      "maintenance": self.maintenance},
            "collectors": [h.as_dict(now) for h in self.collector_health.values()],
            "ingest": {"rows": self.ingester.stats.rows,
                       "quarantined": self.ingester.stats.quarantined,
                       "lag_s": round(self.ingester.lag(now), 1),
                       "pending_bytes": self.ingester.stats.pending_bytes,
                       "files_removed": self.ingester.stats.files_removed,
                       "skipped_files": self.ingester.stats.skipped_files,
                       "error": self.ingester.stats.last_error},
            "jobs": {"running": [j.as_dict() | {"logs": []} for j in self.jobs.running()],
                     "kinds": sorted(self.jobs.registry),
                     "in_memory": self.jobs.held()},
            "alerts": [{**a, "silenced_by": self.notifier.silenced_by(a["rule"], a["label"],
                                                                      a["severity"])}
                       for a in self.alerts.active()],
            "alerting": self.notifier.status(),
            "config": {"files": list(self.cfg.files_read), "explicit_file": self.cfg.explicit_file,
                       "command_line_keys": [k for k, _ in self.cfg.overrides],
                       "loaded": self.config_loaded, "last_reload": self.last_reload},
            "ready": not self.readiness_problems(),
            "problems": self.readiness_problems(),
            "cpu": self._cpu_status(),
            "memory": self.memory,
        }

    def _cpu_status(self) -> dict[str, Any]:
        """The agent's CPU since it started: the whole process, and per task the CPU its worker
        threads used (what is left is the event loop, the file watchers and the jobs)."""
        with self._task_cpu_lock:
            tasks = {name: {"cpu_s": round(cpu, 4), "runs": int(runs)}
                     for name, (cpu, runs) in sorted(self._task_cpu.items())}
        return {"process_s": round(time.process_time(), 3), "tasks": tasks}


def until_tick(interval: float, now: float | None = None) -> float:
    """Seconds to the next multiple of ``interval`` on the monotonic clock (at least 50 ms).

    The agent's loops wake on these ticks rather than ``interval`` after their last round, as
    Telegraf's ``round_interval`` does: loops of the same interval (the system collectors and
    the alert evaluation, every 5 s) run at the same instants, so one flush writes a round's
    samples and the process wakes once for them, where loops drifting apart cost a flush and
    a wake-up each. A round longer than its interval runs again at the next tick."""
    now = time.monotonic() if now is None else now
    wait = interval - now % interval
    return wait if wait >= 0.05 else wait + interval


def _task_name(fn: Callable[..., Any]) -> str:
    """``flush`` for Agent._flush, ``Notifier.tick`` for another object's method."""
    name = str(getattr(fn, "__qualname__", "") or getattr(fn, "__name__", "task"))
    return name.removeprefix("Agent.").lstrip("_")


class AgentLostFooting(AgentStartError):
    """The agent stopped because its state directory, lock file or socket went away."""


def run(cfg: Config, ready: Callable[[], None] | None = None) -> None:
    memory.limit_arenas()  # before any of the agent's threads allocate
    agent = Agent(cfg)
    agent.open()
    try:
        asyncio.run(agent.serve(ready))
    finally:
        agent.close()
    if agent.lost:
        raise AgentLostFooting(agent.lost)
