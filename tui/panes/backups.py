"""Backups: snapshot list; start a backup, verify, prune, restore (wizard); live progress of
any repository job (also one started from the CLI or the schedule); cancel."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from lightkeeper.fmt import age, clock_time, human_bytes, human_duration
from lightkeeper.tui import agentdata
from lightkeeper.tui.actions import bindings
from lightkeeper.tui.agentdata import problem
from lightkeeper.tui.dialogs import ConfirmDialog
from lightkeeper.tui.panes.base import Pane, Request
from lightkeeper.tui.panes.common import first
from lightkeeper.tui.restore_wizard import RestoreWizard
from lightkeeper.tui.widgets.jobprogress import JobProgress, last_finished_line

# Job kinds of the backup package (backup/calls.py) that use the repository.
BACKUP_JOBS = ("backup", "verify", "prune", "forget", "restore")


class BackupsPane(Pane):
    pane_id = "backups"
    BINDINGS = bindings("backups")
    title = "Backups"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.snapshots: list[dict[str, Any]] = []
        self.available = True

    def compose(self) -> ComposeResult:
        yield Static(id="backups-note", classes="filterbar")
        yield DataTable(id="snap-table", cursor_type="row", zebra_stripes=True)
        yield JobProgress(BACKUP_JOBS, "no repository job running", id="backups-progress")
        yield Static(id="backups-last", classes="lastjob")

    def on_mount(self) -> None:
        self.query_one("#snap-table", DataTable).add_columns(
            "snapshot", "time", "users", "size", "added", "duration", "verified")

    def focus_default(self) -> None:
        self.query_one("#snap-table", DataTable).focus()

    def fetch(self, client: Any, req: Request) -> dict[str, Any]:
        return {"snapshots": agentdata.call(client, "backup.snapshots"),
                "stats": agentdata.call(client, "backup.stats"),
                "recent": client.jobs(limit=20)}

    def show(self, data: dict[str, Any], req: Request) -> None:
        snaps = data["snapshots"]
        note = self.query_one("#backups-note", Static)
        self.available = not problem(snaps)
        stats = data.get("stats")
        verified_doc = stats.get("verified") if isinstance(stats, dict) else None
        verified_id = (verified_doc or {}).get("newest_verified")
        if agentdata.no_repository(snaps):
            note.update(Text(" no backup repository yet: press b to take the first backup",
                             style="yellow"))
            snaps = []
        elif problem(snaps):
            note.update(Text(" " + (problem(snaps) or ""), style="dim"))
            snaps = []
        else:
            if isinstance(snaps, dict):
                snaps = first(snaps, "snapshots", default=[])
            size = stats.get("repository_size") if isinstance(stats, dict) else None
            note.update(Text(f" {len(snaps)} snapshots"
                             + (f", repository {human_bytes(size)}" if size else "")
                             + "   b backup  v verify  p prune  r restore  x cancel",
                             style="dim"))
        self.snapshots = sorted(snaps, key=lambda s: -(s.get("time") or 0))
        table = self.query_one("#snap-table", DataTable)
        row = table.cursor_row
        table.clear()
        for s in self.snapshots:
            summ = s.get("summary") or {}
            if verified_id and s["id"] == verified_id:
                v_text = Text(f"yes, {age(verified_doc.get('time'), req.now)}", style="green")
            else:
                v_text = Text("-", style="dim")
            table.add_row(s.get("short_id") or s["id"][:8], clock_time(s.get("time"), True),
                          str(len(s.get("users") or [])), human_bytes(summ.get("bytes_total")),
                          human_bytes(first(summ, "bytes_added_data", "bytes_added")),
                          human_duration(summ.get("duration_s")), v_text, key=s["id"])
        if self.snapshots:
            table.move_cursor(row=min(max(row, 0), len(self.snapshots) - 1))
        self.query_one("#backups-progress", JobProgress).show(self.lk.jobs)
        self.query_one("#backups-last", Static).update(
            last_finished_line(data.get("recent") or [], BACKUP_JOBS, req.now))

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
        def done(ok: bool | None) -> None:
            if ok:
                self._start("forget", {"prune": True}, "prune")

        self.lk.push_screen(ConfirmDialog(
            "Apply the retention policy and prune?",
            "Snapshots outside the retention policy (backup.keep_*) are forgotten (the newest "
            "verified one is always kept), then the data only they used is deleted. This "
            "cannot be undone.", confirm_label="Prune"), done)

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
        table = self.query_one("#snap-table", DataTable)
        if 0 <= table.cursor_row < len(snaps):  # the selected snapshot first
            snaps.insert(0, snaps.pop(table.cursor_row))

        def done(params: dict[str, Any] | None) -> None:
            if params:
                self._start("restore", params, "restore")

        def open_wizard(details: Any) -> None:
            dbs: dict[str, list[str]] = {}
            for sid, d in (details or {}).items():
                dbs[sid] = sorted((d or {}).get("databases") or [])
            self.lk.push_screen(RestoreWizard(snaps, dbs), done)

        def load(client: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for s in snaps[:20]:
                d = agentdata.call(client, "backup.show", snapshot=s["id"])
                if problem(d):
                    break
                out[s["id"]] = d
            return out

        self.lk.run_agent("restore", load, open_wizard)
