"""Which snapshots a zone keeps: the backup package's keep-* rules (``backup.retention``),
with the same grouping by host and sources as a local forget, applied to the zone's own
snapshots and the zone's keep-* settings."""

from __future__ import annotations

from typing import Any

from lightkeeper.backup import retention


def policy_for(keep: dict[str, int]) -> retention.Policy:
    return retention.Policy(**{k: int(v) for k, v in keep.items()
                               if k in ("last", "hourly", "daily", "weekly", "monthly",
                                        "yearly")})


def _sources(manifest: dict[str, Any]) -> list[str]:
    # the grouping a local forget uses (backup.prune)
    return [f"user:{u}" for u in manifest.get("users", {})] + \
        [f"db:{d}" for d in manifest.get("databases", {})]


def select_keep(repo: Any, infos: list[Any], keep: dict[str, int]) -> tuple[set[str],
                                                                            list[dict[str, Any]]]:
    """(ids kept, kept entries with reasons) among ``infos`` of ``repo`` (the zone mirror)."""
    policy = policy_for(keep)
    if policy.empty():
        return {i.id for i in infos}, [{"id": i.id, "reasons": ["no policy"]} for i in infos]
    groups = {i.id: retention.group_key(i, _sources(repo.read_snapshot(i.id))) for i in infos}
    kept, _removed = retention.apply(infos, policy, groups)
    return {k["id"] for k in kept}, [dict(k) for k in kept]
