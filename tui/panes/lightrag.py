"""LightRAG: latency p50/p95/p99 per operation and mode, throughput, errors, time split,
slowest operations, a user filter and markers where the tuning version changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Vertical, VerticalScroll
from textual.widgets import Static

from lightkeeper.fmt import clock_time, ms, pct
from lightkeeper.tui import agentdata
from lightkeeper.tui.actions import bindings, window_seconds
from lightkeeper.tui.agentdata import Failed, problem
from lightkeeper.tui.panes.base import Pane, Request
from lightkeeper.tui.panes.common import small_table
from lightkeeper.tui.widgets.chart import ChartData, Line, TimeChart

if TYPE_CHECKING:
    from lightkeeper.contracts.agent import TopUser
    from lightkeeper.contracts.rag import UsersResponse


class LightRagPane(Pane):
    pane_id = "lightrag"
    topics = frozenset({"samples", "tuning"})
    BINDINGS = bindings("lightrag")
    title = "LightRAG"
    chart_pane = True

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.user: str | None = None
        self.users: list[str] = []
        self.series_key: str | None = None
        self.series_keys: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(id="rag-filter", classes="filterbar")
        with VerticalScroll():
            with Grid(id="rag-charts"):
                yield TimeChart("Latency", unit="ms", scale=1000, id="ch-lat")
                yield TimeChart("Throughput and errors", unit="ops/s", id="ch-thr")
            with Vertical(id="rag-detail"):
                yield Static(id="rag-summary", classes="box")
                yield Static(id="rag-slowest", classes="box")

    def params(self) -> dict[str, Any]:
        return {"user": self.user}

    def fetch(self, client: Any, req: Request) -> dict[str, Any]:
        user = req.params.get("user")
        return {
            "latency": agentdata.call(client, "rag.latency", window=req.window, user=user),
            "summary": agentdata.call(client, "rag.summary", window=req.window, user=user),
            "slowest": agentdata.call(client, "rag.slowest", window=req.window, user=user,
                                      limit=8),
            "marks": agentdata.call(client, "rag.version_marks", window=req.window),
            "users": _user_names(client),
        }

    # -- actions ----------------------------------------------------------------------------
    def action_rag_user(self) -> None:
        options: list[str | None] = [None, *self.users]
        i = options.index(self.user) if self.user in options else 0
        self.user = options[(i + 1) % len(options)]
        self.lk.notify(f"LightRAG: {'all users' if self.user is None else 'user ' + self.user}",
                       timeout=2)
        self.lk.refresh_now()

    def action_rag_series(self) -> None:
        if not self.series_keys:
            self.lk.notify("no LightRAG operations in this window yet", timeout=3)
            return
        i = self.series_keys.index(self.series_key) if self.series_key in self.series_keys else -1
        self.series_key = self.series_keys[(i + 1) % len(self.series_keys)]
        self.lk.refresh_now()

    # -- render -----------------------------------------------------------------------------
    def show(self, data: dict[str, Any], req: Request) -> None:
        self.users = data["users"]
        window_s = window_seconds(req.window)
        lat = data["latency"]
        series: dict[str, list[dict[str, Any]]] = {} if problem(lat) else lat.get("series", {})
        step = 60.0 if problem(lat) else float(lat.get("step") or 60)
        self.series_keys = sorted(series)
        if self.series_key not in series:
            preferred = [k for k in self.series_keys if k.startswith("query")]
            self.series_key = next(iter(preferred or self.series_keys), None)
        marks_doc = data["marks"]
        marks = [] if problem(marks_doc) else [
            (m["ts"], f"v{m['version']}") for m in marks_doc or []]
        pts = series.get(self.series_key or "", [])
        lines = [Line(q, [[p["ts"], p[q]] for p in pts]) for q in ("p50", "p95", "p99")]
        top = max((p["p99"] or 0 for p in pts), default=0.0)
        msg = problem(lat) or "no operations in this window"
        self.query_one("#ch-lat", TimeChart).title = " ".join(
            ["Latency", self.series_key or ""]).strip()
        self.query_one("#ch-lat", TimeChart).show(ChartData(
            lines=lines, now=req.now, window_s=window_s, markers=marks, ymin=0,
            ymax=top * 1.1 if top else None, message=msg))
        count: dict[float, float] = {}
        errors: dict[float, float] = {}
        for points in series.values():
            for p in points:
                count[p["ts"]] = count.get(p["ts"], 0) + p["count"] / step
                errors[p["ts"]] = errors.get(p["ts"], 0) + p["errors"] / step
        thr_top = max(count.values(), default=0.0)
        self.query_one("#ch-thr", TimeChart).show(ChartData(
            lines=[Line("ops/s", sorted([t, v] for t, v in count.items())),
                   Line("errors/s", sorted([t, v] for t, v in errors.items()))],
            now=req.now, window_s=window_s, markers=marks, ymin=0,
            ymax=thr_top * 1.1 if thr_top else None, message=msg))
        who = "all users" if self.user is None else f"user {self.user}"
        bar = Text(no_wrap=True, overflow="ellipsis")
        bar.append(" filter: ", style="dim")
        bar.append(who, style="bold")
        bar.append(f"  ({len(self.users)} users)  chart: ", style="dim")
        bar.append(self.series_key or "-", style="bold")
        bar.append("  u user  m op/mode", style="dim")
        self.query_one("#rag-filter", Static).update(bar)
        self.query_one("#rag-summary", Static).update(_summary(data["summary"]))
        self.query_one("#rag-slowest", Static).update(_slowest(data["slowest"]))


def _user_names(client: Any) -> list[str]:
    """The users to filter by: those with a LightRAG directory (``rag.users``), else those with
    operations in the last week (``rag.top_users``), else none."""
    found: UsersResponse | Failed = agentdata.call(client, "rag.users")
    if not isinstance(found, Failed):
        return sorted(u["user"] for u in found["users"])
    top: list[TopUser] | Failed = agentdata.call(client, "rag.top_users", window="7d", limit=50)
    return [] if isinstance(top, Failed) else sorted(u["user"] for u in top)


def _summary(rows: Any) -> Any:
    if problem(rows):
        return Text(problem(rows) or "", style="dim")
    table_rows = []
    for r in rows or []:
        key = r["op"] + (f"/{r['mode']}" if r.get("mode") else "")
        thr = r.get("throughput_per_s")
        table_rows.append([key, r["count"], ms(r["p50"]), ms(r["p95"]), ms(r["p99"]),
                           "-" if thr is None else f"{thr:.2f}", pct(r.get("error_rate"), 1),
                           f"{pct(r.get('share_llm'))}/{pct(r.get('share_embed'))}/"
                           f"{pct(r.get('share_lightrag'))}"])
    return Group(small_table("Per operation and mode", [
        "op/mode", "n", "p50", "p95", "p99", "ops/s", "err", "llm/emb/own"], table_rows,
        "(no operations in this window)", justify_right={1, 2, 3, 4, 5, 6}))


def _slowest(rows: Any) -> Any:
    if problem(rows):
        return Text(problem(rows) or "", style="dim")
    out = []
    for r in rows or []:
        key = r["op"] + (f"/{r['mode']}" if r.get("mode") else "")
        out.append([clock_time(r.get("ts")), r.get("user"), key, ms(r.get("duration_s")),
                    ms(r.get("llm_s")), Text(r.get("outcome") or "",
                                             style="" if r.get("outcome") == "ok" else "red")])
    return small_table("Slowest recent operations", ["time", "user", "op", "total", "llm", ""],
                       out, "(none)", justify_right={3, 4})
