"""Helpers for the rag tests: a Config for an isolated environment and a runtime factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from lightkeeper import config as config_mod


def make_cfg(state: Path, **overrides: Any) -> config_mod.Config:
    pairs = [("paths.state_dir", str(state)), ("paths.data_root", str(state / "data")),
             ("paths.spool_dir", str(state / "spool"))]
    pairs += [(k.replace("__", "."), v) for k, v in overrides.items()]
    return config_mod.load(overrides=pairs, env={}, read_system=False)


@pytest.fixture
def cfg(tmp_path: Path) -> config_mod.Config:
    return make_cfg(tmp_path / "state")


@pytest.fixture
def child_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess that must see the same paths as ``cfg``."""
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
    env.update({
        "LIGHTKEEPER_PATHS__STATE_DIR": str(state),
        "LIGHTKEEPER_PATHS__DATA_ROOT": str(state / "data"),
        "LIGHTKEEPER_PATHS__SPOOL_DIR": str(state / "spool"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
    })
    return env
