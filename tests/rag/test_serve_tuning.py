"""`tuning set` says plainly which running `lightkeeper serve` needs a restart, and for what;
the status files it reads (written by the servers) are read safely."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lightkeeper.tuning import serve_restart
from tests.rag import test_serve as served

# the real servers: `lightkeeper offline-llm` and `lightkeeper serve` processes
llm_env = served.llm_env
offline_llm = served.offline_llm
serve = served.serve


def servers(run_cli: Any) -> dict[str, dict[str, Any]]:
    doc = json.loads(run_cli("tuning", "servers", "--json").stdout)
    return {s["user"]: s for s in doc["servers"]}


def test_tuning_set_names_the_server_that_needs_a_restart(agent: Any, run_cli: Any, serve: Any,
                                                          lk_env: dict[str, str]) -> None:
    srv = serve("srv_t")
    pid, base = srv.info["pid"], srv.info["url"]
    assert servers(run_cli)["srv_t"]["restart_needed"] == []

    # a live parameter: applied by the server at its next query, no restart
    out = run_cli("tuning", "set", "top_k=50", "--note", "wider retrieval").stdout
    assert "needs a restart" not in out
    assert f"lightkeeper serve for srv_t (pid {pid}) applies this at its next query" in out

    # a restart parameter: the server is named, with the command that restarts it
    out = run_cli("tuning", "set", "llm_model_max_async=2", "--note", "fewer LLM calls").stdout
    assert (f"lightkeeper serve for srv_t (pid {pid}) needs a restart for: "
            "llm_model_max_async") in out
    assert "run `lightkeeper serve --restart --user srv_t`" in out
    s = servers(run_cli)["srv_t"]
    assert s["state"] == "running" and s["restart_needed"] == ["llm_model_max_async"]
    assert s["tuning_version"] == 1 and s["latest_version"] == 3

    # the server, once it sees version 3 (at its next query), reports the same by itself;
    # it learns of a new version from its file watcher, which may still be on version 2 at
    # the first query after the change (seen on a loaded machine), so it is asked again
    state = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "serve" / "srv_t.json"

    def queried_and_applied() -> bool:
        served.http("POST", base + "/query", {"query": "Gull Point", "mode": "bypass"})
        return json.loads(state.read_text())["live_tuning_version"] == 3

    served.wait_for(queried_and_applied, what="the server applying version 3")
    assert json.loads(state.read_text())["restart_needed"] == ["llm_model_max_async"]

    # a later live change does not hide the restart still owed
    out = run_cli("tuning", "set", "chunk_top_k=25", "--note", "more chunks").stdout
    assert "needs a restart for: llm_model_max_async" in out

    # restarting in place clears it
    run_cli("serve", "--restart", "--user", "srv_t")
    served.wait_for(lambda: json.loads(state.read_text()).get("restarts") == 1,
                    what="the restart")
    s = servers(run_cli)["srv_t"]
    assert s["restart_needed"] == [] and s["tuning_version"] == 4 and s["notice"] is None
    out = run_cli("tuning", "set", "top_k=60", "--note", "wider still").stdout
    assert "needs a restart" not in out

    # an embedding change is said to be outside what the server applies at all
    out = run_cli("tuning", "set", "embedding_model=other", "--note", "new model",
                  "--acknowledge-rebuild").stdout
    assert "does not apply embedding_model" in out and "needs a restart" not in out


def _stat_dir(lk_env: dict[str, str]) -> Path:
    d = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "serve"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_bad_status_files_are_unknown_not_a_crash(agent: Any, run_cli: Any,
                                                  lk_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    d = _stat_dir(lk_env)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"pid": os.getpid(), "user": "linked"}))
    (d / "linked.json").symlink_to(secret)
    (d / "torn.json").write_text('{"pid": 12')
    (d / "huge.json").write_bytes(b" " * (serve_restart.MAX_STATUS_BYTES + 1))
    (d / "liar.json").write_text(json.dumps({"pid": os.getpid(), "user": "someone_else"}))
    (d / "gone.json").write_text(json.dumps({"pid": 2**31 - 2, "user": "gone",
                                             "tuning_version": 1}))
    (d / "notaserver.json").write_text(json.dumps({"pid": os.getpid(), "user": "notaserver",
                                                   "tuning_version": 1}))
    out = run_cli("tuning", "set", "llm_model_max_async=3", "--note", "x").stdout
    assert "tuning version 2 recorded" in out
    assert "lightkeeper serve for linked: state unknown (the status file is a symlink" in out
    assert "lightkeeper serve for torn: state unknown (the status file is not JSON" in out
    assert "lightkeeper serve for huge: state unknown (the status file is" in out
    assert "named for liar but says user 'someone_else'" in out
    assert "needs a restart" not in out
    s = servers(run_cli)
    assert s["gone"]["state"] == "not_running" and "stale" in s["gone"]["reason"]
    assert s["notaserver"]["state"] == "not_running"  # this pytest process is no server
    assert {s[u]["state"] for u in ("linked", "torn", "huge", "liar")} == {"unknown"}
    # `serve --restart` reads the same file the same way, and signals nothing
    r = run_cli("serve", "--restart", "--user", "linked", check=False)
    assert r.returncode == 1 and "symlink; not followed" in r.stderr


def test_status_parsing_validates_each_field() -> None:
    ok = serve_restart.parse_status(json.dumps(
        {"pid": 42, "user": "alice", "url": "http://127.0.0.1:9/", "tuning_version": 3,
         "live_tuning_version": 4, "restart_needed": ["top_k"], "restarts": 2}).encode(),
        "alice")
    assert (ok.pid, ok.built_version, ok.live_version, ok.reported, ok.restarts) == \
        (42, 3, 4, ["top_k"], 2)
    for doc, words in (({"pid": True, "user": "alice"}, "not a process id"),
                       ({"pid": 4, "user": "alice", "tuning_version": "3"}, "not a version"),
                       ({"pid": 4, "user": "alice", "url": "file:///etc"}, "not an http"),
                       ({"pid": 4, "user": "alice", "restart_needed": ["rm -rf"]},
                        "not a list of parameter names"),
                       ([1, 2], "not hold a JSON object")):
        try:
            serve_restart.parse_status(json.dumps(doc).encode(), "alice")
        except serve_restart.StatusUnreadable as exc:
            assert words in str(exc)
        else:
            raise AssertionError(f"{doc} accepted")
    built = {"top_k": 40, "llm_model_max_async": 4, "embedding_dim": 0}
    latest = {"top_k": 60, "llm_model_max_async": 2, "embedding_dim": 0}
    assert serve_restart.needs(built, latest) == (["llm_model_max_async"], [])
    # built without an active tuning file: none of it was applied at construction
    assert serve_restart.needs(None, latest) == (["llm_model_max_async"], ["embedding_dim"])


def test_a_server_being_built_takes_the_version_just_set(tmp_path: Path) -> None:
    """`serve --restart` right after `tuning set`: the rebuilt server reads the active file at
    build time, not the version its watcher last saw (the watcher's event comes after its
    debounce, later on a loaded machine: the restarted server once kept the old version)."""
    from lightkeeper import config as config_mod
    from lightkeeper.rag.params import ParamSource
    from lightkeeper.tuning.activefile import write_active
    from lightkeeper.tuning.tuningset import TuningSet

    active = tmp_path / "tuning" / "active.toml"
    write_active(active, 3, TuningSet().with_changes({"top_k": 33}))
    cfg = config_mod.load(env={"LIGHTKEEPER_PATHS__STATE_DIR": str(tmp_path / "state"),
                               "LIGHTKEEPER_PATHS__TUNING_FILE": str(active)},
                          read_system=False)
    source = ParamSource(cfg, watch=True)
    try:
        assert source.get()[0] == 3
        write_active(active, 4, TuningSet().with_changes({"top_k": 44}))
        source.refresh()  # what a server being built does first
        version, params = source.get()
        assert (version, params["top_k"]) == (4, 44)
    finally:
        source.close()
