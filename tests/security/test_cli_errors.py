"""Low: bad local state gives a clean error through the real CLI and agent, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.datacopy import generated


def test_low_backup_list_with_world_readable_key_file_is_a_clean_error(
        lk_env: dict[str, str], start_agent: Any, run_cli: Any, tmp_path: Path) -> None:
    # a key file outside the state dir's keys/ (which the agent tightens itself at start)
    env = {"LIGHTKEEPER_BACKUP__KEY_FILE": str(tmp_path / "elsewhere" / "repo.key")}
    lk_env.update(env)
    start_agent(env)
    data = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    generated(data, users=1, seed=5, total_mb=0.3)
    run_cli("backup", "run", "--json")
    key_file = Path(json.loads(run_cli("backup", "key", "show", "--json").stdout)["key_file"])
    key_file.chmod(0o644)
    for args in (("backup", "list"), ("backup", "list", "--json"), ("backup", "show", "latest"),
                 ("backup", "stats")):
        r = run_cli(*args, check=False)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
        assert f"chmod 600 {key_file}" in r.stderr, r.stderr


def test_medium3_cli_lists_refused_forgery_and_signs_legacy_snapshots(
        lk_env: dict[str, str], start_agent: Any, run_cli: Any) -> None:
    """Through the agent, an unencrypted repository: a manifest without a MAC is left out of
    ``backup list`` and named as refused; ``backup key sign-snapshots`` (the documented
    migration) authenticates it; ``backup show`` of a forgery is a clean error."""
    import blake3

    env = {"LIGHTKEEPER_BACKUP__ENCRYPT": "false"}
    lk_env.update(env)
    start_agent(env)
    data = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    generated(data, users=1, seed=6, total_mb=0.3)
    run_cli("backup", "run", "--json")
    snaps = json.loads(run_cli("backup", "list", "--json").stdout)["snapshots"]
    assert len(snaps) == 1
    repo = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "repository"
    if not (repo / "config").exists():  # wherever backup.repository points
        repo = next(p.parent for p in Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]).rglob(
            "config") if (p.parent / "snapshots").is_dir())
    sid = snaps[0]["id"]
    raw = (repo / "snapshots" / sid).read_bytes()
    legacy = raw[36:]  # as written before manifests carried a MAC
    old = blake3.blake3(legacy).hexdigest()
    (repo / "snapshots" / sid).unlink()
    (repo / "snapshots" / old).write_bytes(legacy)
    r = run_cli("backup", "list")
    assert old[:8] not in r.stdout and f"refused snapshot {old[:8]}" in r.stderr
    assert "sign-snapshots" in r.stderr
    shown = run_cli("backup", "show", old[:12], check=False)
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    run_cli("backup", "key", "sign-snapshots")
    listed = json.loads(run_cli("backup", "list", "--json").stdout)
    assert len(listed["snapshots"]) == 1 and not listed["refused"]
