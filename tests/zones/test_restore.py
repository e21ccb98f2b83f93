"""Remote retention, restore from a zone, rebuilding a lost local repository, and the
confinement of every remote path."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from lightkeeper.backup.zones.errors import RemotePathError, ZoneError
from lightkeeper.backup.zones.model import normalise_remote_path
from lightkeeper.backup.zones.remote_path import RemoteRoot
from tests.zones.repo_helper import tree_digest, write_user_files
from tests.zones.test_sync import remote_state


def test_prune_keeps_what_remaining_snapshots_reference(lab, run_cli):
    lab.add_zone("a", keep_last=1, keep_hourly=0, keep_daily=0, keep_weekly=0,
                 keep_monthly=0, keep_yearly=0)
    lab.repo.config["pack_size"] = 1 << 20
    write_user_files(lab.data_root, "alice", 3, 200_000, 1)
    write_user_files(lab.data_root, "bob", 3, 1_500_000, 2)
    s1 = lab.backup()
    # bob's files are rewritten entirely: his old packs are referenced by s1 only
    write_user_files(lab.data_root, "bob", 3, 1_500_000, 3)
    s2 = lab.backup()
    lab.run_job("replicate")
    remote = lab.remote("a")
    before = remote_state(remote)
    assert {f"snapshots/{s1}", f"snapshots/{s2}"} <= set(before)
    needed = lab.repo.referenced_files(s2)
    only_s1 = set(lab.repo.referenced_files(s1)) - set(needed)
    assert only_s1, "test data should leave packs that only the old snapshot uses"

    dry = lab.run_job("zone_prune", zone="a", dry_run=True)
    assert dry["forgotten"] == [s1] and dry["kept"] == [s2]
    assert remote_state(remote) == before
    out = run_cli("zones", "prune", "a", "--local").stdout
    assert "forgot 1" in out
    after = remote_state(remote)
    assert f"snapshots/{s1}" not in after and f"snapshots/{s2}" in after
    assert needed <= set(after), "prune deleted data a remaining snapshot references"
    assert not (only_s1 & set(after))
    assert lab.run_job("zone_verify", zone="a", full=True)["problems"] == []
    # the next sync does not send s1 back (the zone's retention, not a gap); lag stays 0
    r = lab.run_job("replicate")["zones"]["a"]
    assert r["snapshots_published"] == [] and r["bytes_sent"] == 0
    assert remote_state(remote) == after
    zones = json.loads(run_cli("zones", "list", "--local", "--json").stdout)
    assert zones[0]["lag_seconds"] == 0


def test_prune_refuses_an_empty_policy(lab):
    lab.add_zone("a", keep_last=0, keep_hourly=0, keep_daily=0, keep_weekly=0,
                 keep_monthly=0, keep_yearly=0)
    write_user_files(lab.data_root, "alice", 1, 10_000, 1)
    lab.backup()
    lab.run_job("replicate")
    before = remote_state(lab.remote("a"))
    with pytest.raises(ZoneError, match="refusing"):
        lab.run_job("zone_prune", zone="a")
    assert remote_state(lab.remote("a")) == before


def test_local_repository_lost_rebuilt_from_a_zone_then_a_user_restored(lab, run_cli):
    lab.add_zone("a")
    lab.add_zone("b")
    write_user_files(lab.data_root, "alice", 4, 300_000, 11)
    write_user_files(lab.data_root, "bob", 2, 100_000, 12)
    original = tree_digest(lab.data_root / "alice")
    s1 = lab.backup()
    lab.run_job("replicate")
    repo_path = lab.repo.path
    lab.repo.close()
    lab._repo = None

    # the server loses its repository; restore straight from zone b first
    shutil.rmtree(repo_path)
    target = lab.tmp / "restored-direct"
    r = run_cli("zones", "restore", "b", s1[:10], "--user", "alice", "--target", str(target),
                "--local")
    assert "restored" in r.stdout
    assert tree_digest(target / "alice") == original
    assert not (target / "bob").exists()

    # then rebuild the local repository from zone a, and restore with the backup engine
    r = run_cli("zones", "rebuild", "a", "--local", "--json")
    summary = json.loads(r.stdout.strip().splitlines()[-1])["job"]
    assert summary["state"] == "succeeded", summary
    assert summary["summary"]["snapshots"] == 1 and summary["summary"]["problems"] == []
    from lightkeeper.backup.restore import RestoreOptions, restore

    repo = lab.repo
    assert repo.snapshot_ids() == [s1]
    out = restore(repo, s1, RestoreOptions(target=lab.tmp / "restored-local", users=["alice"],
                                           low_priority=False))
    assert "state" not in out
    assert tree_digest(lab.tmp / "restored-local" / "alice") == original
    from lightkeeper.backup.verify import verify

    assert not verify(repo, full=True, low_priority=False).get("problems")
    # a rebuild never replaces an existing repository
    again = run_cli("zones", "rebuild", "a", "--local", check=False)
    assert again.returncode == 1 and "exists" in again.stderr


def test_restore_target_must_be_new_or_empty(lab, run_cli):
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 1, 10_000, 1)
    lab.backup()
    lab.run_job("replicate")
    target = lab.tmp / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    r = run_cli("zones", "restore", "a", "latest", "--target", str(target), "--local",
                check=False)
    assert r.returncode == 1 and "not an empty directory" in r.stderr
    assert (target / "keep.txt").read_text() == "precious"
    r = run_cli("zones", "restore", "a", "latest", "--user", "../etc", "--target",
                str(lab.tmp / "new"), "--local", check=False)
    assert r.returncode == 1 and "invalid user id" in r.stderr


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "data/../../x", "locks/l", "data//x",
                                 "snapshots/./x", "other/file", "", "data\\x"])
def test_remote_paths_stay_inside_the_zone(rel):
    root = RemoteRoot("z", "/srv/backup/repo")
    with pytest.raises(RemotePathError):
        root.join(rel)


def test_remote_path_accepted_forms():
    root = RemoteRoot("z", "/srv/backup/repo")
    assert root.join("data/ab/abcd") == "/srv/backup/repo/data/ab/abcd"
    assert root.join("config.lktmp") == "/srv/backup/repo/config.lktmp"
    for bad in ("/", "relative/path", "/srv/../etc"):
        with pytest.raises(ZoneError):
            normalise_remote_path("z", bad)


def test_unknown_zone_is_a_usage_error(lab, run_cli):
    r = run_cli("zones", "verify", "nope", "--local", check=False)
    assert r.returncode == 2 and "no such zone; zones: none configured" in r.stderr
    lab.add_zone("a")
    # before any agent is asked (none runs here: the CLI would start one)
    r = run_cli("replicate", "a", "nope", check=False)
    assert r.returncode == 2 and "zone 'nope': no such zone; zones: a" in r.stderr
    assert not (lab.cfg().path("agent.socket")).exists()


def test_lightrag_user_restored_from_a_zone_answers_queries(lab, run_cli):
    """A real LightRAG working directory (offline providers) survives the loss of the server's
    repository: rebuilt from a zone, restored, and queried."""
    import asyncio

    from lightkeeper import config as config_mod
    from lightkeeper.rag.runtime import RagRuntime

    fact = ("Keeper Odalys Fenn relit the Saltmere lamp with whale oil. Keeper Odalys Fenn "
            "keeps the Saltmere lighthouse log.")

    async def insert() -> None:
        async with RagRuntime(lab.cfg(), spool=False) as rt:
            await rt.insert("alice", [fact])

    asyncio.run(insert())
    lab.add_zone("a")
    s1 = lab.backup()
    lab.run_job("replicate")
    repo_path = lab.repo.path
    lab.repo.close()
    lab._repo = None
    shutil.rmtree(repo_path)
    shutil.rmtree(lab.data_root / "alice")
    run_cli("zones", "rebuild", "a", "--local")
    target = lab.tmp / "restored-root"
    from lightkeeper.backup.restore import RestoreOptions, restore

    restore(lab.repo, s1, RestoreOptions(target=target, users=["alice"], low_priority=False))
    cfg = config_mod.load(env=os.environ, read_system=False,
                          overrides=[("paths.data_root", str(target))])

    async def query() -> str:
        async with RagRuntime(cfg, spool=False) as rt:
            return await rt.query("alice", "Who relit the Saltmere lamp?", "local")

    answer = asyncio.run(query())
    assert "Odalys Fenn" in answer


def test_interrupted_rebuild_resumes(lab):
    from lightkeeper.backup.zones.errors import ZoneUnreachable
    from lightkeeper.progress import LocalContext

    server = lab.add_zone("a")
    lab.set("replication.retries", "0")
    lab.repo.config["pack_size"] = 1 << 20
    write_user_files(lab.data_root, "alice", 6, 1_500_000, 41)
    s1 = lab.backup()
    lab.run_job("replicate")
    repo_path = lab.repo.path
    lab.repo.close()
    lab._repo = None
    shutil.rmtree(repo_path)
    killed = []

    def on_progress(p: dict) -> None:
        if not killed and p.get("phase") == "fetch" and p.get("files_done", 0) >= 2:
            killed.append(True)
            server.kill()

    with pytest.raises(ZoneUnreachable):
        lab.run_job("zone_rebuild", ctx=LocalContext(on_progress=on_progress), zone="a")
    assert killed
    assert not (repo_path / "snapshots").exists() or not list((repo_path / "snapshots").iterdir())
    got = {p.name for p in (repo_path / "data").rglob("*") if p.is_file()}
    assert got
    server.start()
    r = lab.run_job("zone_rebuild", zone="a")
    assert r["snapshots"] == 1 and r["problems"] == []
    assert r["files_fetched"] < len(list((repo_path / "data").rglob("*")))
    assert lab.repo.snapshot_ids() == [s1]
