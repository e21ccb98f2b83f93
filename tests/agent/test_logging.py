"""Structured logs: JSON lines with context; secrets never reach a log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightkeeper import logs
from lightkeeper.client import AgentError


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """logs.setup() reconfigures the 'lightkeeper' logger for the process: undo it afterwards
    so later tests (caplog) see records again."""
    logger = logging.getLogger("lightkeeper")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    for h in saved[0]:
        logger.addHandler(h)
    logger.propagate, logger.level = saved[1], saved[2]


SECRETS = ["hunter2", "sk-abcdefghijklmnop1234", "s3cr3t-token-value", "MIIEvQIBADANBgkq"]


def test_json_lines_with_context_and_redaction(tmp_path: Path) -> None:
    f = tmp_path / "log.jsonl"
    logs.setup("debug", f, console=False)
    log = logs.get_logger("test")
    log.info("job.started", job_id="j1", user="alice", duration_ms=12)
    log.info("connecting to postgresql://app:hunter2@db.local:5432/app")
    log.warning("call failed", dsn="host=db user=app password=hunter2", api_key="sk-abcdefghijklmnop1234")
    log.error("request", headers={"Authorization": "Bearer s3cr3t-token-value"},
              note="token=s3cr3t-token-value")
    log.info("key", material="-----BEGIN OPENSSH PRIVATE KEY-----\nMIIEvQIBADANBgkq\n"
             "-----END OPENSSH PRIVATE KEY-----")
    try:
        raise RuntimeError("login with password=hunter2 failed")
    except RuntimeError:
        log.exception("failure")
    logging.getLogger("lightkeeper").handlers[0].flush()
    text = f.read_text()
    for s in SECRETS:
        assert s not in text, s
    lines = [json.loads(line) for line in text.splitlines()]
    first = lines[0]
    assert first["event"] == "job.started" and first["component"] == "test"
    assert first["job_id"] == "j1" and first["user"] == "alice" and first["level"] == "info"
    assert "ts" in first
    assert lines[1]["event"] == "connecting to postgresql://app:***@db.local:5432/app"
    assert lines[2]["dsn"] == "***" and lines[2]["api_key"] == "***"
    assert "error" in lines[-1]


def test_secrets_in_audit_events_and_agent_log(agent, lk_env: dict[str, str]) -> None:
    # A job params dict with a DSN goes to the audit log; it must be redacted everywhere.
    with pytest.raises(AgentError):
        agent.client.start_job("no-such-kind", {"dsn": "postgresql://u:hunter2@h/db"})
    agent.client.call("bench.record", id="r1", params={"api_key": "sk-abcdefghijklmnop1234",
                                                       "url": "http://u:hunter2@h"})
    events = agent.client.events(limit=100)
    assert "hunter2" not in json.dumps(events)
    agent.stop()
    log_text = Path(agent.cfg["log.file"]).read_text()
    assert "hunter2" not in log_text and "sk-abcdefghijklmnop1234" not in log_text


_WRITER = """
import sys
from pathlib import Path
from lightkeeper import logs
logs.setup("info", Path(sys.argv[1]), 2048, 50, console=False, shared=True)
log = logs.get_logger("writer")
for i in range(int(sys.argv[3])):
    log.info("line", writer=sys.argv[2], n=i, pad="x" * 100)
"""


def test_in_process_commands_share_their_own_file_and_rotate_safely(tmp_path: Path) -> None:
    """Several in-process commands append to one file (never the agent's log.file): writes and
    rollovers are serialised, a process that finds the file rotated reopens it, no line is lost
    or torn."""
    import subprocess
    import sys

    agent_log = tmp_path / "logs" / "lightkeeper.jsonl"
    target = logs.in_process_log_file(agent_log)
    assert target == tmp_path / "logs" / "lightkeeper.cli.jsonl"
    target.parent.mkdir(parents=True)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(w), "60"])
             for w in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    seen: set[tuple[str, int]] = set()
    files = [target] + sorted(target.parent.glob(target.name + ".*[0-9]"))
    assert len(files) > 3  # it rotated, many times
    for f in files:
        for line in f.read_text().splitlines():
            doc = json.loads(line)  # every line whole
            seen.add((doc["writer"], doc["n"]))
    assert seen == {(str(w), n) for w in range(3) for n in range(60)}
    assert not agent_log.exists()


def test_zones_local_logs_to_the_in_process_file(run_cli, lk_env: dict[str, str]) -> None:
    state = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"])
    r = run_cli("zones", "list", "--local", "--json")
    assert json.loads(r.stdout) == []
    assert not (state / "logs" / "lightkeeper.jsonl").exists()  # the agent's file: untouched
    assert (state / "logs" / "lightkeeper.cli.jsonl").exists()
