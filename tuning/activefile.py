"""The active tuning file (``paths.tuning_file``, TOML) that LightRAG processes read.

Layout::

    version = 7               # the lightkeeper version this content was written as

    [params]                  # the full global set
    chunk_token_size = 1200   # tokens; new_documents: ...
    ...

    [users.alice]             # per-user overrides (optional)
    top_k = 60

The file is replaced atomically (temp file in the same directory, fsync, rename), so a
reader never sees half a file. An operator may edit it by hand; the agent records such an
edit as a new version (actor ``external-edit``), or refuses it when it is invalid.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomlkit

from lightkeeper.tuning.params import EFFECTS, PARAMS
from lightkeeper.tuning.tuningset import TuningSet
from lightkeeper.tuning.validate import TuningError

HEADER = """\
lightkeeper: active LightRAG tuning. Read and watched by LightRAG processes.
Change it with `lightkeeper tuning set KEY=VALUE --note TEXT` (versioned, revertible).
A hand edit here is recorded as a new version by the agent if it is valid; if it is not,
it is refused and processes keep the last good version.
"""


def parse_active(text: str, where: str = "tuning file") -> tuple[int | None, TuningSet]:
    """Parse the file's text. Raises TuningError with a clear reason.

    An empty file is an error rather than "all defaults": it is what a reader sees in the middle
    of an in-place save, and silently dropping every setting is never what an operator meant.
    """
    if not text.strip():
        raise TuningError({"(file)": "the file is empty"}, prefix=f"invalid {where}")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TuningError({"(file)": f"not valid TOML: {exc}"}, prefix=f"invalid {where}") \
            from None
    version = doc.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or version < 1):
        raise TuningError({"version": f"{version!r} is not a positive integer"},
                          prefix=f"invalid {where}")
    try:
        tset = TuningSet.from_json(doc)
    except TuningError as exc:
        raise TuningError(exc.errors, prefix=f"invalid {where}") from None
    return version, tset


def read_active_set(path: Path | str) -> tuple[int | None, TuningSet]:
    """(version, TuningSet) of the active file; LightRAG's defaults when it does not exist."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, TuningSet()
    except UnicodeDecodeError:
        raise TuningError({"(file)": "not UTF-8 text"}, prefix=f"invalid tuning file {p}") \
            from None
    return parse_active(text, where=f"tuning file {p}")


def read_active(path: Path | str, user: str | None = None) -> tuple[int | None, dict[str, Any]]:
    """(version, effective parameters) for ``user`` (or the global set).

    Defaults when the file does not exist; raises TuningError when it is invalid.
    """
    version, tset = read_active_set(path)
    return version, tset.effective(user)


def load_active(cfg_or_path: Any, user: str | None = None) -> tuple[int | None, dict[str, Any]]:
    """What a LightRAG process should run with: (version, effective parameters).

    Takes a ``Config`` (uses ``paths.tuning_file``) or a path. Unlike :func:`read_active`,
    an invalid active file (a bad hand edit the agent has refused) does not raise: the last
    version lightkeeper wrote is used instead, so processes keep the last good version. Raises
    TuningError only when the file is invalid and no good copy exists.
    """
    path = cfg_or_path.path("paths.tuning_file") if hasattr(cfg_or_path, "path") \
        else Path(cfg_or_path)
    try:
        version, tset = read_active_set(path)
    except TuningError:
        fallback = read_last_good(path)
        if fallback is None:
            raise
        version, tset = fallback
    return version, tset.effective(user)


def render_active(version: int | None, tset: TuningSet) -> str:
    """The file's text: every parameter with its unit, effect and default as a comment."""
    doc = tomlkit.document()
    for line in HEADER.splitlines():
        doc.add(tomlkit.comment(line))
    doc.add(tomlkit.nl())
    if version is not None:
        doc.add("version", version)
        doc.add(tomlkit.nl())
    data = tset.to_json()
    params = tomlkit.table()
    for p in PARAMS:
        value = data["params"][p.name]
        item = tomlkit.item(value)
        unit = f"{p.unit}; " if p.unit else ""
        item.comment(f"{unit}{p.effect}; default {p.default!r}; {p.allowed()}")
        params.add(p.name, item)
    doc.add("params", params)
    if data["users"]:
        users = tomlkit.table(is_super_table=True)
        for user, overrides in data["users"].items():
            t = tomlkit.table()
            for name, value in overrides.items():
                t.add(name, value)
            users.add(user, t)
        doc.add("users", users)
    doc.add(tomlkit.nl())
    doc.add(tomlkit.comment("effect classes: " + "; ".join(f"{k} = {v}"
                                                          for k, v in EFFECTS.items())))
    return tomlkit.dumps(doc)


def last_good_path(path: Path | str) -> Path:
    """Where lightkeeper keeps a copy of the last file it wrote (hidden, next to it)."""
    p = Path(path)
    return p.with_name(f".{p.name}.last-good")


def read_last_good(path: Path | str) -> tuple[int | None, TuningSet] | None:
    """The last version lightkeeper wrote, for a process that starts while the active file
    holds an invalid hand edit. None when there is no usable copy."""
    try:
        return parse_active(last_good_path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TuningError):
        return None


def write_active(path: Path | str, version: int | None, tset: TuningSet) -> Path:
    """Replace the active file (and its last-good copy) atomically: temp, fsync, rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = render_active(version, tset)
    _write_atomic(last_good_path(p), text)
    return _write_atomic(p, text)


def _write_atomic(p: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return p
