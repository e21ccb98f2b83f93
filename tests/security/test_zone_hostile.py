"""Low: what a hostile zone (another party's server, real sshd on 127.0.0.1 here) can make the
client do. Before the fix a listing name with '/' or '..' made fetch() create directories
outside the mirror before the path was checked, and a zone could make the client download a
"pack" of any size (the size recorded in the index was not consulted)."""

from __future__ import annotations

import shutil
from pathlib import Path

import paramiko
import pytest

from lightkeeper.backup.zones import remote_ops
from lightkeeper.backup.zones.connection import ZoneSession
from lightkeeper.backup.zones.errors import ZoneError
from lightkeeper.backup.zones.mirror import fetch
from lightkeeper.backup.zones.remote_path import RemoteRoot
from lightkeeper.progress import LocalContext
from tests.security.zone_skip import require_sshd
from tests.zones.repo_helper import write_user_files

require_sshd()

HOSTILE = ["data/../../../outside/x", "data/ab/../../../../outside2/y", "../outside3/z",
           "index/../../outside4/w", "snapshots/a/../../outside5/v", "data//x"]


@pytest.mark.parametrize("rel", HOSTILE)
def test_low_hostile_listing_names_never_create_dirs_outside_the_mirror(lab, rel: str):
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 1, 10_000, 1)
    lab.backup()
    lab.run_job("replicate")
    zone = lab.zone("a")
    box = lab.tmp / "box"
    mirror = box / "m1" / "m2" / "m3" / "mirror"
    mirror.mkdir(parents=True)
    before = {p for p in lab.tmp.rglob("*")}
    with ZoneSession(zone) as sess, pytest.raises(ZoneError, match="refused"):
        fetch(sess.sftp, RemoteRoot(zone.name, zone.remote_path), rel, mirror)
    created = {p for p in lab.tmp.rglob("*")} - before
    assert not created, sorted(map(str, created))


def test_low_hostile_listing_entries_are_dropped_by_the_parser():
    def attr(name: str, mode: int = 0o100600, size: int = 5) -> paramiko.SFTPAttributes:
        a = paramiko.SFTPAttributes()
        a.filename, a.st_mode, a.st_size = name, mode, size
        return a

    listing = remote_ops.Listing()
    subdirs = remote_ops.parse_entries("data", [
        attr("../../etc", 0o040755), attr("ab/../../x", 0o040755), attr("..", 0o040755),
        attr("ab", 0o040700), attr("x\x00y"), attr("../evil.tmp"), attr("a" * 300)], listing)
    assert subdirs == ["data/ab"]
    assert listing.files == {} and listing.temps == []
    snaps, temps = remote_ops.parse_snapshots([attr("../x"), attr("a/b.tmp"), attr("ok")])
    assert snaps == {"ok": 5} and temps == []


@pytest.mark.parametrize("job", ["zone_restore", "zone_rebuild"])
def test_low_zone_cannot_make_the_client_download_an_oversized_pack(lab, job: str):
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 3, 400_000, 7)
    sid = lab.backup()
    lab.run_job("replicate")
    remote = lab.remote("a")
    packs = sorted((p for p in (remote / "data").rglob("*") if p.is_file()),
                   key=lambda p: p.stat().st_size)
    grow = 24 << 20
    for p in packs:  # every pack now claims tens of MB more than its index records
        with open(p, "ab") as f:
            f.write(b"\0" * grow)
    shutil.rmtree(lab.zone_dir("a") / "mirror", ignore_errors=True)
    # the local repository is lost (else its identical packs would be used, not the zone's)
    repo_path = lab.repo.path
    lab.repo.close()
    lab._repo = None
    shutil.rmtree(repo_path)
    seen: list[int] = []
    ctx = LocalContext(on_progress=lambda p: seen.append(int(p.get("bytes_done") or 0)))
    params = ({"snapshot": sid, "target": str(lab.tmp / "restored")}
              if job == "zone_restore" else {})
    with pytest.raises(ZoneError, match="more than|beyond"):
        lab.run_job(job, ctx=ctx, zone="a", **params)
    assert max(seen, default=0) < grow, "the oversized pack was downloaded"
    leftovers = [p for d in (Path(lab.zone_dir("a")), repo_path) for p in d.rglob("*")
                 if p.is_file() and p.stat().st_size >= grow]
    assert not leftovers


def test_low_full_verify_reads_no_more_than_the_index_records(lab):
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 2, 300_000, 9)
    lab.backup()
    lab.run_job("replicate")
    remote = lab.remote("a")
    pack = max((p for p in (remote / "data").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    grow = 24 << 20
    with open(pack, "ab") as f:
        f.write(b"\0" * grow)
    seen: list[int] = []
    ctx = LocalContext(on_progress=lambda p: seen.append(int(p.get("bytes_done") or 0)))
    v = lab.run_job("zone_verify", ctx=ctx, zone="a", full=True)
    rel = str(pack.relative_to(remote))
    assert any(p.get("file") == rel and "more than" in p["problem"] for p in v["problems"]), \
        v["problems"]
    assert max(seen, default=0) < grow
