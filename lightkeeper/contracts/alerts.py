"""Alertmanager silences (agent/alertmanager.py)."""

from typing import Any, Required, TypedDict


class SilencesRequest(TypedDict, total=False):
    all: bool  # expired ones too


class Silence(TypedDict):
    id: str | None
    state: str | None  # active | pending | expired
    matchers: list[dict[str, Any]]  # Alertmanager's {name, value, isRegex, isEqual}
    matchers_text: str
    starts: str | None
    ends: str | None
    created_by: str | None
    comment: str | None


class SilenceRequest(TypedDict, total=False):
    alert: Required[str]
    comment: Required[str]
    duration: Required[str]  # "2h", "30m"...
    label: str | None
    actor: str


class ExpireSilenceRequest(TypedDict, total=False):
    id: Required[str]
    actor: str


class ExpireSilenceResponse(TypedDict):
    id: str
    expired: bool
