"""Starting ``lightkeeper offline-llm`` and ``lightkeeper serve`` as real processes in tests."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class Server:
    """A lightkeeper server process; ``info`` is its ready line (JSON)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.ready_file: Path | None = None  # where --ready-file wrote ``info``, if asked

    def start(self, timeout: float = 120.0) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115  closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lightkeeper.cli.main", *self.args], cwd=REPO, env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log)
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.2):
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            for line in buf.splitlines():
                if line.startswith(b"{"):
                    self.info = json.loads(line)
                    return self
        self.stop()
        raise RuntimeError(f"lightkeeper {' '.join(self.args)} did not become ready:\n"
                           f"{buf.decode(errors='replace')}\n{self.output()}")

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode


def stock_env(base: dict[str, str], llm_url: str, data: Path, workspace: str,
              port: int, dim: int = 1024) -> dict[str, str]:
    """lightrag-server's environment for the OpenAI binding against ``lightkeeper offline-llm``
    with ``--embed-dim`` ``dim`` (tiktoken's cache pointed at an empty directory: nothing may be downloaded)."""
    cache = data.parent / "tiktoken-cache"
    cache.mkdir(parents=True, exist_ok=True)
    return {**base, "LLM_BINDING": "openai", "LLM_BINDING_HOST": llm_url, "LLM_MODEL": "m",
            "LLM_BINDING_API_KEY": "unused", "EMBEDDING_BINDING": "openai",
            "EMBEDDING_BINDING_HOST": llm_url, "EMBEDDING_MODEL": "e",
            "EMBEDDING_BINDING_API_KEY": "unused", "EMBEDDING_DIM": str(dim),
            "WORKING_DIR": str(data), "INPUT_DIR": str(data.parent / f"inputs-{workspace}"),
            "WORKSPACE": workspace, "HOST": "127.0.0.1", "PORT": str(port),
            "LOG_DIR": str(data.parent), "TIKTOKEN_CACHE_DIR": str(cache)}


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 120.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")
