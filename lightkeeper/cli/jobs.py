"""``lightkeeper jobs``: list, show, follow and cancel the agent's jobs."""

from __future__ import annotations

import argparse
import time

from lightkeeper.cli.common import (
    EXIT_OK,
    CliContext,
    add_json_flag,
    follow_job,
    human_duration,
    job_exit_code,
    table,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="the agent's jobs (backup, restore, replicate, ...)")
    jsub = p.add_subparsers(dest="jobs_cmd", metavar="ACTION", required=True)
    ls = jsub.add_parser("list", help="recent jobs")
    ls.add_argument("--active", action="store_true")
    ls.add_argument("--limit", type=int, default=30)
    add_json_flag(ls)
    ls.set_defaults(func=run_list)
    show = jsub.add_parser("show", help="one job with its summary and log")
    show.add_argument("job")
    add_json_flag(show)
    show.set_defaults(func=run_show)
    fol = jsub.add_parser("follow", help="follow a job's progress until it ends")
    fol.add_argument("job")
    add_json_flag(fol)
    fol.set_defaults(func=run_follow)
    cancel = jsub.add_parser("cancel", help="cancel a running job")
    cancel.add_argument("job")
    add_json_flag(cancel)
    cancel.set_defaults(func=run_cancel)


def run_list(args: argparse.Namespace, ctx: CliContext) -> int:
    rows = ctx.client().jobs(limit=args.limit, active=args.active)
    view = [{**r, "when": time.strftime("%m-%d %H:%M:%S", time.localtime(r["created"])),
             "took": human_duration(r.get("duration_s"))} for r in rows]
    ctx.emit(rows if ctx.json else view, lambda _: table(view, [
        ("id", "JOB"), ("kind", "KIND"), ("state", "STATE"), ("when", "CREATED"),
        ("took", "DURATION"), ("actor", "BY"), ("error", "ERROR")], empty="no jobs"))
    return EXIT_OK


def run_show(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(ctx.client().job(args.job))
    return EXIT_OK


def run_follow(args: argparse.Namespace, ctx: CliContext) -> int:
    job = follow_job(ctx, args.job)
    if not ctx.json:
        print(f"job {job.get('id')} {job.get('state')}" +
              (f": {job['error']}" if job.get("error") else ""))
    return job_exit_code(job)


def run_cancel(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(ctx.client().cancel_job(args.job), f"cancel requested for {args.job}")
    return EXIT_OK
