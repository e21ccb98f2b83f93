"""No text is cut in the middle of a value the screen exists to show: the lost-agent banner keeps
the socket's file name and the reason at 80 and 120 columns, and the tuning diff and compare
panels wrap long values instead of cutting them."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from lightkeeper.tui.panes.tuning import compare_block, diff_block
from lightkeeper.tui.widgets.banners import fit_paths

ERROR = ("no agent answers on /home/operator/.local/state/lightkeeper/run/agent.sock "
         "(No such file or directory)")


def _render(renderable: object, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("width", [78, 118])
def test_banner_keeps_file_name_and_reason(width: int) -> None:
    text = fit_paths(ERROR, width)
    assert len(text) <= width
    assert "agent.sock" in text and text.endswith("(No such file or directory)"), text
    assert text.startswith("no agent answers on /home/")


def test_banner_path_untouched_when_it_fits() -> None:
    assert fit_paths(ERROR, 200) == ERROR


@pytest.mark.parametrize("width", [40, 46, 80])
def test_diff_values_are_never_cut(width: int) -> None:
    rows = [{"key": "chunk_token_size", "old": 1200, "new": 512, "effect": "new_documents"},
            {"key": "embedding_model", "old": "text-embedding-3-large-with-a-long-name",
             "new": "bge-m3-multilingual-embedding-model-v2", "effect": "rebuild"}]
    out = _render(diff_block("v1 → v2", rows, "(none)"), width)
    flat = "".join(out.split())  # wrapped lines joined
    for r in rows:
        assert str(r["old"]) in flat and str(r["new"]) in flat, out


def test_compare_values_are_never_cut() -> None:
    rows = [{"op": "query", "mode": "hybrid", "a_count": 511, "b_count": 498, "a_p95": 1.234,
             "b_p95": 1.456, "change_p95": 0.18, "thin_evidence": False}]
    out = _render(compare_block(1, 2, rows), 46)
    assert "511 → 498" in out and "+18%" in out, out
