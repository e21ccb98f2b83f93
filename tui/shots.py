"""Drive the console headless and save an SVG screenshot of every screen.

``python -m lightkeeper.tui.shots --out screenshots`` attaches to the configured agent (it does not start
one), opens each screen, waits for its data and writes ``screenshots/<screen>.svg``.
``--record FILE`` also keeps the agent's answers for the snapshot tests' recorded-data replay.
``--pending KEY=VALUE`` types edits into the tuning form before its screenshot (a pending
diff); ``--backup-running`` starts a backup and shoots the Backups screen while it runs, with
its progress (not recorded); ``--also 80x24:overview`` shoots screens at another size too.
Every wait is for the real condition (a poll rendered, the edits validated, the job's progress
shown) and fails loudly on timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightkeeper.client import AgentUnavailable, connect
from lightkeeper.config import load
from lightkeeper.tui.actions import PANES
from lightkeeper.tui.app import LightkeeperApp
from lightkeeper.tui.panes.tuning import ParamInput, TuningPane
from lightkeeper.tui.replay import RecordingClient
from lightkeeper.tui.widgets.jobprogress import JobProgress

SCREENS: tuple[tuple[str, str], ...] = tuple((pid, key) for pid, _, key in PANES)


async def wait_for_pane(pilot: Any, app: LightkeeperApp, pane_id: str, start: int,
                        timeout: float = 30.0) -> None:
    """Until a poll of ``pane_id`` newer than poll number ``start`` has been rendered and the
    pane has settled (its mounts and deferred renders done), then one more refresh. Fails
    loudly on timeout: a screenshot of a half-drawn screen is worse than none."""
    deadline = time.monotonic() + timeout
    while not (app.poll_count > start and app.last_polled == pane_id
               and app.pane(pane_id).settled()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {pane_id} screen did not show its data within {timeout} s "
                               f"(polls: {app.poll_count}, last: {app.last_polled!r})")
        await pilot.pause(0.05)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def show_pane(pilot: Any, app: LightkeeperApp, pane_id: str, key: str) -> None:
    """Switch to a pane by its key (or poll again if it is showing) and wait for its data."""
    start = app.poll_count
    if app.active == pane_id:
        app.refresh_now()
    else:
        await pilot.press(key)
    await wait_for_pane(pilot, app, pane_id, start)


async def until(pilot: Any, cond: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await pilot.pause(0.05)


async def type_pending(pilot: Any, app: LightkeeperApp, edits: dict[str, str]) -> None:
    """Type ``edits`` into the tuning form as an operator would, until the agent has validated
    them and the pending diff is drawn."""
    pane = app.pane("tuning")
    assert isinstance(pane, TuningPane)
    for name, value in edits.items():
        field = app.query_one(f"#p-{name}", ParamInput)
        app.screen.set_focus(field)
        field.value = ""
        await pilot.press(*value)
    await until(pilot, lambda: pane.pending and pane.validated_seq == pane.seq
                and pane.settled(), "the pending tuning edits validated by the agent")
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def undo_pending(pilot: Any, app: LightkeeperApp) -> None:
    await pilot.press("escape", "u")
    pane = app.pane("tuning")
    await until(pilot, lambda: not getattr(pane, "pending", None), "the tuning edits undone")


async def show_running_backup(pilot: Any, app: LightkeeperApp) -> str:
    """Start a backup in the agent and poll until the Backups screen shows it running with a
    real progress figure. Returns the job id (the caller waits for it to end)."""
    await show_pane(pilot, app, "backups", "3")
    job_id = await asyncio.to_thread(app.client.start_job, "backup", {})
    progress = app.query_one("#backups-progress", JobProgress)

    def running() -> bool:
        for job in progress.jobs:
            p = job.get("progress") or {}
            if job.get("id") == job_id and job.get("state") == "running" \
                    and 0 < float(p.get("percent") or 0) < 100 and p.get("bytes_done"):
                return True
        return False

    deadline = time.monotonic() + 60
    while not running():
        if time.monotonic() > deadline:
            raise TimeoutError("the backup's progress did not show within 60 s")
        jobs = await asyncio.to_thread(app.client.jobs, 5)
        if any(j.get("id") == job_id and j.get("state") not in ("queued", "running")
               for j in jobs):
            raise RuntimeError("the backup finished before its progress was shown: give it "
                               "more data to read")
        await show_pane(pilot, app, "backups", "3")
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()
    return job_id


async def capture(client: Any, out: Path, size: tuple[int, int] = (120, 40),
                  clock: Callable[[], float] = time.time, theme: str = "textual-dark",
                  suffix: str = "", window: str = "5m",
                  screens: tuple[tuple[str, str], ...] = SCREENS,
                  pending: dict[str, str] | None = None, backup_running: bool = False,
                  before_live_scenes: Callable[[], None] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    app = LightkeeperApp(client, clock=clock, theme=theme, live=False, window=window)
    written = []

    def save(pane_id: str) -> None:
        path = out / f"{pane_id}{suffix}.svg"
        app.save_screenshot(filename=path.name, path=str(out))
        if path not in written:
            written.append(path)

    async with app.run_test(size=size) as pilot:
        for pane_id, key in screens:
            await show_pane(pilot, app, pane_id, key)
            if pane_id == "tuning" and pending:
                await type_pending(pilot, app, pending)
            save(pane_id)
            if pane_id == "tuning" and pending:
                await undo_pending(pilot, app)
        if backup_running:
            if before_live_scenes is not None:
                before_live_scenes()
            job_id = await show_running_backup(pilot, app)
            save("backups")
            job = await asyncio.to_thread(client.wait_job, job_id, 600)
            if job.get("state") != "succeeded":
                raise RuntimeError(f"the backup shown running ended {job.get('state')}: "
                                   f"{job.get('error')}")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lightkeeper.tui.shots", description=__doc__)
    ap.add_argument("--out", default="screenshots", help="directory for the SVG files")
    ap.add_argument("--record", metavar="FILE", help="also record the agent's answers here")
    ap.add_argument("--size", default="120x40", help="terminal size WxH (default 120x40)")
    ap.add_argument("--pending", action="append", default=[], metavar="KEY=VALUE",
                    help="type this edit into the tuning form before its screenshot")
    ap.add_argument("--backup-running", action="store_true",
                    help="start a backup and shoot the Backups screen while it runs")
    ap.add_argument("--also", action="append", default=[], metavar="WxH:SCREEN",
                    help="also shoot SCREEN at WxH, as SCREEN-WxH.svg (repeatable)")
    args = ap.parse_args(argv)

    try:
        client: Any = connect(load(), autostart=False)
    except AgentUnavailable as exc:
        print(f"lightkeeper.tui.shots: {exc}", file=sys.stderr)
        return 3
    w, h = (int(x) for x in args.size.split("x"))
    pending = dict(e.split("=", 1) for e in args.pending)
    recorder = RecordingClient(client) if args.record else None
    now = time.time()

    def stop_recording() -> None:  # a running job is not part of the replayed demo
        if recorder is not None:
            recorder.recording = False

    paths = asyncio.run(capture(recorder or client, Path(args.out), (w, h), pending=pending,
                                backup_running=args.backup_running,
                                before_live_scenes=stop_recording))
    stop_recording()
    if recorder is not None:
        recorder.save(Path(args.record), now)
    keys = dict(SCREENS)
    for also in args.also:
        size, _, screen = also.partition(":")
        aw, ah = (int(x) for x in size.split("x"))
        paths += asyncio.run(capture(client, Path(args.out), (aw, ah), suffix=f"-{size}",
                                     screens=((screen, keys[screen]),)))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
