"""Typing in a form never triggers a screen key: in tmux at 80x24 and 120x40, every key that
means something elsewhere (1-6 switch screens, q quits, w/?/a/u/d/m/r/c act) is typed into every
text field the console has: each tuning field, the apply note, the events search, and the
restore wizard's target path and typed confirmation. The screen or dialog stays put."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.tui.test_smoke_tmux import REPO, Tmux
from tests.zones.repo_helper import write_user_files

pytestmark = [
    pytest.mark.slow,  # started first: see tests/conftest.py
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

GLOBAL_KEYS = "123456qw?audmrcelpvsxkb"


def _keys(tmux: Tmux, *keys: str) -> None:
    tmux.run("send-keys", "-t", "smoke", *keys)


def _stays(tmux: Tmux, present: str, absent: tuple[str, ...]) -> str:
    time.sleep(0.3)  # let a wrongly handled key act before looking
    screen = tmux.wait_for(present)
    for text in absent:
        assert text not in screen, f"{text!r} appeared: a typed key acted\n{screen}"
    return screen


def _wizard_to_target(tmux: Tmux) -> None:
    """Open the restore wizard on the selected snapshot, everything, up to 'where to'."""
    _keys(tmux, "r")
    tmux.wait_for("1/4 choose a snapshot")
    _keys(tmux, "Enter")  # the snapshot
    tmux.wait_for("2/4 what to restore")
    _keys(tmux, "Enter")  # everything
    tmux.wait_for("3/4 where to")


def _wait_gone(tmux: Tmux, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text in tmux.screen():
        assert time.monotonic() < deadline, f"{text!r} is still shown after esc"
        time.sleep(0.1)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_typing_into_every_field_changes_no_screen(agent, lk_env, tmp_path, size):
    fields = [p["name"] for p in agent.client.call("tuning.params")["params"]]
    # a snapshot, so that the restore wizard opens
    write_user_files(Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"]), "alice", 2, 4_000, 1)
    backup = agent.client.wait_job(agent.client.start_job("backup", {}))
    assert backup["state"] == "succeeded"
    snapshot_row = agent.client.call("backup.snapshots")["snapshots"][0]["id"][:8]
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
        _wait_gone(tmux, "esc Leave field")  # the field's footer: out of the form
        _keys(tmux, "u")  # outside the form, u undoes the edits
        tmux.wait_for("none: e (or tab)")
        # one valid edit, then the note that apply asks for
        _keys(tmux, "e")
        tmux.wait_for("esc Leave field")
        _keys(tmux, "-l", "1000")  # a field selects its text on focus: typing replaces it
        tmux.wait_for("1200 → 1000")
        _keys(tmux, "Escape")
        _wait_gone(tmux, "esc Leave field")
        _keys(tmux, "a")
        tmux.wait_for("as a new version?")
        _keys(tmux, "-l", GLOBAL_KEYS)
        _stays(tmux, "as a new version?", other_screens)
        assert not exit_file.exists(), "q in the note quit the console"
        _keys(tmux, "Escape")
        _wait_gone(tmux, "as a new version?")
        _keys(tmux, "u")
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
        # the restore wizard: the target path, then the typed confirmation of in place
        _keys(tmux, "3")
        tmux.wait_for(snapshot_row)  # the row, not the header: r needs a snapshot loaded
        # behind the wizard the Backups screen stays: any other screen means a key acted
        not_backups = ("CPU used", "filter: all users", "level all", "active version")
        _wizard_to_target(tmux)
        _keys(tmux, "Enter")  # to a new directory
        tmux.wait_for("Target directory")
        _keys(tmux, "-l", GLOBAL_KEYS)
        _stays(tmux, "Target directory", not_backups)
        assert not exit_file.exists(), "q in the wizard's path quit the console"
        _keys(tmux, "Escape")
        _wait_gone(tmux, "Target directory")
        _wizard_to_target(tmux)
        _keys(tmux, "Down", "Enter")  # in place: the snapshot id must be typed
        tmux.wait_for("4/4 confirm")
        _keys(tmux, "-l", GLOBAL_KEYS)
        _stays(tmux, "4/4 confirm", not_backups)
        assert not exit_file.exists(), "q in the wizard's confirmation quit the console"
        _keys(tmux, "Escape")
        _wait_gone(tmux, "4/4 confirm")
        kinds = [j.get("kind") for j in agent.client.jobs(limit=20)]
        assert "restore" not in kinds, f"a typed key started a restore: {kinds}"
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
