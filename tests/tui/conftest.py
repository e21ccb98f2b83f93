"""Helpers for console tests: run the app against a real agent and wait for what it shows."""

from __future__ import annotations

import asyncio
import functools
import io
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from lightkeeper.tui.app import LightkeeperApp


def async_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async test function in its own event loop (no asyncio plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def make_app(client: Any, **kw: Any) -> LightkeeperApp:
    """The console with quick polls, so tests see changes soon."""
    kw.setdefault("refresh_s", 0.5)
    kw.setdefault("chart_s", 1.0)
    return LightkeeperApp(client, **kw)


def text_of(widget: Any, width: int = 200) -> str:
    """What a Static shows, as plain text."""
    content = getattr(widget, "content", None)
    if content is None:
        content = widget.render()
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(content)
    return console.export_text()


async def wait_until(pilot: Any, cond: Callable[[], Any], what: str,
                     timeout: float = 60.0) -> Any:
    """Let the app run until ``cond()`` is truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001  the widget may not exist yet
            last_exc = exc
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}" +
                         (f" (last error: {last_exc!r})" if last_exc else ""))


async def wait_for_screen(pilot: Any, app: LightkeeperApp, screen: type, what: str) -> Any:
    """Wait until ``app``'s screen is a mounted ``screen``: a pushed screen is ``app.screen``
    before its widgets are composed and mounted (querying them then finds nothing)."""
    return await wait_until(pilot, lambda: isinstance(app.screen, screen)
                            and app.screen.is_mounted and app.screen, what)


def notifications(app: LightkeeperApp) -> list[str]:
    return [n.message for n in app._notifications]
