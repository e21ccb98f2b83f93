"""The zone package's answers through a real agent, with a zone served by a real sshd on
127.0.0.1: calls and job summaries carry exactly the keys their declared types name
(tests/test_contracts.py checks the other packages)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.test_contracts import check_answer, response_type, run_job
from tests.zones.repo_helper import write_user_files


def _zone_jobs(client: Any, zone: str, sid: str, repo_path: Path, tmp_path: Path) -> None:
    """The zone's jobs through the agent, each summary checked by run_job."""
    verified = run_job(client, "zone_verify", {"zone": zone, "full": True})
    assert verified["files_hashed"] > 0 and not verified["problems"]
    plan = run_job(client, "zone_prune", {"zone": zone, "dry_run": True})
    assert plan["kept"] == [sid] and not plan["forgotten"]
    restored = run_job(client, "zone_restore", {"zone": zone, "user": "alice",
                                                "target": str(tmp_path / "from-zone")})
    assert restored["snapshot"] == sid and restored["users"] == ["alice"]
    # the local repository is lost: rebuild it from the zone
    shutil.move(repo_path, tmp_path / "lost-repository")
    rebuilt = run_job(client, "zone_rebuild", {"zone": zone})
    assert rebuilt["snapshots"] == 1 and not rebuilt["problems"]


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
    _zone_jobs(client, "a", sid, repo_path, tmp_path)


def test_s3_zone_answers_and_job_summaries_carry_the_declared_keys(
        lab: Any, seaweed: Any, start_agent: Any, tmp_path: Path) -> None:
    """An S3 zone (SeaweedFS) answers with the keys only S3 zones carry (kind, versioning,
    object lock...), each declared."""
    lab.add_s3_zone("s3", seaweed)
    write_user_files(lab.data_root, "alice", 3, 200_000, 2)
    sid = lab.backup()
    repo_path = lab.repo.path
    lab.repo.close()
    client = start_agent().client
    status = client.call("zones.status", zone="s3", probe=True)
    check_answer(response_type("zones.status"), status, "zones.status")
    assert status["kind"] == "s3" and "bucket" in status
    run_job(client, "replicate", {"zones": ["s3"]})
    _zone_jobs(client, "s3", sid, repo_path, tmp_path)
