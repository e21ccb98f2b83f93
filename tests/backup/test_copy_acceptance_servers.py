"""The bar against real servers: 20 backups during a REST insert loop against LightRAG 1.5.7's own
server application, unwrapped (``python -m lightkeeper.rag.stock_server``: no gate, no
instrumentation), on ``lightkeeper offline-llm``. Every restored copy has stores that agree; the
copies that could not be taken quietly are ``partial`` with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.backup.storecheck import check_directory
from tests.conftest import free_port
from tests.rag.servers import Server, stock_env, wait_http

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

CORPUS = Path(__file__).resolve().parents[2] / "rag" / "corpus" / "docs.json"


@pytest.fixture
def offline_llm(tmp_path: Path) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
    env.update(LIGHTKEEPER_PATHS__STATE_DIR=str(tmp_path / "state"),
               XDG_CONFIG_HOME=str(tmp_path / "xdg-config"))
    srv = Server(["offline-llm", "--port", "0", "--embed-dim", "64", "--llm-ms", "5"], env,
                 tmp_path / "offline-llm.log").start()
    yield srv
    srv.stop()


class InsertLoop(threading.Thread):
    """POST /documents/text in bursts (5 documents, then a pause), as clients do."""

    def __init__(self, base: str, pause: float) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.pause = pause
        self.stop = threading.Event()
        self.sent = 0
        self.errors: list[str] = []
        self.texts = [d["text"] for d in json.loads(CORPUS.read_text())["documents"]]

    def run(self) -> None:
        while not self.stop.is_set():
            text = f"{self.texts[self.sent % len(self.texts)]}\n\nREST bulletin {self.sent}."
            req = urllib.request.Request(
                self.base + "/documents/text",
                data=json.dumps({"text": text, "file_source": f"b{self.sent}.txt"}).encode(),
                headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    r.read()
                self.sent += 1
            except OSError as exc:
                self.errors.append(str(exc))
                if len(self.errors) > 20:
                    return
            if self.sent % 5 == 0:
                self.stop.wait(self.pause)
            else:
                self.stop.wait(0.05)


def _processed(udir: Path) -> int:
    try:
        status = json.loads((udir / "kv_store_doc_status.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return sum(1 for v in status.values() if v.get("status") == "processed")


def test_twenty_backups_during_rest_inserts_to_an_unwrapped_stock_server(
        offline_llm: Server, tmp_path: Path, repo: Repository) -> None:
    data = tmp_path / "data"
    user = "stock" + uuid.uuid4().hex[:6]
    (data / user).mkdir(parents=True)
    port = free_port()
    env = stock_env(offline_llm.env, offline_llm.url, data, user, port, dim=64)
    with open(tmp_path / "stock.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "lightkeeper.rag.stock_server"],
                                  cwd=tmp_path, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    loop = InsertLoop(base, pause=2.5)
    results = []
    try:
        wait_http(base + "/health", server)
        loop.start()
        deadline = time.monotonic() + 120
        while _processed(data / user) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(20):
            results.append(run_backup(repo, BackupOptions(data, quiet_seconds=0.5, retries=2,
                                                          retry_delay=0.05)))
            time.sleep(0.3)
    finally:
        loop.stop.set()
        loop.join(60)
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    assert loop.sent >= 20, (loop.sent, loop.errors[:3],
                             (tmp_path / "stock.log").read_text()[-2000:])
    partial = 0
    documents = set()
    for i, s in enumerate(results):
        u = repo.read_snapshot(s["snapshot_id"])["users"].get(user)
        if s.get("state") == "partial":
            partial += 1
            reason = s["errors"][user]
            assert any(r in reason for r in ("not quiet", "stores disagree",
                                             "changed while being copied")), reason
            assert u["check"]["accepted"] is False
        else:
            assert u["check"]["accepted"] and u["check"]["stores"]["ok"], u
            documents.add(u["check"]["stores"]["documents"])
        if u is None or not u.get("files"):
            continue  # nothing good to carry yet
        out = tmp_path / f"restore{i}"
        restore(repo, s["snapshot_id"], RestoreOptions(target=out, users=[user]))
        r = check_directory(out / user)
        assert r.ok and r.checked, (i, r.problems)
    print(f"stock server: {partial} of {len(results)} backups partial, "
          f"{loop.sent} documents sent, accepted copies held {sorted(documents)} documents")
    assert len(documents) > 1, "no copy was accepted while the server inserted"


def test_twenty_backups_during_rest_inserts_to_lightkeeper_serve(
        offline_llm: Server, tmp_path: Path, repo: Repository) -> None:
    """The same loop against ``lightkeeper serve`` (gated writes): every restored copy agrees,
    and process discovery names the server by its workspace, gated, not an ungated writer.

    No backup of the served user may end ``partial``, and each copy is accepted on its first
    attempt: every file the served app writes is written under the gate (pipeline documents
    from their first storage write to their last flush, and each storage flush besides), so
    the backup, holding the gate, finds no file newer than the gate's stamp, nothing changes
    while it copies, and the stores agree. A retry here means a write escaped the gate (before
    the storages were gated, the pipeline's ``doc_status`` updates did: "the directory was not
    quiet (kv_store_doc_status.json modified ...)", and up to 11 of 20 backups ended partial
    under load)."""
    from lightkeeper.collectors.processes import ProcessCollector

    data = tmp_path / "data"
    user = "serve" + uuid.uuid4().hex[:6]
    (data / user).mkdir(parents=True)
    url = offline_llm.url
    env = {**offline_llm.env, "LIGHTKEEPER_PATHS__DATA_ROOT": str(data),
           "LIGHTKEEPER_PATHS__SPOOL_DIR": str(tmp_path / "spool"),
           "LLM_BINDING": "openai", "LLM_BINDING_HOST": url, "LLM_MODEL": "m",
           "LLM_BINDING_API_KEY": "unused", "EMBEDDING_BINDING": "openai",
           "EMBEDDING_BINDING_HOST": url, "EMBEDDING_MODEL": "e",
           "EMBEDDING_BINDING_API_KEY": "unused", "EMBEDDING_DIM": "64",
           "LOG_DIR": str(tmp_path), "INPUT_DIR": str(tmp_path / "inputs"),
           "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken")}
    srv = Server(["serve", "--user", user, "--host", "127.0.0.1", "--port", "0"], env,
                 tmp_path / "serve.log").start(timeout=180)
    base = srv.url.removesuffix("/")
    # short pauses: the gate, not a quiet window, gives each backup its consistent moment
    loop = InsertLoop(base, pause=0.5)
    results = []
    try:
        loop.start()
        deadline = time.monotonic() + 120
        while _processed(data / user) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        c = ProcessCollector(interval=1, discover_interval=0, data_root=data,
                             spool_dir=tmp_path / "spool")
        c.collect()
        mine = [r for r in c.snapshot() if r["pid"] == srv.proc.pid]
        assert [r["label"] for r in mine] == [f"serve:{user}"], mine
        assert mine[0]["gated"] and not mine[0]["ungated_writer"]
        for _ in range(20):
            results.append(run_backup(repo, BackupOptions(data, quiet_seconds=0.5, retries=2,
                                                          retry_delay=0.05)))
            time.sleep(0.3)
    finally:
        loop.stop.set()
        loop.join(60)
        srv.stop()
    assert loop.sent >= 20, (loop.sent, loop.errors[:3], srv.output()[-2000:])
    partial = [(i, s["errors"]) for i, s in enumerate(results) if s.get("state") == "partial"]
    documents = set()
    retried = []
    for i, s in enumerate(results):
        u = repo.read_snapshot(s["snapshot_id"])["users"][user]
        check = u["check"]
        assert check["accepted"] and check["stores"]["ok"], (i, s.get("errors"), check)
        assert check["quiet"]["gated_writes"], check
        if check["attempts"] != 1:
            retried.append((i, check["attempts"]))
        documents.add(check["stores"]["documents"])
        out = tmp_path / f"restore{i}"
        restore(repo, s["snapshot_id"], RestoreOptions(target=out, users=[user]))
        r = check_directory(out / user)
        assert r.ok and r.checked, (i, r.problems)
    print(f"lightkeeper serve: {len(partial)} of {len(results)} backups partial, "
          f"{len(retried)} retried, {loop.sent} documents sent, accepted copies held "
          f"{sorted(documents)} documents")
    assert not partial, partial
    assert not retried, ("copies retried: a write escaped the gate", retried)
    assert len(documents) > 1, "no copy was taken while the server inserted"
