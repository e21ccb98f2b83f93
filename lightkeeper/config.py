"""Layered configuration: one TOML schema, documented precedence, origins for every value.

Precedence, lowest first::

    built-in defaults
    < /etc/lightkeeper/config.toml
    < $XDG_CONFIG_HOME/lightkeeper/config.toml (~/.config/lightkeeper/config.toml)
    < --config FILE, or LIGHTKEEPER_CONFIG=FILE
    < LIGHTKEEPER_<SECTION>__<KEY> environment variables
    < command-line flags (--set section.key=value and the dedicated flags)

Keys are dotted (``store.retention_raw_hours``). Tables of named entries (``zones.NAME.*``,
``alerts.NAME.*``, ``sources.sqlite.NAME.*``, ``sources.postgres.NAME.*``) have their own
sub-schema. Unknown keys are refused with a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from lightkeeper.coerce import ValueRefused
from lightkeeper.coerce import coerce as coerce_value
from lightkeeper.redact import redact_text

ENV_PREFIX = "LIGHTKEEPER_"
ENV_CONFIG_FILE = "LIGHTKEEPER_CONFIG"
# Environment variables that are ours but are not configuration keys.
ENV_RESERVED = {ENV_CONFIG_FILE, "LIGHTKEEPER_AGENT_CHILD", "LIGHTKEEPER_TUNING_VERSION"}

SYSTEM_CONFIG = Path("/etc/lightkeeper/config.toml")


class ConfigError(ValueError):
    """A configuration problem, with the source, key, bad value and what is allowed."""


class Setting(NamedTuple):
    """One configuration key with its type, default, bounds and meaning. (A NamedTuple, not a
    dataclass: ``dataclasses`` imports ``inspect``, 10 ms of every CLI command's start.)"""

    key: str
    type: str  # "int", "float", "str", "bool", "path", "list", "secret"
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = [{"int": "an integer", "float": "a number", "bool": "true or false",
                  "path": "a path", "list": "a list of strings", "secret": "a string",
                  "str": "a string"}[self.type]]
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return " ".join(parts)


def _state_default(sub: str) -> Callable[[Config], str]:
    return lambda cfg: str(Path(cfg["paths.state_dir"]) / sub)


def _default_state_dir(cfg: Config | None = None) -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "lightkeeper")


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lightkeeper" / "config.toml"


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # paths
    S("paths.state_dir", "path", _default_state_dir,
      "Agent state: store, socket, logs, pid and lock files. Default $XDG_STATE_HOME/lightkeeper."),
    S("paths.data_root", "path", _state_default("data"),
      "Directory holding one LightRAG working directory per user."),
    S("paths.spool_dir", "path", _state_default("spool"),
      "Where instrumented LightRAG processes append their operation records."),
    S("paths.tuning_file", "path", _state_default("tuning/active.toml"),
      "The active LightRAG tuning parameters, read and watched by LightRAG processes."),
    # agent
    S("agent.socket", "path", _state_default("agent.sock"),
      "Unix socket of the agent's local API (created owner-only)."),
    S("agent.shutdown_timeout", "float", 15.0, "Seconds to wait for jobs to stop on shutdown.",
      min=0, max=600),
    # The agent's loops. Each first runs after min(its usual start delay, its interval), so short
    # intervals (the test suite's) also start soon; a reload applies a change on the next round.
    S("agent.alert_interval", "float", 5.0,
      "Seconds between alert evaluations (and the agent's own health samples).",
      min=0.1, max=3600),
    S("agent.schedule_interval", "float", 30.0,
      "Seconds between checks of the backup, verify, drill and replication schedules.",
      min=0.1, max=3600),
    S("agent.probe_interval", "float", 30.0,
      "Seconds between checks of which replication zones are due for a reachability probe.",
      min=0.1, max=3600),
    S("agent.timestamp_interval", "float", 30.0,
      "Seconds between refreshes of the timestamps ages are computed from (backups, drills).",
      min=0.1, max=3600),
    S("agent.footing_interval", "float", 2.0,
      "Seconds between checks that the agent's state directory, lock and socket still exist.",
      min=0.1, max=600),
    S("agent.notify_interval", "float", 1.0,
      "Seconds between rounds of alert notifications (Alertmanager, retries).",
      min=0.1, max=600),
    S("agent.rag_health_interval", "float", 30.0,
      "Seconds between computations of the LightRAG latency, error-rate and silence gauges "
      "that the LightRAG alerts read.",
      min=0.1, max=3600),
    # store
    S("store.path", "path", _state_default("metrics.duckdb"), "The DuckDB metrics store."),
    S("store.flush_interval", "float", 2.0, "Seconds between batched writes.", min=0.1, max=60),
    S("store.retention_raw_hours", "float", 48.0, "Keep raw samples this long.", min=1, max=24 * 90),
    S("store.retention_1m_days", "float", 30.0, "Keep 1-minute rollups this long.", min=1, max=3650),
    S("store.retention_1h_days", "float", 400.0, "Keep 1-hour rollups this long.", min=1, max=36500),
    S("store.retention_ops_days", "float", 30.0, "Keep LightRAG operation records this long.",
      min=1, max=3650),
    S("store.retention_events_days", "float", 90.0,
      "Keep events and the audit log this long.", min=1, max=36500),
    S("store.retention_jobs_days", "float", 180.0, "Keep finished jobs' records this long.",
      min=1, max=36500),
    S("store.retention_alerts_days", "float", 365.0, "Keep resolved alerts this long.",
      min=1, max=36500),
    S("store.retention_quarantine_days", "float", 14.0,
      "Keep quarantined spool lines this long.", min=1, max=3650),
    S("store.retention_bench_days", "float", 365.0, "Keep bench runs this long.",
      min=1, max=36500),
    S("store.size_budget_mb", "float", 2048.0, "Alert when the store file grows past this.",
      min=1),
    S("store.compact_free_share", "float", 0.3,
      "Rewrite the store into a fresh file when that gives back at least this share of the "
      "file: its free blocks (space DuckDB keeps after retention deletes, never returned to the "
      "file system) and the dead rows and half-filled blocks inside used ones, estimated from "
      "the last compaction's bytes per row; 0 never does. This bounds how far the file grows "
      "past its data with uptime; between copies it runs at its working size (a small store's "
      "checkpoints keep about half its data again). Writers wait while the copy is made "
      "(about 0.3 s for 20 MB).",
      min=0, max=0.95),
    S("store.compact_min_free_mb", "float", 2.0,
      "Compact the store only when that gives back this many MB too.", min=0),
    S("store.compact_min_interval_hours", "float", 6.0,
      "At most one compaction of the store in this many hours.", min=0, max=24 * 365),
    S("store.maintenance_interval", "float", 60.0,
      "Seconds between maintenance passes: rollups, and retention at most every 10 minutes.",
      min=1, max=3600),
    S("store.memory_limit_mb", "int", 128,
      "Memory DuckDB may hold for the store (its cache and queries; larger work spills to "
      "disk). DuckDB's own default is 80 % of the machine's RAM.", min=32, max=65536),
    S("store.threads", "int", 1, "DuckDB threads for the store's queries.", min=1, max=256),
    # collectors
    S("collect.system_interval", "float", 5.0, "Seconds between system samples.", min=0.5, max=3600),
    S("collect.userdir_interval", "float", 60.0, "Seconds between per-user usage passes.",
      min=1, max=86400),
    S("collect.userdir_full_rescan", "float", 3600.0,
      "Seconds between full rescans of every user directory (catches missed changes).",
      min=10, max=7 * 86400),
    S("collect.userdir_growth_window", "float", 3600.0,
      "Seconds over which per-user growth (bytes per second) is measured.", min=60,
      max=30 * 86400),
    S("collect.process_pidfiles", "list", [],
      "Pid files of extra processes to watch (LightRAG processes are discovered by themselves)."),
    S("collect.process_patterns", "list", [],
      "Command-line substrings of extra processes to watch (LightRAG processes are discovered "
      "by what they are: lightkeeper serve, lightrag-server, gunicorn workers, the library "
      "runtime, any process with a user's file open)."),
    S("collect.mounts_exclude", "list", ["/proc", "/sys", "/dev", "/run", "/snap"],
      "Mount point prefixes not reported."),
    S("collect.interfaces_exclude", "list", [], "Network interfaces not reported (e.g. 'lo')."),
    # http endpoints
    S("http.enabled", "bool", True, "Serve /metrics, /api/v1/resources, /healthz, /readyz."),
    S("http.listen", "str", "127.0.0.1:9464",
      "host:port of the monitoring listener. Binds loopback unless you change it."),
    # logs
    S("log.level", "str", "info", "Minimum log level.",
      choices=("debug", "info", "warning", "error")),
    S("log.file", "path", _state_default("logs/lightkeeper.jsonl"), "The agent's JSON-lines log file (the agent alone writes and rotates it; in-process commands "
      "such as 'zones --local' write NAME.cli.jsonl beside it)."),
    S("log.max_bytes", "int", 10 * 1024 * 1024, "Rotate the log file at this size.", min=4096),
    S("log.backups", "int", 5, "Rotated log files kept.", min=0, max=100),
    # lightrag runtime
    S("rag.provider", "str", "offline", "LLM/embedding provider.", choices=("offline", "openai")),
    S("rag.pool_size", "int", 8, "LightRAG workspaces kept open per process (LRU).", min=1, max=1024),
    S("rag.simulate_llm_ms", "float", 0.0,
      "Offline provider: fixed delay per LLM call, to behave like a real model.", min=0),
    S("rag.simulate_llm_ms_per_token", "float", 0.0,
      "Offline provider: extra delay per output token.", min=0),
    S("rag.simulate_embed_ms", "float", 0.0, "Offline provider: delay per embedding call.", min=0),
    S("rag.llm_url", "str", "", "OpenAI-compatible base URL for the LLM (provider=openai)."),
    S("rag.llm_model", "str", "", "LLM model name (provider=openai)."),
    S("rag.embed_url", "str", "", "OpenAI-compatible base URL for embeddings."),
    S("rag.embed_model", "str", "", "Embedding model name."),
    S("rag.embed_dim", "int", 0, "Embedding dimension of embed_model (0: ask the tuning file).",
      min=0, max=65536),
    S("rag.api_key_env", "str", "OPENAI_API_KEY", "Environment variable holding the API key."),
    S("rag.api_key_file", "path", "", "File holding the API key (owner-only)."),
    S("rag.spool_max_bytes", "int", 16 * 1024 * 1024, "Rotate a spool file at this size.",
      min=4096),
    S("rag.gate_timeout", "float", 120.0,
      "Seconds a LightRAG writer or reader waits for a user's write gate before failing.",
      min=0, max=86400),
    S("rag.request_timeout", "float", 180.0,
      "Seconds an OpenAI-compatible LLM or embedding request may take (provider=openai).",
      min=1, max=3600),
    # backup
    S("backup.repository", "path", _state_default("repo"), "Local backup repository."),
    S("backup.key_file", "path", _state_default("keys/repo.key"),
      "Repository key. Without it the backups cannot be read: export it and keep a copy."),
    S("backup.encrypt", "bool", True, "Encrypt the repository at rest."),
    S("backup.schedule", "str", "", "Backup schedule: '' (off), 'hourly', 'daily', or 'every 30m'."),
    S("backup.compression_level", "int", 3, "zstd level.", min=1, max=19),
    S("backup.include_metrics", "bool", True, "Back up the metrics store too."),
    S("backup.keep_last", "int", 10, "Retention: keep the last N snapshots.", min=0),
    S("backup.keep_hourly", "int", 24, "Retention: hourly snapshots kept.", min=0),
    S("backup.keep_daily", "int", 7, "Retention: daily snapshots kept.", min=0),
    S("backup.keep_weekly", "int", 4, "Retention: weekly snapshots kept.", min=0),
    S("backup.keep_monthly", "int", 12, "Retention: monthly snapshots kept.", min=0),
    S("backup.keep_yearly", "int", 0, "Retention: yearly snapshots kept.", min=0),
    S("backup.max_age_hours", "float", 26.0, "Alert when the newest snapshot is older.", min=0.1),
    S("backup.scratch_dir", "path", _state_default("backup-scratch"),
      "Scratch space for database dumps before they enter the repository."),
    S("backup.gate_timeout", "float", 60.0,
      "Seconds to wait for a user's write gate before that user's part fails.", min=0, max=3600),
    S("backup.copy_retries", "int", 3,
      "Re-copies of a user whose files changed under the backup (a writer ignoring the gate).",
      min=0, max=20),
    S("backup.quiet_seconds", "float", 2.0,
      "A user's copy is accepted only when no file of it was modified outside the write gate "
      "for this long before and during the copy (a writer ignoring the gate); 0 turns it off.",
      min=0, max=600),
    S("backup.prune_schedule", "str", "",
      "Forget by the keep_* policy, then prune: '' (off), 'daily', 'every 12h'..."),
    S("backup.verify_schedule", "str", "",
      "Verify schedule ('' off); reads backup.verify_sample_pct of the packs."),
    S("backup.verify_sample_pct", "float", 10.0, "Share of packs a scheduled verify reads.",
      min=0, max=100),
    S("backup.schedule_jitter", "float", 120.0,
      "Scheduled backups start after a random delay of up to this many seconds.", min=0,
      max=3600),
    S("backup.drill_schedule", "str", "",
      "Restore drill schedule ('' off): restore a sample of users, open them with LightRAG."),
    S("backup.drill_users", "int", 3, "Users a restore drill restores and opens.", min=1,
      max=1000),
    S("backup.drill_max_age_days", "float", 8.0,
      "Alert when no restore drill has passed for this many days.", min=0.1),
    S("replication.schedule", "str", "", "Default replication schedule for zones."),
    S("replication.max_lag_minutes", "float", 120.0, "Alert when a zone lags more.", min=1),
    S("replication.unreachable_minutes", "float", 30.0,
      "Alert when a zone is unreachable longer.", min=1),
    S("replication.connections", "int", 2, "SFTP channels per zone during a sync.", min=1, max=16),
    S("replication.ssh_connections", "int", 1,
      "SSH connections the SFTP channels are spread over (more helps on high-latency links).",
      min=1, max=16),
    S("replication.retries", "int", 3, "Reconnect attempts (with backoff) after a network error.",
      min=0, max=20),
    S("replication.timeout_seconds", "float", 15.0, "Connect and handshake timeout per zone.",
      min=1, max=600),
    S("replication.keep_open_seconds", "float", 600.0,
      "Seconds a zone's SSH session stays open after a sync or a probe, for the zone's next "
      "sync or probe (0: closed at once). Longer than replication.status_schedule's interval, "
      "the agent holds one session per SFTP zone; each sync then saves the connection and "
      "sftp-server start (about 0.2 s).", min=0, max=86400),
    S("replication.status_schedule", "str", "every 5m",
      "How often the agent probes each zone and refreshes its lag and up/down metrics ('' "
      "or 'off': never; a sync still refreshes them)."),
    # alert delivery
    S("alerting.alertmanager_url", "str", "",
      "Alertmanager base URL (for example http://127.0.0.1:9093); the agent pushes firing and "
      "resolved alerts to its v2 API. '' keeps alerts in the agent only."),
    S("alerting.runbook_base_url", "str", "file:///usr/share/doc/lightkeeper/runbook.md",
      "Absolute URL of the runbook (docs/runbook.md where your team reads it: a wiki or your "
      "Git host); each alert links to BASE#alert_name."),
    S("alerting.resend_seconds", "float", 60.0,
      "Seconds between re-sends of firing alerts to Alertmanager (they expire after 4 times "
      "this if the agent stops sending).", min=5, max=3600),
    S("alerting.timeout_seconds", "float", 10.0, "Timeout of one request to Alertmanager.",
      min=1, max=120),
    S("console.refresh_seconds", "float", 2.0,
      "Console: seconds between polls of status, alerts, jobs and lists.", min=0.5, max=60),
    S("console.chart_refresh_seconds", "float", 5.0,
      "Console: seconds between chart refreshes (not faster than the collection interval).",
      min=1, max=600),
    S("console.window", "str", "1h", "Console: initial chart time window.",
      choices=("5m", "1h", "24h", "7d")),
    S("console.theme", "str", "dark", "Console: colour theme.", choices=("dark", "light")),
)

ZONE_SETTINGS: tuple[Setting, ...] = (
    S("kind", "str", "sftp", "Zone kind: 'sftp' (an SSH server) or 's3' (S3-compatible object "
      "storage).", choices=("sftp", "s3")),
    S("host", "str", "", "Host name or address of the zone's SSH server."),
    S("port", "int", 22, "SSH port.", min=1, max=65535),
    S("user", "str", "", "SSH user."),
    S("key_file", "path", "", "Private key file ('' uses the operator's ssh-agent)."),
    S("remote_path", "str", "", "Repository path on the zone; every write stays inside it."),
    S("known_hosts", "path", "", "known_hosts file for this zone (default: state_dir/known_hosts)."),
    S("bandwidth_limit_kbps", "int", 0, "Upload limit in KiB/s (0: none).", min=0),
    S("schedule", "str", "", "Replication schedule for this zone (overrides replication.schedule)."),
    S("keep_last", "int", -1, "Per-zone retention (-1: same as backup.*).", min=-1),
    S("keep_hourly", "int", -1, "Per-zone retention (-1: same as backup.*).", min=-1),
    S("keep_yearly", "int", -1, "Per-zone retention (-1: same as backup.*).", min=-1),
    S("keep_daily", "int", -1, "Per-zone retention (-1: same as backup.*).", min=-1),
    S("keep_weekly", "int", -1, "Per-zone retention (-1: same as backup.*).", min=-1),
    S("keep_monthly", "int", -1, "Per-zone retention (-1: same as backup.*).", min=-1),
    S("endpoint_url", "str", "",
      "S3: endpoint URL ('' = AWS for the region; e.g. http://127.0.0.1:8333 for SeaweedFS)."),
    S("bucket", "str", "", "S3: bucket holding the repository (must exist)."),
    S("prefix", "str", "", "S3: key prefix of the repository inside the bucket ('' = none)."),
    S("region", "str", "us-east-1", "S3: region name used for request signing."),
    S("profile", "str", "",
      "S3: named profile of the credentials file ('' = AWS_ACCESS_KEY_ID/"
      "AWS_SECRET_ACCESS_KEY from the environment, else the default profile)."),
    S("credentials_file", "path", "",
      "S3: AWS-format credentials file (owner-only; '' = ~/.aws/credentials). Secrets are "
      "never put in this configuration."),
    S("storage_class", "str", "", "S3: storage class of uploaded objects ('' = the bucket's "
      "default), e.g. STANDARD_IA."),
    S("part_size_mb", "int", 16, "S3: files larger than this go up as multipart uploads of "
      "parts this large.", min=5, max=5120),
    S("concurrency", "int", 16, "S3: requests in flight per zone (objects and parts).", min=1,
      max=64),
)

ALERT_SETTINGS: tuple[Setting, ...] = (
    S("warning", "float", None, "Warning level."),
    S("critical", "float", None, "Critical level."),
    S("for_seconds", "float", None, "How long the condition must hold before it fires.", min=0),
    S("enabled", "bool", True, "Evaluate this alert."),
)

SQLITE_SETTINGS: tuple[Setting, ...] = (
    S("path", "path", "", "SQLite database file, backed up with the online backup API."),
)

POSTGRES_SETTINGS: tuple[Setting, ...] = (
    S("dsn", "secret", "", "libpq connection string for pg_dump (password never logged)."),
    S("pg_dump", "str", "pg_dump", "pg_dump executable."),
)

TABLES: dict[str, tuple[Setting, ...]] = {
    "zones": ZONE_SETTINGS,
    "alerts": ALERT_SETTINGS,
    "sources.sqlite": SQLITE_SETTINGS,
    "sources.postgres": POSTGRES_SETTINGS,
}

_BY_KEY = {s.key: s for s in SETTINGS}


def _table_setting(key: str) -> tuple[str, str, Setting] | None:
    for prefix, schema in TABLES.items():
        if key.startswith(prefix + "."):
            rest = key[len(prefix) + 1:]
            name, _, field_name = rest.partition(".")
            for s in schema:
                if s.key == field_name:
                    return prefix, name, s
    return None


def _all_known_keys() -> list[str]:
    keys = list(_BY_KEY)
    for prefix, schema in TABLES.items():
        keys += [f"{prefix}.NAME.{s.key}" for s in schema]
    return keys


def _suggest(key: str) -> str:
    candidates = _all_known_keys()
    # compare against concrete table keys too, with the name substituted
    concrete = []
    for c in candidates:
        if ".NAME." in c:
            prefix, _, field_name = c.partition(".NAME.")
            if key.startswith(prefix + "."):
                name = key[len(prefix) + 1:].partition(".")[0]
                concrete.append((f"{prefix}.{name}.{field_name}", c))
                continue
        concrete.append((c, c))
    match = difflib.get_close_matches(key, [c for c, _ in concrete], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def coerce(setting: Setting, value: Any, source: str, key: str) -> Any:
    """Convert ``value`` (from TOML or a string) to the setting's type, or raise ConfigError.

    The engine is :func:`lightkeeper.coerce.coerce`, the one tuning parameters use too."""
    try:
        return coerce_value(setting, value)
    except ValueRefused as exc:
        raise ConfigError(f"{source}: {key} = {exc}") from None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from _flatten(v, key + ".")
        else:
            yield key, v


class Config:
    """Effective configuration: values and, for every key, the source that set it."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._origins: dict[str, str] = {}
        self.files_read: list[str] = []
        # the sources a child process needs to rebuild this configuration (the environment
        # and the default files it inherits): the explicit file and the command-line overrides
        self.explicit_file: str | None = None
        self.overrides: list[tuple[str, Any]] = []
        # how it was loaded, so that a live reload reads the same sources again
        self.env: Mapping[str, str] | None = None
        self.read_system = True

    # -- building -----------------------------------------------------------------------
    def set(self, key: str, value: Any, source: str) -> None:
        setting = _BY_KEY.get(key)
        if setting is None:
            found = _table_setting(key)
            if found is None:
                raise ConfigError(f"{source}: unknown key {key!r}{_suggest(key)}")
            prefix, name, setting = found
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ConfigError(f"{source}: bad name {name!r} in {key!r}: use letters, digits, - and _")
        self._values[key] = coerce(setting, value, source, key)
        self._origins[key] = source

    def load_file(self, path: Path, source: str | None = None, required: bool = True) -> None:
        path = Path(path)
        label = source or str(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if required:
                raise ConfigError(f"{label}: config file not found") from None
            return
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read config file: {exc.strerror}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{label}: invalid TOML: {exc}") from None
        self.files_read.append(str(path))
        for key, value in _flatten(data):
            self.set(key, value, str(path))

    # -- reading ------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        setting = _BY_KEY.get(key)
        if setting is None:
            found = _table_setting(key)
            if found is None:
                raise KeyError(key)
            setting = found[2]
        default = setting.default
        return default(self) if callable(default) else default

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def path(self, key: str) -> Path:
        return Path(self[key])

    def origin(self, key: str) -> str:
        return self._origins.get(key, "default")

    def table(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Named entries of a table (``zones``, ``alerts``...), each with defaults filled in."""
        schema = TABLES[prefix]
        names = sorted({k[len(prefix) + 1:].partition(".")[0] for k in self._values
                        if k.startswith(prefix + ".")})
        result: dict[str, dict[str, Any]] = {}
        for name in names:
            entry = {}
            for s in schema:
                entry[s.key] = self._values.get(f"{prefix}.{name}.{s.key}", s.default)
            result[name] = entry
        return result

    def source_args(self) -> list[str]:
        """Global command-line options that rebuild this configuration in a child process
        (which inherits the environment): ``--config FILE`` and every ``--set``."""
        args = ["--config", self.explicit_file] if self.explicit_file else []
        for key, value in self.overrides:
            if isinstance(value, list):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            args += ["--set", f"{key}={value}"]
        return args

    def replace_with(self, other: Config) -> None:
        """Take every value of ``other`` in place, so that every holder of this object sees the
        new configuration (the agent's live reload)."""
        self._values = dict(other._values)
        self._origins = dict(other._origins)
        self.files_read = list(other.files_read)
        self.explicit_file = other.explicit_file
        self.overrides = list(other.overrides)
        self.env = other.env
        self.read_system = other.read_system

    def items(self, with_tables: bool = True) -> list[tuple[str, Any, str]]:
        """Every effective key with its value and origin (secrets masked)."""
        out = []
        for s in SETTINGS:
            out.append((s.key, self[s.key], self.origin(s.key)))
        if with_tables:
            for key in sorted(k for k in self._values if k not in _BY_KEY):
                found = _table_setting(key)
                value = self._values[key]
                if found and found[2].type == "secret":
                    value = mask_secret(str(value))
                out.append((key, value, self._origins[key]))
        # credentials inside URLs (user-info, ?token=...) never leave in what is shown or stored
        return [(k, redact_text(v) if isinstance(v, str) else v, o) for k, v, o in out]


def mask_secret(value: str) -> str:
    return "***" if value else ""


def env_key(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def _key_from_env(name: str) -> str:
    return name[len(ENV_PREFIX):].lower().replace("__", ".")


def load(
    config_file: str | Path | None = None,
    overrides: Iterable[tuple[str, Any]] = (),
    env: Mapping[str, str] | None = None,
    read_system: bool = True,
) -> Config:
    """Build the effective configuration following the documented precedence."""
    env = os.environ if env is None else env
    cfg = Config()
    cfg.env, cfg.read_system = env, read_system
    if read_system:
        cfg.load_file(SYSTEM_CONFIG, required=False)
        cfg.load_file(user_config_path(), required=False)
    explicit = config_file or env.get(ENV_CONFIG_FILE)
    if explicit:
        cfg.load_file(Path(explicit))
        cfg.explicit_file = str(Path(explicit).absolute())
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        key = _key_from_env(name)
        try:
            cfg.set(key, value, f"environment {name}")
        except ConfigError as exc:
            if "unknown key" in str(exc):
                hint = _suggest(key)
                raise ConfigError(
                    f"environment {name}: unknown key {key!r}{hint}; "
                    f"variables are named {ENV_PREFIX}<SECTION>__<KEY>"
                ) from None
            raise
    for key, value in overrides:
        cfg.set(key, value, "command line")
        cfg.overrides.append((key, value))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks that a single key cannot express."""
    host, _, port = str(cfg["http.listen"]).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{cfg.origin('http.listen')}: http.listen = {cfg['http.listen']!r} is not allowed; "
            "expected host:port, for example 127.0.0.1:9464"
        )
    for name, zone in cfg.table("zones").items():
        if zone["kind"] == "s3":
            if not zone["bucket"]:
                raise ConfigError(
                    f"{cfg.origin(f'zones.{name}.kind')}: zone {name!r} of kind 's3' needs "
                    f"zones.{name}.bucket"
                )
            continue
        for required in ("host", "user", "remote_path"):
            if not zone[required]:
                raise ConfigError(
                    f"{cfg.origin(f'zones.{name}.host')}: zone {name!r} needs zones.{name}.{required}"
                )
    for key in ("alerting.alertmanager_url", "alerting.runbook_base_url"):
        url = str(cfg[key])
        scheme, sep, rest = url.partition("://")
        if url and (not sep or not scheme.isalpha() or not rest):
            raise ConfigError(
                f"{cfg.origin(key)}: {key} = {url!r} is not allowed; expected an absolute URL "
                "such as http://127.0.0.1:9093")
    if cfg["alerting.alertmanager_url"] and \
            not str(cfg["alerting.alertmanager_url"]).startswith(("http://", "https://")):
        raise ConfigError(
            f"{cfg.origin('alerting.alertmanager_url')}: alerting.alertmanager_url must be an "
            "http:// or https:// URL")
    if cfg["store.retention_1m_days"] * 24 < cfg["store.retention_raw_hours"]:
        raise ConfigError(
            f"{cfg.origin('store.retention_1m_days')}: store.retention_1m_days must cover at least "
            "store.retention_raw_hours"
        )


def parse_assignment(text: str) -> tuple[str, str]:
    """Parse ``key=value`` from ``--set``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"command line: --set expects KEY=VALUE, got {text!r}")
    return key.strip(), value


def reference_markdown() -> str:
    """The configuration reference, generated from the schema (docs/configuration.md)."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]

    def row(key: str, s: Setting) -> str:
        default = s.default
        if callable(default):
            default = "(derived, see meaning)" if s.key != "paths.state_dir" else "$XDG_STATE_HOME/lightkeeper"
            if s.key.startswith(("paths.", "agent.", "store.", "log.", "backup.")) and s.key != "paths.state_dir":
                default = "state_dir/" + str(Path(s.default(_FakeCfg())).relative_to("/STATE"))
        allowed = s.allowed()
        return f"| `{key}` | {allowed} | `{default!r}` | {s.help} |"

    for s in SETTINGS:
        lines.append(row(s.key, s))
    for prefix, schema in TABLES.items():
        for s in schema:
            lines.append(row(f"{prefix}.NAME.{s.key}", s))
    return "\n".join(lines) + "\n"


class _FakeCfg:
    def __getitem__(self, key: str) -> str:
        return "/STATE"
