"""Medium 2: replication repairs damaged or lost files on a zone (real sshd on 127.0.0.1).

Before the fix a pack truncated or deleted on the zone stayed so: ``replicate`` trusted its
cached listing ("ok, 0 files"), a manifest replaced by another one's bytes was never sent
again (not even after a full listing), and ``zones verify`` without ``--full`` said OK.
"""

from __future__ import annotations

from pathlib import Path

from tests.security.zone_skip import require_sshd
from tests.zones.repo_helper import write_user_files

require_sshd()


def _largest_pack(remote: Path) -> Path:
    return max((p for p in (remote / "data").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)


def _setup(lab) -> tuple[str, str]:
    lab.add_zone("a")
    write_user_files(lab.data_root, "alice", 4, 300_000, 1)
    s1 = lab.backup()
    write_user_files(lab.data_root, "bob", 2, 100_000, 2)
    s2 = lab.backup()
    r = lab.run_job("replicate")["zones"]["a"]
    assert set(r["snapshots_published"]) == {s1, s2}
    return s1, s2


def test_medium2_truncated_pack_found_by_verify_and_repaired_by_replicate(lab):
    _setup(lab)
    remote = lab.remote("a")
    pack = _largest_pack(remote)
    good = (lab.repo.path / pack.relative_to(remote)).read_bytes()
    with open(pack, "r+b") as f:
        f.truncate(len(good) // 2)
    # verify without --full notices the size
    v = lab.run_job("zone_verify", zone="a")
    assert v.get("state") == "problems"
    assert any(p.get("file") == str(pack.relative_to(remote)) and p["problem"] == "size"
               for p in v["problems"]), v["problems"]
    # ... and the next replicate (no flag needed) sends it again
    r = lab.run_job("replicate")["zones"]["a"]
    assert r["listing"] == "full" and r["files_uploaded"] >= 1
    assert pack.read_bytes() == good
    assert not lab.run_job("zone_verify", zone="a").get("state")


def test_medium2_deleted_pack_repaired_with_full_listing(lab, run_cli):
    _setup(lab)
    remote = lab.remote("a")
    pack = _largest_pack(remote)
    good = pack.read_bytes()
    pack.unlink()
    # the cached listing still claims it: a plain replicate does not look
    r = lab.run_job("replicate")["zones"]["a"]
    assert r["listing"] == "cached"
    # the operator's remedy: force a full listing (the CLI flag, run in-process with --local)
    out = run_cli("replicate", "--full-listing", "--local", "--json")
    assert out.returncode == 0, out.stderr
    assert pack.read_bytes() == good


def test_medium2_manifest_replaced_by_another_is_detected_and_resent(lab):
    s1, s2 = _setup(lab)
    remote = lab.remote("a")
    m1, m2 = remote / "snapshots" / s1, remote / "snapshots" / s2
    good = m1.read_bytes()
    m1.write_bytes(m2.read_bytes())  # s1's name, s2's bytes
    v = lab.run_job("zone_verify", zone="a")  # no --full
    assert v.get("state") == "problems"
    assert s1 in v["snapshots_affected"]
    r = lab.run_job("replicate")["zones"]["a"]
    assert s1 in r["snapshots_published"]
    assert m1.read_bytes() == good


def test_medium2_same_size_corruption_found_by_full_verify_is_resent(lab):
    s1, _ = _setup(lab)
    remote = lab.remote("a")
    pack = _largest_pack(remote)
    good = pack.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    pack.write_bytes(bytes(bad))  # same size: only hashing can tell
    v = lab.run_job("zone_verify", zone="a", full=True)
    assert any(p.get("problem", "").startswith("hash mismatch") for p in v["problems"])
    lab.run_job("replicate", full_listing=True)
    assert pack.read_bytes() == good
    assert not lab.run_job("zone_verify", zone="a", full=True).get("state")
