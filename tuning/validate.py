"""Validation of tuning parameters: types, ranges, choices and cross-field rules.

Errors are collected per field (``{"chunk_overlap_token_size": "must be smaller than ..."}``)
so the console's form editor can show each next to its input; :class:`TuningError` carries
them and reads as one clear message.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from lightkeeper.coerce import coerce as coerce_value
from lightkeeper.tuning.params import BY_NAME, NAMES, Param, defaults

MAX_STR_LEN = 256  # a parameter string that reaches LightRAG


class TuningError(ValueError):
    """Invalid tuning: ``errors`` maps a field (or ``users.U.field``) to what is wrong."""
    def __init__(self, errors: Mapping[str, str], prefix: str = "invalid tuning") -> None:
        self.errors = dict(errors)
        text = "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        super().__init__(f"{prefix}: {text}" if text else prefix)


def suggest(name: str) -> str:
    match = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown_message(name: str) -> str:
    return f"unknown parameter{suggest(name)}; `lightkeeper tuning params` lists them"


def coerce(param: Param, value: Any) -> Any:
    """Convert ``value`` (from TOML, JSON or a ``KEY=VALUE`` string) to the parameter's type.

    The engine is :func:`lightkeeper.coerce.coerce`, the one configuration settings use too;
    strings that reach LightRAG are bounded. Raises ``ValueError`` whose message says what is
    allowed."""
    return coerce_value(param, value, max_len=MAX_STR_LEN)


def check_fields(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Coerce each known field; return (values, errors). Unknown names are errors."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in raw.items():
        param = BY_NAME.get(name)
        if param is None:
            errors[name] = unknown_message(name)
            continue
        try:
            values[name] = coerce(param, value)
        except ValueError as exc:
            errors[name] = str(exc)
    return values, errors


# Cross-field rules: (fields involved, predicate on a full set, message). The message names
# the first field (where the console shows it) and the values.
def _cross_rules(p: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if p["chunk_overlap_token_size"] >= p["chunk_token_size"]:
        errors["chunk_overlap_token_size"] = (
            f"overlap {p['chunk_overlap_token_size']} must be smaller than chunk_token_size "
            f"{p['chunk_token_size']} (otherwise chunking never advances)")
    budget = p["max_entity_tokens"] + p["max_relation_tokens"]
    if budget >= p["max_total_tokens"]:
        errors["max_total_tokens"] = (
            f"{p['max_total_tokens']} must exceed max_entity_tokens + max_relation_tokens "
            f"= {budget}, leaving room for the system prompt and text chunks")
    if p["summary_length_recommended"] > p["summary_max_tokens"]:
        errors["summary_length_recommended"] = (
            f"{p['summary_length_recommended']} must not exceed summary_max_tokens "
            f"{p['summary_max_tokens']} (a summary longer than the size that triggers one)")
    if p["summary_max_tokens"] > p["summary_context_size"]:
        errors["summary_max_tokens"] = (
            f"{p['summary_max_tokens']} must not exceed summary_context_size "
            f"{p['summary_context_size']} (the description must fit the summary request)")
    if p["summary_context_size"] > p["max_total_tokens"]:
        errors["summary_context_size"] = (
            f"{p['summary_context_size']} must not exceed max_total_tokens "
            f"{p['max_total_tokens']} (LightRAG warns about this at start-up)")
    return errors


# The fields each cross-field rule involves, by the field its error is reported under.
CROSS_FIELDS: dict[str, tuple[str, ...]] = {
    "chunk_overlap_token_size": ("chunk_overlap_token_size", "chunk_token_size"),
    "max_total_tokens": ("max_total_tokens", "max_entity_tokens", "max_relation_tokens"),
    "summary_length_recommended": ("summary_length_recommended", "summary_max_tokens"),
    "summary_max_tokens": ("summary_max_tokens", "summary_context_size"),
    "summary_context_size": ("summary_context_size", "max_total_tokens"),
}


def check_cross(params: Mapping[str, Any]) -> dict[str, str]:
    """Cross-field errors of a full, well-typed parameter set."""
    return _cross_rules(params)


def blame(errors: Mapping[str, str], changed: set[str], prefix: str = "") -> dict[str, str]:
    """Also report each cross-field error under the edited fields it involves, so a form can
    mark the input the operator just changed (``errors`` keys may carry ``prefix``)."""
    out = dict(errors)
    for key, message in errors.items():
        if not key.startswith(prefix):
            continue
        for field in CROSS_FIELDS.get(key[len(prefix):], ()):
            if field in changed:
                out.setdefault(f"{prefix}{field}", message)
    return out


def warnings_for(params: Mapping[str, Any]) -> dict[str, str]:
    """Legal but questionable combinations (shown, never refused)."""
    warn: dict[str, str] = {}
    if params["max_parallel_insert"] > params["llm_model_max_async"]:
        warn["max_parallel_insert"] = (
            f"{params['max_parallel_insert']} parallel inserts share "
            f"{params['llm_model_max_async']} LLM slots; documents will queue for the LLM")
    if params["chunk_overlap_token_size"] * 2 > params["chunk_token_size"]:
        warn["chunk_overlap_token_size"] = (
            "overlap above half the chunk size roughly doubles extraction work")
    if params["chunk_top_k"] > params["top_k"] * 4:
        warn["chunk_top_k"] = "far more chunks than entities retrieved; context fills with chunks"
    return warn


def validate_full(raw: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Validate a full global set (missing names take LightRAG's default). Raises TuningError."""
    values, errors = check_fields(raw)
    merged = {**defaults(), **values}
    if not errors:
        errors.update(check_cross(merged))
    if errors:
        raise TuningError({f"{where}{k}": v for k, v in errors.items()})
    return merged
