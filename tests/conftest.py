"""Shared fixtures: an isolated environment, a real agent process, the real CLI."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightkeeper import config as config_mod
from lightkeeper.client import AgentClient

REPO = Path(__file__).resolve().parent.parent
# Marks the processes this test session starts, so that only they are cleaned up at the end
# (other sessions may run tests on the same machine at the same time).
SESSION = uuid.uuid4().hex


def pytest_configure(config: pytest.Config) -> None:
    """The suite's Python processes keep their bytecode caches, even under
    ``PYTHONDONTWRITEBYTECODE`` (set in some shells and CI images to keep trees free of
    ``__pycache__``, which .gitignore already ignores here).

    Without them every xdist worker re-ran pytest's assertion rewriting over the whole suite at
    collection (about 5 s of CPU each), and every agent, CLI run and ``lightkeeper serve`` the
    tests start (several hundred) compiled the package's modules again at start. Runs in the
    controller before it starts the workers, so they and every subprocess inherit it.
    """
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        sys.dont_write_bytecode = False
    os.environ["SSL_CERT_FILE"] = str(LOOPBACK_ONLY_CA)


# Every LLM and embedding endpoint the tests start is plain HTTP on 127.0.0.1, and nothing in a
# test speaks TLS (pip in tests/test_packaging.py drops this). LightRAG's OpenAI binding builds a
# new HTTP client for every call, and each one parsed the system's CA bundle (144 certificates,
# 42 ms of CPU): about a third of the CPU of every served insert. Pointed at this one-certificate
# bundle (a self-signed certificate, no key anywhere), the same code loads it in under 1 ms.
LOOPBACK_ONLY_CA = REPO / "tests" / "loopback-only-ca.pem"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Two xdist workers per usable core for ``-n auto`` (the default addopts).

    Most tests wait on real subprocesses (agents, sshd, PostgreSQL, LightRAG servers, tmux):
    with one worker per core the machine sat about 45 % idle (2 cores: 365 s, 112 % CPU);
    with two per core it is busy (264 s). ``-n N`` on the command line still wins.
    """
    return 2 * len(os.sched_getaffinity(0))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Test files marked ``slow`` run first; the order within each file stays as written.

    xdist hands out whole files (``--dist loadfile``) in collection order, as long as it is told
    not to reorder them (``--no-loadscope-reorder`` in the addopts: by default it sorts files by
    their number of tests, which put the two-test files that run longest, the twenty-backup
    acceptance tests and the tmux forms test, last, with one worker running them alone for the
    last 40 s of the suite). Started first, they overlap with the many short files. The same
    order on every worker, as xdist requires (a stable sort of a deterministic collection).
    """
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_env(tmp: Path, short: Path) -> dict[str, str]:
    """Environment variables for an isolated lightkeeper under ``tmp`` (its socket in the short
    directory ``short``)."""
    home = tmp / "home"
    home.mkdir()
    data = tmp / "data"
    data.mkdir()
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "LIGHTKEEPER_PATHS__STATE_DIR": str(tmp / "state"),
        "LIGHTKEEPER_PATHS__DATA_ROOT": str(data),
        "LIGHTKEEPER_AGENT__SOCKET": str(short / "agent.sock"),
        "LIGHTKEEPER_HTTP__LISTEN": f"127.0.0.1:{free_port()}",
        "LK_TEST_SESSION": SESSION,
        # The agent's loops run often here, so tests wait for a round instead of sleeping out
        # the production intervals (5 s alerts, 30 s schedules...). Same code paths, sooner.
        "LIGHTKEEPER_AGENT__ALERT_INTERVAL": "0.5",
        "LIGHTKEEPER_AGENT__SCHEDULE_INTERVAL": "1",
        "LIGHTKEEPER_AGENT__PROBE_INTERVAL": "1",
        "LIGHTKEEPER_AGENT__TIMESTAMP_INTERVAL": "1",
        "LIGHTKEEPER_AGENT__FOOTING_INTERVAL": "0.5",
        "LIGHTKEEPER_AGENT__NOTIFY_INTERVAL": "0.2",
        "LIGHTKEEPER_AGENT__RAG_HEALTH_INTERVAL": "1",
    }
    return env


@pytest.fixture
def lk_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment variables for an isolated lightkeeper (also applied to os.environ)."""
    for name in list(os.environ):
        if name.startswith("LIGHTKEEPER_"):
            monkeypatch.delenv(name)
    short = Path(tempfile.mkdtemp(prefix="lk", dir="/tmp"))  # Unix socket paths are short
    env = isolated_env(tmp_path, short)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield env
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def lk_cfg(lk_env: dict[str, str]) -> config_mod.Config:
    return config_mod.load(env=os.environ, read_system=False)


class AgentProcess:
    def __init__(self, env: dict[str, str], extra: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, **env, **(extra or {})}
        self.cfg = config_mod.load(env=self.env, read_system=False)
        self.client = AgentClient(self.cfg.path("agent.socket"))
        self.http = "http://" + self.cfg["http.listen"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self.env["LIGHTKEEPER_PATHS__STATE_DIR"]).parent / "agent-test.log"

    def start(self, timeout: float = 30) -> AgentProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115  closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lightkeeper.cli.main", "agent"], env=self.env, cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.ping():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited at start (exit {self.proc.returncode}): "
                                   + self.output())
            time.sleep(0.05)
        raise RuntimeError("agent did not answer in time: " + self.output())

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def start_agent(lk_env: dict[str, str]) -> Iterator[Any]:
    """Factory: ``start_agent(extra_env=None)`` starts a real agent; all are stopped after."""
    agents: list[AgentProcess] = []

    def start(extra_env: dict[str, str] | None = None) -> AgentProcess:
        a = AgentProcess(lk_env, extra_env).start()
        agents.append(a)
        return a

    yield start
    for a in agents:
        a.stop()


@pytest.fixture
def agent(start_agent: Any) -> AgentProcess:
    return start_agent()


@pytest.fixture(scope="module")
def module_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One real agent for a module's tests that only ask it questions (each test starting its
    own cost about a second of CPU). Its environment is ``module_agent.env``; tests that change
    the agent's state (tuning, jobs, silences, files under its data root) use ``agent``."""
    with pytest.MonkeyPatch.context() as mp:  # the agent's environment: ours, not the shell's
        for name in list(os.environ):
            if name.startswith("LIGHTKEEPER_"):
                mp.delenv(name)
        short = Path(tempfile.mkdtemp(prefix="lk", dir="/tmp"))
        a = AgentProcess(isolated_env(tmp_path_factory.mktemp("agent"), short))
    try:
        yield a.start()
    finally:
        a.stop()
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def run_cli(lk_env: dict[str, str]) -> Any:
    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "lightkeeper.cli.main", *args], cwd=REPO, text=True,
            input=input, capture_output=True, timeout=timeout,
            env={**os.environ, **lk_env, **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"lightkeeper {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``small_disk(size_mb, inodes=None)`` mounts a tmpfs of that size (and at most
    that many inodes) to fill up and returns its path; skips the test where a tmpfs cannot be
    mounted (needs root). Every mount is undone after the test."""
    mounts: list[Path] = []

    def mount(size_mb: int, inodes: int | None = None) -> Path:
        mnt = tmp_path / f"small-disk-{len(mounts)}"
        mnt.mkdir()
        opts = f"size={size_mb}m" + (f",nr_inodes={inodes}" if inodes else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill here (needs root): {r.stderr.strip()}")
        mounts.append(mnt)
        return mnt

    yield mount
    for mnt in mounts:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


@pytest.fixture(autouse=True, scope="session")
def _stop_stray_agents() -> Iterator[None]:
    """Agents that CLI tests started with autostart run detached: stop them at the end."""
    yield
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "lightkeeper.cli.main" not in cmd or "agent" not in cmd:
            continue
        try:
            if proc.environ().get("LK_TEST_SESSION") == SESSION:
                proc.terminate()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
