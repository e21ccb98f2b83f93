"""The LightRAG runtime on real working directories with the offline providers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lightkeeper.ids import InvalidUserId
from lightkeeper.rag import gate, inventory
from lightkeeper.rag.runtime import MODES, RagRuntime, UnknownUser, workspaces_held

REPO = Path(__file__).resolve().parents[2]

ALICE = ["Captain Ilya Brenn commands the ferry Marigold. The ferry Marigold sails from "
         "Port Aubel to Selby Cove every morning.",
         "Keeper Mara Voss tends Gull Point Light on Verran Island."]
BOB = ["Zephyrine Quorvath brews saffron cordials in the village of Umbrelle. "
       "Zephyrine Quorvath sells saffron cordials at the Umbrelle fair."]


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("pool_size", [1, 8])
def test_users_never_see_each_others_data_in_any_mode(cfg, pool_size: int) -> None:
    async def main() -> dict[tuple[str, str], str]:
        answers = {}
        # pool of one: every switch evicts and reloads; pool of eight: both stay open together
        async with RagRuntime(cfg, pool_size=pool_size) as rt:
            await rt.insert("alice", ALICE)
            await rt.insert("bob", BOB)
            for mode in MODES:
                answers[("alice", mode)] = await rt.query(
                    "alice", "Who brews saffron cordials in Umbrelle?", mode)
                answers[("bob", mode)] = await rt.query(
                    "bob", "Who commands the ferry Marigold?", mode)
                answers[("bob2", mode)] = await rt.query(
                    "bob", "Who brews saffron cordials in Umbrelle?", mode)
            if pool_size == 1:
                assert rt.evictions > 0 and workspaces_held() <= 1
            else:
                assert rt.evictions == 0 and workspaces_held() == 2
        return answers

    answers = run(main())
    for mode in MODES:
        assert "Zephyrine" not in answers[("alice", mode)], mode
        assert "Umbrelle" not in answers[("alice", mode)], mode
        assert "Marigold" not in answers[("bob", mode)], mode
        assert "Brenn" not in answers[("bob", mode)], mode
    # the data is there for its owner (bypass mode asks the model without retrieval)
    for mode in ("naive", "local", "global", "hybrid", "mix"):
        assert "Zephyrine Quorvath" in answers[("bob2", mode)], mode
    # each user's files live in its own directory
    data = cfg.path("paths.data_root")
    assert "Zephyrine" not in (data / "alice" / "kv_store_full_docs.json").read_text()
    assert "Marigold" not in (data / "bob" / "kv_store_full_docs.json").read_text()


def test_query_after_insert_never_returns_an_answer_cached_before_it(cfg) -> None:
    question = "Who repaired the foghorn at Tarn Rock?"
    new_doc = "Engineer Rosalind Hale repaired the foghorn at Tarn Rock during the gale."

    async def main() -> None:
        async with RagRuntime(cfg) as rt:
            await rt.insert("alice", ALICE)
            before = {}
            for mode in ("naive", "local", "global", "hybrid", "mix"):
                before[mode] = await rt.query("alice", question, mode)
                again = await rt.query("alice", question, mode)
                assert again == before[mode]
                assert rt.instrument.last["llm_calls"] == 0, "second ask must hit the cache"
                assert "Rosalind" not in before[mode]
            await rt.insert("alice", [new_doc])
            for mode in before:
                after = await rt.query("alice", question, mode)
                assert "Rosalind Hale" in after, (mode, after)

    run(main())


def test_insert_by_another_process_invalidates_this_processs_cache(cfg, child_env) -> None:
    question = "Who repaired the foghorn at Tarn Rock?"
    doc = Path(cfg.path("paths.state_dir")) / "new.txt"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("Engineer Rosalind Hale repaired the foghorn at Tarn Rock during the gale.")

    async def main() -> None:
        async with RagRuntime(cfg) as rt:
            await rt.insert("alice", ALICE)
            first = await rt.query("alice", question, "mix")
            assert "Rosalind" not in first
            # a different process (the CLI) inserts into the same user
            subprocess.run([sys.executable, "-m", "lightkeeper.cli.main", "rag", "insert",
                            "--user", "alice", str(doc)], env=child_env, cwd=REPO,
                           check=True, capture_output=True, timeout=120)
            after = await rt.query("alice", question, "mix")
            assert "Rosalind Hale" in after
            assert rt.reloads >= 1
            # and this process's next write keeps the other process's document
            await rt.insert("alice", ["Pilot Nadia Orsk guides ships through the Narrows."])
        counts = inventory.user_summary(cfg.path("paths.data_root"), "alice")
        assert counts["documents"] == 4

    run(main())


KILLED_INSERT = textwrap.dedent("""
    import asyncio, sys
    from lightkeeper import config
    from lightkeeper.rag.runtime import RagRuntime
    from lightkeeper.rag.workload import bench_documents
    state = sys.argv[1]
    cfg = config.load(overrides=[("paths.state_dir", state), ("paths.data_root", state + "/data"),
                                 ("paths.spool_dir", state + "/spool"),
                                 ("rag.simulate_llm_ms", "30")], env={}, read_system=False)
    async def main():
        async with RagRuntime(cfg) as rt:
            await rt.insert("alice", ["Keeper Mara Voss tends Gull Point Light."])
            print("first", flush=True)
            docs = bench_documents(40)
            await rt.insert("alice", [t for t, _ in docs], [p for _, p in docs])
            print("finished", flush=True)
    asyncio.run(main())
""")


def _gate_held(data_root: Path, user: str) -> bool:
    try:
        with gate.read_gate(data_root, user, timeout=0):
            return False
    except gate.GateTimeout:
        return True


def test_insert_killed_with_sigkill_leaves_a_loadable_directory(cfg) -> None:
    state = cfg.path("paths.state_dir")
    data = cfg.path("paths.data_root")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_INSERT, str(state)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "first"
        # wait until the second insert is writing: gate held and the cache growing
        cache = data / "alice" / "kv_store_llm_response_cache.json"
        size0 = cache.stat().st_size
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _gate_held(data, "alice") and cache.stat().st_size > size0:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the insert never started writing")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for f in (data / "alice").glob("*.json"):
        json.loads(f.read_text())  # every file is whole (LightRAG replaces files atomically)
    assert not _gate_held(data, "alice")  # the kernel released the dead writer's lock

    async def main() -> None:
        async with RagRuntime(cfg) as rt:
            answer = await rt.query("alice", "Who tends Gull Point Light?", "naive")
            assert "Mara Voss" in answer
            res = await rt.insert("alice", ["Pilot Nadia Orsk guides ships through the Narrows."])
            assert res["failed"] == []
            assert "Nadia Orsk" in await rt.query("alice", "Who guides ships through the Narrows?",
                                                  "mix")

    run(main())


def test_pool_bounds_open_workspaces_and_reports_memory(cfg) -> None:
    async def main() -> None:
        async with RagRuntime(cfg, pool_size=2) as rt:
            for user in ("u1", "u2", "u3"):
                await rt.insert(user, [f"Keeper {user.upper()} Voss tends the light of {user}."])
            stats = rt.stats()
            assert len(stats["open_users"]) == 2 and stats["open_users"] == ["u2", "u3"]
            assert stats["workspaces_held"] == 2 and stats["evictions"] == 1
            assert stats["rss_bytes"] > 10_000_000
            assert "U1" in await rt.query("u1", "Who tends the light of u1?", "naive")
            assert rt.stats()["open_users"] == ["u3", "u1"]

    run(main())


def test_bad_input_is_refused_clearly(cfg) -> None:
    async def main() -> None:
        async with RagRuntime(cfg) as rt:
            with pytest.raises(InvalidUserId):
                await rt.insert("../escape", ["x"])
            with pytest.raises(UnknownUser, match="no LightRAG data"):
                await rt.query("nobody", "anything?", "mix")
            await rt.insert("alice", ALICE)
            with pytest.raises(ValueError, match="unknown query mode"):
                await rt.query("alice", "anything?", "fast")
            with pytest.raises(ValueError, match="nothing to insert"):
                await rt.insert("alice", ["   "])
        assert not (cfg.path("paths.data_root").parent / "escape").exists()
        assert not (cfg.path("paths.data_root") / "nobody").exists()

    run(main())


def test_every_operation_is_spooled_with_model_shares(cfg) -> None:
    async def main() -> None:
        async with RagRuntime(cfg, run_id="r1") as rt:
            await rt.insert("alice", ALICE)
            await rt.query("alice", "Who commands the ferry Marigold?", "hybrid")
            doc = (await rt.insert("alice", ["Bread is baked at dawn in Selby Cove."]))["ids"][0]
            await rt.delete("alice", doc)

    run(main())
    recs = []
    for f in sorted(cfg.path("paths.spool_dir").glob("ops-*.jsonl")):
        recs += [json.loads(line) for line in f.read_text().splitlines()]
    assert [(r["op"], r["mode"]) for r in recs] == [
        ("insert", None), ("query", "hybrid"), ("insert", None), ("delete", None)]
    assert all(r["outcome"] == "ok" and r["run_id"] == "r1" for r in recs)
    ins, query = recs[0], recs[1]
    assert ins["llm_calls"] >= 2 and ins["embed_calls"] >= 1 and ins["embed_items"] >= 2
    assert query["llm_calls"] == 2  # keywords + answer
    assert query["tokens_in"] > 100 and query["result_bytes"] > 0
    assert 0 < query["llm_s"] + query["embed_s"] < query["duration_s"]


def test_two_runtimes_in_one_process_cannot_hold_the_same_user(cfg) -> None:
    async def main() -> None:
        async with RagRuntime(cfg) as a, RagRuntime(cfg) as b:
            await a.insert("alice", ALICE)
            with pytest.raises(ValueError, match="already open in another RagRuntime"):
                await b.query("alice", "Who tends Gull Point Light?", "naive")
            await a.evict("alice")
            assert "Mara Voss" in await b.query("alice", "Who tends Gull Point Light?", "naive")

    run(main())


def test_changed_embedding_dimension_is_refused_clearly(tmp_path: Path) -> None:
    from tests.rag.conftest import make_cfg

    state = tmp_path / "state"

    async def main() -> None:
        async with RagRuntime(make_cfg(state)) as rt:
            await rt.insert("alice", ALICE)
        async with RagRuntime(make_cfg(state, rag__embed_dim="128")) as rt:
            with pytest.raises(ValueError, match="cannot open the LightRAG workspace of 'alice'"):
                await rt.query("alice", "Who tends Gull Point Light?", "naive")
        async with RagRuntime(make_cfg(state)) as rt:  # the data is intact
            assert "Mara Voss" in await rt.query("alice", "Who tends Gull Point Light?", "naive")

    run(main())


def test_duplicate_and_empty_documents_keep_their_file_paths(cfg) -> None:
    async def main() -> dict:
        async with RagRuntime(cfg) as rt:
            res = await rt.insert("alice", [ALICE[0], "  ", ALICE[0], ALICE[1]],
                                  ["a.txt", "blank.txt", "dup.txt", "b.txt"])
            statuses = await rt._pool["alice"].rag.doc_status.get_by_ids(res["ids"])
            return {"res": res, "paths": [s["file_path"] for s in statuses]}

    out = run(main())
    assert out["res"]["documents"] == 2 and out["paths"] == ["a.txt", "b.txt"]


def test_instances_follow_the_active_tuning_version(cfg) -> None:
    from lightkeeper.tuning.activefile import write_active
    from lightkeeper.tuning.tuningset import TuningSet

    path = cfg.path("paths.tuning_file")
    write_active(path, 1, TuningSet())

    async def main() -> list[dict]:
        records = []
        async with RagRuntime(cfg, watch_tuning=True) as rt:
            await rt.insert("alice", ALICE)
            records.append(rt.instrument.last)
            v2 = TuningSet()
            v2.params["top_k"] = 7
            v2.users["alice"] = {"chunk_top_k": 3}
            write_active(path, 2, v2)
            deadline = time.monotonic() + 30
            while rt.tuning_version != 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert rt.tuning_version == 2
            await rt.query("alice", "Who commands the ferry Marigold?", "mix")
            records.append(rt.instrument.last)
            entry = rt._pool["alice"]
            assert entry.version == 2 and entry.params["top_k"] == 7
            assert entry.params["chunk_top_k"] == 3 and entry.rag.top_k == 7
            assert rt.reloads == 1
        return records

    first, second = run(main())
    assert first["tuning_version"] == 1 and second["tuning_version"] == 2
