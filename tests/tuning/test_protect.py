"""Embedding changes on a data root with real LightRAG vectors are refused unless acknowledged."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from lightkeeper.services import CallError
from lightkeeper.tuning import calls, protect, versions
from lightkeeper.tuning.activefile import read_active
from tests.tuning.tuning_lightrag_dir import build_lightrag, make_in_subprocess


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real LightRAG working directory (user alice, 64-dimensional vectors)."""
    root = tmp_path_factory.mktemp("built")
    return make_in_subprocess(root, "alice", 64)


@pytest.fixture
def data_root(services, built):
    root = services.cfg.path("paths.data_root")
    shutil.copytree(built, root / "alice")
    return root


def test_scan_finds_real_lightrag_vectors(data_root):
    (data_root / "emptyuser").mkdir()
    (data_root / "emptyuser" / "vdb_chunks.json").write_text(
        json.dumps({"embedding_dim": 64, "data": [], "matrix": ""}))
    (data_root / "Not A User").mkdir()
    found = protect.users_with_vectors(data_root)
    assert list(found) == ["alice"]
    files = {f.path.name: f for f in found["alice"]}
    assert "vdb_entities.json" in files
    assert files["vdb_entities.json"].embedding_dim == 64
    assert files["vdb_entities.json"].vectors > 0


def test_large_files_are_judged_from_their_head(data_root, monkeypatch):
    monkeypatch.setattr(protect, "_FULL_PARSE_BYTES", 0)
    vf = protect.scan_vector_file(data_root / "alice" / "vdb_entities.json")
    assert vf is not None and vf.embedding_dim == 64 and vf.vectors is None


def test_lightrag_itself_refuses_other_dimensions(data_root):
    """The failure the protection prevents: LightRAG cannot open these vectors at dim 32."""
    shutil.copytree(data_root / "alice", data_root / "zed")  # a workspace this process never had

    async def reopen():
        rag = build_lightrag(data_root, "zed", 32)
        try:
            await rag.initialize_storages()
        finally:
            await rag.finalize_storages()

    with pytest.raises(AssertionError, match="Embedding dim mismatch"):
        asyncio.run(reopen())


def test_dimension_change_is_refused_without_acknowledgement(services, data_root):
    path = services.cfg.path("paths.tuning_file")
    calls.ensure_initialized(services)
    before = path.read_bytes()
    with pytest.raises(CallError) as info:
        calls.set_params(services, {"changes": {"embedding_dim": 128}, "note": "bigger"})
    msg = str(info.value)
    assert info.value.status == 409
    assert "alice" in msg and "dim 64" in msg and "--acknowledge-rebuild" in msg
    assert versions.latest(services.store).version == 1
    assert path.read_bytes() == before

    v = calls.validate_call(services, {"changes": {"embedding_dim": 128}})
    assert v["ok"] is False and "embedding_dim" in v["errors"]

    r = calls.set_params(services, {"changes": {"embedding_dim": 128}, "note": "rebuild planned",
                                    "acknowledge_rebuild": True})
    assert r["version"] == 2 and r["acknowledged_rebuild"] == ["embedding_dim"]
    audit = [a for a in services.audits if a["event"] == "tuning.changed"][-1]
    assert audit["acknowledged_rebuild"] == ["embedding_dim"]
    assert read_active(path)[1]["embedding_dim"] == 128


def test_naming_the_dimension_the_vectors_have_is_allowed(services, data_root):
    r = calls.set_params(services, {"changes": {"embedding_dim": 64}, "note": "pin it"})
    assert r["changed"] and r["version"] == 2


def test_model_change_is_refused_too(services, data_root):
    with pytest.raises(CallError, match="vectors from two models"):
        calls.set_params(services, {"changes": {"embedding_model": "bge-m3"}, "note": "x"})


def test_users_without_vectors_may_change(services, data_root):
    r = calls.set_params(services, {"changes": {"embedding_dim": 384}, "note": "new user",
                                    "user": "bob"})
    assert r["version"] == 2
    with pytest.raises(CallError, match="alice"):
        calls.set_params(services, {"changes": {"embedding_dim": 384}, "note": "x",
                                    "user": "alice"})


def test_revert_across_a_dimension_change_needs_acknowledgement(services, data_root):
    calls.set_params(services, {"changes": {"embedding_dim": 64}, "note": "pin"})
    with pytest.raises(CallError, match="embedding_dim"):
        calls.revert(services, {"version": 1, "note": "back to provider default"})
    assert calls.revert(services, {"version": 1, "note": "ok", "acknowledge_rebuild": True})[
        "version"] == 3
