"""Fixtures for backup tests: a small LightRAG-shaped data root and a fresh repository."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightkeeper.backup.repository import Repository
from tests.datacopy import generated

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    generated(root, users=3, seed=3, total_mb=3)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r = Repository.init(tmp_path / "repo", tmp_path / "keys" / "repo.key",
                        pack_size=256 * 1024)
    yield r
    r.close()


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file (lock and temp files excluded)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and p.name not in (".lightkeeper.lock", ".lightkeeper.intent") and ".tmp." not in p.name:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_child(code: str, *args: str) -> subprocess.Popen[str]:
    """Run ``code`` in a child Python (the library, not the agent) from the repo root."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stalled_restore(stall_at: int, options: str = "workers=1") -> str:
    """Child code (argv: repository, key, target) that restores the latest snapshot and stalls
    in its ``stall_at``-th file write after printing READY: ``kill_when_ready`` kills it there."""
    return f"""
import sys, time
from pathlib import Path
import lightkeeper.backup.restore as r
from lightkeeper.backup.repository import Repository
orig = r._write_file
calls = [0]
def write_file(*a):
    calls[0] += 1
    if calls[0] == {stall_at}:
        print("READY", flush=True)
        time.sleep(600)
    return orig(*a)
r._write_file = write_file
repo = Repository.open(Path(sys.argv[1]), Path(sys.argv[2]))
r.restore(repo, "latest", r.RestoreOptions(target=Path(sys.argv[3]), {options}))
"""


def kill_when_ready(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait for the child to print READY (it is in the middle of its work), then SIGKILL it."""
    import selectors
    import signal
    import time

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line.strip() == "READY":
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
                return
            if not line:
                break
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("child never reached the kill point: " + (proc.stderr.read() or ""))
