"""A complete tuning: the global parameter set plus per-user overrides.

This is what a version stores (as JSON ``{"params": {...}, "users": {"alice": {...}}}``) and
what the active file holds. ``effective(user)`` merges the two; ``origin(user, name)`` says
where an effective value comes from (``user``, ``global`` or ``default``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightkeeper.ids import InvalidUserId, validate_user_id
from lightkeeper.tuning.params import NAMES, defaults
from lightkeeper.tuning.validate import TuningError, blame, check_cross, check_fields


@dataclass
class TuningSet:
    params: dict[str, Any] = field(default_factory=defaults)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- views -------------------------------------------------------------------------------
    def effective(self, user: str | None = None) -> dict[str, Any]:
        merged = {**defaults(), **self.params}
        if user is not None:
            merged.update(self.users.get(user, {}))
        return merged

    def origin(self, name: str, user: str | None = None) -> str:
        if user is not None and name in self.users.get(user, {}):
            return f"user:{user}"
        if name in self.params and self.params[name] != defaults()[name]:
            return "global"
        return "default"

    def to_json(self) -> dict[str, Any]:
        return {
            "params": {n: self.params.get(n, defaults()[n]) for n in NAMES},
            "users": {u: {n: o[n] for n in NAMES if n in o}
                      for u, o in sorted(self.users.items()) if o},
        }

    def flat(self) -> dict[str, Any]:
        """``{"top_k": 40, ..., "users.alice.top_k": 60}`` (for diffs)."""
        doc = self.to_json()
        out = dict(doc["params"])
        for user, overrides in doc["users"].items():
            for name, value in overrides.items():
                out[f"users.{user}.{name}"] = value
        return out

    def copy(self) -> TuningSet:
        return TuningSet(dict(self.params), {u: dict(o) for u, o in self.users.items()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TuningSet) and self.to_json() == other.to_json()

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> TuningSet:
        """Build and validate from ``{"params": ..., "users": ...}``. Raises TuningError."""
        doc = doc or {}
        if not isinstance(doc, Mapping):
            raise TuningError({"(file)": "expected a table with [params] and [users.NAME]"})
        extra = set(doc) - {"params", "users", "version"}
        errors: dict[str, str] = {}
        for key in sorted(extra):
            errors[key] = ("unknown top-level key; parameters belong under [params], "
                           "per-user overrides under [users.NAME]")
        raw_params = doc.get("params") or {}
        raw_users = doc.get("users") or {}
        if not isinstance(raw_params, Mapping):
            errors["params"] = "must be a table of parameter = value"
            raw_params = {}
        if not isinstance(raw_users, Mapping):
            errors["users"] = "must be a table of [users.NAME] tables"
            raw_users = {}
        params, errs = check_fields(raw_params)
        errors.update(errs)
        users: dict[str, dict[str, Any]] = {}
        for user, overrides in raw_users.items():
            try:
                validate_user_id(str(user))
            except InvalidUserId as exc:
                errors[f"users.{user}"] = str(exc)
                continue
            if not isinstance(overrides, Mapping):
                errors[f"users.{user}"] = "must be a table of parameter = value"
                continue
            values, errs = check_fields(overrides)
            errors.update({f"users.{user}.{k}": v for k, v in errs.items()})
            users[str(user)] = values
        if errors:
            raise TuningError(errors)
        tset = cls({**defaults(), **params}, users)
        tset.check()
        return tset

    def cross_errors(self) -> dict[str, str]:
        """Cross-field errors of the global set and of every user's effective set."""
        errors = dict(check_cross(self.effective()))
        for user in sorted(self.users):
            for k, v in check_cross(self.effective(user)).items():
                errors.setdefault(f"users.{user}.{k}", v)
        return errors

    def check(self) -> None:
        """Raise TuningError when a cross-field rule fails."""
        errors = self.cross_errors()
        if errors:
            raise TuningError(errors)

    def try_changes(self, changes: Mapping[str, Any],
                    user: str | None = None) -> tuple[TuningSet, dict[str, str]]:
        """Apply the valid part of ``changes``; return (new set, every error found).

        Field errors (type, range, unknown name) and the cross-field errors of the result
        are reported together, so a form can mark every bad input at once. A value of
        ``None`` (or the string ``"default"``) under a user removes that override; globally
        it resets the parameter to LightRAG's default.
        """
        prefix = "" if user is None else f"users.{user}."
        new = self.copy()
        target = new.params if user is None else new.users.setdefault(user, {})
        raw: dict[str, Any] = {}
        resets: list[str] = []
        for name, value in changes.items():
            if value is None or (isinstance(value, str) and value.strip().lower() == "default"):
                resets.append(name)
            else:
                raw[name] = value
        values, errors = check_fields(raw)
        for name in resets:
            if name not in NAMES:
                errors[name] = check_fields({name: 0})[1][name]
            elif user is None:
                target[name] = defaults()[name]
            else:
                target.pop(name, None)
        target.update(values)
        if user is not None and not target:
            new.users.pop(user, None)
        all_errors = {f"{prefix}{k}": v for k, v in errors.items()}
        cross = blame(new.cross_errors(), set(changes), prefix)
        for k, v in cross.items():
            all_errors.setdefault(k, v)
        return new, all_errors

    def with_changes(self, changes: Mapping[str, Any], user: str | None = None) -> TuningSet:
        """A new, validated set with ``changes`` applied; raises TuningError."""
        new, errors = self.try_changes(changes, user)
        if errors:
            raise TuningError(errors)
        return new
