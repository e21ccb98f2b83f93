"""The systemd unit of the agent, written for this install (``lightkeeper agent install-unit``).

``deploy/systemd/lightkeeper-agent.service`` is this module's output for the reference layout
below (a test checks it): a dedicated ``lightkeeper`` account, the config in /etc/lightkeeper,
state in /var/lib/lightkeeper, users' LightRAG directories in /srv/lightrag, the repository in
/var/backups/lightkeeper.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from lightkeeper.config import Config, mask_secret

UNIT_NAME = "lightkeeper-agent.service"

REFERENCE = {
    "python": "/opt/lightkeeper/venv/bin/python",
    "config": "/etc/lightkeeper/config.toml",
    "state_dir": "/var/lib/lightkeeper",
    "data_root": "/srv/lightrag",
    "repository": "/var/backups/lightkeeper",
}


def writable_paths(cfg: Config) -> tuple[list[str], list[str]]:
    """(paths that must exist and be writable: state dir, data root, repository;
    other places the agent writes that lie outside them, written if they exist)."""
    required = [str(cfg.path("paths.state_dir")), str(cfg.path("paths.data_root")),
                str(cfg.path("backup.repository"))]
    required = list(dict.fromkeys(required))
    extra = []
    for key in ("paths.spool_dir", "backup.scratch_dir"):
        extra.append(str(cfg.path(key)))
    for key in ("paths.tuning_file", "store.path", "log.file", "agent.socket", "backup.key_file"):
        extra.append(str(cfg.path(key).parent))
    roots = [Path(p) for p in required]
    outside = [p for p in dict.fromkeys(extra)
               if not any(Path(p) == r or r in Path(p).parents for r in roots)]
    return required, outside


def service_args(cfg: Config) -> list[str]:
    """The options that rebuild ``cfg`` in the service, which inherits no shell environment:
    the config file, the command-line overrides, and the settings this shell's LIGHTKEEPER_*
    variables made (secrets excepted: they belong in the config file, owner-only)."""
    args = cfg.source_args()
    for key, value, origin in cfg.items():
        if origin.startswith("environment") and value != mask_secret("secret"):  # masked
            if isinstance(value, list):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            args += ["--set", f"{key}={value}"]
    return args


def render(cfg: Config, python: str, user: str, group: str | None = None) -> str:
    required, optional = writable_paths(cfg)
    command = [python, "-m", "lightkeeper.cli.main", *service_args(cfg), "agent"]
    rw = " ".join(required + [f"-{p}" for p in optional])  # '-': skipped if it does not exist
    stop_timeout = int(cfg["agent.shutdown_timeout"]) + 30
    return f"""\
# lightkeeper agent as a systemd service, written by `lightkeeper agent install-unit`.
# Runs as an unprivileged account that owns the state directory and the repository and can
# read (and, for restores, write) the users' LightRAG directories; it never needs root.
[Unit]
Description=lightkeeper agent (metrics, alerts, backups and replication for LightRAG)
Documentation=man:systemd.service(5)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={shlex.join(command)}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
WatchdogSec=60s
TimeoutStartSec=120s
TimeoutStopSec={stop_timeout}s
User={user}
Group={group or user}
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths={rw}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def reference_config() -> Config:
    from lightkeeper import config as config_mod

    cfg = config_mod.load(env={}, read_system=False, overrides=[
        ("paths.state_dir", REFERENCE["state_dir"]),
        ("paths.data_root", REFERENCE["data_root"]),
        ("backup.repository", REFERENCE["repository"])])
    # the reference unit reads its settings from the system config file, not from flags
    cfg.overrides = []
    cfg.explicit_file = REFERENCE["config"]
    return cfg


def reference_unit() -> str:
    return render(reference_config(), REFERENCE["python"], "lightkeeper")
