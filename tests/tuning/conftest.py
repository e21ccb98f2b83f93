"""Fixtures for the tuning tests: a real DuckDB store and a small Services of our own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lightkeeper.agent.store.db import Store
from lightkeeper.config import Config
from tests.tuning.tuning_services import LocalServices


@pytest.fixture
def services(lk_cfg: Config, tmp_path: Path) -> Iterator[LocalServices]:
    import lightkeeper.tuning.calls as calls

    calls._refused.clear()
    store = Store(tmp_path / "metrics.duckdb")
    yield LocalServices(lk_cfg, store)
    store.close()
