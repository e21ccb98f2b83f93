"""Alert delivery through a real Alertmanager (Debian's prometheus-alertmanager) on loopback,
to a webhook receiver this test runs: firing, re-sent after an Alertmanager restart, resolved;
silences listed and created through the agent (audited)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [
    pytest.mark.slow,  # started first: see tests/conftest.py
    pytest.mark.skipif(
        ALERTMANAGER is None,
        reason="alertmanager missing: scripts/test.sh installs prometheus-alertmanager"),
]


class Receiver:
    """A webhook receiver: keeps every notification Alertmanager posts."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        return [a for n in list(self.notifications) for a in n["alerts"]
                if status is None or a["status"] == status]


class Alertmanager:
    def __init__(self, workdir: Path, receiver_url: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "alertmanager.yml").write_text(f"""
route:
  receiver: hook
  group_by: [alertname, host]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {receiver_url}
        send_resolved: true
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / "alertmanager.log", "ab")  # noqa: SIM115  closed with the process
        self.proc = subprocess.Popen(
            [str(ALERTMANAGER), f"--config.file={self.workdir / 'alertmanager.yml'}",
             f"--storage.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address="],  # no gossip port: a single instance
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/-/ready", timeout=2)
                return
            except OSError:
                assert self.proc.poll() is None, (self.workdir / "alertmanager.log").read_text()
                assert time.monotonic() < deadline, "alertmanager not ready"
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def get(self, path: str) -> Any:
        return json.loads(urllib.request.urlopen(self.url + path, timeout=5).read())


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[Alertmanager, Receiver]]:
    receiver = Receiver()
    workdir = tmp_path / "am"
    workdir.mkdir()
    am = Alertmanager(workdir, receiver.url)
    am.start()
    yield am, receiver
    am.stop()
    receiver.server.shutdown()


def _wait(what: str, fn: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_disk_alert_reaches_receiver_survives_restart_and_resolves(
        alertmanager: tuple[Alertmanager, Receiver], start_agent, run_cli, tmp_path: Path) -> None:
    am, receiver = alertmanager
    cfg_file = tmp_path / "config.toml"
    base = "https://wiki.example.org/ops/lightkeeper-runbook"
    settings = (f'[alerting]\nalertmanager_url = "{am.url}"\nrunbook_base_url = "{base}"\n'
                "resend_seconds = 5\n")
    # every filesystem has less than 99.99 % free: the overridden threshold fires at once
    cfg_file.write_text(settings + "[alerts.disk_free_low]\nwarning = 0.9999\ncritical = 0.0\n"
                        "for_seconds = 0\n")
    env = {"LIGHTKEEPER_CONFIG": str(cfg_file)}
    agent = start_agent(env)

    def firing_disk() -> list[dict[str, Any]]:
        return [a for a in receiver.alerts("firing")
                if a["labels"]["alertname"] == "LightkeeperDiskFreeLow"]

    alert = _wait("the firing alert at the receiver", firing_disk)[0]
    labels, notes = alert["labels"], alert["annotations"]
    assert labels["severity"] == "warning" and labels["rule"] == "disk_free_low"
    assert labels["host"] == agent.client.status()["host"] and labels["mount"].startswith("/")
    assert notes["runbook_url"] == f"{base}#disk_free_low"
    assert "free" in notes["summary"] and "0.9999" in notes["description"]
    assert agent.client.status()["alerting"]["last_error"] is None

    # Alertmanager restarts (its alerts live in memory): the agent's re-send brings them back
    am.stop()
    am.start()

    def active_in_alertmanager() -> list[dict[str, Any]]:
        return [a for a in am.get("/api/v2/alerts")
                if a["labels"]["alertname"] == "LightkeeperDiskFreeLow"
                and a["status"]["state"] == "active"]

    _wait("the alert back in the restarted Alertmanager", active_in_alertmanager, 30)

    # the threshold goes back down (a live reload): the alert resolves, and the resolve arrives
    cfg_file.write_text(settings + "[alerts.disk_free_low]\nwarning = 0.0\ncritical = 0.0\n")
    run_cli("agent", "reload", env=env)

    def resolved_disk() -> list[dict[str, Any]]:
        return [a for a in receiver.alerts("resolved")
                if a["labels"]["alertname"] == "LightkeeperDiskFreeLow"]

    done = _wait("the resolve at the receiver", resolved_disk)[0]
    assert done["labels"]["mount"] == labels["mount"] or done["labels"]["mount"].startswith("/")
    assert agent.client.alerts() == [] or all(a["rule"] != "disk_free_low"
                                              for a in agent.client.alerts())


def test_silences_through_the_agent(alertmanager: tuple[Alertmanager, Receiver], start_agent,
                                    run_cli) -> None:
    am, _ = alertmanager
    env = {"LIGHTKEEPER_ALERTING__ALERTMANAGER_URL": am.url,
           "LIGHTKEEPER_ALERTING__RESEND_SECONDS": "5",
           "LIGHTKEEPER_ALERTS__DISK_FREE_LOW__WARNING": "0.9999",
           "LIGHTKEEPER_ALERTS__DISK_FREE_LOW__CRITICAL": "0",
           "LIGHTKEEPER_ALERTS__DISK_FREE_LOW__FOR_SECONDS": "0"}
    agent = start_agent(env)
    assert json.loads(run_cli("alerts", "silences", "--json", env=env).stdout) == []
    out = json.loads(run_cli("alerts", "silence", "disk_free_low", "--on", "/srv", "--for", "2h",
                             "--comment", "replacing the disk", "--json", env=env).stdout)
    assert out["id"] and "alertname=LightkeeperDiskFreeLow" in out["matchers_text"]
    assert "mount=/srv" in out["matchers_text"]
    in_am = am.get("/api/v2/silences")
    assert [s["comment"] for s in in_am] == ["replacing the disk"]  # a real silence
    assert {m["name"]: m["value"] for m in in_am[0]["matchers"]}["host"] == \
        agent.client.status()["host"]
    listed = json.loads(run_cli("alerts", "silences", "--json", env=env).stdout)
    assert [s["id"] for s in listed] == [out["id"]] and listed[0]["state"] == "active"
    audit = [e for e in agent.client.events(kind="audit") if e["event"] == "silence.created"]
    assert audit and audit[0]["context"]["comment"] == "replacing the disk"
    assert audit[0]["actor"]
    # bad input: an unknown alert, no comment, a nonsense duration
    r = run_cli("alerts", "silence", "disk_ful", "--for", "1h", "--comment", "x", env=env,
                check=False)
    assert r.returncode == 2 and "unknown alert 'disk_ful'" in r.stderr
    r = run_cli("alerts", "silence", "cpu_high", "--for", "soon", "--comment", "x", env=env,
                check=False)
    assert r.returncode == 2 and "duration 'soon' not understood" in r.stderr
    # a silence on the whole alert: the agent's status (what the console shows) marks the
    # firing disk alerts as silenced
    whole = json.loads(run_cli("alerts", "silence", "disk_free_low", "--for", "30m",
                               "--comment", "known, being fixed", "--json", env=env).stdout)

    def silenced() -> bool:
        disk = [a for a in agent.client.status()["alerts"] if a["rule"] == "disk_free_low"]
        return bool(disk) and all(a["silenced_by"] == whole["id"] for a in disk)

    _wait("the firing alert marked silenced", silenced, 40)
    assert any(s["id"] == whole["id"]
               for s in agent.client.status()["alerting"]["silences"])
    run_cli("alerts", "expire", out["id"], env=env)
    run_cli("alerts", "expire", whole["id"], env=env)
    assert json.loads(run_cli("alerts", "silences", "--json", env=env).stdout) == []


def test_silences_without_alertmanager_say_what_to_set(agent, run_cli) -> None:
    r = run_cli("alerts", "silences", check=False)
    assert r.returncode == 1 and "set alerting.alertmanager_url" in r.stderr
    assert agent.client.status()["alerting"]["alertmanager_url"] is None
