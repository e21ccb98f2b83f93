"""The aggregate latency histograms of LightRAG operations that ``/metrics`` exposes.

Spool ingestion (:func:`lightkeeper.agent.ingest.batch_aggregates`) counts each batch into
``LATENCY_BUCKETS`` (declared in :mod:`lightkeeper.catalog`); :class:`RagHistograms` adds the batches up for the TCP endpoints.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lightkeeper.catalog import LATENCY_BUCKETS, METRICS

if TYPE_CHECKING:  # prometheus_client is loaded with the TCP endpoint that renders these
    from prometheus_client.core import Metric


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
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            HistogramMetricFamily,
        )
        with self._lock:
            hist = METRICS["lightkeeper_rag_operation_duration_seconds"]
            h = HistogramMetricFamily(hist.family, hist.help, labels=["op", "mode"])
            err = METRICS["lightkeeper_rag_operation_errors"]
            errs = CounterMetricFamily(err.family, err.help, labels=["op", "mode"])
            for key, counts in sorted(self.hist.items()):
                buckets = [(str(b), counts[i]) for i, b in enumerate(LATENCY_BUCKETS)]
                buckets.append(("+Inf", counts[-1]))
                h.add_metric(list(key), buckets, self.sums[key])
                errs.add_metric(list(key), self.errors.get(key, 0))
            yield h
            yield errs
            for name, value in (
                ("lightkeeper_rag_llm_seconds", self.llm_s),
                ("lightkeeper_rag_embedding_seconds", self.embed_s),
                ("lightkeeper_rag_llm_calls", self.llm_calls),
                ("lightkeeper_rag_embedding_calls", self.embed_calls),
            ):
                c = CounterMetricFamily(METRICS[name].family, METRICS[name].help)
                c.add_metric([], value)
                yield c
