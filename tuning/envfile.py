"""The equivalent ``.env`` for LightRAG's own server, both ways.

Names are those ``lightrag/api/config.py`` (and the ``LightRAG`` dataclass) read in 1.5.7:
``CHUNK_SIZE``, ``CHUNK_OVERLAP_SIZE``, ``TOP_K``, ``COSINE_THRESHOLD``, ``MAX_ASYNC_LLM``
(older servers: ``MAX_ASYNC``), ``MAX_GRAPH_NODES``, ``EMBEDDING_DIM``... Parameters the
server has no variable for (``query_mode``, ``graph_max_depth``) are written as comments.

Importing sets only the parameters the file names; the others keep their current value.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightkeeper.tuning.params import PARAMS
from lightkeeper.tuning.validate import TuningError, coerce

# Older names the server still accepts, lowest precedence first.
ALIASES: dict[str, tuple[str, ...]] = {"llm_model_max_async": ("MAX_ASYNC",)}

ENV_TO_PARAM: dict[str, str] = {}
for _p in PARAMS:
    if _p.env:
        ENV_TO_PARAM[_p.env] = _p.name
    for _alias in ALIASES.get(_p.name, ()):
        ENV_TO_PARAM[_alias] = _p.name

_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text == "" or re.search(r"[\s#'\"$`\\]", text):
        return "'" + text.replace("'", "'\\''") + "'"
    return text


def export_env(params: Mapping[str, Any], version: int | None = None,
               user: str | None = None) -> str:
    """``.env`` text for an effective parameter set."""
    scope = f" for user {user}" if user else ""
    lines = [f"# LightRAG server settings exported by lightkeeper from tuning version "
             f"{version if version is not None else '(defaults)'}{scope}.",
             "# lightrag-server reads these at start: restart it to apply them.",
             "# Import back with: lightkeeper tuning import-env FILE --note TEXT", ""]
    for p in PARAMS:
        value = params.get(p.name, p.default)
        if p.env is None:
            lines.append(f"# {p.name}={_format(value)}  (no server variable: "
                         f"{p.query_param and 'QueryParam.' + p.query_param or p.call_arg})")
            continue
        if p.effect == "rebuild" and value in ("", 0):
            lines.append(f"# {p.env}=  (unset: the embedding binding's default)")
            continue
        lines.append(f"{p.env}={_format(value)}")
        for alias in ALIASES.get(p.name, ()):
            lines.append(f"{alias}={_format(value)}")
    return "\n".join(lines) + "\n"


@dataclass
class ImportResult:
    values: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # variables that are not tuning


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        try:
            parts = shlex.split(raw, comments=True)
        except ValueError:
            raise ValueError(f"unbalanced quotes in {raw!r}") from None
        return parts[0] if parts else ""
    # unquoted: an inline comment starts at " #"
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def parse_env(text: str) -> ImportResult:
    """Read tuning values from ``.env`` text. Raises TuningError naming line and variable."""
    raw: dict[str, tuple[int, str, str]] = {}  # param -> (precedence, env name, value)
    result = ImportResult()
    errors: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LINE_RE.match(line)
        if not m:
            # The line is not echoed: in a server .env it may well hold a key or password.
            errors[f"line {lineno}"] = "not a NAME=VALUE assignment (content not shown)"
            continue
        name, value = m.group(1), m.group(2)
        pname = ENV_TO_PARAM.get(name)
        if pname is None:
            result.ignored.append(name)
            continue
        try:
            value = _unquote(value)
        except ValueError as exc:
            errors[f"line {lineno} {name}"] = str(exc)
            continue
        precedence = 0 if name in ALIASES.get(pname, ()) else 1
        prev = raw.get(pname)
        if prev is None or precedence >= prev[0]:
            raw[pname] = (precedence, name, value)
    by_name = {p.name: p for p in PARAMS}
    for pname, (_, env, value) in raw.items():
        p = by_name[pname]
        if p.effect == "rebuild" and value in ("", "None"):
            result.values[pname] = "" if p.type == "str" else 0
            continue
        try:
            result.values[pname] = coerce(p, value)
        except ValueError as exc:
            errors[f"{env} ({pname})"] = str(exc)
    if errors:
        raise TuningError(errors, prefix="cannot import .env")
    return result
