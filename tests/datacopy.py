"""``bench.datagen.generate`` for tests: each data set generated once per test process, then
copied for each test that asks for it.

Generating a 3 MB data root costs about 0.4 s of CPU (random text, graphs, vectors); copying it
costs a few hundredths. ``generate`` is deterministic (its output depends only on its
arguments), so a copy holds the same bytes the test would have generated. Each test still gets
its own fresh files: the template is never handed out, and copies are written anew (their
mtimes are now, as freshly generated files' are).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.datagen import generate

_templates: dict[tuple[int, int, float], tuple[Path, dict[str, Any]]] = {}
_cache_dir: Path | None = None


def _template(users: int, seed: int, total_mb: float) -> tuple[Path, dict[str, Any]]:
    global _cache_dir
    key = (users, seed, total_mb)
    if key not in _templates:
        if _cache_dir is None:
            _cache_dir = Path(tempfile.mkdtemp(prefix="lk-datagen-"))
            atexit.register(shutil.rmtree, _cache_dir, True)
        root = _cache_dir / f"u{users}-s{seed}-{total_mb}"
        _templates[key] = (root, generate(root, users=users, seed=seed, total_mb=total_mb))
    return _templates[key]


def generated(root: Path, users: int, seed: int, total_mb: float) -> dict[str, Any]:
    """Write ``generate(root, users, seed, total_mb)``'s data root at ``root``; returns what
    ``generate`` returns."""
    template, info = _template(users, seed, total_mb)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for src in sorted(template.rglob("*")):
        dst = root / src.relative_to(template)
        if src.is_dir():
            dst.mkdir(exist_ok=True)
        else:
            shutil.copyfile(src, dst)
    return dict(info)
