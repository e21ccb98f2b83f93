"""Shared pieces of the command line: exit codes, output in text or JSON, the agent client.

Each command module in ``lightkeeper/cli/`` exposes ``register(subparsers)`` and sets
``func=handler`` on its parsers, where ``handler(args, ctx: CliContext) -> int``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lightkeeper import config as config_mod
from lightkeeper.fmt import human_bytes, human_duration

# Documented exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1          # the operation ran and failed
EXIT_USAGE = 2           # bad arguments or configuration
EXIT_AGENT = 3           # the agent is not reachable (and could not be started)
EXIT_PROBLEMS = 4        # a check found problems (verify, alerts firing with --check)
EXIT_PARTIAL = 5         # some parts succeeded, some failed (e.g. one zone of three)
EXIT_CANCELLED = 130     # cancelled by the operator


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class CliContext:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._cfg: config_mod.Config | None = None
        self._client: Any = None

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def cfg(self) -> config_mod.Config:
        if self._cfg is None:
            overrides: list[tuple[str, Any]] = []
            try:
                for text in getattr(self.args, "set", None) or []:
                    overrides.append(config_mod.parse_assignment(text))
                if getattr(self.args, "state_dir", None):
                    overrides.append(("paths.state_dir", self.args.state_dir))
                if getattr(self.args, "data_root", None):
                    overrides.append(("paths.data_root", self.args.data_root))
                self._cfg = config_mod.load(getattr(self.args, "config", None), overrides)
            except config_mod.ConfigError as exc:
                raise CliError(f"configuration error: {exc}", EXIT_USAGE) from None
        return self._cfg

    def client(self, autostart: bool = True) -> Any:
        """An ``AgentClient``; starts the agent in the background if none runs."""
        if self._client is None:
            from lightkeeper.client import AgentUnavailable, connect

            try:
                self._client = connect(self.cfg, autostart=autostart)
            except AgentUnavailable as exc:
                raise CliError(str(exc), EXIT_AGENT) from None
        return self._client

    def emit(self, data: Any, human: Callable[[Any], str] | str | None = None) -> None:
        """Print ``data`` as JSON with --json, else the human rendering."""
        if self.json or human is None:
            print(json.dumps(data, indent=2, default=str))
        else:
            text = human(data) if callable(human) else human
            if text:
                print(text)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")


def table(rows: Sequence[Mapping[str, Any]], columns: list[tuple[str, str]],
          empty: str = "(none)") -> str:
    """Render rows as a plain aligned table: columns are (key, heading)."""
    if not rows:
        return empty
    cells = [[h for _, h in columns]]
    for r in rows:
        cells.append(["" if r.get(k) is None else str(r.get(k)) for k, _ in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def follow_job(ctx: CliContext, job_id: str, quiet: bool = False) -> dict[str, Any]:
    """Stream a job's progress (Rich's progress display on a terminal, JSON lines with --json)
    and return its final record. Ctrl-C asks the agent to cancel the job."""
    client = ctx.client()
    final: dict[str, Any] = {}
    tty = sys.stderr.isatty() and not ctx.json and not quiet
    display = JobProgressDisplay() if tty else None
    try:
        with display if display is not None else contextlib.nullcontext():
            for msg in client.follow_job(job_id):
                if ctx.json:
                    print(json.dumps(msg, default=str), flush=True)
                elif display is not None and msg.get("type") == "status":
                    display.update(msg)
                if msg.get("type") == "summary":
                    final = msg.get("job") or {}
    except KeyboardInterrupt:
        client.cancel_job(job_id)
        raise CliError(f"job {job_id} cancelled", EXIT_CANCELLED) from None
    return final


class JobProgressDisplay:
    """A job's progress as Rich draws it on stderr: phase, bar, percent, bytes (or files),
    the agent's measured rate and ETA, and the current item. The agent computes rate and ETA
    from the whole job, so they are shown as it reports them rather than re-estimated here."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=30),
            TaskProgressColumn(), TextColumn("{task.fields[amount]}"),
            TextColumn("{task.fields[rate]}"), TextColumn("ETA {task.fields[eta]}"),
            TextColumn("[dim]{task.fields[current]}"),
            console=Console(stderr=True), transient=False, auto_refresh=True,
            refresh_per_second=5)
        self.task = self.progress.add_task("starting", total=None, amount="", rate="",
                                           eta="-", current="")

    def __enter__(self) -> JobProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, msg: dict[str, Any]) -> None:
        p = msg.get("progress") or {}
        pct = p.get("percent")
        if p.get("bytes_total"):
            amount = f"{human_bytes(p.get('bytes_done'))}/{human_bytes(p['bytes_total'])}"
        elif p.get("files_total"):
            amount = f"{p.get('files_done', 0)}/{p['files_total']} files"
        else:
            amount = ""
        rate = p.get("rate_bytes_s")
        current = str(p.get("current") or "")
        self.progress.update(
            self.task, description=f"{msg.get('kind', '')} {p.get('phase') or ''}".strip(),
            total=None if pct is None else 100.0, completed=float(pct or 0.0), amount=amount,
            rate="" if not rate else f"{human_bytes(rate)}/s",
            eta=human_duration(p.get("eta_s")),
            current=current if len(current) <= 40 else "…" + current[-39:])


def job_exit_code(job: dict[str, Any]) -> int:
    state = job.get("state")
    if state == "succeeded":
        return EXIT_OK
    if state == "cancelled":
        return EXIT_CANCELLED
    if state == "partial":
        return EXIT_PARTIAL
    if state == "problems":
        return EXIT_PROBLEMS
    return EXIT_FAILED
