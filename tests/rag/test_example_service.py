"""The example service of docs/lightrag.md ("Your own service"), run as written: extracted
from the page, started as a process against ``lightkeeper offline-llm``, driven over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.rag.servers import REPO, Server
from tests.rag.test_serve import http

MARKER = "<!-- example: my_service.py -->"


def example_code() -> str:
    page = (REPO / "docs" / "lightrag.md").read_text()
    assert MARKER in page, "the example service left docs/lightrag.md"
    m = re.match(r"\s*```python\n(.*?)\n```", page.split(MARKER, 1)[1], flags=re.S)
    assert m, "the example marker is not followed by a python block"
    return m.group(1)


@pytest.fixture
def offline_llm(tmp_path: Path) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
    srv = Server(["offline-llm", "--port", "0", "--embed-dim", "64"], env,
                 tmp_path / "offline-llm.log").start()
    yield srv
    srv.stop()


def test_the_documented_example_service_runs_and_is_watched(offline_llm: Server,
                                                             tmp_path: Path) -> None:
    script = tmp_path / "my_service.py"
    script.write_text(example_code())
    data, spool, port = tmp_path / "data", tmp_path / "spool", free_port()
    env = {**offline_llm.env, "DATA_ROOT": str(data), "LIGHTKEEPER_SPOOL": str(spool),
           "LLM_URL": offline_llm.url, "EMBED_DIM": "64", "PORT": str(port),
           "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken")}
    with open(tmp_path / "service.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                                stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}/users"
        try:
            wait_http_post = base + "/svc_a/query"
            _wait_port(port, proc)
            r = http("POST", base + "/svc_a/documents",
                     {"texts": ["Keeper Mara Voss tends Gull Point Light for the Saltmere "
                                "Lighthouse Guild.", "Captain Ilse Brand sails the Heron."],
                      "ids": ["doc-1", "doc-2"]})
            assert r == {"inserted": 2}
            for mode in ("mix", "naive"):
                r = http("POST", wait_http_post, {"question": "Who tends Gull Point Light?",
                                                  "mode": mode})
                assert "Mara Voss" in r["answer"]
            assert http("DELETE", base + "/svc_a/documents/doc-2")["status"] == "success"
            with pytest.raises(urllib.error.HTTPError) as bad:
                http("POST", base + "/..%2Fetc/query", {"question": "x"})
            assert bad.value.code in (400, 404)
            with pytest.raises(urllib.error.HTTPError) as bad:
                http("POST", base + "/Not_Valid/query", {"question": "x"})
            assert bad.value.code == 400
        finally:
            proc.terminate()
            proc.wait(60)
    recs = [json.loads(line) for f in sorted(spool.glob("ops-*.jsonl"))
            for line in f.read_text().splitlines()]
    got = sorted((r["op"], r["mode"]) for r in recs)
    assert got == [("delete", None), ("insert", None), ("query", "mix"), ("query", "naive")]
    by = {(r["op"], r["mode"]): r for r in recs}
    assert all(r["user"] == "svc_a" and r["outcome"] == "ok" for r in recs)
    assert by[("insert", None)]["llm_calls"] >= 2 and by[("insert", None)]["embed_calls"] >= 1
    assert by[("query", "mix")]["llm_calls"] >= 1 and by[("query", "mix")]["embed_s"] > 0
    # the writes held the gate: the service's pid stamped the user's lock file
    stamp = (data / "svc_a" / ".lightkeeper.lock").read_text().split()
    assert int(stamp[0]) == proc.pid
    assert (data / "svc_a" / "vdb_chunks.json").exists()


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the example service exited ({proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("the example service did not listen")
