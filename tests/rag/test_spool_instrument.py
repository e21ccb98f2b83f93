"""Spool records: format, one write per line, rotation; attribution of model time to operations."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from pathlib import Path

import pytest

from lightkeeper.rag.instrument import Instrument, report_usage, wrap_embed, wrap_llm
from lightkeeper.rag.spool import REQUIRED_FIELDS, SpoolWriter

NAME = re.compile(r"^ops-.+-(\d+)-(\d+)-(\d{6})\.jsonl$")


def read_records(spool_dir: Path) -> list[dict]:
    out = []
    for f in sorted(spool_dir.glob("ops-*.jsonl")):
        data = f.read_bytes()
        assert data.endswith(b"\n")
        out += [json.loads(line) for line in data.splitlines()]
    return out


def test_records_have_every_field_and_file_names_follow_the_contract(tmp_path: Path) -> None:
    inst = Instrument(SpoolWriter(tmp_path), tuning_version=7, run_id="run-1")
    with inst.op("alice", "query", "mix") as rec:
        rec.result_bytes = 12
    with pytest.raises(ValueError):
        with inst.op("alice", "insert"):
            raise ValueError("boom")
    recs = read_records(tmp_path)
    assert [r["op"] for r in recs] == ["query", "insert"]
    for r in recs:
        assert set(REQUIRED_FIELDS) <= set(r)
        assert r["v"] == 1 and r["pid"] == os.getpid() and r["tuning_version"] == 7
        assert r["run_id"] == "run-1" and len(r["op_id"]) == 32
    assert recs[0]["outcome"] == "ok" and recs[0]["mode"] == "mix" and recs[0]["result_bytes"] == 12
    assert recs[1]["outcome"] == "error" and recs[1]["error_class"] == "ValueError"
    (name,) = [p.name for p in tmp_path.iterdir()]
    m = NAME.match(name)
    assert m and int(m.group(1)) == os.getpid() and m.group(3) == "000000"
    # <start> is the process start time, so a reader can tell a reused pid from the writer
    import psutil
    assert abs(int(m.group(2)) - psutil.Process().create_time()) <= 1
    assert name.startswith(f"ops-{socket.gethostname()}-")


def test_rotation_by_size_keeps_every_record(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, max_bytes=4096)
    inst = Instrument(writer)
    for i in range(200):
        with inst.op(f"u{i % 3}", "query", "naive"):
            pass
    writer.close()
    files = sorted(tmp_path.glob("ops-*.jsonl"))
    assert len(files) > 1
    seqs = [int(NAME.match(f.name).group(3)) for f in files]
    assert seqs == list(range(len(files)))
    assert all(f.stat().st_size <= 4096 for f in files)
    assert len(read_records(tmp_path)) == 200
    assert len({r["op_id"] for r in read_records(tmp_path)}) == 200


def test_unwritable_spool_drops_records_but_not_the_operation(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("")
    writer = SpoolWriter(target)
    inst = Instrument(writer)
    with inst.op("alice", "query", "mix"):
        pass
    assert writer.dropped == 1 and writer.written == 0


def test_model_time_is_attributed_to_the_enclosing_operation_under_concurrency() -> None:
    async def slow_llm(prompt, system_prompt=None, history_messages=None, **kw):
        await asyncio.sleep(0.01)
        if prompt == "usage":
            report_usage(100, 7)
        return "x" * 40

    async def embed(texts, **kw):
        await asyncio.sleep(0.005)
        return [[0.0]] * len(texts)

    llm, emb = wrap_llm(slow_llm), wrap_embed(embed)
    inst = Instrument(None)
    records: dict[str, dict] = {}

    async def op(user: str, llm_calls: int, embed_items: int) -> None:
        with inst.op(user, "query", "mix"):
            # model calls from child tasks, as LightRAG makes them
            await asyncio.gather(*(asyncio.create_task(llm("p" * 400)) for _ in range(llm_calls)))
            await emb(["t"] * embed_items)
            await llm("usage")
        records[user] = inst.last

    async def main() -> None:
        await asyncio.gather(op("a", 1, 2), op("b", 5, 9))

    asyncio.run(main())
    a, b = records["a"], records["b"]
    assert (a["llm_calls"], b["llm_calls"]) == (2, 6)
    assert (a["embed_calls"], a["embed_items"], b["embed_items"]) == (1, 2, 9)
    # estimated tokens for the plain calls (chars / 4) plus the reported usage
    assert a["tokens_in"] == 100 + 100 and a["tokens_out"] == 10 + 7
    assert b["tokens_in"] == 5 * 100 + 100
    assert a["llm_s"] > 0 and b["llm_s"] > a["llm_s"]
    assert a["duration_s"] >= a["embed_s"]
    # outside an operation nothing is recorded and nothing fails
    assert asyncio.run(llm("p")) == "x" * 40


@pytest.mark.parametrize("record", [
    {"v": 1, "user": "alice", "mode": None, "ok": True, "no": False, "n": 12, "x": 0.1,
     "big": 1e300, "small": 5e-324, "neg": -3.25},
    {"user": 'quote"back\\slash\nnewline', "run_id": "ünïcode ✓", "e": ""},
    {"nan": float("nan"), "inf": float("inf"), "bad key!": 1},
    {"nested": {"a": [1, 2]}, "t": (1, 2)},
])
def test_fast_encoding_is_exactly_json(record) -> None:
    from lightkeeper.rag.spool import encode_record

    line = encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    expected = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    assert line == expected
    if "nan" not in record:
        assert json.loads(line) == json.loads(expected)


def test_op_ids_are_uuid4() -> None:
    import uuid

    from lightkeeper.rag.instrument import new_op_id

    ids = {new_op_id() for _ in range(1000)}
    assert len(ids) == 1000
    for i in list(ids)[:50]:
        u = uuid.UUID(hex=i)
        assert u.version == 4 and u.hex == i
