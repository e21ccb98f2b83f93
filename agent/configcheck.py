"""Everything the agent would refuse in a configuration, checked before it is used.

``lightkeeper config check``, the agent's start and its live reload all run :func:`check`, so a
bad schedule string or an unknown alert name is refused up front with the same message,
instead of being logged every 30 seconds by a running agent.
"""

from __future__ import annotations

from lightkeeper.agent import scheduler
from lightkeeper.agent.alerts import configured_rules
from lightkeeper.config import Config, ConfigError


def check(cfg: Config) -> None:
    """Raise ConfigError naming the source, key and value of the first problem."""
    configured_rules(cfg)  # unknown alert names
    for key, value, origin in cfg.items():
        if key.rpartition(".")[2].endswith("schedule") and isinstance(value, str):
            try:
                scheduler.parse(value)
            except scheduler.ScheduleError as exc:
                raise ConfigError(f"{origin}: {key}: {exc}") from None


# Settings the running agent cannot take without a restart: they name files and directories it
# holds open or watches, and its listeners. A reload that changes one is refused. (collect.*
# settings apply live: the collectors are rebuilt.)
RESTART_PREFIXES = ("paths.", "agent.socket", "store.path", "http.", "log.file", "log.max_bytes",
                    "log.backups")


def needs_restart(key: str) -> bool:
    return key.startswith(RESTART_PREFIXES)
