"""Tuning calls (tuning/calls.py)."""

from typing import Any, NotRequired, Required, TypedDict


class UserRequest(TypedDict, total=False):
    user: str | None  # a user's overrides; None: the global values


class VersionSummary(TypedDict):
    version: int
    ts: float
    actor: str | None
    note: str | None
    source: str | None
    reverted_from: int | None


class DiffRow(TypedDict):
    key: str  # "name" or "users.USER.name"
    change: str  # changed | added | removed
    old: Any
    new: Any
    effect: str
    unit: str


class ParamRow(TypedDict):
    name: str
    value: Any
    origin: str
    default: Any
    unit: str
    effect: str
    meaning: str
    allowed: str


class ShowResponse(VersionSummary):
    user: str | None
    params: list[ParamRow]
    users: list[str]
    overrides: dict[str, Any]
    file: str
    file_state: str  # in_sync | differs | missing | "invalid: ..."


class Change(TypedDict, total=False):
    user: str | None
    note: Required[str]
    actor: str
    acknowledge_rebuild: bool


class CommitExtra(TypedDict, total=False):
    imported: list[str]  # import_env: the variables taken from the file
    ignored: list[str]  # ... and the ones it does not know


class SetRequest(Change, total=False):
    changes: Required[dict[str, Any]]
    source: str


class ServeServer(TypedDict, total=False):
    """A ``lightkeeper serve`` process and what the latest tuning version needs of it
    (``tuning/serve_restart.py``)."""

    user: Required[str | None]
    state: Required[str]  # running | not_running | unknown
    notice: Required[str | None]  # what the operator should know or do; None: nothing
    reason: str
    file: str
    pid: int
    url: str
    tuning_version: int | None  # the version its LightRAG instance was built with
    live_tuning_version: int | None
    latest_version: int
    restarts: int
    server_reported: list[str]
    restart_needed: list[str]  # parameters that apply only after `serve --restart`
    not_applied: list[str]  # rebuild-class parameters the server never applies
    restart_command: str
    built_without_tuning: bool


class ServersResponse(TypedDict):
    version: int
    servers: list[ServeServer]
    restart_hint: str


class CommitResponse(TypedDict):
    """The answer of a change (set, revert, import_env)."""

    changed: bool
    version: int
    previous: int
    diff: list[DiffRow]
    effects: list[str]
    message: NotRequired[str]  # nothing changed
    file_rewritten: NotRequired[bool]  # nothing changed, but the active file was rewritten
    ts: NotRequired[float]  # changed: the new version's
    file: NotRequired[str]
    acknowledged_rebuild: NotRequired[list[str]]
    imported: NotRequired[list[str]]  # import_env
    ignored: NotRequired[list[str]]
    servers: NotRequired[list[ServeServer]]  # changed: the serve processes it concerns


class ValidateRequest(TypedDict, total=False):
    user: str | None
    changes: Required[dict[str, Any]]
    acknowledge_rebuild: bool


class ValidateResponse(TypedDict):
    ok: bool
    errors: dict[str, str]
    warnings: dict[str, str]
    diff: list[DiffRow]
    effects: list[str]
    base_version: int
    effective: dict[str, Any]


class DiffRequest(TypedDict, total=False):
    a: Required[int]
    b: int | str | None  # a version, or "latest"


class DiffResponse(TypedDict):
    a: VersionSummary
    b: VersionSummary
    rows: list[DiffRow]
    effects: list[str]


class RevertRequest(Change, total=False):
    version: Required[int]


class HistoryRequest(TypedDict, total=False):
    limit: int


class HistoryEntry(VersionSummary):
    changes: list[str]
    effects: list[str]


class HistoryResponse(TypedDict):
    versions: list[HistoryEntry]


class VersionRequest(TypedDict):
    version: int


class VersionResponse(VersionSummary):
    tuning: dict[str, Any]


class ParamsResponse(TypedDict):
    params: list[dict[str, Any]]
    effects: dict[str, str]
    defaults: dict[str, Any]


class ExportEnvRequest(TypedDict, total=False):
    user: str | None
    version: int | None


class ExportEnvResponse(TypedDict):
    version: int
    user: str | None
    text: str


class ImportEnvRequest(Change, total=False):
    text: Required[str]
    file_name: str
