"""Smoke test in a real pseudo-terminal: ``lightkeeper`` in tmux against a live agent shows the
overview, switches screens by key and quits cleanly with q (exit status 0)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self) -> None:
        self.socket = f"lk-smoke-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "smoke")

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            try:
                screen = self.screen()
            except subprocess.CalledProcessError:
                screen = ""
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear; the screen shows:\n{screen}")

    def kill(self) -> None:
        """Stop the server and remove its socket, which tmux leaves behind in its directory
        (``$TMUX_TMPDIR/tmux-<uid>``) when the session has already ended."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        base = os.environ.get("TMUX_TMPDIR") or "/tmp"
        Path(base, f"tmux-{os.getuid()}", self.socket).unlink(missing_ok=True)


def test_console_in_tmux_shows_overview_switches_and_quits(agent, lk_env, tmp_path):
    exit_file = tmp_path / "exit-status"
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in lk_env.items())
    command = (f"cd {shlex.quote(str(REPO))} && env {env} TERM=xterm-256color "
               f"{shlex.quote(sys.executable)} -m lightkeeper.cli.main; "
               f"echo $? > {shlex.quote(str(exit_file))}; sleep 5")
    tmux = Tmux()
    try:
        tmux.run("new-session", "-d", "-x", "100", "-y", "30", "-s", "smoke", command)
        screen = tmux.wait_for("CPU used")
        assert "1 Overview" in screen and "q Quit" in screen
        tmux.run("send-keys", "-t", "smoke", "2")
        tmux.wait_for("filter: all users")
        tmux.run("send-keys", "-t", "smoke", "5")
        tmux.wait_for("active version 1")
        tmux.run("send-keys", "-t", "smoke", "6")
        tmux.wait_for("agent.started")
        tmux.run("resize-window", "-t", "smoke", "-x", "80", "-y", "24")  # survives resizing
        tmux.run("send-keys", "-t", "smoke", "1")
        tmux.wait_for("CPU used")
        tmux.run("send-keys", "-t", "smoke", "q")
        deadline = time.monotonic() + 20
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert exit_file.exists(), "the console did not exit after q:\n" + tmux.screen()
        assert exit_file.read_text().strip() == "0"
    finally:
        tmux.kill()
