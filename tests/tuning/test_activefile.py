"""The active file: format, atomic replacement, last-good fallback, and live reload."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lightkeeper.tuning import calls, versions
from lightkeeper.tuning.activefile import (
    last_good_path,
    load_active,
    read_active,
    read_active_set,
    render_active,
    write_active,
)
from lightkeeper.tuning.params import defaults
from lightkeeper.tuning.tuningset import TuningSet
from lightkeeper.tuning.validate import TuningError
from lightkeeper.tuning.watch import ActiveFileWatcher

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 30.0  # generous upper bound for a file event to arrive; never a timing assertion


def wait_for(predicate, what: str, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_missing_file_means_lightrag_defaults(tmp_path):
    assert read_active(tmp_path / "none.toml") == (None, defaults())


def test_render_parse_round_trip_with_users(tmp_path):
    t = TuningSet().with_changes({"top_k": 61, "enable_llm_cache": False,
                                  "cosine_better_than_threshold": 0.25})
    t = t.with_changes({"chunk_token_size": 800, "query_mode": "naive"}, user="alice")
    path = write_active(tmp_path / "sub" / "active.toml", 9, t)
    text = path.read_text()
    assert text.startswith("# lightkeeper: active LightRAG tuning")
    assert "[users.alice]" in text and "top_k = 61 # items; next_operation" in text
    version, back = read_active_set(path)
    assert version == 9 and back == t
    assert read_active(path, "alice")[1]["chunk_token_size"] == 800
    assert read_active(path, "bob")[1]["chunk_token_size"] == 1200
    assert last_good_path(path).read_text() == text
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("text, words", [
    ("[params\ntop_k = 1", "not valid TOML"),
    ("  \n", "the file is empty"),
    ("[params]\ntop_k = 0\n", "top_k: 0 is not allowed"),
    ("[params]\ntopk = 5\n", "did you mean 'top_k'"),
    ("top_k = 5\n", "parameters belong under [params]"),
    ("version = -3\n", "not a positive integer"),
    ("[users.Alice]\ntop_k = 5\n", "invalid user id"),
    ("[users.alice]\nchunk_overlap_token_size = 1300\n",
     "users.alice.chunk_overlap_token_size"),
])
def test_invalid_files_are_explained(tmp_path, text, words):
    path = tmp_path / "active.toml"
    path.write_text(text)
    with pytest.raises(TuningError) as info:
        read_active(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_load_active_keeps_the_last_good_version(tmp_path, lk_cfg):
    path = lk_cfg.path("paths.tuning_file")
    write_active(path, 4, TuningSet().with_changes({"top_k": 44}))
    path.write_text(path.read_text().replace("top_k = 44", "top_k = -1"))
    with pytest.raises(TuningError):
        read_active(path)
    assert load_active(lk_cfg) == (4, {**defaults(), "top_k": 44})
    os.unlink(last_good_path(path))
    with pytest.raises(TuningError):
        load_active(path)


def test_watcher_in_process_keeps_last_good(tmp_path):
    path = tmp_path / "t" / "active.toml"
    seen: queue.Queue = queue.Queue()
    with ActiveFileWatcher(path, on_change=lambda v, t: seen.put(("ok", v, t.params["top_k"])),
                           on_error=lambda r: seen.put(("error", r))) as w:
        assert w.version is None and w.params()["top_k"] == 40
        write_active(path, 2, TuningSet().with_changes({"top_k": 77}))
        assert seen.get(timeout=DEADLINE) == ("ok", 2, 77)
        path.write_text(path.read_text().replace("top_k = 77", "top_k = 'many'"))
        kind, reason = seen.get(timeout=DEADLINE)
        assert kind == "error" and "top_k" in reason
        assert w.params()["top_k"] == 77 and w.version == 2 and w.rejected == 1


def test_watcher_starting_on_an_invalid_file_uses_last_good(tmp_path):
    path = tmp_path / "active.toml"
    write_active(path, 3, TuningSet().with_changes({"top_k": 33}))
    path.write_text("[params]\ntop_k = 0\n")
    errors: list[str] = []
    w = ActiveFileWatcher(path, on_error=errors.append)
    assert errors and w.version == 3 and w.params()["top_k"] == 33


class Child:
    """A separate process running the watcher, as a LightRAG process would."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "tuning_watch_child.py"), str(path)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, event: str) -> dict:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            try:
                doc = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if doc["event"] == event:
                return doc
        raise AssertionError(f"child sent no {event!r} event")

    def params(self) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write("params\n")
        self.proc.stdin.flush()
        return self.next("params")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_external_edits_reach_a_running_process(services):
    path = services.cfg.path("paths.tuning_file")
    calls.ensure_initialized(services)
    child = Child(path)
    try:
        ready = child.next("ready")
        assert (ready["version"], ready["top_k"]) == (1, 40)

        # a valid edit outside lightkeeper: the process applies it, the agent records it
        path.write_text(path.read_text().replace("top_k = 40", "top_k = 41"))
        first = child.next("change")
        assert first["top_k"] == 41
        result = calls.on_active_file_changed(services)
        assert result["state"] == "recorded" and result["version"] == 2
        v2 = versions.get(services.store, 2)
        assert (v2.actor, v2.source) == ("external-edit", "external-edit")
        assert v2.tuning.params["top_k"] == 41
        assert read_active(path)[0] == 2  # the file now carries its version number
        wait_for(lambda: child.params()["version"] == 2, "the child to see version 2")
        assert calls.on_active_file_changed(services)["state"] == "unchanged"
        assert services.current[("tuning_invalid_edit", "")] == 0.0

        # an invalid edit: refused, reported, and the process keeps version 2
        path.write_text(path.read_text().replace("top_k = 41", "top_k = 0"))
        err = child.next("error")
        assert err["top_k"] == 41 and err["version"] == 2
        refused = calls.on_active_file_changed(services)
        assert refused["state"] == "refused" and "top_k" in refused["reason"]
        assert versions.latest(services.store).version == 2
        assert services.current[("tuning_invalid_edit", "")] == 1.0
        events = services.store.events(level="error", search="external_edit_refused")
        assert len(events) == 1 and "top_k" in events[0]["context"]["reason"]
        calls.on_active_file_changed(services)  # the same bad content is reported once
        assert len(services.store.events(level="error", search="external_edit_refused")) == 1
        assert child.params()["top_k"] == 41

        # a change through lightkeeper replaces the bad edit and clears the alert metric
        calls.set_params(services, {"changes": {"top_k": 50}, "note": "fix"})
        assert services.current[("tuning_invalid_edit", "")] == 0.0
        wait_for(lambda: child.params()["top_k"] == 50, "the child to apply version 3")
        assert child.params()["version"] == 3
    finally:
        child.close()


def test_deleted_active_file_is_written_back(services):
    calls.set_params(services, {"changes": {"top_k": 12}, "note": "x"})
    path = services.cfg.path("paths.tuning_file")
    path.unlink()
    assert calls.on_active_file_changed(services)["state"] == "restored"
    assert read_active(path) == (2, {**defaults(), "top_k": 12})


def test_external_edit_that_would_strand_vectors_is_refused(services):
    root = services.cfg.path("paths.data_root")
    (root / "alice").mkdir(parents=True, exist_ok=True)
    # the shape nano-vectordb writes; test_protect covers a real LightRAG directory
    (root / "alice" / "vdb_chunks.json").write_text(json.dumps(
        {"embedding_dim": 64, "data": [{"__id__": "c1"}], "matrix": ""}))
    calls.set_params(services, {"changes": {"embedding_dim": 64}, "note": "pin"})
    path = services.cfg.path("paths.tuning_file")
    path.write_text(path.read_text().replace("embedding_dim = 64", "embedding_dim = 128"))
    r = calls.on_active_file_changed(services)
    assert r["state"] == "refused" and "acknowledge-rebuild" in r["reason"]
    assert versions.latest(services.store).version == 2


def test_render_is_stable():
    t = TuningSet()
    assert render_active(1, t) == render_active(1, t.copy())


def test_setting_current_values_repairs_an_invalid_file(services):
    calls.set_params(services, {"changes": {"top_k": 45}, "note": "x"})
    path = services.cfg.path("paths.tuning_file")
    path.write_text(path.read_text().replace("top_k = 45", "top_k = -5"))
    assert calls.on_active_file_changed(services)["state"] == "refused"
    r = calls.revert(services, {"version": 2, "note": "undo the hand edit"})
    assert r["changed"] is False and r["file_rewritten"] is True
    assert read_active(path) == (2, {**defaults(), "top_k": 45})
    assert services.current[("tuning_invalid_edit", "")] == 0.0
    assert calls.on_active_file_changed(services)["state"] == "unchanged"
