"""Import rules from docs/architecture.md: the console never touches DuckDB or the agent;
collectors, backup, rag and tuning never import Textual or the agent."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "tui": {"duckdb", "agent", "pyarrow"},
    "collectors": {"textual", "agent", "tui"},
    "backup": {"textual", "agent", "tui"},
    "rag": {"textual", "agent", "tui"},
    "tuning": {"textual", "agent", "tui"},
    "lightkeeper": {"textual", "duckdb"},
}
# The CLI package starts the agent and the console; it may import them lazily.
ALLOWED_FILES = {"lightkeeper/cli/agent.py", "lightkeeper/cli/console.py"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = str(path.relative_to(REPO))
        if rel in ALLOWED_FILES:
            continue
        hit = imports(path) & FORBIDDEN[package]
        if hit:
            bad.append(f"{rel}: {sorted(hit)}")
    assert not bad, "forbidden imports:\n" + "\n".join(bad)
