"""The CLI through a real agent: run, list, show, stats, verify, forget/prune, restore, key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.backup.conftest import tree_digest
from tests.datacopy import generated


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def _summary(out: str) -> dict[str, Any]:
    msgs = _lines(out)
    final = [m for m in msgs if m.get("type") == "summary"]
    assert final, out
    return final[-1]["job"]


def test_cli_backup_list_show_verify_forget_restore(lk_env: dict[str, str], agent: Any,
                                                    run_cli: Any, tmp_path: Path) -> None:
    data = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    generated(data, users=2, seed=5, total_mb=1.5)
    r = run_cli("backup", "run", "--tag", "first", "--json")
    job = _summary(r.stdout)
    assert job["state"] == "succeeded", job
    s = job["summary"]
    for key in ("duration_s", "bytes_read", "bytes_added", "dedup_ratio", "repository_size",
                "files"):
        assert s[key] is not None
    assert any(m.get("type") == "status" for m in _lines(r.stdout))
    run_cli("backup", "run", "--user", "user01", "--json")
    snaps = json.loads(run_cli("backup", "list", "--json").stdout)["snapshots"]
    assert len(snaps) == 2 and snaps[0]["tags"] == ["first"]
    listing = run_cli("backup", "list").stdout
    assert snaps[0]["short_id"] in listing and snaps[1]["short_id"] in listing
    shown = json.loads(run_cli("backup", "show", snaps[0]["short_id"], "--json").stdout)
    assert shown["users"]["user00"]["documents"] > 0
    assert "metrics" in shown["databases"]  # the agent's consistent copy of the store
    human = run_cli("backup", "show", "latest").stdout
    assert "user01" in human and "ENTITIES" in human
    stats = json.loads(run_cli("backup", "stats", "--json").stdout)
    assert stats["snapshots"] == 2 and stats["encrypted"]
    v = run_cli("backup", "verify", "--full")
    assert "repository OK" in v.stdout
    f = _summary(run_cli("backup", "forget", "--keep-last", "1", "--dry-run", "--json").stdout)
    assert f["summary"]["removed_count"] == 0  # the two snapshots are in different groups
    out = tmp_path / "restored"
    r = run_cli("restore", snaps[0]["short_id"], "--target", str(out), "--user", "user00")
    assert "every file checked" in r.stdout
    assert tree_digest(out / "user00") == tree_digest(data / "user00")
    # key: the API never returns key bytes; the CLI exports the file for its owner
    shown_key = json.loads(run_cli("backup", "key", "show", "--json").stdout)
    key_file = Path(shown_key["key_file"])
    assert json.loads(key_file.read_text())["id"] not in json.dumps(shown_key)
    exported = tmp_path / "exported.key"
    run_cli("backup", "key", "export", "-o", str(exported))
    assert exported.read_text() == key_file.read_text()
    assert os.stat(exported).st_mode & 0o777 == 0o600
    r = run_cli("backup", "key", "export", "-o", str(exported), check=False)
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr


def test_cli_verify_exit_code_names_damage(lk_env: dict[str, str], agent: Any, run_cli: Any,
                                           tmp_path: Path) -> None:
    data = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    generated(data, users=2, seed=6, total_mb=1)
    run_cli("backup", "run", "--json")
    repo = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "repo"
    packs = sorted((repo / "data").glob("*/*"), key=lambda p: p.stat().st_size)
    os.truncate(packs[-1], packs[-1].stat().st_size // 2)
    r = run_cli("backup", "verify", check=False)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "DAMAGED" in r.stdout and "damaged file(s)" in r.stdout
    r = run_cli("restore", "latest", check=False)
    assert r.returncode == 2 and "--target" in r.stderr


def test_cli_drill_opens_restored_workspaces_with_lightrag(lk_env: dict[str, str], agent: Any,
                                                           run_cli: Any, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("Ada Lovelace worked with Charles Babbage on the Analytical Engine.\n")
    run_cli("rag", "insert", "--user", "alice", str(doc))
    run_cli("backup", "run", "--json")
    job = _summary(run_cli("backup", "drill", "--users", "1", "--json").stdout)
    assert job["state"] == "succeeded", job
    s = job["summary"]
    assert s["ok"] and s["users"] == ["alice"] and s["opened_with_lightrag"]
    assert s["per_user"]["alice"]["answer_chars"] > 0
    assert s["recovery_time_s"] > 0
    assert "drill PASSED" in run_cli("backup", "drill").stdout
