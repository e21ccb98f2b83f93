"""``lightkeeper processes``: the LightRAG processes on this server, named by the user or
workspace they serve (``serve:alice``, ``server:bob``, ``worker:bob.1``, ``library:demo``,
``open:carol.rsync``), with memory, CPU, descriptors, uptime, restarts, and whether each is
instrumented (writes lightkeeper's spool) and gated (takes the users' write gate). An ungated
writer on a user's directory is flagged: backups of that user cannot be consistent while it
writes (runbook: ungated_writer). Exit 4 with ``--check`` when there is one.
"""

from __future__ import annotations

import argparse
from typing import Any

from lightkeeper.cli.common import EXIT_OK, EXIT_PROBLEMS, CliContext, add_json_flag, table
from lightkeeper.contracts.agent import ProcessesResponse
from lightkeeper.fmt import human_bytes, human_duration, pct


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("processes", help="LightRAG processes: memory, CPU, uptime, restarts, "
                       "instrumented, gated", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_json_flag(p)
    p.add_argument("--check", action="store_true",
                   help="exit 4 when a process writes a user's directory without the gate")
    p.set_defaults(func=run)


def _yes(v: Any) -> str:
    return "yes" if v else "no"


def render(data: ProcessesResponse) -> str:
    rows = []
    for p in data["processes"]:
        rows.append({
            "label": p["label"], "pid": p["pid"], "rss": human_bytes(p.get("rss_bytes")),
            "cpu": pct(p.get("cpu_ratio")) if p.get("cpu_ratio") is not None else "-",
            "fds": p.get("open_fds") if p.get("open_fds") is not None else "-",
            "up": human_duration(p.get("uptime_s")), "restarts": p.get("restarts", 0),
            "instr": _yes(p.get("instrumented")) if p["kind"] != "agent" else "-",
            "gated": _yes(p.get("gated")) if p["kind"] != "agent" else "-",
            "dir": p.get("working_dir") or ",".join(p.get("users_open") or []) or "-",
            "flag": "UNGATED WRITER" if p.get("ungated_writer") else "",
        })
    return table(rows, [("label", "PROCESS"), ("pid", "PID"), ("rss", "RSS"), ("cpu", "CPU"),
                        ("fds", "FDS"), ("up", "UPTIME"), ("restarts", "RESTARTS"),
                        ("instr", "INSTR"), ("gated", "GATED"), ("dir", "DATA"),
                        ("flag", "")], empty="no processes (is the agent collecting?)")


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    data: ProcessesResponse = ctx.client().call("processes.list")
    ctx.emit(data, render)
    if args.check and any(p["ungated_writer"] for p in data["processes"]):
        return EXIT_PROBLEMS
    return EXIT_OK
