"""Fixtures for zone tests: real OpenSSH servers on 127.0.0.1 acting as remote zones."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .sshd import SFTP_SERVER, SSHD, Sshd, keygen

if not (os.path.exists(SSHD) and os.path.exists(SFTP_SERVER) and shutil.which("ssh-keygen")):
    pytest.skip("OpenSSH server (sshd, sftp-server, ssh-keygen) is not installed",
                allow_module_level=True)


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("client-key")
    return keygen(d / "id_ed25519")


@pytest.fixture
def make_sshd(tmp_path: Path, client_key: Path) -> Iterator:
    servers: list[Sshd] = []

    def make(name: str = "zone") -> Sshd:
        s = Sshd(tmp_path / f"sshd-{name}", client_key.with_suffix(".pub"), name)
        s.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def sshd(make_sshd) -> Sshd:
    return make_sshd("a")
