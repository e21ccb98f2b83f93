"""Tuning calls the agent serves: show, set, diff, revert, history, validate, params, env.

Every change appends a version to ``tuning_versions`` (through ``services.store``), writes
the active file atomically with that version number, and is an audit event
(``services.audit``, which also logs it). The agent calls :func:`on_active_file_changed`
when the active file changes on disk: an edit made outside lightkeeper becomes a version
(actor ``external-edit``), an invalid one is refused with an error event and the
``tuning_invalid_edit`` alert metric, and LightRAG processes keep the last good version.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightkeeper.contracts.agent import Empty
from lightkeeper.contracts.tuning import (
    CommitExtra,
    CommitResponse,
    DiffRequest,
    DiffResponse,
    ExportEnvRequest,
    ExportEnvResponse,
    HistoryEntry,
    HistoryRequest,
    HistoryResponse,
    ImportEnvRequest,
    ParamRow,
    ParamsResponse,
    RevertRequest,
    ServersResponse,
    ServeServer,
    SetRequest,
    ShowResponse,
    UserRequest,
    ValidateRequest,
    ValidateResponse,
    VersionRequest,
    VersionResponse,
)
from lightkeeper.ids import InvalidUserId, validate_user_id
from lightkeeper.services import CallError, CallFn, JobFn, Services
from lightkeeper.tuning import serve_restart, versions
from lightkeeper.tuning.activefile import parse_active, read_active_set, write_active
from lightkeeper.tuning.diff import diff, effects_summary
from lightkeeper.tuning.envfile import export_env, parse_env
from lightkeeper.tuning.params import EFFECTS, PARAMS, defaults, model
from lightkeeper.tuning.protect import rebuild_conflicts
from lightkeeper.tuning.tuningset import TuningSet
from lightkeeper.tuning.validate import TuningError, warnings_for

# One writer at a time: a change writes the file and the store under this lock, and the
# file watcher compares under it, so it never mistakes our own write for an external edit.
_lock = threading.RLock()
_refused: dict[str, str] = {}  # active file path -> digest of the invalid content reported

INVALID_METRIC = "tuning_invalid_edit"
MAX_NOTE = 500


# -- helpers ------------------------------------------------------------------------------
def _file(services: Services) -> Path:
    return services.cfg.path("paths.tuning_file")


def _data_root(services: Services) -> Path:
    return services.cfg.path("paths.data_root")


def _actor(params: Mapping[str, Any], default: str = "operator") -> str:
    actor = str(params.get("actor") or default).strip()[:64]
    return actor or default


def _note(params: Mapping[str, Any]) -> str:
    note = params.get("note")
    if not isinstance(note, str) or not note.strip():
        raise CallError("a note saying why is required (--note TEXT)")
    note = " ".join(note.split())
    if len(note) > MAX_NOTE:
        raise CallError(f"note is {len(note)} characters; keep it under {MAX_NOTE}")
    return note


def _user(params: Mapping[str, Any]) -> str | None:
    user = params.get("user")
    if user in (None, ""):
        return None
    try:
        return validate_user_id(str(user))
    except InvalidUserId as exc:
        raise CallError(str(exc)) from None


def _int(params: Mapping[str, Any], key: str) -> int:
    value = params.get(key)
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CallError(f"{key} must be a version number, got {value!r}") from None


def _changes(params: Mapping[str, Any]) -> dict[str, Any]:
    changes = params.get("changes")
    if not isinstance(changes, dict) or not changes:
        raise CallError("changes must be a non-empty mapping of parameter to value "
                        "(KEY=VALUE ...)")
    return {str(k).strip(): v for k, v in changes.items()}


def _error_text(exc: TuningError) -> str:
    return str(exc)


def _set_invalid_metric(services: Services, value: float) -> None:
    services.set_current(INVALID_METRIC, "", value)


def _version(services: Services, n: int) -> versions.Version:
    try:
        return versions.get(services.store, n)
    except versions.UnknownVersion as exc:
        raise CallError(str(exc), status=404, code="not_found") from None


def _servers(services: Services, latest: versions.Version) -> list[ServeServer]:
    """The running ``lightkeeper serve`` processes and what the latest version needs of them
    (``tuning/serve_restart.py``): a restart, or nothing (live parameters)."""
    cache: dict[int, versions.Version | None] = {latest.version: latest}

    def effective_of(n: int, user: str) -> dict[str, Any] | None:
        if n not in cache:
            try:
                cache[n] = versions.get(services.store, n)
            except versions.UnknownVersion:
                cache[n] = None
        v = cache[n]
        return None if v is None else v.tuning.effective(user)

    return serve_restart.scan(services.cfg.path("paths.state_dir"), latest.version,
                              effective_of)


# -- initial version ----------------------------------------------------------------------
def ensure_initialized(services: Services) -> versions.Version:
    """Version 1 on first use: the active file's content if valid, else LightRAG's defaults."""
    with _lock:
        current = versions.latest(services.store)
        if current is not None:
            return current
        path = _file(services)
        note = "initial version: LightRAG 1.5.7 defaults"
        write_file = True
        try:
            file_version, tset = read_active_set(path)
            if path.exists():
                note = f"initial version: taken from the existing active file {path}"
        except TuningError as exc:
            tset = TuningSet()
            write_file = False  # keep the operator's (invalid) edit for them to fix
            note = f"initial version: defaults (active file invalid: {exc})"[:MAX_NOTE]
        v = versions.append(services.store, 1, tset, "system", note, "initial")
        if write_file:
            write_active(path, 1, tset)
        services.audit("tuning.initialized", actor="system", component="tuning", version=1,
                       note=note)
        return v


def _commit(services: Services, new: TuningSet, actor: str, note: str, source: str,
            acknowledge_rebuild: bool = False, reverted_from: int | None = None,
            extra: CommitExtra | None = None) -> CommitResponse:
    with _lock:
        current = ensure_initialized(services)
        rows = diff(current.tuning, new)
        result: CommitResponse = {"changed": bool(rows), "version": current.version,
                                  "previous": current.version, "diff": rows,
                                  "effects": effects_summary(rows), **(extra or {})}
        if not rows:
            result["message"] = f"nothing changed: version {current.version} already has this"
            if _resync_file(services, current):
                result["message"] += "; the active file did not hold it and was rewritten"
                result["file_rewritten"] = True
            return result
        conflicts = rebuild_conflicts(current.tuning, new, _data_root(services))
        if conflicts and not acknowledge_rebuild:
            raise CallError("refused to protect existing data: " + "; ".join(
                f"{k}: {v}" for k, v in conflicts.items()), status=409, code="needs_rebuild")
        path = _file(services)
        n = versions.next_version(services.store)
        write_active(path, n, new)
        try:
            v = versions.append(services.store, n, new, actor, note, source, reverted_from)
        except Exception:
            # The store refused: put the latest recorded version back so processes and the
            # history agree.
            write_active(path, current.version, current.tuning)
            raise
        _refused.pop(str(path), None)
        _set_invalid_metric(services, 0.0)
        changes = [f"{r['key']}: {r['old']!r} -> {r['new']!r}" for r in rows]
        services.audit("tuning.changed", actor=actor, component="tuning", version=n,
                       previous=current.version, note=note, source=source,
                       reverted_from=reverted_from, changes=changes,
                       effects=sorted({r["effect"] for r in rows}),
                       acknowledged_rebuild=sorted(conflicts) if conflicts else None)
        result.update({"version": v.version, "ts": v.ts, "file": str(path),
                       "acknowledged_rebuild": sorted(conflicts),
                       "servers": _servers(services, v)})
        return result


def _resync_file(services: Services, latest: versions.Version) -> bool:
    """Rewrite the active file when it does not hold ``latest`` (for example an invalid hand
    edit the operator now overrides by setting or reverting to the current values)."""
    path = _file(services)
    try:
        file_version, tset = read_active_set(path)
        if path.exists() and file_version == latest.version and tset == latest.tuning:
            return False
    except TuningError:
        pass
    write_active(path, latest.version, latest.tuning)
    _refused.pop(str(path), None)
    _set_invalid_metric(services, 0.0)
    services.audit("tuning.active_file_restored", component="tuning", version=latest.version,
                   reason="the active file did not hold the latest version")
    return True


# -- calls --------------------------------------------------------------------------------
def show(services: Services, params: UserRequest) -> ShowResponse:
    """The latest version's effective parameters for a user (or global), with origins."""
    user = _user(params)
    v = ensure_initialized(services)
    tset = v.tuning
    eff = tset.effective(user)
    rows: list[ParamRow] = []
    for p in PARAMS:
        rows.append({"name": p.name, "value": eff[p.name], "origin": tset.origin(p.name, user),
                     "default": p.default, "unit": p.unit, "effect": p.effect,
                     "meaning": p.meaning, "allowed": p.allowed()})
    path = _file(services)
    try:
        file_version, file_set = read_active_set(path)
        if not path.exists():
            file_state = "missing"
        elif file_set == tset and file_version == v.version:
            file_state = "in_sync"
        else:
            file_state = "differs"
    except TuningError as exc:
        file_state = f"invalid: {exc}"
    return {**v.summary(), "user": user, "params": rows, "users": sorted(tset.users),
            "overrides": dict(tset.users.get(user, {})) if user else {},
            "file": str(path), "file_state": file_state}


def set_params(services: Services, params: SetRequest) -> CommitResponse:
    user = _user(params)
    changes = _changes(params)
    note = _note(params)
    current = ensure_initialized(services)
    try:
        new = current.tuning.with_changes(changes, user=user)
    except TuningError as exc:
        raise CallError(_error_text(exc)) from None
    return _commit(services, new, _actor(params), note, str(params.get("source") or "api")[:32],
                   acknowledge_rebuild=bool(params.get("acknowledge_rebuild")))


def validate_call(services: Services, params: ValidateRequest) -> ValidateResponse:
    """Check pending edits without applying: per-field errors, warnings and the diff."""
    user = _user(params)
    changes = _changes(params)
    current = ensure_initialized(services)
    new, errors = current.tuning.try_changes(changes, user=user)
    if not params.get("acknowledge_rebuild"):
        conflicts = rebuild_conflicts(current.tuning, new, _data_root(services))
        prefix = "" if user is None else f"users.{user}."
        for k, v in conflicts.items():
            errors.setdefault(f"{prefix}{k}", v)
    rows = diff(current.tuning, new)
    warnings = {} if errors else warnings_for(new.effective(user))
    return {"ok": not errors, "errors": errors, "warnings": warnings,
            "diff": rows, "effects": effects_summary(rows), "base_version": current.version,
            "effective": new.effective(user)}


def diff_call(services: Services, params: DiffRequest) -> DiffResponse:
    latest = ensure_initialized(services)
    a = _int(params, "a")
    b = latest.version if params.get("b") in (None, "", "latest") else _int(params, "b")
    va, vb = _version(services, a), _version(services, b)
    rows = diff(va.tuning, vb.tuning)
    return {"a": va.summary(), "b": vb.summary(), "rows": rows, "effects": effects_summary(rows)}


def revert(services: Services, params: RevertRequest) -> CommitResponse:
    n = _int(params, "version")
    note = _note(params)
    ensure_initialized(services)
    old = _version(services, n)
    return _commit(services, old.tuning, _actor(params), note, "revert",
                   acknowledge_rebuild=bool(params.get("acknowledge_rebuild")),
                   reverted_from=n)


def history(services: Services, params: HistoryRequest) -> HistoryResponse:
    ensure_initialized(services)
    try:
        limit = max(1, min(int(params.get("limit") or 50), 1000))
    except (TypeError, ValueError):
        raise CallError("limit must be a number") from None
    found = versions.history(services.store, limit + 1)
    rows: list[HistoryEntry] = []
    for i, v in enumerate(found[:limit]):
        prev = found[i + 1] if i + 1 < len(found) else None
        changes = diff(prev.tuning, v.tuning) if prev else []
        rows.append({**v.summary(), "changes": [r["key"] for r in changes],
                     "effects": sorted({r["effect"] for r in changes})})
    return {"versions": rows}


def version_call(services: Services, params: VersionRequest) -> VersionResponse:
    """One version in full (for the console's history view)."""
    ensure_initialized(services)
    v = _version(services, _int(params, "version"))
    return {**v.summary(), "tuning": v.tuning.to_json()}


def servers_call(services: Services, params: Empty) -> ServersResponse:
    """Running ``lightkeeper serve`` processes: the tuning version each was built with, and
    the parameters of the latest version that need its restart."""
    latest = ensure_initialized(services)
    return {"version": latest.version, "servers": _servers(services, latest),
            "restart_hint": "live parameters (next_operation, new_documents) apply at the "
                            "server's next query or document; restart ones need "
                            "`lightkeeper serve --restart --user U`"}


def params_call(services: Services, params: Empty) -> ParamsResponse:
    return {"params": model(), "effects": EFFECTS, "defaults": defaults()}


def export_env_call(services: Services, params: ExportEnvRequest) -> ExportEnvResponse:
    user = _user(params)
    latest = ensure_initialized(services)
    v = latest if params.get("version") in (None, "") else _version(
        services, _int(params, "version"))
    return {"version": v.version, "user": user,
            "text": export_env(v.tuning.effective(user), v.version, user)}


def import_env_call(services: Services, params: ImportEnvRequest) -> CommitResponse:
    user = _user(params)
    note = _note(params)
    text = params.get("text")
    if not isinstance(text, str):
        raise CallError("text (the .env file's content) is required")
    try:
        parsed = parse_env(text)
    except TuningError as exc:
        raise CallError(str(exc)) from None
    if not parsed.values:
        raise CallError("the file sets none of the tuning variables "
                        f"({', '.join(p.env for p in PARAMS if p.env)})")
    current = ensure_initialized(services)
    try:
        new = current.tuning.with_changes(parsed.values, user=user)
    except TuningError as exc:
        raise CallError(str(exc)) from None
    source = "import-env"
    if params.get("file_name"):
        source = f"import-env:{Path(str(params['file_name'])).name}"[:128]
    return _commit(services, new, _actor(params), note, source,
                   acknowledge_rebuild=bool(params.get("acknowledge_rebuild")),
                   extra={"imported": sorted(parsed.values), "ignored": parsed.ignored})


# -- the active file changed on disk --------------------------------------------------------
def on_active_file_changed(services: Services) -> dict[str, Any]:
    """Reconcile the active file with the store; the agent calls this at start and on change.

    Returns ``{"state": "unchanged" | "recorded" | "refused" | "restored" | "pending", ...}``
    (``pending``: the file is empty, most likely mid-save; nothing is done); a refused
    edit also has ``reason`` (already recorded as an error event, and the
    ``tuning_invalid_edit`` metric is set to 1 so the agent's alert fires).
    """
    with _lock:
        latest = ensure_initialized(services)
        path = _file(services)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            # Deleted: write the latest version back; processes keep it either way.
            write_active(path, latest.version, latest.tuning)
            services.audit("tuning.active_file_restored", component="tuning",
                           version=latest.version, reason="the active file was missing")
            _set_invalid_metric(services, 0.0)
            return {"state": "restored", "version": latest.version}
        if not raw.strip():
            # Most likely caught in the middle of an in-place save; the next event re-checks.
            return {"state": "pending", "version": latest.version,
                    "reason": f"{path} is empty"}
        digest = hashlib.sha256(raw).hexdigest()
        try:
            file_version, tset = parse_active(raw.decode("utf-8"), where=f"tuning file {path}")
            rows = diff(latest.tuning, tset)
            conflicts = rebuild_conflicts(latest.tuning, tset, _data_root(services)) \
                if rows else {}
            if conflicts:
                raise TuningError(conflicts, prefix=f"refused edit of {path} (protects existing "
                                  "data; use `lightkeeper tuning set ... --acknowledge-rebuild`)")
        except (TuningError, UnicodeDecodeError) as exc:
            reason = str(exc) if isinstance(exc, TuningError) else f"{path} is not UTF-8 text"
            if _refused.get(str(path)) != digest:
                _refused[str(path)] = digest
                services.audit("tuning.external_edit_refused", actor="external-edit",
                               level="error", component="tuning", reason=reason,
                               kept_version=latest.version, file=str(path))
            _set_invalid_metric(services, 1.0)
            return {"state": "refused", "reason": reason, "version": latest.version}
        _refused.pop(str(path), None)
        _set_invalid_metric(services, 0.0)
        if not rows:
            if file_version != latest.version:
                write_active(path, latest.version, latest.tuning)
            return {"state": "unchanged", "version": latest.version}
        result = _commit(services, tset, "external-edit", f"edit of {path.name} outside "
                         "lightkeeper", "external-edit", acknowledge_rebuild=False)
        return {"state": "recorded", **result}


CALLS: dict[str, CallFn] = {
    "tuning.show": show,
    "tuning.set": set_params,
    "tuning.diff": diff_call,
    "tuning.revert": revert,
    "tuning.history": history,
    "tuning.version": version_call,
    "tuning.validate": validate_call,
    "tuning.params": params_call,
    "tuning.servers": servers_call,
    "tuning.import_env": import_env_call,
    "tuning.export_env": export_env_call,
}
JOBS: dict[str, JobFn] = {}

__all__ = ["CALLS", "JOBS", "on_active_file_changed", "ensure_initialized"]
