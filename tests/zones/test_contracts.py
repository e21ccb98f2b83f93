"""The zone package's answers through a real agent, with a zone served by a real sshd on
127.0.0.1: calls and job summaries carry exactly the keys their declared types name
(tests/test_contracts.py checks the other packages)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.test_contracts import check_answer, response_type, run_job
from tests.zones.repo_helper import write_user_files


def test_zone_answers_and_job_summaries_carry_the_declared_keys(lab: Any, start_agent: Any,
                                                                 tmp_path: Path) -> None:
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 3, 200_000, 1)
    sid = lab.backup()
    repo_path = lab.repo.path
    lab.repo.close()
    client = start_agent().client

    def call(name: str, **params: Any) -> Any:
        answer = client.call(name, **params)
        check_answer(response_type(name), answer, name)
        return answer

    never = call("zones.status", zone="a")
    assert never["kind"] == "sftp" and never["reachable"] is None  # never probed yet
    replicated = run_job(client, "replicate", {"zones": ["a"]})
    assert replicated["zones"]["a"]["snapshots_published"] == [sid]
    status = call("zones.status", zone="a", probe=True)
    assert status["reachable"] is True and status["remote_snapshots"] == 1
    assert [z["name"] for z in call("zones.list")] == ["a"]
    call("zones.trust_probe", zone="a")
    assert run_job(client, "zone_status", {"zones": ["a"]})["zones"]["a"]["reachable"]
    verified = run_job(client, "zone_verify", {"zone": "a", "full": True})
    assert verified["files_hashed"] > 0 and not verified["problems"]
    plan = run_job(client, "zone_prune", {"zone": "a", "dry_run": True})
    assert plan["kept"] == [sid] and not plan["forgotten"]
    restored = run_job(client, "zone_restore", {"zone": "a", "user": "alice",
                                                "target": str(tmp_path / "from-zone")})
    assert restored["snapshot"] == sid and restored["users"] == ["alice"]
    # the local repository is lost: rebuild it from the zone
    shutil.move(repo_path, tmp_path / "lost-repository")
    rebuilt = run_job(client, "zone_rebuild", {"zone": "a"})
    assert rebuilt["snapshots"] == 1 and not rebuilt["problems"]
