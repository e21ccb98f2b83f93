"""``lightkeeper serve``: two real servers (two workspaces) against ``lightkeeper offline-llm``,
driven over HTTP; their operations reach a real agent's store; the write gate; restart."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.rag.servers import Server

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

MODES = ("naive", "local", "global", "hybrid", "mix", "bypass")
DOCS = [
    "Keeper Mara Voss tends Gull Point Light for the Saltmere Lighthouse Guild.",
    "Captain Ilse Brand sails the Heron from Port Ellery to Cape Morrow.",
    "The Fog Bell at Cape Morrow rings at dusk when the Saltmere Lighthouse Guild asks.",
    "Harbourmaster Tobias Reed keeps the Port Ellery Ledger in the Tide Office.",
]


def http(method: str, url: str, body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 120) -> Any:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"} if raw is None else {}
    req = urllib.request.Request(url, data=data, method=method, headers={**h, **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        text = r.read().decode()
    try:
        return json.loads(text)
    except ValueError:
        return text


def wait_for(fn: Any, timeout: float = 120.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or fn}")
        time.sleep(0.2)


def docs_by_status(base: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    page = http("POST", base + "/documents/paginated", {"page": 1, "page_size": 100})
    for d in page["documents"]:
        out.setdefault(str(d["status"]), []).append(d)
    return out


def pipeline_idle(base: str) -> bool:
    st = http("GET", base + "/documents/pipeline_status")
    return not st.get("busy") and not st.get("pending_enqueues")


@pytest.fixture
def llm_env(lk_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **lk_env, "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken")}


@pytest.fixture(scope="module")
def offline_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One model endpoint for the module's servers: it keeps nothing between requests (each
    answer depends only on the request) and writes nothing under lightkeeper's paths, so the
    tests share it instead of starting one each (a second of CPU per start)."""
    tmp = tmp_path_factory.mktemp("offline-llm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
    env.update({"LIGHTKEEPER_PATHS__STATE_DIR": str(tmp / "state"),
                "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
                "TIKTOKEN_CACHE_DIR": str(tmp / "tiktoken")})
    srv = Server(["offline-llm", "--port", "0", "--embed-dim", "128", "--llm-ms", "20"],
                 env, tmp / "offline-llm.log").start()
    yield srv
    srv.stop()


def serve_env(llm_env: dict[str, str], llm: Server, tmp_path: Path) -> dict[str, str]:
    return {**llm_env, "LLM_BINDING": "openai", "LLM_BINDING_HOST": llm.url, "LLM_MODEL": "m",
            "LLM_BINDING_API_KEY": "unused", "EMBEDDING_BINDING": "openai",
            "EMBEDDING_BINDING_HOST": llm.url, "EMBEDDING_MODEL": "e",
            "EMBEDDING_BINDING_API_KEY": "unused", "EMBEDDING_DIM": "128",
            "MAX_PARALLEL_INSERT": "1", "LOG_DIR": str(tmp_path),
            "INPUT_DIR": str(tmp_path / "inputs")}


@pytest.fixture
def serve(llm_env: dict[str, str], offline_llm: Server, tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(user: str, *extra: str) -> Server:
        env = serve_env(llm_env, offline_llm, tmp_path)
        env["INPUT_DIR"] = str(tmp_path / f"inputs-{user}")
        srv = Server(["serve", "--user", user, "--host", "127.0.0.1", "--port", "0", *extra],
                     env, tmp_path / f"serve-{user}.log").start(timeout=180)
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


def upload(base: str, name: str, text: str) -> dict[str, Any]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n{text}\r\n"
            f"--{boundary}--\r\n").encode()
    return http("POST", base + "/documents/upload", raw=body,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def drive(base: str, docs: list[str]) -> dict[str, int]:
    """Inserts (text, texts, upload), a query per mode, a streamed query, a data query and a
    delete, over HTTP. Returns the expected count per 'op/mode'."""
    http("POST", base + "/documents/text", {"text": docs[0], "file_source": "a.txt"})
    http("POST", base + "/documents/texts", {"texts": docs[1:3],
                                             "file_sources": ["b.txt", "c.txt"]})
    upload(base, "d.txt", docs[3])
    wait_for(lambda: len(docs_by_status(base).get("processed", [])) == 4
             and pipeline_idle(base), what=f"4 processed documents at {base}")
    for mode in MODES:
        r = http("POST", base + "/query", {"query": "Who tends Gull Point Light?", "mode": mode})
        assert r["response"]
    streamed = http("POST", base + "/query/stream", {"query": "Who sails the Heron?",
                                                     "mode": "mix", "stream": True})
    lines = [json.loads(x) for x in streamed.splitlines() if x.strip()]
    assert "".join(x.get("response", "") for x in lines).strip()
    data = http("POST", base + "/query/data", {"query": "Cape Morrow", "mode": "local"})
    assert data["status"] == "success"
    victim = next(d for d in docs_by_status(base)["processed"] if d["file_path"] == "a.txt")
    r = http("DELETE", base + "/documents/delete_document", {"doc_ids": [victim["id"]]})
    assert r["status"] == "deletion_started", r
    wait_for(lambda: len(docs_by_status(base).get("processed", [])) == 3
             and pipeline_idle(base), what="the delete")
    expected = {f"query/{m}": 1 for m in MODES}
    expected["query/mix"] = 2
    expected["query/local-data"] = 1
    expected["insert/text"] = 3
    expected["insert/upload"] = 1
    expected["delete"] = 1
    return expected


def spool_records(spool: Path, user: str) -> list[dict[str, Any]]:
    out = []
    for f in sorted(spool.glob("ops-*.jsonl")):
        try:
            text = f.read_text()
        except FileNotFoundError:
            continue  # a finished writer's file, ingested and removed by the running agent
        for line in text.splitlines():
            r = json.loads(line)
            if r["user"] == user:
                out.append(r)
    return out


def test_two_servers_every_op_and_mode_reach_the_agent(agent: Any, run_cli: Any, serve: Any,
                                                       lk_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    a = serve("srv_a")
    b = serve("srv_b")
    assert a.info["workspace"] == "srv_a" and a.info["gated"] and a.info["instrumented"]
    data_root = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    assert a.info["user_dir"] == str(data_root / "srv_a")
    expected_a = drive(a.info["url"], DOCS)
    expected_b = drive(b.info["url"], DOCS[::-1])
    done = time.monotonic()

    def latency(user: str) -> dict[str, dict[str, Any]]:
        rows = json.loads(run_cli("metrics", "latency", "--user", user, "--json").stdout)
        return {(f"{r['op']}/{r['mode']}" if r["mode"] else r["op"]): r for r in rows}

    for user, expected in (("srv_a", expected_a), ("srv_b", expected_b)):
        def matches(user: str = user, expected: dict[str, int] = expected) -> Any:
            got = latency(user)
            return got if {k: r["count"] for k, r in got.items()} == expected else None

        got = wait_for(matches, timeout=10 + (time.monotonic() - done),
                       what=f"{user}'s operations in metrics latency")
        assert all(r["errors"] == 0 for r in got.values()), got
        # pipeline inserts carry their queue wait apart from their run time
        for key in ("insert/text", "insert/upload"):
            assert got[key]["queued"] == got[key]["count"]
            assert got[key]["queue_wait_p50"] is not None and got[key]["queue_wait_p50"] >= 0
        assert all(r["queued"] == 0 for k, r in got.items() if not k.startswith("insert"))
        # the model time is split out
        assert got["query/mix"]["share_llm"] > 0 and got["query/mix"]["share_embed"] > 0
        assert got["query/bypass"]["share_embed"] == 0

    # each insert record: started (ts) when its wait ended: created + wait = start, and its
    # duration is the run from there (the doc's status says when it was enqueued)
    spool = Path(agent.cfg.path("paths.spool_dir"))
    status = json.loads((data_root / "srv_a" / "kv_store_doc_status.json").read_text())
    created = sorted(datetime.fromisoformat(d["created_at"]).timestamp()
                     for d in status.values())
    inserts = sorted((r for r in spool_records(spool, "srv_a") if r["op"] == "insert"),
                     key=lambda r: r["ts"])
    assert len(inserts) == 4
    matched = 0
    for r in inserts:
        assert r["queue_wait_s"] >= 0 and r["duration_s"] > 0 and r["llm_calls"] >= 1
        enqueued = r["ts"] - r["queue_wait_s"]
        matched += any(abs(enqueued - c) < 1.0 for c in created)
    assert matched >= 3  # the deleted document's status is gone
    # the stream's op includes the streamed answer
    streamed = [r for r in spool_records(spool, "srv_a")
                if r["op"] == "query" and r["mode"] == "mix" and r["result_bytes"] > 0]
    assert len(streamed) == 2
    # the write gate was used: every finished write stamps the lock file with the server's pid
    stamp = (data_root / "srv_a" / ".lightkeeper.lock").read_text().split()
    assert int(stamp[0]) == a.info["pid"]
    b_stamp = (data_root / "srv_b" / ".lightkeeper.lock").read_text().split()
    assert int(b_stamp[0]) == b.info["pid"]


def test_restart_in_place_keeps_the_port_and_serves_requests_in_flight(serve: Any,
                                                                       lk_env: dict[str, str],
                                                                       run_cli: Any) -> None:
    import signal
    import threading

    a = serve("srv_r")
    base = a.info["url"]
    http("POST", base + "/documents/text", {"text": DOCS[0], "file_source": "a.txt"})
    wait_for(lambda: docs_by_status(base).get("processed") and pipeline_idle(base),
             what="the insert")
    results: list[Any] = []

    def ask() -> None:
        for _ in range(12):
            try:
                r = http("POST", base + "/query", {"query": "Who tends Gull Point Light?",
                                                   "mode": "naive"})
                results.append(bool(r.get("response")))
            except (urllib.error.URLError, OSError) as exc:
                results.append(exc)

    t = threading.Thread(target=ask)
    t.start()
    r = run_cli("serve", "--restart", "--user", "srv_r")
    assert "restart requested" in r.stdout
    t.join(300)
    assert results and all(x is True for x in results), results
    state = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "serve" / "srv_r.json"
    wait_for(lambda: json.loads(state.read_text()).get("restarts") == 1, what="the restart")
    assert json.loads(state.read_text())["port"] == a.info["port"]
    assert http("POST", base + "/query", {"query": "Gull Point", "mode": "naive"})["response"]
    assert a.stop(signal.SIGTERM) == 0
    assert not state.exists()


def test_bad_arguments_are_refused_clearly(run_cli: Any) -> None:
    r = run_cli("serve", "--user", "../etc", check=False)
    assert r.returncode == 2 and "invalid user id" in r.stderr
    r = run_cli("serve", "--user", "alice", "--workspace", "bob", check=False)
    assert r.returncode == 2 and "give the workspace once" in r.stderr
    r = run_cli("serve", "--user", "harbour-office", check=False)
    assert r.returncode == 2 and "would be stored as 'harbour_office'" in r.stderr
    r = run_cli("serve", "--restart", "--user", "nobody", check=False)
    assert r.returncode == 1 and "no lightkeeper serve runs for nobody" in r.stderr
    r = run_cli("rag", "users", "--bogus", check=False)
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr


def _files(udir: Path) -> dict[str, tuple[int, int, int]]:
    """The user's files (not the gate's, not LightRAG's in-progress ``.tmp.`` siblings)."""
    from lightkeeper.gate import GATE_FILES

    out = {}
    for p in udir.iterdir():
        if p.name in GATE_FILES or ".tmp." in p.name or not p.is_file():
            continue
        st = p.stat()
        out[p.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def test_every_file_write_of_the_served_app_holds_the_gate(serve: Any,
                                                           lk_env: dict[str, str]) -> None:
    """While REST inserts (text, texts, upload), queries and a delete run, a reader takes the
    user's gate over and over, as a backup does: no file may change while it holds the gate,
    and none may be newer than the gate's stamp (the last gated write's end). A write made
    outside the gate (before: the pipeline's parse and analyze stages wrote ``doc_status``
    ungated) fails one of the two."""
    import threading

    from lightkeeper.backup.gate import read_gate, read_stamp

    a = serve("srv_g")
    base = a.info["url"]
    udir = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"]) / "srv_g"
    stop = threading.Event()
    escaped: list[str] = []
    windows = 0

    def reader() -> None:
        nonlocal windows
        while not stop.is_set():
            with read_gate(udir, 60):
                stamp = read_stamp(udir).last_write_ns
                before = _files(udir)
                escaped.extend(f"{n} newer than the gate's stamp" for n, sig in before.items()
                               if sig[1] > stamp)
                stop.wait(0.3)
                after = _files(udir)
                escaped.extend(f"{n} changed while the gate was held" for n in
                               set(before) | set(after) if before.get(n) != after.get(n))
                windows += 1
            stop.wait(0.05)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        drive(base, DOCS)
        http("POST", base + "/documents/texts",
             {"texts": [f"{d} Bulletin {i}." for i, d in enumerate(DOCS)],
              "file_sources": [f"t{i}.txt" for i in range(len(DOCS))]})
        wait_for(lambda: len(docs_by_status(base).get("processed", [])) == 7
                 and pipeline_idle(base), what="the second batch")
    finally:
        stop.set()
        t.join(120)
    assert windows >= 5, windows
    assert not escaped, sorted(set(escaped))[:10]
