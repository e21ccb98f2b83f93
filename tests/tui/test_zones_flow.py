"""Zones by keyboard against a real OpenSSH server on 127.0.0.1: the host key's fingerprint is
shown and must be confirmed before it is trusted; then a sync to the zone from the console."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from textual.widgets import DataTable

from lightkeeper.tui.dialogs import ConfirmDialog
from tests.tui import conftest as tui
from tests.tui.conftest import async_test, make_app, notifications, text_of, wait_until
from tests.zones.repo_helper import write_user_files
from tests.zones.sshd import SFTP_SERVER, SSHD, Sshd, keygen

pytestmark = pytest.mark.skipif(not (os.path.exists(SSHD) and os.path.exists(SFTP_SERVER)),
                                reason="OpenSSH server (sshd, sftp-server) is not installed")


@pytest.fixture
def zone_server(tmp_path: Path):
    key = keygen(tmp_path / "id_ed25519")
    server = Sshd(tmp_path / "sshd", key.with_suffix(".pub"), "a")
    server.start()
    yield server, key
    server.stop()


def _fingerprint(server: Sshd) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(server.host_key) + ".pub"], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1]


@async_test
async def test_trust_host_key_after_confirming_then_sync(start_agent, zone_server, tmp_path,
                                                          lk_env):
    server, key = zone_server
    import getpass

    (tmp_path / "remote").mkdir()

    agent = start_agent({
        "LIGHTKEEPER_ZONES__A__HOST": "127.0.0.1",
        "LIGHTKEEPER_ZONES__A__PORT": str(server.port),
        "LIGHTKEEPER_ZONES__A__USER": getpass.getuser(),
        "LIGHTKEEPER_ZONES__A__KEY_FILE": str(key),
        "LIGHTKEEPER_ZONES__A__REMOTE_PATH": str(tmp_path / "remote" / "repo"),
    })
    client = agent.client
    assert client.call("zones.trust_probe", zone="a")["state"] == "unknown"
    fp = _fingerprint(server)
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        table = app.query_one("#zones-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, "zone a in the list")
        await pilot.press("k")
        await tui.wait_for_screen(pilot, app, ConfirmDialog, "trust dialog")
        dialog = app.screen
        shown = "".join(text_of(s, 300) for s in dialog.query("Static"))
        assert fp in shown and "ssh-ed25519" in shown
        await pilot.press(*"no", "enter")  # anything but yes trusts nothing
        assert isinstance(app.screen, ConfirmDialog)
        assert client.call("zones.trust_probe", zone="a")["state"] == "unknown"
        await pilot.press("backspace", "backspace", *"yes", "enter")
        await wait_until(pilot, lambda: any("trusted" in m for m in notifications(app)),
                         "trusted notification")
        assert client.call("zones.trust_probe", zone="a")["state"] == "trusted"

        # sync: a backup first, then s on the zone
        write_user_files(Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"]), "alice", 2, 10_000, 5)
        assert client.wait_job(client.start_job("backup", {}))["state"] == "succeeded"
        await pilot.press("s")
        await wait_until(pilot, lambda: "replicate succeeded" in text_of(
            app.query_one("#zones-last")), "the sync finished", timeout=120)
        await wait_until(pilot, lambda: str(table.get_row_at(0)[2]) == "yes", "reachable")
        assert "ago" in str(table.get_row_at(0)[3])  # last sync
