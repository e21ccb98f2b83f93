"""``lightkeeper restore SNAPSHOT``: everything, some users or databases, to a new directory
(default) or in place (``--in-place``: a safety snapshot of what it replaces is taken first)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lightkeeper.cli.backup import start_and_follow
from lightkeeper.cli.common import CliContext, CliError, add_json_flag, human_bytes, human_duration
from lightkeeper.contracts.backup import RestoreSummary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore a snapshot (checked against recorded hashes)")
    p.add_argument("snapshot", help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("--user", action="append", default=[], metavar="U",
                   help="only this user (repeatable)")
    p.add_argument("--db", action="append", default=[], metavar="NAME",
                   help="only this database: postgres/NAME, sqlite/NAME or metrics")
    p.add_argument("--target", metavar="PATH", help="restore into this new directory")
    p.add_argument("--in-place", action="store_true",
                   help="replace the users' live directories (after a safety snapshot)")
    p.add_argument("--force", action="store_true",
                   help="allow a non-empty --target directory")
    p.add_argument("--pg-target-db", metavar="DB",
                   help="pg_restore the --db postgres/NAME dump into database DB")
    p.add_argument("--detach", action="store_true", help="start the job and return its id")
    add_json_flag(p)
    p.set_defaults(func=run_restore)


def _render(s: RestoreSummary) -> str:
    lines = [f"restored snapshot {s.get('short_id')} to {s.get('target')}: {s.get('files')} "
             f"files, {human_bytes(s.get('bytes'))}, every file checked against its hash, "
             f"took {human_duration(s.get('duration_s'))}"]
    safety = s["safety_snapshot"]
    if safety:
        lines.append(f"safety snapshot of the replaced data: {safety[:8]}")
    if "pg_restored_into" in s:
        lines.append(f"PostgreSQL dump restored into database {s['pg_restored_into']}")
    for path, err in (s.get("failures") or {}).items():
        lines.append(f"FAILED {path}: {err}")
    return "\n".join(lines)


def run_restore(args: argparse.Namespace, ctx: CliContext) -> int:
    if bool(args.target) == bool(args.in_place):
        raise CliError("give exactly one of --target PATH or --in-place", 2)
    if args.in_place and args.db:
        raise CliError("databases are restored to a --target (PostgreSQL: with "
                       "--pg-target-db), never in place", 2)
    params: dict[str, Any] = {"snapshot": args.snapshot, "in_place": args.in_place,
                              "overwrite": args.force}
    if args.target:
        params["target"] = str(Path(args.target).expanduser().resolve())
    if args.user:
        params["users"] = args.user
    if args.db:
        params["dbs"] = args.db
    if args.pg_target_db:
        params["pg_target_db"] = args.pg_target_db
    return start_and_follow(ctx, "restore", params, args.detach, _render)
