"""``lightkeeper replicate [ZONE...]``: copy the local repository to remote zones."""

from __future__ import annotations

import argparse
from typing import Any

from lightkeeper.cli.common import CliContext, add_json_flag, human_bytes, human_duration
from lightkeeper.cli.zones import add_local_flag, run_job
from lightkeeper.contracts.zones import ReplicateSummary


def _render(s: ReplicateSummary) -> str:
    lines = []
    for name, r in sorted(s["zones"].items()):
        pub = len(r.get("snapshots_published") or [])
        lines.append(f"{name}: ok, {r.get('files_uploaded')} files, "
                     f"{human_bytes(r.get('bytes_sent'))} sent, {pub} snapshot(s) published, "
                     f"{len(r.get('remote_snapshots') or [])} on the zone, "
                     f"{human_duration(r.get('elapsed_s'))}")
        for u in r.get("snapshots_unpublished") or []:
            lines.append(f"  not published: {u['id'][:12]} ({u['missing_files']} files missing)")
    for name, err in sorted(s["failed"].items()):
        lines.append(f"{name}: FAILED: {err}")
    return "\n".join(lines)


def cmd_replicate(args: argparse.Namespace, ctx: CliContext) -> int:
    params: dict[str, Any] = {"zones": list(args.zones) or None}
    if args.full_listing:
        params["full_listing"] = True
    return run_job(ctx, "replicate", params, _render)


def register(sub: Any) -> None:
    p = sub.add_parser("replicate", help="copy the backup repository to remote zones")
    p.add_argument("zones", nargs="*", metavar="ZONE", help="zones to sync (default: all)")
    p.add_argument("--full-listing", action="store_true",
                   help="list every file on the zone instead of trusting the cached listing, "
                        "and send again whatever is missing or has the wrong size")
    add_json_flag(p)
    add_local_flag(p)
    p.set_defaults(func=cmd_replicate)
