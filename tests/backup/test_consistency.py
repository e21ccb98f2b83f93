"""Writers running during a backup: the write gate gives every user one quiet moment; a writer
that ignores the gate is caught by copy-and-recheck and that user fails alone."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from tests.backup.conftest import run_child, tree_digest

# A LightRAG-like writer: under the gate (rag/gate.py, the writers' side of the protocol) it
# rewrites two store files one after the other, each atomically (temp file, then rename). (Two
# files the stores check does not read: their content is not LightRAG's.)
GATED_WRITER = """
import json, os, sys, time
from pathlib import Path
from lightkeeper.rag.gate import write_gate
root, user, stop = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
pad = "x" * 400_000
gen = 0
print("READY", flush=True)
while not stop.exists():
    gen += 1
    with write_gate(root, user, timeout=30):
        for name in ("kv_store_full_docs.json", "kv_store_full_entities.json"):
            p = root / user / name
            tmp = p.with_name(p.name + f".tmp.{os.getpid()}")
            tmp.write_text(json.dumps({"gen": gen, "pad": pad}))
            os.replace(tmp, p)
            time.sleep(0.003)
    (stop.parent / "gen").write_text(str(gen))  # outside the user directory
"""

ROGUE_WRITER = """
import os, sys
from pathlib import Path
p, stop = Path(sys.argv[1]), Path(sys.argv[2])
i = 0
print("READY", flush=True)
while not stop.exists():
    i += 1
    tmp = p.with_name(p.name + ".tmp.rogue")
    tmp.write_bytes(b"y" * (100_000 + i))  # every version differs in size
    os.replace(tmp, p)
"""


def _next_gen(path: Path, after: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            gen = int(path.read_text())
            if gen > after:
                return gen
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.01)
    raise AssertionError("the writer made no progress")


def _wait_ready(proc) -> None:
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read()


def test_gated_writer_during_backups_gives_consistent_snapshots(
        data_root: Path, repo: Repository, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    proc = run_child(GATED_WRITER, str(data_root), "user01", str(stop))
    try:
        _wait_ready(proc)
        snaps = []
        last = 0
        for _ in range(5):
            last = _next_gen(tmp_path / "gen", last)  # the writer moved on since the last run
            s = run_backup(repo, BackupOptions(data_root, users=["user01"]))
            assert s.get("state") is None, s
            snaps.append(s["snapshot_id"])
    finally:
        stop.touch()
        proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read()
    seen = set()
    for i, sid in enumerate(snaps):
        out = tmp_path / f"r{i}"
        restore(repo, sid, RestoreOptions(target=out))
        a = json.loads((out / "user01" / "kv_store_full_docs.json").read_text())["gen"]
        b = json.loads((out / "user01" / "kv_store_full_entities.json").read_text())["gen"]
        assert a == b, f"snapshot {i} mixes writes {a} and {b}"
        seen.add(a)
    assert len(seen) > 1, "the writer did not run during the backups"


def test_writer_ignoring_the_gate_fails_that_user_only(data_root: Path, repo: Repository,
                                                        tmp_path: Path) -> None:
    parent = run_backup(repo, BackupOptions(data_root))
    before = tree_digest(data_root / "user02")
    # a new large file keeps the copy window of user02 open long enough to see the writer
    (data_root / "user02" / "inputs" / "big.bin").write_bytes(os.urandom(24 << 20))
    stop = tmp_path / "stop"
    proc = run_child(ROGUE_WRITER, str(data_root / "user02" / "kv_store_doc_status.json"),
                     str(stop))
    try:
        _wait_ready(proc)
        s = run_backup(repo, BackupOptions(data_root, retries=2, retry_delay=0.01))
    finally:
        stop.touch()
        proc.wait(30)
    assert s["state"] == "partial" and s["failed_users"] == ["user02"]
    assert "not honouring the write gate" in s["errors"]["user02"]
    m = repo.read_snapshot(s["snapshot_id"])
    assert m["users"]["user02"]["carried_from"] == parent["snapshot_id"]
    assert "error" not in m["users"]["user00"]
    # the snapshot is still whole: user02 comes back as it was in the parent snapshot
    out = tmp_path / "out"
    restore(repo, s["snapshot_id"], RestoreOptions(target=out))
    assert tree_digest(out / "user02") == before
    assert tree_digest(out / "user00") == tree_digest(data_root / "user00")
