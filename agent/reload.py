"""Live reload of the agent's configuration (SIGHUP, ``lightkeeper agent reload``).

The configuration is rebuilt from the sources the agent started with (the same files, the same
command-line overrides, its environment) and checked as ``config check`` would check it. An
invalid configuration, or one that changes a setting that needs a restart, is refused as a
whole: the agent keeps running on the old one and says why. A valid one is applied in place
(every holder of the ``Config`` object sees it; running jobs are not interrupted) and each
changed key is audited.
"""

from __future__ import annotations

import time
from typing import Any

from lightkeeper import config as config_mod
from lightkeeper.agent.configcheck import check, needs_restart
from lightkeeper.config import Config, ConfigError


def rebuild(cfg: Config) -> Config:
    """The configuration from ``cfg``'s sources, read again now."""
    new = config_mod.load(cfg.explicit_file, cfg.overrides, env=cfg.env,
                          read_system=cfg.read_system)
    check(new)
    return new


def changed_keys(old: Config, new: Config) -> dict[str, dict[str, Any]]:
    """key -> {old, new, origin} for every effective key that differs (secrets masked)."""
    before = {k: (v, o) for k, v, o in old.items()}
    after = {k: (v, o) for k, v, o in new.items()}
    out = {}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, (None, "removed")), after.get(key, (None, "removed"))
        if a[0] != b[0]:
            out[key] = {"old": a[0], "new": b[0], "origin": b[1]}
    return out


def reload(agent: Any, actor: str | None = None) -> dict[str, Any]:
    """Re-read and apply the configuration; returns ``{ok, ts, changed}`` or ``{ok: False,
    ts, error}`` (also kept as ``agent.last_reload`` for the status and the console).

    ``agent`` is the daemon's Agent (typed loosely: the daemon composes this module, which must
    not import it back); it provides cfg, services, apply_config, store_config_snapshot and last_reload."""
    now = time.time()
    audit = agent.services.audit
    try:
        new = rebuild(agent.cfg)
        changes = changed_keys(agent.cfg, new)
        fixed = [k for k in changes if needs_restart(k)]
        if fixed:
            raise ConfigError(
                "these settings cannot change while the agent runs: " + ", ".join(fixed)
                + "; restart the agent to apply them (systemctl restart lightkeeper-agent, or "
                "lightkeeper agent --stop then --detach)")
    except ConfigError as exc:
        result: dict[str, Any] = {"ok": False, "ts": now, "error": str(exc), "actor": actor}
        agent.last_reload = result
        audit("config.reload_refused", actor=actor, level="error", error=str(exc))
        return result
    agent.apply_config(new, changes)
    for key, change in changes.items():
        audit("config.changed", actor=actor, key=key, old=change["old"], new=change["new"],
              origin=change["origin"], live=True)
    agent.store_config_snapshot()
    result = {"ok": True, "ts": now, "changed": sorted(changes), "actor": actor}
    agent.last_reload = result
    audit("config.reloaded", actor=actor, keys=sorted(changes))
    return result
