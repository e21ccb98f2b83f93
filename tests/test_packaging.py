"""One namespace: an installed lightkeeper puts nothing but ``lightkeeper`` into site-packages,
and the folders of the layout (tui/, collectors/, backup/, ...) install under it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAPPED = ("agent", "collectors", "backup", "rag", "tuning", "tui")


def _declared() -> tuple[list[str], dict[str, str]]:
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return tool["packages"], tool["package-dir"]


def test_every_package_folder_is_declared() -> None:
    packages, package_dir = _declared()
    found = set()
    for name, folder in package_dir.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert sorted(found) == sorted(packages)
    assert {package_dir[f"lightkeeper.{m}"] for m in MAPPED} == set(MAPPED)


def test_built_distribution_holds_only_lightkeeper(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-deps", "--no-compile", "--target", str(target), str(REPO)],
                   check=True, capture_output=True, text=True,  # the system's CAs (conftest.py)
                   env={k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"})
    (dist,) = target.glob("lightkeeper-*.dist-info")
    assert (dist / "top_level.txt").read_text().split() == ["lightkeeper"]
    tops = {p.name for p in target.iterdir() if p.name not in {"bin"}} - {dist.name}
    assert tops == {"lightkeeper"}
    for m in MAPPED:
        assert (target / "lightkeeper" / m / "__init__.py").is_file(), m
    assert (target / "lightkeeper" / "tui" / "app.tcss").is_file()
    assert (target / "lightkeeper" / "rag" / "corpus" / "docs.json").is_file()
    # The installed tree imports from anywhere, and the generic names do not exist there.
    code = ("import importlib.util as u, lightkeeper.backup.repository as r, lightkeeper.tui.app;"
            "import lightkeeper.instrument;"
            f"print(r.__file__);print([m for m in {MAPPED!r} if u.find_spec(m)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True).stdout.split("\n")
    assert out[0] == str(target / "lightkeeper" / "backup" / "repository.py")
    assert out[1] == "[]"


def test_generic_names_do_not_import_from_the_venv(tmp_path: Path) -> None:
    """``python -c "import backup"`` fails in the installed venv (outside the checkout)."""
    for m in MAPPED:
        r = subprocess.run([sys.executable, "-c", f"import {m}"], cwd=tmp_path,
                           capture_output=True, text=True)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (m, r.stderr)
    r = subprocess.run([sys.executable, "-c", "import lightkeeper.backup.repository"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
