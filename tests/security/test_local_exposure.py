"""Medium 4 of issue #11: what other local accounts could read. On main the state dir was
0755, metrics.duckdb and the logs 0644, and `rag.llm_url` with its credentials sat unmasked in
`meta.config_snapshot` and in `config show`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from lightkeeper.agent.store.db import Store

SECRET_URL = "https://svc:hunter2pass@llm.example/v1?api_key=sk-topsecret99&model=m"
TOKEN_URL = "http://tok3nvalue@127.0.0.1:9093/?token=abcdef123&x=1"
SECRETS = ("hunter2pass", "sk-topsecret99", "tok3nvalue", "abcdef123")


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_medium4_state_dir_0700_and_files_0600_including_existing_install(
        start_agent, lk_env: dict[str, str]) -> None:
    state = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"])
    old_umask = os.umask(0o022)
    try:  # an install made before: everything world-readable
        state.mkdir(parents=True, mode=0o755)
        os.chmod(state, 0o755)
        Store(state / "metrics.duckdb").close()
        (state / "logs").mkdir(mode=0o755)
        (state / "logs" / "lightkeeper.jsonl").write_text("")
        (state / "logs" / "lightkeeper.jsonl.1").write_text("{}\n")
    finally:
        os.umask(old_umask)
    assert mode(state / "metrics.duckdb") & 0o044
    a = start_agent()
    a.client.status()
    assert mode(state) == 0o700
    files = [p for p in [*state.iterdir(), *(state / "logs").iterdir()]
             if p.is_file() and not p.is_symlink()]
    names = {p.name for p in files}
    assert {"metrics.duckdb", "agent.pid", "agent.lock", "lightkeeper.jsonl",
            "lightkeeper.jsonl.1"} <= names
    loose = {p.name: oct(mode(p)) for p in files if mode(p) & 0o077}
    assert loose == {}
    assert mode(state / "logs") == 0o700
    events = a.client.get("/v1/events", kind="audit", limit=100)
    tightened = [e for e in events if e["event"] == "state.permissions_tightened"]
    assert tightened and any("metrics.duckdb" in c for c in tightened[0]["context"]["changed"])


def test_medium4_url_credentials_masked_in_config_show_snapshot_and_logs(
        start_agent, run_cli, lk_env: dict[str, str]) -> None:
    env = {"LIGHTKEEPER_RAG__LLM_URL": SECRET_URL,
           "LIGHTKEEPER_ALERTING__ALERTMANAGER_URL": TOKEN_URL}
    for args in (("config", "show"), ("config", "show", "--json", "--origin")):
        out = run_cli(*args, env=env).stdout
        assert "llm.example" in out and "127.0.0.1:9093" in out
        assert not [s for s in SECRETS if s in out], out
    a = start_agent(env)
    a.client.status()
    a.stop()
    state = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"])
    store = Store(state / "metrics.duckdb", read_only=True)
    snapshot = store.execute("SELECT value FROM meta WHERE key = 'config_snapshot'")[0][0]
    events = json.dumps(store.query_dicts("SELECT * FROM events"), default=str)
    store.con.close()
    assert "llm.example" in snapshot
    assert json.loads(snapshot)["rag.llm_url"][0] == \
        "https://svc:***@llm.example/v1?api_key=***&model=m"
    logs = "".join(p.read_text(errors="replace") for p in (state / "logs").iterdir())
    for where, text in (("snapshot", snapshot), ("events", events), ("logs", logs)):
        assert not [s for s in SECRETS if s in text], where


def test_medium4_user_dir_readable_by_others_is_reported(lk_cfg) -> None:
    from lightkeeper.agent.daemon import Agent

    root = lk_cfg.path("paths.data_root")
    for user, m in (("alice", 0o755), ("bob", 0o700), ("carol", 0o701)):
        (root / user).mkdir()
        os.chmod(root / user, m)
    os.chmod(root, 0o755)
    agent = Agent(lk_cfg)
    agent.open()
    try:
        agent._check_user_dirs()  # a second pass does not repeat the warning
        rows = agent.store.query_dicts(
            "SELECT context FROM events WHERE event = 'userdir.readable_by_others'")
    finally:
        agent.close()
    found = {json.loads(r["context"])["user"]: json.loads(r["context"])["mode"] for r in rows}
    assert found == {"alice": "0755", "carol": "0701"}


def test_a_user_dir_warned_about_is_warned_about_again_when_its_mode_changes(lk_cfg) -> None:
    from lightkeeper.agent.daemon import Agent

    root = lk_cfg.path("paths.data_root")
    for user, m in (("alice", 0o755), ("carol", 0o701)):
        (root / user).mkdir()
        os.chmod(root / user, m)
    agent = Agent(lk_cfg)
    agent.open()
    try:
        os.chmod(root / "carol", 0o705)  # wider: warned again, with the new mode
        agent._check_user_dirs()
        os.chmod(root / "alice", 0o750)  # closed: nothing to say
        agent._check_user_dirs()
        os.chmod(root / "alice", 0o755)  # opened again: warned again
        agent._check_user_dirs()
        agent._check_user_dirs()
        rows = agent.store.query_dicts(
            "SELECT context FROM events WHERE event = 'userdir.readable_by_others' ORDER BY id")
    finally:
        agent.close()
    seen = [(json.loads(r["context"])["user"], json.loads(r["context"])["mode"]) for r in rows]
    assert sorted(seen[:2]) == [("alice", "0755"), ("carol", "0701")]
    assert seen[2:] == [("carol", "0705"), ("alice", "0755")]
    assert all(json.loads(r["context"])["path"] == str(root / u) for r, (u, _) in
               zip(rows, seen, strict=True))
