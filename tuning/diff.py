"""Differences between two tunings: changed, added and removed keys with their effect class."""

from __future__ import annotations

from lightkeeper.contracts.tuning import DiffRow
from lightkeeper.tuning.params import BY_NAME, EFFECTS, effect_of
from lightkeeper.tuning.tuningset import TuningSet

_EFFECT_ORDER = ("rebuild", "restart", "new_documents", "next_operation")


def diff(a: TuningSet, b: TuningSet) -> list[DiffRow]:
    """Rows ``{key, change, old, new, effect, unit}`` from ``a`` to ``b``, in model order."""
    fa, fb = a.flat(), b.flat()
    order = {name: i for i, name in enumerate(BY_NAME)}

    def sort_key(key: str) -> tuple[int, str, int]:
        if key.startswith("users."):
            user, _, name = key[len("users."):].rpartition(".")
            return 1, user, order.get(name, 999)
        return 0, "", order.get(key, 999)

    rows: list[DiffRow] = []
    for key in sorted(set(fa) | set(fb), key=sort_key):
        if key in fa and key in fb:
            if fa[key] == fb[key]:
                continue
            change = "changed"
        elif key in fb:
            change = "added"
        else:
            change = "removed"
        name = key.rsplit(".", 1)[-1]
        p = BY_NAME.get(name)
        rows.append({"key": key, "change": change, "old": fa.get(key), "new": fb.get(key),
                     "effect": effect_of(key), "unit": p.unit if p else ""})
    return rows


def effects_summary(rows: list[DiffRow]) -> list[str]:
    """One line per effect class present, most demanding first."""
    present = {r["effect"] for r in rows}
    out = []
    for eff in _EFFECT_ORDER:
        if eff in present:
            keys = ", ".join(r["key"] for r in rows if r["effect"] == eff)
            out.append(f"{eff}: {keys} ({EFFECTS[eff]})")
    return out


def render(rows: list[DiffRow]) -> str:
    if not rows:
        return "no differences"
    width = max(len(r["key"]) for r in rows)
    lines = []
    for r in rows:
        mark = {"changed": "~", "added": "+", "removed": "-"}[r["change"]]
        if r["change"] == "changed":
            val = f"{r['old']!r} -> {r['new']!r}"
        elif r["change"] == "added":
            val = f"{r['new']!r}"
        else:
            val = f"(was {r['old']!r})"
        lines.append(f"{mark} {r['key'].ljust(width)}  {val}  [{r['effect']}]")
    return "\n".join(lines)
