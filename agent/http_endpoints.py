"""Optional TCP monitoring endpoints: /metrics, /api/v1/resources, /healthz, /readyz.

Bound to 127.0.0.1 unless ``http.listen`` says otherwise. ``/metrics`` carries aggregates only:
per-user figures stay in the store (a label per user makes every scrape slow).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lightkeeper.agent.httpserver import Request, Response, Router, Server
from lightkeeper.catalog import METRICS
from lightkeeper.logs import get_logger

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from lightkeeper.agent.surface import AgentView

log = get_logger("http")

class CurrentValuesCollector:
    """Exposes the agent's newest values as Prometheus families (aggregated, no users)."""

    def __init__(self, agent: AgentView) -> None:
        self.agent = agent
        self.undeclared: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (  # noqa: PLC0415  see Renderer
            CounterMetricFamily,
            GaugeMetricFamily,
        )
        current = self.agent.services.current_values()
        grouped: dict[str, dict[str, float]] = {}
        for (metric, label), (_ts, value) in current.items():
            if value is None:
                continue
            decl = METRICS.get(metric)
            if decl is None:
                if metric not in self.undeclared:  # a bug: say it once, expose nothing made up
                    self.undeclared.add(metric)
                    log.error("metrics.undeclared", metric=metric,
                              hint="declare it in lightkeeper/catalog.py")
                continue
            if decl.per_user:
                continue  # per-user series stay in the store; the collector emits aggregates
            grouped.setdefault(metric, {})[label] = value
        for metric, values in sorted(grouped.items()):
            decl = METRICS[metric]
            labelled = decl.label is not None and any(values)
            labels = [decl.label] if labelled and decl.label else []
            fam: Metric
            if decl.type == "counter":
                fam = CounterMetricFamily(decl.family, decl.help, labels=labels)
            else:
                fam = GaugeMetricFamily(decl.family, decl.help, labels=labels)
            for label, value in sorted(values.items()):
                fam.add_metric([label] if labelled else [], value)
            yield fam
        start = METRICS["lightkeeper_agent_start_time_seconds"]
        up = GaugeMetricFamily(start.family, start.help)
        up.add_metric([], self.agent.started)
        yield up
        yield from self.agent.rag_histograms.families()


class Renderer:
    """The /metrics body in the Prometheus text format, by prometheus_client, which loads with
    the first scrape (in the rendering thread): an agent nobody scrapes never pays its import,
    about a sixth of an agent's start."""

    def __init__(self, agent: AgentView) -> None:
        self.collector = CurrentValuesCollector(agent)
        self._registry: Any = None
        self.content_type = ""

    def render(self) -> bytes:
        if self._registry is None:
            from prometheus_client import CollectorRegistry  # noqa: PLC0415
            from prometheus_client.exposition import CONTENT_TYPE_LATEST  # noqa: PLC0415
            registry = CollectorRegistry(auto_describe=False)
            registry.register(self.collector)
            self._registry, self.content_type = registry, CONTENT_TYPE_LATEST
        from prometheus_client import generate_latest  # noqa: PLC0415
        return generate_latest(self._registry)


def build_app(agent: AgentView) -> Router:
    renderer = Renderer(agent)

    async def metrics(request: Request) -> Response:
        # rendering is CPU work proportional to the series: never on the event loop, which
        # also serves the socket API (a slow scrape stalled it)
        body = await asyncio.to_thread(renderer.render)
        return Response(body, content_type=renderer.content_type)

    async def resources(request: Request) -> Response:
        out: dict[str, dict[str, float]] = {}
        for (metric, label), (_ts, value) in sorted(agent.services.current_values().items()):
            decl = METRICS.get(metric)
            if decl is None or decl.per_user:
                continue
            out.setdefault(metric, {})[label or "value"] = value
        return Response.json({"ts": time.time(), "host": agent.host, "metrics": out})

    async def healthz(request: Request) -> Response:
        return Response.json({"status": "alive"})

    async def readyz(request: Request) -> Response:
        problems = agent.readiness_problems()
        if problems:
            return Response.json({"status": "not ready", "problems": problems}, status=503)
        return Response.json({"status": "ready"})

    app = Router()
    app.add_get("/metrics", metrics)
    app.add_get("/api/v1/resources", resources)
    app.add_get("/healthz", healthz)
    app.add_get("/readyz", readyz)
    return app


def _text_error(status: int, message: str, code: str) -> Response:
    return Response(f"{status}: {message}\n".encode(), status, "text/plain; charset=utf-8")


async def serve_tcp(app: Router, listen: str) -> Server:
    """The endpoints on ``host:port``; they take no request body (GET only)."""
    host, _, port = listen.rpartition(":")
    server = Server(app, max_body=64 * 1024, error_body=_text_error)
    await server.listen_tcp(host.strip("[]"), int(port))
    return server
