"""Overview: CPU, memory, disk and network over the window; mounts, interfaces, users, health."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.widgets import Static

from lightkeeper.fmt import age, human_bytes, human_duration, pct, rate
from lightkeeper.tui import agentdata
from lightkeeper.tui.actions import window_seconds
from lightkeeper.tui.agentdata import Failed, problem
from lightkeeper.tui.panes.base import Pane, Request
from lightkeeper.tui.panes.common import invert, series_lines, small_table, sum_series
from lightkeeper.tui.widgets.chart import ChartData, Line, TimeChart
from lightkeeper.tui.widgets.processes import ProcessesPanel

if TYPE_CHECKING:
    from lightkeeper.contracts.backup import StatsResponse
    from lightkeeper.contracts.zones import ZoneStatus

LATEST = ["disk_free_ratio", "disk_free_bytes", "disk_total_bytes",
          "network_receive_bytes_per_second", "network_transmit_bytes_per_second",
          "userdir_bytes", "userdir_growth_bytes_per_second", "cpu_load_average", "cpu_cores",
          "memory_total_bytes", "memory_available_bytes"]


class OverviewPane(Pane):
    pane_id = "overview"
    topics = frozenset({"samples", "backups", "zones"})
    title = "Overview"
    chart_pane = True

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            with Grid(id="ov-charts"):
                yield TimeChart("CPU used", scale=100, unit="%", id="ch-cpu")
                yield TimeChart("Memory used", scale=100, unit="%", id="ch-mem")
                yield TimeChart("Disk used per mount", scale=100, unit="%", id="ch-disk")
                yield TimeChart("Network", scale=1 / 1024, unit="KiB/s", id="ch-net")
            with Horizontal(id="ov-detail"):
                yield Static(id="ov-storage", classes="box")
                yield Static(id="ov-users", classes="box")
                yield Static(id="ov-health", classes="box")
            yield ProcessesPanel(id="ov-procs", classes="box")

    def fetch(self, client: Any, req: Request) -> dict[str, Any]:
        w = req.window
        return {
            "cpu": agentdata.series(client, "cpu_usage_ratio", "", w),
            "mem": agentdata.series(client, "memory_available_ratio", "", w),
            "disk": agentdata.series(client, "disk_free_ratio", None, w),
            "rx": agentdata.series(client, "network_receive_bytes_per_second", None, w),
            "tx": agentdata.series(client, "network_transmit_bytes_per_second", None, w),
            "latest": agentdata.call(client, "metrics.latest", metrics=LATEST),
            "userdirs": agentdata.series(client, "userdir_bytes", None, w, agg="last"),
            "snapshots": agentdata.call(client, "backup.stats"),
            "zones": agentdata.call(client, "zones.list"),
            "processes": agentdata.call(client, "processes.list"),
        }

    def show(self, data: dict[str, Any], req: Request) -> None:
        window_s = window_seconds(req.window)

        def chart(cid: str, lines: list[Line], ymax: float | None = None, msg: str = "") -> None:
            self.query_one(f"#{cid}", TimeChart).show(ChartData(
                lines=lines, now=req.now, window_s=window_s, ymin=0, ymax=ymax, message=msg))

        cpu = series_lines(data["cpu"])
        chart("ch-cpu", [Line("", cpu.get("", []))], 1.0, problem(data["cpu"]) or "")
        mem = series_lines(data["mem"])
        chart("ch-mem", [Line("", invert(mem.get("", [])))], 1.0, problem(data["mem"]) or "")
        disk = series_lines(data["disk"])
        chart("ch-disk", [Line(m, invert(p)) for m, p in sorted(disk.items())][:6], 1.0,
              problem(data["disk"]) or "")
        rx, tx = series_lines(data["rx"]), series_lines(data["tx"])
        chart("ch-net", [Line("rx", sum_series(rx, {"lo"})), Line("tx", sum_series(tx, {"lo"}))],
              None, problem(data["rx"]) or "")
        answer: dict[str, dict[str, float]] | Failed = data["latest"]
        latest = {} if isinstance(answer, Failed) else answer
        self.query_one("#ov-storage", Static).update(_storage(latest))
        self.query_one("#ov-users", Static).update(
            _users(latest, series_lines(data["userdirs"]), req.window))
        self.query_one("#ov-health", Static).update(
            _health(req.status or {}, data["snapshots"], data["zones"], req.now))
        self.query_one("#ov-procs", ProcessesPanel).show_rows(data["processes"])


def _storage(latest: dict[str, Any]) -> Group:
    free = latest.get("disk_free_ratio") or {}
    free_b = latest.get("disk_free_bytes") or {}
    total_b = latest.get("disk_total_bytes") or {}
    mounts = [[m, pct(1 - r), human_bytes(free_b.get(m)), human_bytes(total_b.get(m))]
              for m, r in sorted(free.items())]
    rx = latest.get("network_receive_bytes_per_second") or {}
    tx = latest.get("network_transmit_bytes_per_second") or {}
    ifaces = [[i, rate(rx.get(i)), rate(tx.get(i))] for i in sorted(set(rx) | set(tx))]
    return Group(small_table("Mounts", ["mount", "used", "free", "size"], mounts,
                             justify_right={1, 2, 3}),
                 Text(""),
                 small_table("Interfaces", ["if", "rx", "tx"], ifaces, justify_right={1, 2}))


def growth_in_window(series: dict[str, list[list[float]]]) -> dict[str, float]:
    """Bytes each user's directory grew over the window: newest sample minus oldest."""
    out = {}
    for user, points in series.items():
        values = [v for _ts, v in points if v is not None]
        if len(values) >= 2 and values[-1] != values[0]:
            out[user] = values[-1] - values[0]
    return out


def _users(latest: dict[str, Any], sizes: dict[str, list[list[float]]], window: str) -> Group:
    size = latest.get("userdir_bytes") or {}
    by_size = sorted(size.items(), key=lambda kv: -kv[1])[:5]
    grown = growth_in_window(sizes)
    by_growth = sorted(((u, g) for u, g in grown.items() if g > 0), key=lambda kv: -kv[1])[:5]
    return Group(
        small_table("Top users by storage", ["user", "size"],
                    [[u, human_bytes(b)] for u, b in by_size], "(no users yet)",
                    justify_right={1}),
        Text(""),
        small_table(f"Fastest growth in {window}", ["user", "grew by"],
                    [[u, "+" + human_bytes(g)] for u, g in by_growth],
                    f"(no user grew in the last {window})", justify_right={1}))


def _health(status: dict[str, Any], snapshots: StatsResponse | Failed,
            zones: list[ZoneStatus] | Failed, now: float) -> Group:
    rows = []
    for c in status.get("collectors") or []:
        ok = not c.get("last_error") or (c.get("age_s") or 0) < 3 * (c.get("interval_s") or 5)
        state = Text("ok" if ok and c.get("last_ok") else "stale" if ok else "error",
                     style="green" if ok and c.get("last_ok") else "red")
        rows.append([c.get("name"), state, human_duration(c.get("age_s")), c.get("errors", 0)])
    parts: list[Any] = [small_table("Collectors", ["name", "state", "age", "err"], rows,
                                    "(none running)", justify_right={2, 3})]
    parts.append(Text(""))
    stats = snapshots
    if isinstance(stats, Failed):
        parts.append(Text("Backup: no repository yet", style="yellow")
                     if agentdata.no_repository(stats) else
                     Text(f"Backup: {stats}", style="dim"))
    else:
        newest = stats["newest_snapshot"]
        verified = stats["verified"]
        if newest:
            parts.append(Text(f"Backup: newest {age(newest['time'], now)}"))
            if verified:
                parts.append(Text(f"  verified {age(verified['time'], now)}", style="dim"))
        else:
            parts.append(Text("Backup: no snapshot yet", style="yellow"))
    if isinstance(zones, Failed):
        parts.append(Text("Zones: not available", style="dim"))
    else:
        if not zones:
            parts.append(Text("Zones: none configured", style="dim"))
        for z in zones[:4]:
            reach = z["reachable"]
            style = "red" if reach is False else ""
            in_sync = z["snapshots_behind"] == 0 and z["last_success"] and reach is not False
            parts.append(Text(f"Zone {z['name']}: "
                              + ("in sync" if in_sync
                                 else f"lag {human_duration(z['lag_seconds'])}")
                              + (" UNREACHABLE" if reach is False else ""),
                              style=style or ("green" if in_sync else "")))
    return Group(*parts)
