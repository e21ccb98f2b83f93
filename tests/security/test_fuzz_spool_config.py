"""Fuzzing the two parsers of text that others write (issue #11, "Also"): a spool line (written
by LightRAG processes of other accounts) and a configuration file (TOML text to Config).

No input may raise anything but the module's own error type (``BadRecord``, ``ConfigError``);
and what the spool parser accepts, the store must hold (the 2**70 record passed the parser and
then aborted every ingest pass inside DuckDB). Bounded: a few hundred examples per property, the
whole file well under 60 s.
"""

from __future__ import annotations

import json
import math
import string
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightkeeper import config
from lightkeeper.agent import ingest
from lightkeeper.agent.ingest import COLUMNS, BadRecord, parse_line

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

NOW = time.time()

# -- spool lines ------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 1e300, -1e300,
                     NOW, NOW + 10 * 86400, 946_684_799.0]),
)
texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.sampled_from(["query", "insert", "delete", "mix", "naive", "a\ud800b", "x" * 300, ""]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)


def good_record() -> dict[str, Any]:
    return {"v": 1, "op_id": "a" * 32, "ts": NOW, "user": "u1", "op": "query", "mode": "mix",
            "duration_s": 0.5, "llm_s": 0.1, "llm_calls": 1, "embed_s": 0.1, "embed_calls": 1,
            "embed_items": 2, "tokens_in": 10, "tokens_out": 5, "result_bytes": 10,
            "outcome": "ok", "error_class": None, "tuning_version": 1, "pid": 10,
            "run_id": None}


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A good record with a few fields replaced by anything JSON can carry."""
    rec = good_record()
    for key in draw(st.lists(st.sampled_from([*COLUMNS, "v", "extra"]), max_size=4)):
        if draw(st.booleans()):
            rec[key] = draw(json_values)
        else:
            rec.pop(key, None)
    return rec


def encode(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, ensure_ascii=draw_ascii(rec)).encode("utf-8", "surrogatepass")


def draw_ascii(rec: dict[str, Any]) -> bool:
    return len(json.dumps(rec)) % 2 == 0  # both escaped and raw forms, deterministically


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute(ingest._BATCH_DDL)
    return c


def check_line(con: duckdb.DuckDBPyConnection, raw: bytes) -> None:
    try:
        doc = parse_line(raw, NOW)
    except BadRecord:
        accepted = False
    else:
        accepted = True
        # what the parser accepts, the store holds: the slow path never aborts a batch
        ingest.stage_rows(con, [doc])
        row = con.execute("SELECT * FROM _batch").fetchall()[-1]
        con.execute("DELETE FROM _batch")
        assert all(not isinstance(v, float) or math.isfinite(v) for v in row)
    # the fast path (DuckDB's JSON reader) never accepts what the parser refuses
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as fh:
        fh.write(raw + b"\n")
        fh.flush()
        fast = ingest.stage_block_fast(con, fh.name, 1 if raw.strip() else 0, NOW)
    if fast and raw.strip():
        assert accepted, raw


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_spool_line_arbitrary_bytes(con, raw: bytes) -> None:
    check_line(con, raw.replace(b"\n", b" "))


@FUZZ
@given(records())
def test_fuzz_spool_line_records(con, rec: dict[str, Any]) -> None:
    check_line(con, encode(rec))


@settings(FUZZ, max_examples=60)  # three lines per example
@given(st.lists(json_values, max_size=3), st.integers(min_value=1, max_value=3000))
def test_fuzz_spool_line_shapes(con, values: list[Any], depth: int) -> None:
    check_line(con, json.dumps(values).encode())
    check_line(con, b"[" * depth + b"]" * depth)  # nesting deeper than Python's recursion
    check_line(con, b'{"ts": 1' + b"0" * depth + b"}")


# -- configuration files ----------------------------------------------------------------------

KEYS = [s.key for s in config.SETTINGS] + [
    f"{p}.{n}.{s.key}" for p, schema in config.TABLES.items() for s in schema
    for n in ("z1", "bad name", "")]
toml_values = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.lists(st.text(max_size=8), max_size=3), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(string.ascii_lowercase, max_size=5), st.integers(), max_size=2),
)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = doc
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                break
            node = nxt
        else:
            node[parts[-1]] = value
    return doc


def load_text(text: str | bytes, tmp: Path) -> None:
    path = tmp / "config.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        config.load(path, env={}, read_system=False)
    except config.ConfigError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), toml_values, max_size=6))
def test_fuzz_config_structured(tmp_path: Path, flat: dict[str, Any]) -> None:
    load_text(tomlkit.dumps(nest(flat)), tmp_path)


@FUZZ
@given(st.one_of(st.text(max_size=120), st.binary(max_size=120)))
def test_fuzz_config_arbitrary_text(tmp_path: Path, text: str | bytes) -> None:
    load_text(text, tmp_path)


@FUZZ
@given(st.sampled_from(KEYS), st.text(max_size=20))
def test_fuzz_config_set_and_environment(tmp_path: Path, key: str, value: str) -> None:
    """The same values as --set KEY=VALUE and as LIGHTKEEPER_ variables (strings)."""
    for kwargs in ({"overrides": [(key, value)]},
                   {"env": {config.env_key(key): value.replace("\0", "")}}):
        try:
            config.load(None, read_system=False, **({"env": {}} | kwargs))
        except config.ConfigError:
            pass
    try:
        config.parse_assignment(f"{key}{value}")
    except config.ConfigError:
        pass
