"""Zones: each zone's lag over the window as a chart; reachable, last sync, lag and size per
zone; sync one or all, verify, trust a host key after confirming its fingerprint; live progress
of replication jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from lightkeeper.contracts.zones import TrustProbeResponse, ZoneStatus
from lightkeeper.fmt import age, human_bytes, human_duration, shorten
from lightkeeper.tui import agentdata
from lightkeeper.tui.actions import bindings, window_seconds
from lightkeeper.tui.agentdata import Failed, problem
from lightkeeper.tui.dialogs import ConfirmDialog
from lightkeeper.tui.panes.base import Pane, Request
from lightkeeper.tui.panes.common import series_lines
from lightkeeper.tui.widgets.chart import ChartData, Line, TimeChart
from lightkeeper.tui.widgets.jobprogress import JobProgress, last_finished_line
from lightkeeper.tui.widgets.table import RowsTable

ZONE_JOBS = ("replicate", "zone_verify", "zone_prune", "zone_restore", "zone_rebuild",
             "zone_status")


def where(z: ZoneStatus) -> str:
    """An SFTP zone's host:port; an S3 zone's endpoint/bucket/prefix."""
    if z.get("kind") == "s3":
        return z["where"]
    return f"{z['host']}:{z['port']}"


def lag_points(behind_since: list[list[float]]) -> list[list[float]]:
    """Lag at each sample: its time minus the oldest snapshot the zone lacked then (0: none)."""
    return [[ts, 0.0 if not since else max(0.0, ts - since)]
            for ts, since in behind_since if since is not None]


def lag_text(z: Mapping[str, Any]) -> Text:
    """A zone holding every snapshot is in sync (not "0 ms" behind)."""
    if z.get("snapshots_behind") == 0 and z.get("last_success"):
        return Text("in sync", style="green")
    return Text(human_duration(z.get("lag_seconds")))


def lag_unit(top_s: float) -> tuple[str, float]:
    """The lag axis in the unit its largest value reads best in (not 0.109 min)."""
    if top_s < 180:
        return "s", 1.0
    if top_s < 3 * 3600:
        return "min", 1 / 60
    return "h", 1 / 3600


class ZonesPane(Pane):
    pane_id = "zones"
    topics = frozenset({"zones", "progress"})
    BINDINGS = bindings("zones")
    title = "Zones"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.zones: list[ZoneStatus] = []

    def compose(self) -> ComposeResult:
        yield Static(id="zones-note", classes="filterbar")
        yield TimeChart("Lag per zone", unit="s", id="zn-charts")
        yield RowsTable(id="zones-table", cursor_type="row", zebra_stripes=True)
        yield JobProgress(ZONE_JOBS, "no replication job running", id="zones-progress")
        yield Static(id="zones-last", classes="lastjob")

    def on_mount(self) -> None:
        t = self.query_one("#zones-table", RowsTable)
        t.add_columns("zone", "host", "reachable", "last sync", "lag", "behind", "size",
                      "failures", "last error")

    def focus_default(self) -> None:
        self.query_one("#zones-table", RowsTable).focus()

    def fetch(self, client: Any, req: Request) -> dict[str, Any]:
        return {"zones": agentdata.call(client, "zones.list"),
                # the lag is stored as the time of the oldest snapshot a zone lacks (0: none)
                "behind_since": agentdata.series(
                    client, "zone_oldest_unreplicated_timestamp_seconds", None, req.window,
                    agg="last"),
                "recent": client.jobs(limit=20)}

    def show(self, data: dict[str, Any], req: Request) -> None:
        note = self.query_one("#zones-note", Static)
        answer: list[ZoneStatus] | Failed = data["zones"]
        table = self.query_one("#zones-table", RowsTable)
        zones: list[ZoneStatus] = []
        if isinstance(answer, Failed):
            note.update(Text(" " + str(answer), style="dim"))
        elif not answer:
            note.update(Text(" no zones configured: add [zones.NAME] host, user, remote_path "
                             "to the configuration", style="dim"))
        else:
            zones = answer
            note.update(Text(" s sync  a sync all  v verify  k trust host key  x cancel",
                             style="dim"))
        self.zones = list(zones)
        rows = []
        for z in self.zones:
            reach = z.get("reachable")
            reach_t = Text("yes", style="green") if reach else Text(
                "no", style="bold red") if reach is False else Text("?", style="dim")
            rows.append((z["name"], [
                z["name"], where(z), reach_t,
                age(z.get("last_success"), req.now), lag_text(z),
                str(z.get("snapshots_behind", "")), human_bytes(z.get("remote_bytes")),
                str(z.get("failures_total", 0)), shorten(z.get("last_error") or "", 40)]))
        table.set_rows(rows)
        since = series_lines(data.get("behind_since"))
        lines = [Line(name, lag_points(points)) for name, points in sorted(since.items())]
        chart = self.query_one("#zn-charts", TimeChart)
        chart.unit, chart.scale = lag_unit(max((v for line in lines for _ts, v in line.points
                                                if v is not None), default=0.0))
        chart.show(ChartData(
            lines=lines,
            now=req.now, window_s=window_seconds(req.window), ymin=0,
            message=problem(data.get("behind_since")) or "no zone status in this window"))
        self.query_one("#zones-progress", JobProgress).show(self.lk.jobs)
        self.query_one("#zones-last", Static).update(
            last_finished_line(data.get("recent") or [], ZONE_JOBS, req.now))

    # -- actions ----------------------------------------------------------------------------
    def selected(self) -> ZoneStatus | None:
        table = self.query_one("#zones-table", RowsTable)
        if not self.zones or table.cursor_row < 0:
            self.lk.notify("no zone selected", severity="warning", timeout=3)
            return None
        return self.zones[min(table.cursor_row, len(self.zones) - 1)]

    def _start(self, kind: str, params: dict[str, Any], what: str) -> None:
        self.lk.run_agent(what, lambda c: c.start_job(kind, params),
                          lambda job_id: self.lk.notify(f"{what}: job {job_id} started",
                                                        timeout=4))

    def action_zone_sync(self) -> None:
        z = self.selected()
        if z:
            self._start("replicate", {"zones": [z["name"]]}, f"sync {z['name']}")

    def action_zone_sync_all(self) -> None:
        if not self.zones:
            self.lk.notify("no zones configured", severity="warning")
            return
        self._start("replicate", {}, "sync all zones")

    def action_zone_verify(self) -> None:
        z = self.selected()
        if z:
            self._start("zone_verify", {"zone": z["name"]}, f"verify {z['name']}")

    def action_zone_cancel(self) -> None:
        running = [j for j in self.lk.jobs if j.get("kind") in ZONE_JOBS]
        if not running:
            self.lk.notify("no zone job is running", timeout=3)
            return
        job = running[0]
        self.lk.run_agent("cancel", lambda c: c.cancel_job(job["id"]),
                          lambda _r: self.lk.notify(f"cancel requested for {job['id']}"))

    def action_zone_trust(self) -> None:
        z = self.selected()
        if not z:
            return
        name = z["name"]
        self.lk.notify(f"connecting to {name} for its host key...", timeout=3)
        self.lk.run_agent(f"host key of {name}",
                          lambda c: c.call("zones.trust_probe", zone=name), self._confirm_trust)

    def _confirm_trust(self, probe: TrustProbeResponse) -> None:
        name = probe["zone"]
        fp = probe["fingerprint"]
        body = Text()
        body.append(f"Zone {name} at {probe.get('host')} presents this host key:\n\n")
        body.append(f"  {probe.get('key_type')}  ", style="bold")
        body.append(fp + "\n\n", style="bold yellow")
        state = probe.get("state")
        if state == "trusted":
            body.append("This key is already trusted.\n", style="green")
        elif state == "changed":
            body.append("WARNING: a DIFFERENT key is recorded for this zone:\n", style="bold red")
            for r in probe.get("recorded") or []:
                body.append(f"  {r}\n", style="red")
            body.append("A changed key can mean a man-in-the-middle. Trusting is refused; "
                        "remove the old key from the known_hosts file by hand if the change "
                        "is expected.\n")
        else:
            body.append("Compare it with the fingerprint the zone's administrator gives you "
                        "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the zone).\n")
        body.append(f"\nknown_hosts: {probe.get('known_hosts')}", style="dim")
        if state in ("trusted", "changed"):
            self.lk.push_screen(ConfirmDialog(f"Host key of {name}", body,
                                              confirm_label="Close", danger=False))
            return

        def done(ok: bool | None) -> None:
            if not ok:
                self.lk.notify("host key not trusted", timeout=3)
                return
            self.lk.run_agent(f"trust {name}",
                              lambda c: c.call("zones.trust", zone=name, fingerprint=fp),
                              lambda r: self.lk.notify(f"{name}: trusted {r['key_type']} "
                                                       f"{r['fingerprint']}", timeout=6))

        self.lk.push_screen(ConfirmDialog(f"Trust the host key of {name}?", body, typed="yes",
                                          confirm_label="Trust"), done)
