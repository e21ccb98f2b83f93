"""Alert thresholds: rules declared as data, evaluated by the agent on the newest values.

Each rule watches one metric (every label of it separately), compares against a warning and a
critical level, and fires only after the condition has held for ``for_seconds``. Firing and
resolving are recorded in the ``alerts`` table (start and end time), as events, and as log lines.
``alerts.NAME.warning|critical|for_seconds|enabled`` in the configuration override a rule.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from lightkeeper.config import Config, ConfigError
from lightkeeper.logs import get_logger

log = get_logger("alerts")


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    direction: str  # "above" or "below"
    warning: float | None
    critical: float | None
    for_seconds: float
    summary: str  # format with {label} and {value}
    enabled: bool = True
    label: str | None = None  # watch only this label (None: every label separately)
    description: str = ""  # one line for the page: what it means (the runbook says what to do)
    # Prometheus: the PromQL whose value is compared, when /metrics does not carry the agent's
    # own gauge (a quantile of the histogram, a ratio of counters); '{level}' is not in it.
    prom_expr: str | None = None
    prom_label: str | None = None  # what '{label}' reads as in the Prometheus summary

    @property
    def alertname(self) -> str:
        """The name Alertmanager and Prometheus know this alert by (one name for both levels,
        told apart by the ``severity`` label)."""
        return "Lightkeeper" + "".join(p.capitalize() for p in self.name.split("_"))

    def severity(self, value: float) -> str | None:
        def hit(level: float | None) -> bool:
            if level is None:
                return False
            return value > level if self.direction == "above" else value < level

        if hit(self.critical):
            return "critical"
        if hit(self.warning):
            return "warning"
        return None


_P95 = ("histogram_quantile(0.95, sum by ({by}, le) "
        "(rate(lightkeeper_rag_operation_duration_seconds_bucket{{{sel}}}[5m])))")


def default_rules(cfg: Config) -> list[Rule]:
    return [
        Rule("disk_free_low", "disk_free_ratio", "below", 0.15, 0.05, 60,
             "filesystem {label} has {value:.1%} free"),
        Rule("memory_available_low", "memory_available_ratio", "below", 0.10, 0.05, 60,
             "memory available is {value:.1%}"),
        Rule("cpu_high", "cpu_usage_ratio", "above", 0.90, 0.98, 300,
             "CPU busy at {value:.0%} (sustained)", label=""),
        Rule("collector_stale", "lightkeeper_collector_staleness_ratio", "above", 3.0, 10.0, 0,
             "collector {label} last succeeded {value:.0f} intervals ago"),
        Rule("store_near_budget", "lightkeeper_store_budget_ratio", "above", 0.80, 0.95, 0,
             "metrics store at {value:.0%} of its size budget"),
        Rule("ingest_lag", "lightkeeper_ingest_lag_seconds", "above", 60.0, 300.0, 30,
             "LightRAG operations wait {value:.0f} s to be ingested"),
        Rule("backup_stale", "backup_age_seconds", "above", cfg["backup.max_age_hours"] * 3600,
             cfg["backup.max_age_hours"] * 3600 * 2, 0,
             "newest backup is {value:.0f} s old"),
        Rule("backup_failed", "backup_last_run_success", "below", 0.5, None, 0,
             "the last backup failed or was partial"),
        Rule("backup_verify_failed", "backup_verify_last_run_success", "below", None, 0.5, 0,
             "the last repository verify found damage"),
        Rule("backup_drill_failed", "backup_drill_last_run_success", "below", 0.5, None, 0,
             "the last restore drill failed"),
        Rule("backup_drill_stale", "backup_drill_age_seconds", "above",
             cfg["backup.drill_max_age_days"] * 86400, None, 0,
             "no restore drill has passed for {value:.0f} s",
             description="backups have not been proven restorable within "
                         "backup.drill_max_age_days"),
        Rule("zone_lag", "zone_lag_seconds", "above", cfg["replication.max_lag_minutes"] * 60,
             cfg["replication.max_lag_minutes"] * 120, 0,
             "zone {label} lags {value:.0f} s behind the local repository"),
        Rule("zone_unreachable", "zone_up", "below", 0.5, None,
             cfg["replication.unreachable_minutes"] * 60,
             "zone {label} is unreachable"),
        Rule("tuning_invalid_edit", "tuning_invalid_edit", "above", 0.5, None, 0,
             "the active tuning file holds an invalid edit; processes keep the last good version"),
        # LightRAG (agent/rag_health.py computes the gauges from rag_ops over 5 minutes)
        Rule("rag_query_latency_high", "rag_query_latency_p95_seconds", "above", 10.0, 30.0, 120,
             "LightRAG {label} queries: p95 {value:.2f} s over 5 minutes",
             description="LightRAG queries in this mode are slow",
             prom_expr=_P95.format(by="mode", sel='op="query"'),
             prom_label="{{ $labels.mode }}"),
        Rule("rag_write_latency_high", "rag_write_latency_p95_seconds", "above", 120.0, 600.0,
             120, "LightRAG {label}: p95 {value:.1f} s over 5 minutes",
             description="LightRAG inserts or deletes are slow",
             prom_expr=_P95.format(by="op", sel='op=~"insert|delete"'),
             prom_label="{{ $labels.op }}"),
        Rule("rag_error_rate_high", "rag_error_ratio", "above", 0.05, 0.25, 120,
             "LightRAG {label}: {value:.0%} of operations failed over 5 minutes",
             description="LightRAG operations fail",
             prom_expr="sum by (op, mode) (rate(lightkeeper_rag_operation_errors_total[5m])) / "
                       "sum by (op, mode) "
                       "(rate(lightkeeper_rag_operation_duration_seconds_count[5m]))",
             prom_label="{{ $labels.op }} {{ $labels.mode }}"),
        Rule("rag_operations_stopped", "rag_silent_seconds", "above", 900.0, 3600.0, 0,
             "no LightRAG operations from {label} for {value:.0f} s (it was busy before)",
             description="a user or server that was busy has gone silent",
             # Prometheus sees no per-user series: there, the whole server's silence
             prom_expr="lightkeeper_rag_server_silent_seconds", prom_label="the server"),
        # process discovery (collectors/processes.py): 1 while a process writes a user's
        # directory without holding the write gate
        Rule("ungated_writer", "process_ungated_writer", "above", 0.5, None, 0,
             "{label} writes a user's directory without the write gate",
             description="backups of that user cannot be consistent while it writes"),
    ]


def configured_rules(cfg: Config) -> list[Rule]:
    overrides = cfg.table("alerts")
    rules = []
    known = set()
    for rule in default_rules(cfg):
        known.add(rule.name)
        o = overrides.get(rule.name)
        if o:
            rule = replace(
                rule,
                warning=rule.warning if o["warning"] is None else o["warning"],
                critical=rule.critical if o["critical"] is None else o["critical"],
                for_seconds=rule.for_seconds if o["for_seconds"] is None else o["for_seconds"],
                enabled=o["enabled"],
            )
        rules.append(rule)
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"alerts.{sorted(unknown)[0]}: unknown alert; known alerts: "
                          + ", ".join(sorted(known)))
    return rules


@dataclass
class _State:
    pending_since: float | None = None
    pending_severity: str | None = None
    alert_id: int | None = None
    severity: str | None = None
    value: float | None = None
    stored_value: float | None = None  # the value the alert's row holds
    started: float | None = None
    message: str = ""


# How long a resolved alert is still reported to Alertmanager (as Prometheus does), so that a
# resolve lost to an unreachable Alertmanager is delivered once it is back.
RESOLVED_KEEP_SECONDS = 15 * 60


class AlertEvaluator:
    def __init__(self, rules: list[Rule], store: Any, audit: Any) -> None:
        self.rules = [r for r in rules if r.enabled]
        self.store = store
        self.audit = audit
        self.state: dict[tuple[str, str], _State] = {}
        self._values: list[tuple[_State, float]] = []  # open alerts' new values, this round
        # (rule, label, severity) -> the resolved alert, kept RESOLVED_KEEP_SECONDS for delivery
        self.resolved: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.version = 0  # bumped on every firing, severity change and resolve
        self._lock = threading.RLock()

    @property
    def metrics(self) -> frozenset[str]:
        """The metrics the rules read: all the evaluation needs of the current values."""
        return frozenset(r.metric for r in self.rules)

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def snapshot(self, now: float | None = None) -> tuple[list[dict[str, Any]],
                                                         list[dict[str, Any]]]:
        """(firing, recently resolved) alerts, each with rule, label, severity, started,
        value and message (and ended for a resolved one)."""
        now = time.time() if now is None else now
        with self._lock:
            firing = [{"rule": name, "label": label, "severity": st.severity,
                       "started": st.started, "value": st.value, "message": st.message}
                      for (name, label), st in self.state.items() if st.alert_id is not None]
            for key, r in list(self.resolved.items()):
                if now - r["ended"] > RESOLVED_KEEP_SECONDS:
                    del self.resolved[key]
            return firing, list(self.resolved.values())

    def active(self, limit: int = 100) -> list[dict[str, Any]]:
        """The open alerts as :func:`list_alerts` reads them from the store (``active=True``),
        from memory: every open alert is this evaluator's (restore_open closes the ones a
        previous run left) and it writes each change to the store as it keeps it here, so the
        status call answers without a store query."""
        with self._lock:
            rows = [{"id": st.alert_id, "rule": name, "label": label, "severity": st.severity,
                     "started": st.started, "ended": None, "value": st.value,
                     "message": st.message}
                    for (name, label), st in self.state.items() if st.alert_id is not None]
        rows.sort(key=lambda r: (r["started"] or 0.0, r["id"] or 0), reverse=True)
        return rows[:limit]

    def _note_resolved(self, name: str, label: str, st: _State, now: float,
                       severity: str | None = None) -> None:
        sev = severity or st.severity or "warning"
        self.resolved[(name, label, sev)] = {
            "rule": name, "label": label, "severity": sev, "started": st.started,
            "ended": now, "value": st.value, "message": st.message,
            "definition": self.rule(name)}  # still delivered if a reload removes the rule
        self.version += 1

    def set_rules(self, rules: list[Rule]) -> None:
        """New rules after a configuration reload: open alerts of rules that are gone or
        disabled resolve; the others keep their state (a changed threshold applies at the next
        evaluation)."""
        with self._lock:
            names = {r.name for r in rules if r.enabled}
            now = time.time()
            for key, st in list(self.state.items()):
                if key[0] in names:
                    continue
                if st.alert_id is not None:
                    self.store.execute("UPDATE alerts SET ended = ? WHERE id = ?",
                                       [now, st.alert_id])
                    self.audit("alert.resolved", component="alerts", rule=key[0], label=key[1],
                               severity=st.severity, reason="rule removed or disabled")
                    self._note_resolved(key[0], key[1], st, now)
                self.state.pop(key, None)
            self.rules = [r for r in rules if r.enabled]  # after the notes: they keep the old

    def restore_open(self) -> None:
        """Alerts left open by a previous run are closed: they are re-evaluated from scratch."""
        now = time.time()
        self.store.execute("UPDATE alerts SET ended = ? WHERE ended IS NULL", [now])

    def evaluate(self, current: dict[tuple[str, str], tuple[float, float]],
                 now: float | None = None) -> list[dict[str, Any]]:
        """Evaluate every rule on ``current`` ((metric, label) -> (ts, value)); return changes."""
        with self._lock:
            self._values = []
            changes = self._evaluate(current, time.time() if now is None else now)
            if self._values:  # the open alerts' current values, one statement for all
                self.store.execute(
                    "UPDATE alerts SET value = v.value FROM (SELECT unnest(?::BIGINT[]) AS id,"
                    " unnest(?::DOUBLE[]) AS value) AS v WHERE alerts.id = v.id",
                    [[st.alert_id for st, _ in self._values], [v for _, v in self._values]])
                for st, value in self._values:  # written: not again until it moves
                    st.stored_value = value
            return changes

    def _evaluate(self, current: dict[tuple[str, str], tuple[float, float]],
                  now: float) -> list[dict[str, Any]]:
        changes = []
        by_metric: dict[str, list[tuple[str, float]]] = {}
        for (metric, label), (_ts, value) in current.items():
            by_metric.setdefault(metric, []).append((label, value))
        seen: set[tuple[str, str]] = set()
        for rule in self.rules:
            for label, value in by_metric.get(rule.metric, []):
                if value is None or (rule.label is not None and label != rule.label):
                    continue
                key = (rule.name, label)
                seen.add(key)
                changes += self._step(rule, label, value, now)
        # series that disappeared resolve their alerts, and their state goes: it was kept for
        # every label ever evaluated (a user's series for each user ever seen), growing with
        # uptime; a pending alert of a series that is gone starts again when it comes back
        for key, st in list(self.state.items()):
            if key in seen:
                continue
            if st.alert_id is not None:
                rule = next(r for r in self.rules if r.name == key[0])
                changes += self._resolve(rule, key[1], st, now)
            self.state.pop(key, None)
        return changes

    def _step(self, rule: Rule, label: str, value: float, now: float) -> list[dict[str, Any]]:
        st = self.state.setdefault((rule.name, label), _State())
        st.value = value
        sev = rule.severity(value)
        if sev is None:
            st.pending_since = None
            st.pending_severity = None
            if st.alert_id is not None:
                return self._resolve(rule, label, st, now)
            return []
        if st.pending_severity != sev:
            if st.pending_since is None or st.pending_severity is None:
                st.pending_since = now
            st.pending_severity = sev
        if now - (st.pending_since or now) < rule.for_seconds:
            return []
        if st.alert_id is None:
            return self._fire(rule, label, sev, value, now)
        if st.severity != sev:
            # Alertmanager knows an alert by its labels, severity included: the old level ends
            self._note_resolved(rule.name, label, st, now)
            st.severity = sev
            st.message = rule.summary.format(label=label or "-", value=value)
            self.store.execute("UPDATE alerts SET severity = ?, value = ?, message = ? "
                               "WHERE id = ?", [sev, value, st.message, st.alert_id])
            st.stored_value = value
            self.audit("alert.changed", level="warning" if sev == "warning" else "error",
                       component="alerts", rule=rule.name, label=label, severity=sev, value=value)
            return [{"rule": rule.name, "label": label, "change": "severity", "severity": sev}]
        if value != st.stored_value:  # written with the others at the end of the evaluation
            self._values.append((st, value))
        return []

    def _fire(self, rule: Rule, label: str, sev: str, value: float, now: float
              ) -> list[dict[str, Any]]:
        st = self.state[(rule.name, label)]
        message = rule.summary.format(label=label or "-", value=value)
        row = self.store.execute(
            "INSERT INTO alerts (rule, label, severity, started, value, message) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            [rule.name, label, sev, st.pending_since or now, value, message])
        st.alert_id, st.severity, st.started = int(row[0][0]), sev, st.pending_since or now
        st.stored_value = value
        st.message = message
        self.resolved.pop((rule.name, label, sev), None)
        self.version += 1
        self.audit("alert.firing", level="warning" if sev == "warning" else "error",
                   component="alerts", rule=rule.name, label=label, severity=sev, value=value,
                   message=message)
        return [{"rule": rule.name, "label": label, "change": "firing", "severity": sev}]

    def _resolve(self, rule: Rule, label: str, st: _State, now: float) -> list[dict[str, Any]]:
        self.store.execute("UPDATE alerts SET ended = ? WHERE id = ?", [now, st.alert_id])
        self.audit("alert.resolved", component="alerts", rule=rule.name, label=label,
                   severity=st.severity, duration_s=round(now - (st.started or now), 1))
        self._note_resolved(rule.name, label, st, now)
        self.state.pop((rule.name, label), None)
        return [{"rule": rule.name, "label": label, "change": "resolved"}]


def list_alerts(store: Any, active: bool = True, limit: int = 100) -> list[dict[str, Any]]:
    sql = "SELECT id, rule, label, severity, started, ended, value, message FROM alerts"
    if active:
        sql += " WHERE ended IS NULL"
    sql += " ORDER BY started DESC LIMIT ?"
    return store.read_dicts(sql, [limit])
