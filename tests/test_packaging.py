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


# LightRAG installs some packages with pip when a module of it is imported and they are missing
# (pipmaster: `if not pm.is_installed("ollama"): pm.install("ollama")`). The modules of it that
# lightkeeper's processes load, with the file storages and the default (ollama) or the OpenAI
# binding, must find everything installed: an install at run time reaches the network, takes
# seconds of CPU on every start (it failed on every `lightkeeper serve` of a fresh venv,
# whose tests trust only a loopback CA), and puts unpinned code into the operator's venv.
LIGHTRAG_MODULES_WE_LOAD = (
    "lightrag/llm/ollama.py", "lightrag/llm/openai.py", "lightrag/llm/binding_options.py",
    "lightrag/kg/json_kv_impl.py", "lightrag/kg/json_doc_status_impl.py",
    "lightrag/kg/nano_vector_db_impl.py", "lightrag/kg/networkx_impl.py",
    "lightrag/lightrag.py", "lightrag/operate.py", "lightrag/utils.py",
)


def test_lightrag_installs_nothing_at_run_time() -> None:
    import importlib.metadata as md
    import re

    files = {str(f): f for f in md.files("lightrag-hku") or []}
    sources = [files[name] for name in LIGHTRAG_MODULES_WE_LOAD]
    sources += [f for name, f in files.items()
                if name.startswith("lightrag/api/") and name.endswith(".py")]
    wanted = set()
    for f in sources:
        text = Path(str(f.locate())).read_text(encoding="utf-8")
        wanted.update(re.findall(r"""pm\.install\(\s*["']([A-Za-z0-9_.\-]+)""", text))
    assert "ollama" in wanted  # the scan sees what it looks for
    missing = []
    for name in sorted(wanted):
        try:
            md.version(name)
        except md.PackageNotFoundError:
            missing.append(name)
    assert not missing, f"LightRAG would pip-install {missing} at run time: declare them"
