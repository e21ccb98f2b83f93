"""The one engine that turns a configuration setting's or a tuning parameter's raw value (from
TOML, JSON, an environment variable or a ``KEY=VALUE`` argument) into its declared type.

``lightkeeper.config.Setting`` and ``lightkeeper.tuning.params.Param`` both describe a value with
a ``type``, optional ``min``/``max`` and ``choices`` (the :class:`Spec` protocol); both are
checked here, so they cannot disagree. Numbers must be finite everywhere: ``nan`` and ``inf``
pass every ``min``/``max`` comparison, so a non-finite interval or threshold would silently turn
a check off.
"""

from __future__ import annotations

import math
import os
from typing import Any, Protocol

TYPES = ("int", "float", "bool", "str", "path", "list", "secret")


class Spec(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def min(self) -> float | None: ...
    @property
    def max(self) -> float | None: ...
    @property
    def choices(self) -> tuple[str, ...] | None: ...

    def allowed(self) -> str:
        """What is allowed, in words ("an integer >= 1")."""
        ...


class ValueRefused(ValueError):
    """The value does not fit its spec. The text says what was given and what is allowed."""


def fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def parse_bool(text: str) -> bool | None:
    """'1/true/yes/on' and '0/false/no/off' (any case); None for anything else."""
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    return None


def coerce(spec: Spec, value: Any, max_len: int | None = None) -> Any:
    """Convert ``value`` to ``spec``'s type and check its range and choices.

    Raises :class:`ValueRefused` ("nan is not allowed (not a finite number); expected a
    number >= 1"). ``max_len`` bounds strings (and refuses control characters in them).
    """
    original = value

    def bad(reason: str = "") -> ValueRefused:
        why = f" ({reason})" if reason else ""
        # text that parsed is shown parsed (``top_k=0`` says 0, not '0'); anything else as given
        shown = value if isinstance(original, str) and not isinstance(value, str) else original
        return ValueRefused(f"{shown!r} is not allowed{why}; expected {spec.allowed()}")

    t = spec.type
    text = value.strip() if isinstance(value, str) else None
    if t == "int":
        if isinstance(value, bool):
            raise bad()
        if text is not None:
            try:
                value = int(text.replace("_", ""))
            except ValueError:
                raise bad() from None
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise bad("not a finite number")
            if not value.is_integer():
                raise bad("not a whole number")
            value = int(value)
        elif not isinstance(value, int):
            raise bad()
    elif t == "float":
        if isinstance(value, bool):
            raise bad()
        if text is not None:
            try:
                value = float(text)
            except ValueError:
                raise bad() from None
        elif isinstance(value, (int, float)):
            value = float(value)
        else:
            raise bad()
        if not math.isfinite(value):
            raise bad("not a finite number")
    elif t == "bool":
        if text is not None:
            parsed = parse_bool(text)
            if parsed is None:
                raise bad()
            value = parsed
        elif not isinstance(value, bool):
            raise bad()
    elif t == "list":
        if text is not None:
            value = [v.strip() for v in text.split(",") if v.strip()]
        elif not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise bad()
    elif t in ("str", "secret", "path"):
        if not isinstance(value, str):
            raise bad()
        if spec.choices:
            # Accept a different case (TOP modes are lower case, pick methods upper case).
            folded = value.strip().lower()
            value = next((c for c in spec.choices if c.lower() == folded), value)
        if max_len is not None:
            value = value.strip()
            if len(value) > max_len:
                raise bad(f"longer than {max_len} characters")
            if any(ord(ch) < 32 for ch in value):
                raise bad("control characters")
        if t == "path" and value:
            value = os.path.expanduser(value)
    else:
        raise ValueError(f"unknown value type {t!r} (one of {', '.join(TYPES)})")
    if spec.choices and value not in spec.choices:
        raise bad()
    if t in ("int", "float"):
        if spec.min is not None and value < spec.min:
            raise bad(f"smaller than {fmt_num(spec.min)}")
        if spec.max is not None and value > spec.max:
            raise bad(f"larger than {fmt_num(spec.max)}")
    return value
