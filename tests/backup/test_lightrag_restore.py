"""A restored LightRAG directory loads and answers the same queries as the original."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lightkeeper import config as config_mod
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.config import Config

DOCS = [
    "Ada Lovelace worked with Charles Babbage on the Analytical Engine in London. She wrote "
    "the first algorithm intended to be carried out by a machine.",
    "Grace Hopper led the team that built the first compiler, A-0, at Remington Rand. She "
    "later shaped the COBOL language used by banks for decades.",
]


def _ask(cfg: Config, user: str, questions: list[tuple[str, str]],
         insert: list[str] | None = None) -> list[str]:
    from lightkeeper.rag.runtime import RagRuntime

    async def main() -> list[str]:
        async with RagRuntime(cfg) as rt:
            if insert:
                await rt.insert(user, insert, [f"doc{i}.txt" for i in range(len(insert))])
            return [await rt.query(user, q, mode) for q, mode in questions]

    return asyncio.run(main())


def test_restored_workspace_loads_and_answers_the_same(lk_env: dict[str, str], lk_cfg: Config,
                                                       tmp_path: Path) -> None:
    data = lk_cfg.path("paths.data_root")
    q1 = ("Who worked with Charles Babbage?", "local")
    q2 = ("What did Grace Hopper build?", "naive")
    [before_q1] = _ask(lk_cfg, "alice", [q1], insert=DOCS)
    assert before_q1.strip()
    repo = Repository.init(tmp_path / "repo", tmp_path / "key")
    s = run_backup(repo, BackupOptions(data))
    assert repo.read_snapshot(s["snapshot_id"])["users"]["alice"]["documents"] == 2
    target = tmp_path / "restored"
    restore(repo, s["snapshot_id"], RestoreOptions(target=target, users=["alice"]))
    restored_cfg = config_mod.load(overrides=[("paths.data_root", str(target))],
                                   read_system=False)
    after_q1, after_q2 = _ask(restored_cfg, "alice", [q1, q2])
    [orig_q2] = _ask(lk_cfg, "alice", [q2])
    assert after_q1 == before_q1
    assert after_q2 == orig_q2
    assert "compiler" in after_q2  # answered from the restored documents


def test_drill_restores_and_opens_with_lightrag(lk_env: dict[str, str], lk_cfg: Config,
                                                tmp_path: Path) -> None:
    from lightkeeper.backup.drill import drill

    data = lk_cfg.path("paths.data_root")
    _ask(lk_cfg, "alice", [], insert=DOCS[:1])
    _ask(lk_cfg, "bob", [], insert=DOCS[1:])
    repo = Repository.init(tmp_path / "repo", tmp_path / "key")
    run_backup(repo, BackupOptions(data))
    asked: list[tuple[str, str]] = []

    def open_check(root: Path, user: str, question: str) -> str:
        cfg = config_mod.load(overrides=[("paths.data_root", str(root))], read_system=False)
        asked.append((user, question))
        return _ask(cfg, user, [(question, "naive")])[0]

    out = drill(repo, tmp_path / "scratch", open_check, sample=2, seed=1)
    assert out["ok"] and out["users"] == ["alice", "bob"], out
    assert out["recovery_time_s"] >= out["restore_s"] > 0
    assert {u for u, _ in asked} == {"alice", "bob"}
    assert "Lovelace" in asked[0][1] or "Hopper" in asked[0][1]  # from the user's documents
    assert not list((tmp_path / "scratch").iterdir())  # scratch cleaned up
    # a damaged repository makes the drill fail and say why
    for pack in (repo.path / "data").glob("*/*"):
        raw = bytearray(pack.read_bytes())
        raw[20] ^= 0xFF  # inside the first block of every pack
        pack.write_bytes(bytes(raw))
    fresh = Repository.open(repo.path, tmp_path / "key")
    bad = drill(fresh, tmp_path / "scratch", open_check, sample=2)
    assert not bad["ok"] and bad["state"] == "problems" and bad["problems"]


INSERTER = """
import asyncio, sys
from pathlib import Path
from lightkeeper import config
from lightkeeper.rag.runtime import RagRuntime
stop, count = Path(sys.argv[1]), Path(sys.argv[2])
async def main():
    async with RagRuntime(config.load(read_system=False)) as rt:
        i = 0
        print("READY", flush=True)
        while not stop.exists():
            await rt.insert("alice", [f"Report {i}: the harbour of Port{i} ships copper to "
                                      f"Town{i}. Captain{i} leads the fleet of Port{i}."],
                            [f"report{i}.txt"])
            i += 1
            count.write_text(str(i))
asyncio.run(main())
"""


def _consistent(user_dir: Path) -> int:
    """LightRAG's stores agree with each other (all written by the same finished inserts)."""
    import json

    docs = json.loads((user_dir / "kv_store_full_docs.json").read_text())
    status = json.loads((user_dir / "kv_store_doc_status.json").read_text())
    chunks = json.loads((user_dir / "kv_store_text_chunks.json").read_text())
    vdb = json.loads((user_dir / "vdb_chunks.json").read_text())
    assert set(docs) == {d for d, s in status.items() if s["status"] == "processed"}
    assert {c["full_doc_id"] for c in chunks.values()} == set(docs)
    assert {row["__id__"] for row in vdb["data"]} == set(chunks)
    return len(docs)


def test_inserts_during_backups_restore_to_consistent_loadable_workspaces(
        lk_env: dict[str, str], lk_cfg: Config, tmp_path: Path) -> None:
    from tests.backup.conftest import run_child
    from tests.backup.test_consistency import _next_gen, _wait_ready

    data = lk_cfg.path("paths.data_root")
    stop, count = tmp_path / "stop", tmp_path / "count"
    proc = run_child(INSERTER, str(stop), str(count))
    repo = Repository.init(tmp_path / "repo", tmp_path / "key")
    snaps = []
    try:
        _wait_ready(proc)
        last = 0
        for _ in range(3):
            last = _next_gen(count, last, timeout=120)
            snaps.append(run_backup(repo, BackupOptions(data))["snapshot_id"])
    finally:
        stop.touch()
        proc.wait(120)
    assert proc.returncode == 0, proc.stderr.read()
    seen = []
    for i, sid in enumerate(snaps):
        target = tmp_path / f"r{i}"
        restore(repo, sid, RestoreOptions(target=target))
        n = _consistent(target / "alice")
        assert repo.read_snapshot(sid)["users"]["alice"]["documents"] == n
        seen.append(n)
        cfg = config_mod.load(overrides=[("paths.data_root", str(target))], read_system=False)
        [answer] = _ask(cfg, "alice", [("What does the harbour ship?", "naive")])
        assert "copper" in answer
    assert seen == sorted(seen) and seen[-1] > seen[0]
