"""Every metric the agent stores and exposes, declared once: name, type, unit, label, HELP.

``/metrics`` (``lightkeeper.agent.http_endpoints``) is generated from these declarations, the
Prometheus rules (``lightkeeper alerts export-rules``) take their label names from them, and a
metric that is not declared here is not exposed (the agent logs it once). Collectors, backup,
zones, tuning and the agent itself emit samples under these names.

``per_user`` metrics carry a user id as label: they stay in the store and never become
Prometheus labels (a label per user makes every scrape slow); their ``label ''`` aggregates are
separate metrics (``userdir_total_bytes``...).
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "lightkeeper_"

# Latency buckets of the LightRAG operation histogram (seconds): 50-500 ms in steps Prometheus can
# interpolate in (an offline or cached query takes tens of ms, a hybrid query against a fast model
# a few hundred); with 0.25 -> 0.5 -> 1 s, histogram_quantile put the mix-mode p95 at 0.875 s
# while the store said 545 ms. Then seconds for inserts.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6,
                   0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class Metric:
    name: str  # the series name in the store (without the lightkeeper_ prefix, unless internal)
    type: str  # "gauge", "counter" or "histogram"
    unit: str  # "bytes", "seconds", "ratio", "per second", "timestamp", "1" (a count)
    label: str | None  # the Prometheus label name; None: one unlabelled series
    label_values: str  # what the label holds
    help: str
    per_user: bool = False

    @property
    def family(self) -> str:
        """The metric family's name on ``/metrics`` (``lightkeeper_`` prefix; a counter's
        without ``_total``, which its sample carries)."""
        name = self.name if self.name.startswith(PREFIX) else PREFIX + self.name
        return name.removesuffix("_total") if self.type == "counter" else name

    @property
    def prom_name(self) -> str:
        """The name of the sample Prometheus scrapes (what rules and queries use)."""
        return self.family + "_total" if self.type == "counter" else self.family


def _unit(name: str) -> str:
    for suffix, unit in (("_timestamp_seconds", "timestamp"), ("_per_second", "per second"),
                         ("_bytes", "bytes"), ("_seconds", "seconds"), ("_ratio", "ratio")):
        if name.endswith(suffix):
            return unit
    return "1"


def _m(name: str, label: str | None, label_values: str, help_text: str,
       type_: str | None = None, per_user: bool = False) -> Metric:
    kind = type_ or ("counter" if name.endswith("_total") else "gauge")
    return Metric(name, kind, _unit(name), label, label_values, help_text, per_user)


_CPU = "'' (all) or cpuN"
_MOUNT = "mount point"
_DEV = "mount point or device"
_PROC = "agent or kind:workspace (serve:alice, server:bob, worker:bob.1, library:demo...)"

_DECLARED = [
    # -- system (collectors) ------------------------------------------------------------
    _m("cpu_usage_ratio", "cpu", _CPU, "Share of CPU time not idle or in iowait (0-1)."),
    _m("cpu_iowait_ratio", None, "", "Share of CPU time waiting for I/O (0-1)."),
    _m("cpu_load_average", "window", "1m, 5m, 15m", "Load average."),
    _m("cpu_cores", None, "", "Logical CPUs."),
    _m("memory_total_bytes", None, "", "Physical memory."),
    _m("memory_used_bytes", None, "", "Memory used (psutil's definition, without caches)."),
    _m("memory_available_bytes", None, "", "Memory available to new work without swapping."),
    _m("memory_available_ratio", None, "", "memory_available_bytes / memory_total_bytes."),
    _m("memory_swap_total_bytes", None, "", "Swap space."),
    _m("memory_swap_used_bytes", None, "", "Swap in use."),
    _m("disk_total_bytes", "mount", _MOUNT, "Filesystem size."),
    _m("disk_used_bytes", "mount", _MOUNT, "Filesystem space used (total - free incl. reserved)."),
    _m("disk_free_bytes", "mount", _MOUNT, "Space an unprivileged writer can still use."),
    _m("disk_free_ratio", "mount", _MOUNT, "free / (used + free), i.e. 1 - df's Use%."),
    _m("disk_inodes_capacity", "mount", _MOUNT, "Inodes the filesystem has."),
    _m("disk_inodes_free", "mount", _MOUNT, "Inodes still free for unprivileged users."),
    _m("disk_inodes_free_ratio", "mount", _MOUNT, "disk_inodes_free / disk_inodes_capacity."),
    _m("disk_read_bytes_per_second", "mount", _DEV, "Bytes read per second."),
    _m("disk_write_bytes_per_second", "mount", _DEV, "Bytes written per second."),
    _m("disk_reads_per_second", "mount", _DEV, "Read operations per second."),
    _m("disk_writes_per_second", "mount", _DEV, "Write operations per second."),
    _m("network_receive_bytes_per_second", "interface", "interface", "Bytes received per second."),
    _m("network_transmit_bytes_per_second", "interface", "interface", "Bytes sent per second."),
    _m("network_receive_packets_per_second", "interface", "interface",
       "Packets received per second."),
    _m("network_transmit_packets_per_second", "interface", "interface",
       "Packets sent per second."),
    _m("network_receive_errors_per_second", "interface", "interface",
       "Receive errors per second."),
    _m("network_transmit_errors_per_second", "interface", "interface",
       "Transmit errors per second."),
    _m("network_receive_drops_per_second", "interface", "interface",
       "Received packets dropped per second."),
    _m("network_transmit_drops_per_second", "interface", "interface",
       "Outgoing packets dropped per second."),
    _m("process_resident_memory_bytes", "process", _PROC, "Resident memory of the process."),
    _m("process_cpu_usage_ratio", "process", _PROC,
       "CPU seconds per second (1.0 = one full core)."),
    _m("process_threads", "process", _PROC, "Threads of the process."),
    _m("process_open_fds", "process", _PROC, "Open file descriptors of the process."),
    _m("process_uptime_seconds", "process", _PROC, "Seconds since the process started."),
    _m("process_restarts", "process", _PROC,
       "Times another process took this label since the agent started (a restarted server)."),
    _m("process_instrumented", "process", _PROC, "1 if the process writes lightkeeper's spool."),
    _m("process_gated", "process", _PROC, "1 if the process takes the users' write gate."),
    _m("process_ungated_writer", "process", _PROC,
       "1 if the process writes a user's directory without the write gate."),
    _m("process_watched", None, "", "Processes watched (the agent included)."),
    _m("lightrag_ungated_writers", None, "",
       "LightRAG processes writing a user's directory without the write gate."),
    # -- users' directories (collectors) ---------------------------------------------------
    _m("userdir_bytes", "user", "user", "Apparent size of the user's files.", per_user=True),
    _m("userdir_files", "user", "user", "Regular files in the user's directory.", per_user=True),
    _m("userdir_growth_bytes_per_second", "user", "user",
       "Change of userdir_bytes over the growth window.", per_user=True),
    _m("userdir_users", None, "", "User directories under the data root."),
    _m("userdir_total_bytes", None, "", "Sum of userdir_bytes over all users."),
    _m("userdir_total_files", None, "", "Sum of userdir_files over all users."),
    _m("userdir_scanned_users", None, "", "Users rescanned in the last pass (dirty or full rescan)."),
    _m("userdir_updated_users", None, "",
       "Users brought up to date in the last pass from their changed files alone (no rescan)."),
    _m("userdir_unreadable_users", None, "", "User directories the agent may not read (logged)."),
    _m("userdir_full_rescan", None, "", "1 if the last pass was a full rescan, else 0."),
    _m("userdir_scan_seconds", None, "", "Duration of the last pass."),
    _m("userdir_data_root_present", None, "", "1 if the data root exists, else 0."),
    _m("userdir_watcher_ok", None, "", "0 while the change watcher is failing (full rescans only)."),
    # -- the agent itself -------------------------------------------------------------------
    _m("lightkeeper_collector_staleness_ratio", "collector", "collector name",
       "Time since the collector's last success, in collection intervals."),
    _m("lightkeeper_collector_errors_total", "collector", "collector name",
       "Failed collections since the agent started."),
    _m("lightkeeper_store_size_bytes", None, "", "Size of the metrics store file."),
    _m("lightkeeper_agent_memory_bytes", "part",
       "resident, anonymous, file, store_buffers, malloc_in_use, malloc_free",
       "The agent's memory by part: resident = anonymous + file-backed pages; the store's "
       "buffers and the C heap's bytes in use and free but held (allocated, not all of them "
       "resident). Measured at start and after each maintenance pass."),
    _m("lightkeeper_store_budget_ratio", None, "",
       "Store size / store.size_budget_mb (retention tightens above 1)."),
    _m("lightkeeper_ingest_lag_seconds", None, "",
       "Age of the oldest spool record not yet ingested."),
    _m("lightkeeper_ingested_operations_total", None, "",
       "LightRAG operations ingested from the spool since the agent started."),
    _m("lightkeeper_quarantined_lines_total", None, "",
       "Spool lines quarantined (unparsable or invalid) since the agent started."),
    _m("lightkeeper_agent_start_time_seconds", None, "", "When the agent started (Unix time).",
       type_="gauge"),
    # -- LightRAG operations (spool ingestion; aggregates over all users) --------------------
    _m("lightkeeper_rag_operation_duration_seconds", None, "labels op and mode",
       "Duration of LightRAG operations (all users), by operation and query mode",
       type_="histogram"),
    _m("lightkeeper_rag_operation_errors", None, "labels op and mode",
       "Failed LightRAG operations", type_="counter"),
    _m("lightkeeper_rag_llm_seconds", None, "", "Time spent in LLM calls", type_="counter"),
    _m("lightkeeper_rag_embedding_seconds", None, "", "Time spent in embedding calls",
       type_="counter"),
    _m("lightkeeper_rag_llm_calls", None, "", "LLM calls", type_="counter"),
    _m("lightkeeper_rag_embedding_calls", None, "", "Embedding calls", type_="counter"),
    # -- LightRAG health (agent.rag_health, from rag_ops over 5 minutes; the alert rules) ------
    _m("rag_query_latency_p95_seconds", "mode", "query mode",
       "p95 of LightRAG queries in this mode over the last 5 minutes (at least 5 queries)."),
    _m("rag_write_latency_p95_seconds", "op", "insert or delete",
       "p95 of LightRAG inserts or deletes over the last 5 minutes (at least 5)."),
    _m("rag_error_ratio", "operation", "op:mode (or op)",
       "Failed / all LightRAG operations over the last 5 minutes (at least 5)."),
    _m("rag_silent_seconds", "user", "user",
       "Time since the user's last LightRAG operation, for a user that was busy.",
       per_user=True),
    _m("rag_server_silent_seconds", None, "",
       "Time since the server's last LightRAG operation, when it was busy."),
    # -- backups (backup jobs; ages computed when read, agent.derived) -----------------------
    _m("backup_last_run_success", None, "", "1 if the last backup succeeded, else 0."),
    _m("backup_last_success_timestamp_seconds", None, "", "When a backup last succeeded."),
    _m("backup_last_failure_timestamp_seconds", None, "", "When a backup last failed."),
    _m("backup_age_seconds", None, "", "Time since a backup last succeeded."),
    _m("backup_duration_seconds", None, "", "Duration of the last backup."),
    _m("backup_added_bytes", None, "", "New (deduplicated) bytes the last backup stored."),
    _m("backup_repository_size_bytes", None, "", "Size of the backup repository."),
    _m("backup_verify_last_run_success", None, "", "1 if the last verify found no problem."),
    _m("backup_verify_timestamp_seconds", None, "", "When the last verify ran."),
    _m("backup_drill_last_run_success", None, "", "1 if the last restore drill succeeded."),
    _m("backup_drill_timestamp_seconds", None, "", "When the last restore drill ran."),
    _m("backup_drill_last_success_timestamp_seconds", None, "",
       "When a restore drill last succeeded."),
    _m("backup_drill_age_seconds", None, "", "Time since a restore drill last succeeded."),
    _m("backup_drill_recovery_seconds", None, "", "Recovery time of the last restore drill."),
    # -- replication zones --------------------------------------------------------------------
    _m("zone_lag_seconds", "zone", "zone name",
       "Age of the oldest snapshot the zone does not hold yet (0: up to date)."),
    _m("zone_oldest_unreplicated_timestamp_seconds", "zone", "zone name",
       "When the oldest snapshot the zone lacks was taken (0: none)."),
    _m("zone_up", "zone", "zone name", "1 if the zone answered its last probe or sync."),
    _m("zone_sent_bytes_total", "zone", "zone name", "Bytes sent to the zone."),
    _m("zone_failures_total", "zone", "zone name", "Failed syncs to the zone."),
    _m("zone_last_success_timestamp_seconds", "zone", "zone name",
       "When a sync to the zone last succeeded."),
    _m("zone_unreachable_seconds", "zone", "zone name", "How long the zone has been unreachable."),
    # -- tuning -------------------------------------------------------------------------------
    _m("tuning_invalid_edit", None, "",
       "1 while the active tuning file holds an invalid hand edit (refused)."),
]

METRICS: dict[str, Metric] = {m.name: m for m in _DECLARED}
PER_USER = frozenset(m.name for m in _DECLARED if m.per_user)


def label_name(metric: str) -> str:
    """The Prometheus label name of ``metric``'s label ("label" for an undeclared one)."""
    m = METRICS.get(metric)
    return m.label if m is not None and m.label else "label"


def prom_name(metric: str) -> str:
    m = METRICS.get(metric)
    if m is not None:
        return m.prom_name
    return metric if metric.startswith(PREFIX) else PREFIX + metric
