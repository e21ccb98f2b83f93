"""Medium 1: /metrics is rendered off the event loop, so a slow scrape never stalls the agent's
other endpoints (on main a 12.5 s render froze the socket API: `status` said another agent
already runs)."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from collections.abc import Iterator

from prometheus_client.core import Metric

from lightkeeper.agent import http_endpoints
from lightkeeper.agent.daemon import Agent
from lightkeeper.agent.histograms import RagHistograms
from tests.conftest import free_port


class SlowHistograms(RagHistograms):
    """Real histograms whose rendering takes as long as the test wants (a huge exposition)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def families(self) -> Iterator[Metric]:
        self.entered.set()
        self.release.wait(120)
        yield from super().families()


def test_medium1_metrics_rendered_off_the_event_loop(lk_cfg) -> None:
    agent = Agent(lk_cfg)
    agent.open()
    slow = SlowHistograms()
    agent.rag_histograms = slow
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        runner = await http_endpoints.serve_tcp(http_endpoints.build_app(agent),
                                                f"127.0.0.1:{port}")
        started.set()
        try:
            await stop[0].wait()
        finally:
            await runner.close()

    server = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    server.start()
    scrape: dict[str, bytes] = {}
    try:
        assert started.wait(30)
        base = f"http://127.0.0.1:{port}"
        scraper = threading.Thread(target=lambda: scrape.setdefault(
            "body", urllib.request.urlopen(base + "/metrics", timeout=150).read()), daemon=True)
        scraper.start()
        assert slow.entered.wait(30)  # the scrape is rendering now, and stays there
        with urllib.request.urlopen(base + "/healthz", timeout=20) as resp:
            assert resp.status == 200  # answered while /metrics is still rendering
        assert not scrape
    finally:
        slow.release.set()
        scraper.join(60)
        loop.call_soon_threadsafe(stop[0].set)
        server.join(30)
        loop.close()
        agent.close()
    assert b"lightkeeper_agent_start_time_seconds" in scrape["body"]
