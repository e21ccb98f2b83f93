"""Drive the console headless and save an SVG screenshot of every screen.

``python -m lightkeeper.tui.shots --out screenshots`` attaches to the configured agent (it does not start
one), opens each screen, waits for its data and writes ``screenshots/<screen>.svg``.
``--record FILE`` also keeps the agent's answers for the snapshot tests' recorded-data replay.
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
from lightkeeper.tui.replay import RecordingClient

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


async def capture(client: Any, out: Path, size: tuple[int, int] = (120, 40),
                  clock: Callable[[], float] = time.time, theme: str = "textual-dark",
                  suffix: str = "", window: str = "5m") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    app = LightkeeperApp(client, clock=clock, theme=theme, live=False, window=window)
    written = []
    async with app.run_test(size=size) as pilot:
        for pane_id, key in SCREENS:
            await show_pane(pilot, app, pane_id, key)
            path = out / f"{pane_id}{suffix}.svg"
            app.save_screenshot(filename=path.name, path=str(out))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lightkeeper.tui.shots", description=__doc__)
    ap.add_argument("--out", default="screenshots", help="directory for the SVG files")
    ap.add_argument("--record", metavar="FILE", help="also record the agent's answers here")
    ap.add_argument("--size", default="120x40", help="terminal size WxH (default 120x40)")
    args = ap.parse_args(argv)

    try:
        client: Any = connect(load(), autostart=False)
    except AgentUnavailable as exc:
        print(f"lightkeeper.tui.shots: {exc}", file=sys.stderr)
        return 3
    w, h = (int(x) for x in args.size.split("x"))
    recorder = RecordingClient(client) if args.record else None
    now = time.time()
    paths = asyncio.run(capture(recorder or client, Path(args.out), (w, h)))
    if recorder is not None:
        recorder.save(Path(args.record), now)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
