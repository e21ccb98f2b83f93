"""Fixtures of the security suite: a small data root and fresh repositories (encrypted and not)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lightkeeper.backup.repository import Repository
from tests.datacopy import generated


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    generated(root, users=2, seed=11, total_mb=1)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = Repository.init(tmp_path / "repo", tmp_path / "keys" / "repo.key",
                        pack_size=256 * 1024)
    yield r
    r.close()


@pytest.fixture
def plain_repo(tmp_path: Path) -> Iterator[Repository]:
    """A repository with ``backup.encrypt = false``."""
    r = Repository.init(tmp_path / "plain-repo", tmp_path / "keys" / "plain.key",
                        encrypt=False, pack_size=256 * 1024)
    yield r
    r.close()


# The zone fixtures (real sshd on 127.0.0.1) for the zone findings; absent when OpenSSH is
# not installed, in which case those modules skip themselves.
try:
    from tests.zones.conftest import client_key, lab, make_sshd  # noqa: F401
except pytest.skip.Exception:
    pass

from tests.backup.test_databases import postgres  # noqa: E402, F401 - real PostgreSQL fixture
