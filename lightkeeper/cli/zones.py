"""``lightkeeper zones``: list, trust, verify, prune, restore from and rebuild from remote
zones. Work runs as agent jobs (``--local`` runs it in this process instead)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from lightkeeper.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliContext,
    CliError,
    add_json_flag,
    follow_job,
    human_bytes,
    human_duration,
    job_exit_code,
    table,
)
from lightkeeper.contracts.zones import (
    TrustProbeResponse,
    TrustResponse,
    ZonePruneSummary,
    ZoneRebuildSummary,
    ZoneRestoreSummary,
    ZoneStatus,
    ZoneVerifySummary,
)
from lightkeeper.fmt import plural


def add_local_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local", action="store_true",
                   help="run in this process instead of through the agent")


def _services(ctx: CliContext) -> Any:
    from lightkeeper import logs
    from lightkeeper.backup.zones.local_services import LocalServices

    # events of an in-process run go to the in-process commands' own log file (the agent alone
    # writes and rotates log.file)
    cfg = ctx.cfg
    logs.setup(cfg["log.level"], logs.in_process_log_file(cfg.path("log.file")),
               cfg["log.max_bytes"], cfg["log.backups"], console=False, shared=True)
    return LocalServices(cfg)


def call(ctx: CliContext, name: str, **params: Any) -> Any:
    """A zones call through the agent, or in-process with --local."""
    if getattr(ctx.args, "local", False):
        from lightkeeper.backup.zones.calls import CALLS
        from lightkeeper.backup.zones.errors import ZoneError
        from lightkeeper.services import CallError

        try:
            return CALLS[name](_services(ctx), params)
        except (CallError, ZoneError, ValueError) as exc:
            raise CliError(str(exc), EXIT_USAGE if "no such zone" in str(exc)
                           else EXIT_FAILED) from None
    from lightkeeper.client import AgentError

    try:
        return ctx.client().call(name, **params)
    except AgentError as exc:
        raise CliError(str(exc), EXIT_USAGE if exc.status == 404 else EXIT_FAILED) from None


def check_zones(ctx: CliContext, names: list[str]) -> None:
    """Unknown zone names are a usage error before anything starts."""
    if not names:
        return
    from lightkeeper.backup.zones.errors import unknown_zone

    known = ctx.cfg.table("zones")  # entries are checked with the configuration
    for name in names:
        if name not in known:
            raise CliError(str(unknown_zone(name, known)), EXIT_USAGE)


def run_job(ctx: CliContext, kind: str, params: dict[str, Any],
            render: Any = None) -> int:
    """Run a zone job and print its summary; the exit code follows the job's final state."""
    check_zones(ctx, ([params["zone"]] if params.get("zone") else []) +
                list(params.get("zones") or []))
    if getattr(ctx.args, "local", False):
        return _run_local(ctx, kind, params, render)
    from lightkeeper.client import AgentError

    try:
        job_id = ctx.client().start_job(kind, params)
    except AgentError as exc:
        raise CliError(str(exc), EXIT_USAGE if exc.status in (400, 404) else EXIT_FAILED) \
            from None
    job = follow_job(ctx, job_id)
    if not ctx.json:
        if job.get("state") in ("failed", "error"):
            print(f"lightkeeper: {kind} failed: {job.get('error')}", file=sys.stderr)
        elif render is not None and job.get("summary"):
            print(render({**job["summary"], "state": job.get("state")}))
    return job_exit_code(job)


def _run_local(ctx: CliContext, kind: str, params: dict[str, Any], render: Any) -> int:
    from lightkeeper.backup.zones.calls import JOBS
    from lightkeeper.progress import JobCancelled, LocalContext

    tty = sys.stderr.isatty() and not ctx.json

    def on_progress(p: dict[str, Any]) -> None:
        if ctx.json:
            print(json.dumps({"type": "status", "kind": kind, "progress": p}, default=str),
                  flush=True)
        elif tty:
            pct = p.get("percent")
            line = (f"\r{kind} {p.get('zone', '')} {p.get('phase', '')} "
                    f"{'' if pct is None else f'{pct:5.1f}% '}"
                    f"{human_bytes(p.get('bytes_done'))}/{human_bytes(p.get('bytes_total'))} "
                    f"{human_bytes(p.get('rate_bytes_s'))}/s ETA {human_duration(p.get('eta_s'))}")
            sys.stderr.write(line[:120].ljust(100))
            sys.stderr.flush()

    jctx = LocalContext(job_id=f"local-{int(time.time())}", on_progress=on_progress)
    try:
        summary = JOBS[kind](jctx, _services(ctx), params)
        state = summary.pop("state", None) or "succeeded"
        error = None
    except JobCancelled:
        summary, state, error = {}, "cancelled", "cancelled"
    except KeyboardInterrupt:
        summary, state, error = {}, "cancelled", "interrupted"
    except Exception as exc:  # noqa: BLE001 - reported with its message, never a traceback
        summary, state, error = {}, "failed", str(exc)
    finally:
        if tty:
            sys.stderr.write("\n")
    job = {"kind": kind, "state": state, "summary": summary, "error": error}
    if ctx.json:
        print(json.dumps({"type": "summary", "job": job}, default=str))
    elif error:
        print(f"lightkeeper: {kind} {state}: {error}", file=sys.stderr)
    elif render is not None:
        print(render({**summary, "state": state}))
    return job_exit_code(job)


# -- list / status ------------------------------------------------------------------------
def _ago(ts: float | None) -> str:
    return "never" if ts is None else human_duration(time.time() - float(ts)) + " ago"


def _zone_rows(zones: list[ZoneStatus]) -> str:
    rows = []
    for z in zones:
        reach = {True: "yes", False: "NO", None: "?"}[z["reachable"]]
        rows.append({"name": z["name"], "where": z["where"], "reachable": reach,
                     "last_success": _ago(z["last_success"]),
                     "lag": human_duration(z["lag_seconds"]) if z["lag_seconds"] else "0",
                     "size": human_bytes(z["remote_bytes"]),
                     "snapshots": z["remote_snapshots"],
                     "failures": z["failures_total"]})
    return table(rows, [("name", "ZONE"), ("where", "WHERE"), ("reachable", "REACHABLE"),
                        ("last_success", "LAST SUCCESS"), ("lag", "LAG"), ("size", "SIZE"),
                        ("snapshots", "SNAPSHOTS"), ("failures", "FAILURES")],
                 empty="no zones configured (add zones.NAME.host, .user and .remote_path)")


def cmd_list(args: argparse.Namespace, ctx: CliContext) -> int:
    zones: list[ZoneStatus] = call(ctx, "zones.list", probe=bool(args.probe))
    ctx.emit(zones, _zone_rows)
    return EXIT_OK


def cmd_status(args: argparse.Namespace, ctx: CliContext) -> int:
    z: ZoneStatus = call(ctx, "zones.status", zone=args.zone, probe=bool(args.probe))

    def human(z: ZoneStatus) -> str:
        lines = [_zone_rows([z])]
        if z["last_error"]:
            lines.append(f"last error: {z['last_error']}")
        lines.append(f"bytes sent: {human_bytes(z['bytes_sent_total'])}, "
                     f"snapshots behind: {z['snapshots_behind']}")
        return "\n".join(lines)

    ctx.emit(z, human)
    return EXIT_OK


# -- trust --------------------------------------------------------------------------------
def cmd_trust(args: argparse.Namespace, ctx: CliContext) -> int:
    probe: TrustProbeResponse = call(ctx, "zones.trust_probe", zone=args.zone)
    key = f"{probe['key_type']} {probe['fingerprint']}"
    if probe["state"] == "trusted":
        ctx.emit({**probe}, f"zone {args.zone}: {probe['host']} is already trusted ({key})")
        return EXIT_OK
    if probe["state"] == "changed":
        raise CliError(
            f"zone {args.zone!r}: HOST KEY CHANGED for {probe['host']}: recorded "
            f"{', '.join(probe['recorded'])}, presented {key}. Refusing to re-trust; if the "
            f"change is expected, remove the old entry from {probe['known_hosts']} first",
            EXIT_FAILED)
    if args.fingerprint:
        confirmed = args.fingerprint.strip()
        if confirmed.rstrip("=") != probe["fingerprint"]:
            raise CliError(f"zone {args.zone!r}: the server presents {key}, not the given "
                           f"{confirmed}; nothing recorded", EXIT_FAILED)
    else:
        print(f"zone {args.zone}: {probe['host']} presents an unknown host key\n"
              f"  key type:    {probe['key_type']}\n"
              f"  fingerprint: {probe['fingerprint']}\n"
              "Compare it with the server's (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the "
              "zone).", file=sys.stderr)
        sys.stderr.write("Trust this key? Type 'yes' to record it: ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer != "yes":
            raise CliError(f"zone {args.zone!r}: not trusted (answer was not 'yes'); nothing "
                           "recorded", EXIT_FAILED)
        confirmed = probe["fingerprint"]
    result: TrustResponse = call(ctx, "zones.trust", zone=args.zone, fingerprint=confirmed)
    ctx.emit(result, f"zone {args.zone}: trusted {result['key_type']} {result['fingerprint']} "
                     f"(recorded in {result['known_hosts']})")
    return EXIT_OK


# -- jobs ---------------------------------------------------------------------------------
def _render_verify(s: ZoneVerifySummary) -> str:
    # "files" are the repository's data files; a full check also hashes each snapshot's
    # manifest, so the hashed count is files + snapshots
    head = (f"zone {s.get('zone')}: {plural(s.get('snapshots') or 0, 'snapshot')}, "
            f"{plural(s.get('files') or 0, 'file')}, {human_bytes(s.get('bytes'))}"
            + (f"; hashed {s.get('files_hashed')} of "
               f"{(s.get('files') or 0) + (s.get('snapshots') or 0)} (files and snapshot "
               "manifests)" if s.get("full") else ""))
    if not s.get("problems"):
        return head + ": OK"
    lines = [head + f": {len(s['problems'])} PROBLEM(S)"]
    for p in s["problems"][:50]:
        what = p.get("file") or p.get("snapshot")
        lines.append(f"  {what}: {p['problem']}")
    if s.get("snapshots_affected"):
        lines.append("  snapshots affected: " + ", ".join(x[:12] for x in
                                                          s["snapshots_affected"]))
    return "\n".join(lines)


def cmd_verify(args: argparse.Namespace, ctx: CliContext) -> int:
    return run_job(ctx, "zone_verify", {"zone": args.zone, "full": bool(args.full)},
                   _render_verify)


def _render_prune(s: ZonePruneSummary) -> str:
    verb = "would forget" if s.get("dry_run") else "forgot"
    return (f"zone {s.get('zone')}: kept {len(s.get('kept', []))} snapshots, {verb} "
            f"{len(s.get('forgotten', []))}; {s.get('files_deleted')} files, "
            f"{human_bytes(s.get('bytes_freed'))} "
            f"{'to free' if s.get('dry_run') else 'freed'}")


def cmd_prune(args: argparse.Namespace, ctx: CliContext) -> int:
    return run_job(ctx, "zone_prune", {"zone": args.zone, "dry_run": bool(args.dry_run)},
                   _render_prune)


def cmd_restore(args: argparse.Namespace, ctx: CliContext) -> int:
    params = {"zone": args.zone, "snapshot": args.snapshot, "target": args.target,
              "user": args.user}

    def render(s: ZoneRestoreSummary) -> str:
        return (f"restored {s.get('files')} files ({human_bytes(s.get('bytes'))}) of snapshot "
                f"{str(s.get('snapshot'))[:12]} from zone {s.get('zone')} to {s.get('target')}"
                + (f"; {len(s['failures'])} FAILED" if s.get("failures") else ""))

    return run_job(ctx, "zone_restore", params, render)


def cmd_rebuild(args: argparse.Namespace, ctx: CliContext) -> int:
    def render(s: ZoneRebuildSummary) -> str:
        return (f"rebuilt {s.get('repository')} from zone {s.get('zone')}: "
                f"{s.get('snapshots')} snapshots, {s.get('files_fetched')} files, "
                f"{human_bytes(s.get('bytes_fetched'))}"
                + (f"; {len(s['problems'])} PROBLEM(S)" if s.get("problems") else ""))

    return run_job(ctx, "zone_rebuild", {"zone": args.zone}, render)


def register(sub: Any) -> None:
    p = sub.add_parser("zones", help="remote zones: list, trust, verify, prune, restore")
    zsub = p.add_subparsers(dest="zones_command", metavar="ACTION", required=True)

    q = zsub.add_parser("list", help="every zone: reachable, last success, lag, size")
    q.add_argument("--probe", action="store_true", help="connect to each zone now")
    add_json_flag(q)
    add_local_flag(q)
    q.set_defaults(func=cmd_list)

    q = zsub.add_parser("status", help="one zone in detail")
    q.add_argument("zone")
    q.add_argument("--probe", action="store_true", help="connect to the zone now")
    add_json_flag(q)
    add_local_flag(q)
    q.set_defaults(func=cmd_status)

    q = zsub.add_parser("trust", help="show a zone's host key and record it once confirmed")
    q.add_argument("zone")
    q.add_argument("--fingerprint", metavar="SHA256:...",
                   help="the fingerprint you verified out of band (no prompt)")
    add_json_flag(q)
    add_local_flag(q)
    q.set_defaults(func=cmd_trust)

    q = zsub.add_parser("verify", help="check every snapshot the zone holds is complete")
    q.add_argument("zone")
    q.add_argument("--full", action="store_true", help="download and hash every file")
    add_json_flag(q)
    add_local_flag(q)
    q.set_defaults(func=cmd_verify)

    q = zsub.add_parser("prune", help="apply the zone's keep-* rules and delete unused files")
    q.add_argument("zone")
    q.add_argument("--dry-run", action="store_true", help="show what would go, delete nothing")
    add_json_flag(q)
    add_local_flag(q)
    q.set_defaults(func=cmd_prune)

    q = zsub.add_parser("restore", help="restore a snapshot (or one user) from a zone")
    q.add_argument("zone")
    q.add_argument("snapshot", help="snapshot id, unique prefix, or 'latest'")
    q.add_argument("--user", help="only this user's directory")
    q.add_argument("--target", required=True, help="a new or empty directory")
    add_json_flag(q)
    add_local_flag(q)
    q.set_defaults(func=cmd_restore)

    q = zsub.add_parser("rebuild", help="recreate a lost local repository from a zone")
    q.add_argument("zone")
    add_json_flag(q)
    add_local_flag(q)
    q.set_defaults(func=cmd_rebuild)
