"""Alert delivery to Alertmanager (its v2 API), and its silences.

When ``alerting.alertmanager_url`` is set, the agent pushes every firing alert and every alert
resolved in the last 15 minutes: at once when something changes, and again every
``alerting.resend_seconds`` (a firing alert's ``endsAt`` lies 4 re-sends ahead, as Prometheus
does), so an Alertmanager that restarted, or was unreachable, gets the whole picture back at
the next re-send. Alertmanager routes them to email, chat or paging.

Each alert has the labels ``alertname`` (the Prometheus rule's name, so that one silence covers
both paths), ``rule``, ``severity``, ``host`` and the series' own label (``mount``, ``zone``,
``collector``...), and the annotations ``summary``, ``description`` and an absolute
``runbook_url``. Per-user series are never alerted on, so no user id leaves the host.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import time
from typing import Any

from lightkeeper.agent.alerts import AlertEvaluator, Rule, configured_rules
from lightkeeper.agent.rules_export import describe, runbook_url
from lightkeeper.catalog import label_name
from lightkeeper.config import Config
from lightkeeper.contracts.alerts import (
    ExpireSilenceRequest,
    ExpireSilenceResponse,
    Silence,
    SilenceRequest,
    SilencesRequest,
)
from lightkeeper.logs import get_logger
from lightkeeper.services import CallError, CallFn, Services

log = get_logger("alertmanager")

MAX_SILENCE_SECONDS = 90 * 86400
RETRY_SECONDS = 5.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


class AlertmanagerError(RuntimeError):
    """Alertmanager could not be reached, or refused the request."""


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_duration(text: str) -> float:
    m = _DURATION.match(str(text or ""))
    if not m:
        raise CallError(f"duration {text!r} not understood: use 30m, 2h, 1d or 1w")
    seconds = float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m[2]]
    if not 60 <= seconds <= MAX_SILENCE_SECONDS:
        raise CallError(f"duration {text!r}: a silence lasts from 1 minute to 90 days")
    return seconds


def _request(cfg: Config, method: str, path: str, body: Any = None) -> Any:
    base = str(cfg["alerting.alertmanager_url"]).rstrip("/")
    if not base:
        raise CallError("no Alertmanager configured: set alerting.alertmanager_url", 409,
                        "not_configured")
    # urllib (with http.client and ssl) loads with the first delivery: an agent with no
    # Alertmanager configured never pays for it
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=cfg["alerting.timeout_seconds"]) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace").strip()
        raise AlertmanagerError(f"Alertmanager at {base} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertmanagerError(f"Alertmanager at {base} unreachable: {reason}") from None
    return json.loads(raw) if raw else None


def alert_payload(cfg: Config, host: str, rule: Rule, alert: dict[str, Any], now: float
                  ) -> dict[str, Any]:
    severity = alert["severity"] or "warning"
    labels = {"alertname": rule.alertname, "rule": rule.name, "severity": severity,
              "host": host}
    if alert["label"]:
        labels[label_name(rule.metric)] = alert["label"]
    level = getattr(rule, severity, None)
    ended = alert.get("ended")
    return {
        "labels": labels,
        "annotations": {
            "summary": alert.get("message") or rule.name,
            "description": describe(rule, severity, level) if level is not None else "",
            "runbook_url": runbook_url(cfg, rule.name),
        },
        "startsAt": iso(alert.get("started") or now),
        "endsAt": iso(ended if ended is not None
                      else now + 4 * float(cfg["alerting.resend_seconds"])),
    }


class Notifier:
    """Pushes the evaluator's alerts to Alertmanager; call :meth:`tick` every few seconds."""

    def __init__(self, cfg: Config, host: str, evaluator: AlertEvaluator) -> None:
        self.cfg = cfg
        self.host = host
        self.evaluator = evaluator
        self.last_sent: float | None = None
        self.sent_version = -1
        self.last_error: str | None = None
        self.pushes = 0
        self.last_attempt = 0.0
        # Alertmanager's active silences, refreshed with every push (for status and console)
        self.silences: list[Silence] = []

    def status(self) -> dict[str, Any]:
        return {"alertmanager_url": self.cfg["alerting.alertmanager_url"] or None,
                "last_push": self.last_sent, "last_error": self.last_error,
                "pushes": self.pushes, "silences": list(self.silences)}

    def silenced_by(self, rule_name: str, label: str, severity: str | None) -> str | None:
        """The id of an active silence that matches this alert's labels, if any."""
        rule = self.evaluator.rule(rule_name)
        if rule is None or not self.silences:
            return None
        labels = alert_payload(self.cfg, self.host, rule, {
            "label": label, "severity": severity, "started": None, "message": ""},
            time.time())["labels"]
        for s in self.silences:
            if all(_matches(m, labels.get(m["name"], "")) for m in s["matchers"]):
                return s["id"]
        return None

    def _refresh_silences(self) -> None:
        try:
            rows = _request(self.cfg, "GET", "/api/v2/silences") or []
        except AlertmanagerError:
            return  # the push that follows reports the outage; keep what we knew
        self.silences = [_silence_view(s) for s in rows
                         if (s.get("status") or {}).get("state") == "active"]

    def payload(self, now: float) -> list[dict[str, Any]]:
        firing, resolved = self.evaluator.snapshot(now)
        out = []
        for alert in firing + resolved:
            rule = alert.get("definition") or self.evaluator.rule(alert["rule"])
            if rule is not None:
                out.append(alert_payload(self.cfg, self.host, rule, alert, now))
        return out

    def tick(self, now: float | None = None) -> bool:
        """Push if something changed or a re-send is due; True if a push was made."""
        if not self.cfg["alerting.alertmanager_url"]:
            return False
        now = time.time() if now is None else now
        version = self.evaluator.version
        due = self.last_sent is None or now - self.last_sent >= self.cfg["alerting.resend_seconds"]
        if version == self.sent_version and not due:
            return False
        if self.last_error is not None and now - self.last_attempt < RETRY_SECONDS:
            return False  # Alertmanager is down: retry every few seconds, not every tick
        self.last_attempt = now
        if due:
            self._refresh_silences()
        alerts = self.payload(now)
        try:
            if alerts or version != self.sent_version:
                _request(self.cfg, "POST", "/api/v2/alerts", alerts)
        except AlertmanagerError as exc:
            if self.last_error is None:  # once per outage, not at every retry
                log.warning("alertmanager.push_failed", error=str(exc), alerts=len(alerts))
            self.last_error = str(exc)
            return False
        if self.last_error is not None:
            log.info("alertmanager.push_recovered", alerts=len(alerts))
        self.last_error = None
        self.last_sent, self.sent_version = now, version
        self.pushes += 1
        return True


# -- silences (agent calls) -------------------------------------------------------------------
def _matches(matcher: dict[str, Any], value: str) -> bool:
    if matcher.get("isRegex"):
        try:
            hit = re.fullmatch(matcher["value"], value) is not None
        except re.error:
            return False
    else:
        hit = matcher["value"] == value
    return hit if matcher.get("isEqual", True) else not hit



def _silence_view(s: dict[str, Any]) -> Silence:
    matchers = s.get("matchers") or []
    return {
        "id": s.get("id"),
        "state": (s.get("status") or {}).get("state"),
        "matchers": matchers,
        "matchers_text": ", ".join(
            f"{m['name']}{'=' if m.get('isEqual', True) else '!='}{'~' if m.get('isRegex') else ''}"
            f"{m['value']}" for m in matchers),
        "starts": s.get("startsAt"), "ends": s.get("endsAt"),
        "created_by": s.get("createdBy"), "comment": s.get("comment"),
    }


def list_silences(cfg: Config, include_expired: bool = False) -> list[Silence]:
    try:
        rows = _request(cfg, "GET", "/api/v2/silences") or []
    except AlertmanagerError as exc:
        raise CallError(str(exc), 502, "alertmanager_unreachable") from None
    out = [_silence_view(s) for s in rows]
    if not include_expired:
        out = [s for s in out if s["state"] != "expired"]
    return sorted(out, key=lambda s: s["ends"] or "", reverse=True)


def create_silence(cfg: Config, host: str, rules: list[Rule], params: SilenceRequest
                   ) -> Silence:
    name = str(params.get("alert") or "")
    rule = next((r for r in rules if r.name == name or r.alertname == name), None)
    if rule is None:
        raise CallError(f"unknown alert {name!r}; known alerts: "
                        + ", ".join(sorted(r.name for r in rules)), 404, "unknown_alert")
    comment = str(params.get("comment") or "").strip()
    if not comment:
        raise CallError("a silence needs a comment: say why, for whoever is on call")
    seconds = parse_duration(str(params.get("duration") or ""))
    matchers = [{"name": "alertname", "value": rule.alertname, "isRegex": False, "isEqual": True},
                {"name": "host", "value": host, "isRegex": False, "isEqual": True}]
    if params.get("label"):
        matchers.append({"name": label_name(rule.metric), "value": str(params["label"]),
                         "isRegex": False, "isEqual": True})
    now = time.time()
    body = {"matchers": matchers, "startsAt": iso(now), "endsAt": iso(now + seconds),
            "createdBy": str(params.get("actor") or "lightkeeper"), "comment": comment}
    try:
        answer = _request(cfg, "POST", "/api/v2/silences", body)
    except AlertmanagerError as exc:
        raise CallError(str(exc), 502, "alertmanager_unreachable") from None
    return _silence_view({**body, "id": (answer or {}).get("silenceID"),
                          "status": {"state": "active"}})


def expire_silence(cfg: Config, silence_id: str) -> None:
    if not re.fullmatch(r"[0-9a-fA-F-]{8,64}", silence_id or ""):
        raise CallError(f"invalid silence id {silence_id!r}")
    try:
        _request(cfg, "DELETE", f"/api/v2/silence/{silence_id}")
    except AlertmanagerError as exc:
        raise CallError(str(exc), 502, "alertmanager_unreachable") from None


def call_silences(services: Services, params: SilencesRequest) -> list[Silence]:
    return list_silences(services.cfg, bool(params.get("all")))


def call_silence(services: Services, params: SilenceRequest) -> Silence:
    out = create_silence(services.cfg, socket.gethostname(), configured_rules(services.cfg),
                         params)
    services.audit("silence.created", actor=params.get("actor"), component="alerts",
                   silence_id=out["id"], matchers=out["matchers_text"], ends=out["ends"],
                   comment=out["comment"])
    return out


def call_expire_silence(services: Services, params: ExpireSilenceRequest
                        ) -> ExpireSilenceResponse:
    silence_id = str(params.get("id") or "")
    expire_silence(services.cfg, silence_id)
    services.audit("silence.expired", actor=params.get("actor"), component="alerts",
                   silence_id=silence_id)
    return {"id": silence_id, "expired": True}


CALLS: dict[str, CallFn] = {
    "alerts.silences": call_silences,
    "alerts.silence": call_silence,
    "alerts.expire_silence": call_expire_silence,
}
