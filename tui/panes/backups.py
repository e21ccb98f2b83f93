"""Backups: each snapshot's size, added bytes and duration over time with the repository's
growth; the snapshot list (safety snapshots labelled); start a backup, verify, prune (its plan
shown first), restore (wizard); live progress of any repository job (also one started from the
CLI or the schedule); cancel."""

from __future__ import annotations

from typing import Any, Literal

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Static

from lightkeeper.contracts.backup import (
    ForgetSummary,
    RestoreSummary,
    SnapshotInfo,
    SnapshotsResponse,
    SnapshotSummary,
    StatsResponse,
)
from lightkeeper.fmt import age, clock_time, human_bytes, human_duration, plural
from lightkeeper.tui import agentdata
from lightkeeper.tui.actions import bindings, window_for_age, window_seconds
from lightkeeper.tui.agentdata import Failed
from lightkeeper.tui.dialogs import ConfirmDialog
from lightkeeper.tui.panes.base import Pane, Request
from lightkeeper.tui.panes.common import series_lines
from lightkeeper.tui.restore_wizard import RestoreWizard
from lightkeeper.tui.widgets.chart import ChartData, Line, TimeChart
from lightkeeper.tui.widgets.jobprogress import JobProgress, last_finished_line
from lightkeeper.tui.widgets.table import RowsTable

# Job kinds of the backup package (backup/calls.py) that use the repository.
BACKUP_JOBS = ("backup", "verify", "prune", "forget", "restore")
MIB = 1 / 2**20


def snapshot_kind(s: SnapshotInfo) -> Text:
    """What took the snapshot: the pre-restore safety snapshot is named as such."""
    tags = s["tags"]
    if "pre-restore" in tags:
        of = next((t[len("restore-of-"):] for t in tags if t.startswith("restore-of-")), "")
        return Text("safety before restore" + (f" of {of}" if of else ""), style="yellow")
    if "scheduled" in tags:
        return Text("scheduled", style="dim")
    return Text(", ".join(tags) or "manual", style="dim")


def history_span(snapshots: list[SnapshotInfo], now: float, window_s: float) -> float:
    """The charts span the console's window, or the whole history if that is longer."""
    oldest = min((s["time"] for s in snapshots), default=now)
    return max(window_s, (now - oldest) * 1.05)


class BackupsPane(Pane):
    pane_id = "backups"
    topics = frozenset({"backups", "progress"})
    BINDINGS = bindings("backups")
    title = "Backups"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.snapshots: list[SnapshotInfo] = []
        self.available = True

    def compose(self) -> ComposeResult:
        yield Static(id="backups-note", classes="filterbar")
        with Grid(id="bk-charts"):
            yield TimeChart("Size", scale=MIB, unit="MiB", id="ch-bk-size")
            yield TimeChart("Added per snapshot", scale=MIB, unit="MiB", id="ch-bk-added")
            yield TimeChart("Backup duration", unit="s", id="ch-bk-duration")
        yield RowsTable(id="snap-table", cursor_type="row", zebra_stripes=True)
        yield JobProgress(BACKUP_JOBS, "no repository job running", id="backups-progress")
        yield Static(id="backups-last", classes="lastjob")

    def on_mount(self) -> None:
        self.query_one("#snap-table", RowsTable).add_columns(
            "snapshot", "time", "users", "size", "added", "duration", "taken as", "verified")

    def focus_default(self) -> None:
        self.query_one("#snap-table", RowsTable).focus()

    def params(self) -> dict[str, Any]:
        # the repository's growth over the span the charts show (the snapshot history, or the
        # console's window if longer): a 7 d query gave hourly points outside a short span
        span = history_span(self.snapshots, self.lk.clock(), window_seconds(self.lk.window))
        return {"repo_window": window_for_age(span)}

    def fetch(self, client: Any, req: Request) -> dict[str, Any]:
        return {"snapshots": agentdata.call(client, "backup.snapshots"),
                "stats": agentdata.call(client, "backup.stats"),
                "repo": agentdata.series(client, "backup_repository_size_bytes", "",
                                         req.params.get("repo_window") or "7d", agg="max"),
                "recent": client.jobs(limit=20)}

    def show(self, data: dict[str, Any], req: Request) -> None:
        answer: SnapshotsResponse | Failed = data["snapshots"]
        stats: StatsResponse | Failed = data["stats"]
        note = self.query_one("#backups-note", Static)
        self.available = not isinstance(answer, Failed)
        verified = None if isinstance(stats, Failed) else stats["verified"]
        snaps: list[SnapshotInfo] = []
        if isinstance(answer, Failed):
            if agentdata.no_repository(answer):
                note.update(Text(" no backup repository yet: press b to take the first backup",
                                 style="yellow"))
            else:
                note.update(Text(" " + str(answer), style="dim"))
        else:
            snaps = answer["snapshots"]
            t = Text(" ")
            t.append(plural(len(snaps), "snapshot"), style="bold")
            if not isinstance(stats, Failed):
                t.append(f", repository {human_bytes(stats['size_bytes'])}")
            note.update(t)
        self.snapshots = sorted(snaps, key=lambda s: -s["time"])
        self._charts(data, req)
        rows = []
        for s in self.snapshots:
            summ = s["summary"]
            if verified and s["id"] == verified["newest_verified"]:
                v_text = Text(f"yes, {age(verified['time'], req.now)}", style="green")
            else:
                v_text = Text("-", style="dim")
            rows.append((s["id"], [
                s["short_id"], clock_time(s["time"], True),
                str(len(s["users"])), human_bytes(summ.get("bytes_total")),
                human_bytes(summ.get("bytes_added_data")),
                human_duration(summ.get("duration_s")), snapshot_kind(s), v_text]))
        self.query_one("#snap-table", RowsTable).set_rows(rows)
        self.query_one("#backups-progress", JobProgress).show(self.lk.jobs)
        self.query_one("#backups-last", Static).update(
            last_finished_line(data.get("recent") or [], BACKUP_JOBS, req.now))

    def _charts(self, data: dict[str, Any], req: Request) -> None:
        span = history_span(self.snapshots, req.now, window_seconds(req.window))
        oldest_first = sorted(self.snapshots, key=lambda s: s["time"])

        def points(key: Literal["bytes_total", "bytes_added_data", "duration_s"]
                   ) -> list[list[float]]:
            out = []
            for s in oldest_first:
                summ: SnapshotSummary = s["summary"]
                v = summ.get(key)  # a manifest's JSON: .get, should one lack it
                if v is not None:
                    out.append([float(s["time"]), float(v)])
            return out

        repo = series_lines(data.get("repo")).get("", [])
        msg = "no snapshot yet" if not self.snapshots else ""

        def chart(cid: str, lines: list[Line]) -> None:
            self.query_one(f"#{cid}", TimeChart).show(ChartData(
                lines=lines, now=req.now, window_s=span, ymin=0, message=msg))

        chart("ch-bk-size", [Line("snapshot", points("bytes_total")),
                             Line("repo", [p for p in repo if p[1] is not None])])
        chart("ch-bk-added", [Line("", points("bytes_added_data"))])
        chart("ch-bk-duration", [Line("", points("duration_s"))])

    # -- actions ----------------------------------------------------------------------------
    def _start(self, kind: str, params: dict[str, Any], what: str) -> None:
        self.lk.run_agent(what, lambda c: c.start_job(kind, params),
                          lambda job_id: self.lk.notify(f"{what}: job {job_id} started",
                                                        timeout=4))

    def action_backup_start(self) -> None:
        self._start("backup", {}, "backup")

    def action_backup_verify(self) -> None:
        self._start("verify", {}, "verify")

    def action_backup_prune(self) -> None:
        """Show the plan (a dry run of forget + prune in the agent), then ask."""
        self.lk.notify("prune: working out what the retention policy forgets...", timeout=3)

        def plan(client: Any) -> dict[str, Any]:
            job_id = client.start_job("forget", {"dry_run": True, "prune": True})
            return client.wait_job(job_id, timeout=300)

        self.lk.run_agent("prune plan", plan, self._confirm_prune)

    def _confirm_prune(self, job: dict[str, Any]) -> None:
        if job.get("state") != "succeeded":
            self.lk.notify(f"prune plan {job.get('state')}: {job.get('error')}",
                           severity="error", timeout=8)
            return
        body = prune_plan_text(job["summary"])

        def done(ok: bool | None) -> None:
            if ok:
                self._start("forget", {"prune": True}, "prune")

        self.lk.push_screen(ConfirmDialog("Apply the retention policy and prune?", body,
                                          confirm_label="Prune"), done)

    def action_backup_cancel(self) -> None:
        running = [j for j in self.lk.jobs if j.get("kind") in BACKUP_JOBS]
        if not running:
            self.lk.notify("no repository job is running", timeout=3)
            return
        job = running[0]
        self.lk.run_agent("cancel", lambda c: c.cancel_job(job["id"]),
                          lambda _r: self.lk.notify(f"cancel requested for {job['id']}",
                                                    timeout=4))

    def action_backup_restore(self) -> None:
        if not self.snapshots:
            self.lk.notify("no snapshot to restore from", severity="warning", timeout=3)
            return
        snaps = list(self.snapshots)
        table = self.query_one("#snap-table", RowsTable)
        if 0 <= table.cursor_row < len(snaps):  # the selected snapshot first
            snaps.insert(0, snaps.pop(table.cursor_row))

        def done(params: dict[str, Any] | None) -> None:
            if params:
                self.lk.run_agent("restore", lambda c: c.start_job("restore", params),
                                  lambda job_id: self._follow_restore(job_id, params))

        def open_wizard(dbs: dict[str, list[str]]) -> None:
            self.lk.push_screen(RestoreWizard(snaps, dbs), done)

        def load(client: Any) -> dict[str, list[str]]:
            """Snapshot id -> the databases its manifest holds (the wizard's choices)."""
            out: dict[str, list[str]] = {}
            for s in snaps[:20]:
                d = agentdata.call(client, "backup.show", snapshot=s["id"])
                if isinstance(d, Failed):
                    break
                out[s["id"]] = sorted(d["databases"])
            return out

        self.lk.run_agent("restore", load, open_wizard)

    def _follow_restore(self, job_id: str, params: dict[str, Any]) -> None:
        where = "in place" if params.get("in_place") else f"into {params.get('target')}"
        self.lk.notify(f"restore {where}: job {job_id} started", timeout=4)
        self.lk.run_agent("restore", lambda c: c.wait_job(job_id, timeout=24 * 3600),
                          self._restored)

    def _restored(self, job: dict[str, Any]) -> None:
        if job.get("state") not in ("succeeded", "problems"):
            self.lk.notify(f"restore {job.get('state')}: {job.get('error')}",
                           severity="error", timeout=12)
            return
        s: RestoreSummary = job["summary"]
        self.lk.notify(restored_text(s), title="restore finished",
                       severity="warning" if "failures" in s else "information",
                       timeout=30)


def restored_text(s: RestoreSummary) -> str:
    """Where the files went: the operator's next step starts from there."""
    what = plural(s["files"], "file")
    text = f"{what} ({human_bytes(s['bytes'])}) of snapshot {s['short_id']} "
    text += f"restored into {s['target']}"
    if s["users"]:
        text += f" (users: {', '.join(s['users'])})"
    if s["safety_snapshot"]:
        text += (f"; the data replaced is kept in safety snapshot "
                 f"{str(s['safety_snapshot'])[:8]}")
    if "failures" in s:
        text += f"; {plural(len(s['failures']), 'file')} FAILED"
    return text


def prune_plan_text(summary: ForgetSummary) -> Group:
    """The plan of forget with ``dry_run`` and ``prune``: what goes, and what that frees."""
    removed = summary["removed"]
    out: list[Any] = []
    if removed:
        out.append(Text(f"Forgets {plural(len(removed), 'snapshot')} (keeps "
                        f"{summary['kept_count']}):", style="bold"))
        for s in removed[:8]:
            out.append(Text(f"  {s['short_id']}  {clock_time(s['time'], True)}  "
                            f"{human_bytes(s['bytes_total'])}"))
        if len(removed) > 8:
            out.append(Text(f"  and {len(removed) - 8} more", style="dim"))
    else:
        out.append(Text(f"The retention policy keeps "
                        f"{plural(summary['kept_count'], 'snapshot')}, all "
                        "there are: nothing is forgotten.", style="bold"))
    out.append(Text(""))
    p = summary.get("prune")  # the plan was asked with prune: always there
    if p is not None:
        out.append(Text(f"Frees about {human_bytes(p['bytes_free_estimate'])}: deletes "
                        f"{plural(p['packs_delete'], 'pack')} "
                        f"({human_bytes(p['bytes_delete'])}), repacks "
                        f"{plural(p['packs_repack'], 'pack')} "
                        f"({human_bytes(p['bytes_repack'])}).", style="bold"))
    out.append(Text("The newest verified snapshot is always kept. This cannot be undone.",
                    style="dim"))
    return Group(*out)
