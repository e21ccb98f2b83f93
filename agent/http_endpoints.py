"""Optional TCP monitoring endpoints: /metrics, /api/v1/resources, /healthz, /readyz.

Bound to 127.0.0.1 unless ``http.listen`` says otherwise. ``/metrics`` carries aggregates only:
per-user figures stay in the store (a label per user makes every scrape slow).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from lightkeeper.agent.daemon import Agent

# The one bounded label each family of internal metrics carries, by name prefix.
LABEL_NAMES = [
    ("lightkeeper_collector_", "collector"),
    ("cpu_load_", "window"),
    ("load_", "window"),
    ("cpu_", "cpu"),
    ("disk_", "mount"),
    ("network_", "interface"),
    ("process_", "process"),
    ("zone_", "zone"),
]
PER_USER_PREFIXES = ("userdir_",)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0)


def label_name(metric: str) -> str:
    for prefix, name in LABEL_NAMES:
        if metric.startswith(prefix):
            return name
    return "label"


def prom_name(metric: str) -> str:
    return metric if metric.startswith("lightkeeper_") else "lightkeeper_" + metric


class RagHistograms:
    """Aggregate latency histograms per operation and mode, fed by spool ingestion."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hist: dict[tuple[str, str], list[float]] = {}
        self.sums: dict[tuple[str, str], float] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.llm_s = 0.0
        self.embed_s = 0.0
        self.llm_calls = 0
        self.embed_calls = 0

    def observe(self, aggregates: list[dict[str, Any]]) -> None:
        """Add a batch's per-(op, mode) aggregates (see ``agent.ingest.batch_aggregates``)."""
        with self._lock:
            for a in aggregates:
                key = (a["op"], a["mode"])
                counts = self.hist.setdefault(key, [0.0] * (len(LATENCY_BUCKETS) + 1))
                for i, c in enumerate(a["buckets"]):
                    counts[i] += float(c)
                counts[-1] += float(a["count"])
                self.sums[key] = self.sums.get(key, 0.0) + float(a["sum"] or 0)
                self.errors[key] = self.errors.get(key, 0) + int(a["errors"])
                self.llm_s += float(a["llm_s"] or 0)
                self.embed_s += float(a["embed_s"] or 0)
                self.llm_calls += int(a["llm_calls"] or 0)
                self.embed_calls += int(a["embed_calls"] or 0)

    def families(self) -> Iterator[Metric]:
        with self._lock:
            h = HistogramMetricFamily(
                "lightkeeper_rag_operation_duration_seconds",
                "Duration of LightRAG operations (all users), by operation and query mode",
                labels=["op", "mode"])
            errs = CounterMetricFamily("lightkeeper_rag_operation_errors",
                                       "Failed LightRAG operations", labels=["op", "mode"])
            for key, counts in sorted(self.hist.items()):
                buckets = [(str(b), counts[i]) for i, b in enumerate(LATENCY_BUCKETS)]
                buckets.append(("+Inf", counts[-1]))
                h.add_metric(list(key), buckets, self.sums[key])
                errs.add_metric(list(key), self.errors.get(key, 0))
            yield h
            yield errs
            for name, help_text, value in (
                ("lightkeeper_rag_llm_seconds", "Time spent in LLM calls", self.llm_s),
                ("lightkeeper_rag_embedding_seconds", "Time spent in embedding calls",
                 self.embed_s),
                ("lightkeeper_rag_llm_calls", "LLM calls", self.llm_calls),
                ("lightkeeper_rag_embedding_calls", "Embedding calls", self.embed_calls),
            ):
                c = CounterMetricFamily(name, help_text)
                c.add_metric([], value)
                yield c


class CurrentValuesCollector:
    """Exposes the agent's newest values as Prometheus families (aggregated, no users)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        current = self.agent.services.current_values()
        grouped: dict[str, dict[str, float]] = {}
        for (metric, label), (_ts, value) in current.items():
            if value is None:
                continue
            if metric.startswith(PER_USER_PREFIXES) and label:
                continue  # per-user series stay in the store; the collector emits aggregates
            grouped.setdefault(metric, {})[label] = value
        for metric, values in sorted(grouped.items()):
            name = prom_name(metric)
            lname = label_name(metric)
            labelled = any(values)
            labels = [lname] if labelled else []
            help_text = f"lightkeeper {metric}"
            if name.endswith("_total"):
                fam: Metric = CounterMetricFamily(name[:-6], help_text, labels=labels)
            else:
                fam = GaugeMetricFamily(name, help_text, labels=labels)
            for label, value in sorted(values.items()):
                fam.add_metric([label] if labelled else [], value)
            yield fam
        up = GaugeMetricFamily("lightkeeper_agent_start_time_seconds",
                               "When the agent started (Unix time)")
        up.add_metric([], self.agent.started)
        yield up
        yield from self.agent.rag_histograms.families()


def build_app(agent: Agent) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CurrentValuesCollector(agent))  # type: ignore[arg-type]

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def resources(request: web.Request) -> web.Response:
        out: dict[str, dict[str, float]] = {}
        for (metric, label), (_ts, value) in sorted(agent.services.current_values().items()):
            if metric.startswith(PER_USER_PREFIXES) and label:
                continue
            out.setdefault(metric, {})[label or "value"] = value
        return web.json_response({"ts": time.time(), "host": agent.host, "metrics": out})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(request: web.Request) -> web.Response:
        problems = agent.readiness_problems()
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/resources", resources)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_tcp(app: web.Application, listen: str) -> web.AppRunner:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, int(port), reuse_address=True)
    await site.start()
    return runner
