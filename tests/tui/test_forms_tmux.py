"""Typing in a form never triggers a screen key: in tmux at 80x24 and 120x40, every key that
means something elsewhere (1-6 switch screens, q quits, w/?/a/u/d/m/r/c act) is typed into every
tuning field and the events search, and the screen stays put."""

from __future__ import annotations

import shlex
import shutil
import sys
import time

import pytest

from tests.tui.test_smoke_tmux import REPO, Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

GLOBAL_KEYS = "123456qw?audmrcelpvsxkb"


def _keys(tmux: Tmux, *keys: str) -> None:
    tmux.run("send-keys", "-t", "smoke", *keys)


def _stays(tmux: Tmux, present: str, absent: tuple[str, ...]) -> str:
    time.sleep(0.3)  # let a wrongly handled key act before looking
    screen = tmux.wait_for(present)
    for text in absent:
        assert text not in screen, f"{text!r} appeared: a typed key acted\n{screen}"
    return screen


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_typing_into_every_field_changes_no_screen(agent, lk_env, tmp_path, size):
    fields = [p["name"] for p in agent.client.call("tuning.params")["params"]]
    exit_file = tmp_path / "exit-status"
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in lk_env.items())
    command = (f"cd {shlex.quote(str(REPO))} && env {env} TERM=xterm-256color "
               f"{shlex.quote(sys.executable)} -m lightkeeper.cli.main; "
               f"2>{shlex.quote(str(tmp_path / 'stderr'))}; "
               f"echo $? > {shlex.quote(str(exit_file))}; sleep 30")
    tmux = Tmux()
    other_screens = ("CPU used", "filter: all users", "level all", "snapshot  time")
    try:
        tmux.run("new-session", "-d", "-x", str(size[0]), "-y", str(size[1]), "-s", "smoke",
                 command)
        tmux.wait_for("CPU used")
        _keys(tmux, "5")
        tmux.wait_for("active version 1")
        _keys(tmux, "e")  # into the form
        for i, _name in enumerate(fields):
            _keys(tmux, "-l", GLOBAL_KEYS)
            _stays(tmux, "active version", other_screens)
            _keys(tmux, "Enter")  # to the next field
            assert not exit_file.exists(), f"q in field {i} quit the console"
        _keys(tmux, "Escape")
        tmux.wait_for("Pending edits vs active")
        _keys(tmux, "u")  # outside the form, u undoes the edits
        tmux.wait_for("none: e (or tab)")
        # the events search
        _keys(tmux, "6")
        tmux.wait_for("level all")
        _keys(tmux, "/")
        time.sleep(0.3)
        _keys(tmux, "-l", GLOBAL_KEYS)
        screen = _stays(tmux, "level all", ("CPU used", "active version", "snapshot  time"))
        assert "PAUSED" not in screen and not exit_file.exists()
        _keys(tmux, "Escape")
        time.sleep(0.5)  # a terminal sends a lone esc after a pause (escape-sequence timeout)
        _keys(tmux, "q")
        deadline = time.monotonic() + 20
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert exit_file.read_text().strip() == "0"
    except AssertionError:
        err = tmp_path / "stderr"
        print("console stderr:", err.read_text()[-3000:] if err.exists() else "")
        print("exit:", exit_file.read_text() if exit_file.exists() else "running")
        raise
    finally:
        tmux.kill()
