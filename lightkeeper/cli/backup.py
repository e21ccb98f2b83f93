"""``lightkeeper backup``: run, list, show, stats, verify, prune, forget, drill, cancel, key.

Every action goes through the agent (jobs survive the SSH session); ``--json`` prints the
job's progress and summary as JSON lines. ``backup key export`` is the one exception: it reads
the key file directly, so only its owner can copy the key (the API never returns key bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lightkeeper.cli.common import (
    EXIT_OK,
    CliContext,
    CliError,
    add_json_flag,
    follow_job,
    human_bytes,
    human_duration,
    job_exit_code,
    table,
)
from lightkeeper.client import AgentError, AgentUnavailable
from lightkeeper.contracts.backup import (
    BackupSummary,
    DrillSummary,
    ForgetSummary,
    PruneSummary,
    ShowResponse,
    SnapshotsResponse,
    StatsResponse,
    VerifySummary,
)
from lightkeeper.fmt import plural

KEEPS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="snapshots of user data and databases")
    bsub = p.add_subparsers(dest="backup_cmd", metavar="ACTION", required=True)

    run = bsub.add_parser("run", help="take a snapshot now")
    run.add_argument("--user", action="append", default=[], metavar="U",
                     help="only this user (repeatable)")
    run.add_argument("--tag", action="append", default=[], metavar="T", help="tag (repeatable)")
    run.add_argument("--detach", action="store_true", help="start the job and return its id")
    add_json_flag(run)
    run.set_defaults(func=run_backup)

    ls = bsub.add_parser("list", help="snapshots in the repository")
    ls.add_argument("--user", help="only snapshots holding this user")
    ls.add_argument("--limit", type=int, default=0)
    add_json_flag(ls)
    ls.set_defaults(func=run_list)

    show = bsub.add_parser("show", help="one snapshot: users, counts, databases, summary")
    show.add_argument("snapshot", help="id, unique prefix, or 'latest'")
    show.add_argument("--files", action="store_true", help="list every file")
    add_json_flag(show)
    show.set_defaults(func=run_show)

    st = bsub.add_parser("stats", help="repository size, packs, newest snapshot, last verify")
    add_json_flag(st)
    st.set_defaults(func=run_stats)

    ver = bsub.add_parser("verify", help="check the repository (exit 4 when damaged)")
    ver.add_argument("snapshot", nargs="?", help="only this snapshot")
    mode = ver.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="read and hash all data")
    mode.add_argument("--sample", type=float, metavar="PCT", help="read PCT%% of the packs")
    add_json_flag(ver)
    ver.set_defaults(func=run_verify)

    pr = bsub.add_parser("prune", help="delete data no snapshot references")
    pr.add_argument("--dry-run", action="store_true")
    add_json_flag(pr)
    pr.set_defaults(func=run_prune)

    fg = bsub.add_parser("forget", help="remove snapshots by a keep policy (restic semantics)")
    for k in KEEPS:
        fg.add_argument(f"--keep-{k}", type=int, metavar="N")
    fg.add_argument("--dry-run", action="store_true", help="show what would be removed")
    fg.add_argument("--prune", action="store_true", help="prune afterwards")
    add_json_flag(fg)
    fg.set_defaults(func=run_forget)

    dr = bsub.add_parser("drill", help="restore a sample of users from the newest snapshot "
                         "into scratch space, check every hash, open each with LightRAG")
    dr.add_argument("--users", type=int, metavar="N", help="how many users (backup.drill_users)")
    dr.add_argument("--snapshot", help="drill this snapshot instead of the newest")
    add_json_flag(dr)
    dr.set_defaults(func=run_drill)

    cancel = bsub.add_parser("cancel", help="cancel a running backup job")
    cancel.add_argument("job")
    add_json_flag(cancel)
    cancel.set_defaults(func=run_cancel)

    key = bsub.add_parser("key", help="the repository key")
    ksub = key.add_subparsers(dest="key_cmd", metavar="ACTION", required=True)
    exp = ksub.add_parser("export", help="copy the key (keep it somewhere safe and offline)")
    exp.add_argument("--output", "-o", metavar="FILE",
                     help="write to FILE (created owner-only) instead of standard output")
    add_json_flag(exp)
    exp.set_defaults(func=run_key_export)
    ks = ksub.add_parser("show", help="key file path and fingerprint (no key material)")
    add_json_flag(ks)
    ks.set_defaults(func=run_key_show)
    sg = ksub.add_parser("sign-snapshots", help="authenticate the snapshots of an unencrypted "
                         "repository written before manifests carried a MAC (once, after an "
                         "upgrade; see docs/security.md)")
    add_json_flag(sg)
    sg.set_defaults(func=run_sign_snapshots)


def start_and_follow(ctx: CliContext, kind: str, params: dict[str, Any],
                     detach: bool = False, render: Any = None) -> int:
    client = ctx.client()
    try:
        job_id = client.start_job(kind, params)
    except (AgentError, AgentUnavailable) as exc:
        raise CliError(str(exc)) from None
    if detach:
        ctx.emit({"job_id": job_id}, f"started {kind} job {job_id}")
        return EXIT_OK
    job = follow_job(ctx, job_id)
    if not ctx.json:
        summary = job.get("summary") or {}
        if job.get("error"):
            print(f"{kind} job {job_id} {job.get('state')}: {job['error']}", file=sys.stderr)
        elif render is not None:
            print(render(summary))
        else:
            print(json.dumps(summary, indent=2, default=str))
    return job_exit_code(job)


def _render_backup(s: BackupSummary) -> str:
    user_files = s["files_new"] + s["files_changed"] + s["files_unmodified"]
    dumps = max(0, s["files"] - user_files)  # database dumps are not compared
    parts = []
    if user_files:
        parts.append(f"{plural(user_files, 'user file')} ({s.get('files_new')} new, "
                     f"{s.get('files_changed')} changed, {s.get('files_unmodified')} "
                     "unmodified)")
    if dumps:
        parts.append(plural(dumps, "database dump"))
    lines = [
        f"snapshot {s.get('short_id')} saved: {' and '.join(parts) or 'no files'}, "
        f"{human_bytes(s.get('bytes_total'))}",
        f"read {human_bytes(s.get('bytes_read'))}, added {human_bytes(s.get('bytes_added'))} "
        f"(dedup ratio {s.get('dedup_ratio')}), repository "
        f"{human_bytes(s.get('repository_size'))}, took {human_duration(s.get('duration_s'))}",
    ]
    for user, err in (s.get("errors") or {}).items():
        lines.append(f"FAILED user {user}: {err} (carried over from the previous snapshot)")
    return "\n".join(lines)


def run_backup(args: argparse.Namespace, ctx: CliContext) -> int:
    params: dict[str, Any] = {"tags": args.tag}
    if args.user:
        params["users"] = args.user
    return start_and_follow(ctx, "backup", params, args.detach, _render_backup)


def run_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.user:
        params["user"] = args.user
    data: SnapshotsResponse = ctx.client().call("backup.snapshots", **params)
    rows = []
    for s in data["snapshots"]:
        sm = s["summary"]
        rows.append({"id": s["short_id"],
                     "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["time"])),
                     "users": len(s["users"]), "files": sm.get("files"),
                     "size": human_bytes(sm.get("bytes_total")),
                     "failed": ",".join(sm.get("failed_users") or []) or "",
                     "tags": ",".join(s["tags"])})
    ctx.emit(data, lambda _: table(rows, [
        ("id", "ID"), ("time", "TIME"), ("users", "USERS"), ("files", "FILES"),
        ("size", "SIZE"), ("tags", "TAGS"), ("failed", "FAILED USERS")], empty="no snapshots"))
    if not ctx.json:
        for r in data["refused"]:
            print(f"lightkeeper: refused snapshot {r['short_id']}: {r['error']}", file=sys.stderr)
    return EXIT_OK


def _render_show(m: ShowResponse) -> str:
    lines = [f"snapshot {m['id']}",
             f"time      {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(m['time']))}",
             f"host      {m.get('host')}", f"tags      {', '.join(m.get('tags') or []) or '-'}",
             f"parent    {(m.get('parent') or '-')[:8]}", f"files     {m['file_count']}", ""]
    users = [{"user": u, **v} for u, v in sorted(m.get("users", {}).items())]
    for u in users:
        u["bytes"] = human_bytes(u.get("bytes"))
        u["status"] = "FAILED: " + u["error"] if u.get("error") else "ok"
        u["checked"] = check_text(u.get("check"))
    lines.append(table(users, [("user", "USER"), ("files", "FILES"), ("bytes", "SIZE"),
                               ("documents", "DOCS"), ("entities", "ENTITIES"),
                               ("relations", "RELATIONS"), ("checked", "COPY CHECK"),
                               ("status", "STATUS")],
                       empty="(no users)"))
    if m.get("databases"):
        lines.append("")
        lines.append(table([{"name": k, "kind": v.get("kind"), "size": human_bytes(v.get("size"))}
                            for k, v in sorted(m["databases"].items())],
                           [("name", "DATABASE"), ("kind", "KIND"), ("size", "SIZE")]))
    for f in m.get("files") or []:
        lines.append(f"{f['size']:>12}  {f['path']}")
    return "\n".join(lines)


def check_text(check: dict[str, Any] | None) -> str:
    """The copy check of one user in a snapshot, in a few words (docs/backup.md)."""
    if not check:
        return "-"  # a snapshot taken before the check existed
    if not check.get("accepted"):
        return "rejected (copy carried over)"
    parts = []
    quiet = check.get("quiet") or {}
    if quiet.get("required_s"):
        parts.append(f"quiet {quiet['required_s']:g} s")
    stores = check.get("stores")
    if stores and stores.get("checked"):
        parts.append(f"stores agree ({stores.get('documents', 0)} docs)")
    elif stores:
        parts.append("no LightRAG stores")
    if (check.get("attempts") or 1) > 1:
        parts.append(f"{check['attempts']} tries")
    return "ok: " + ", ".join(parts) if parts else "ok"


def run_show(args: argparse.Namespace, ctx: CliContext) -> int:
    m: ShowResponse = ctx.client().call("backup.show", snapshot=args.snapshot, files=args.files)
    ctx.emit(m, _render_show)
    return EXIT_OK


def run_stats(args: argparse.Namespace, ctx: CliContext) -> int:
    s: StatsResponse = ctx.client().call("backup.stats")

    def human(s: StatsResponse) -> str:
        newest = s["newest_snapshot"]
        v = s["verified"]
        return "\n".join([
            f"repository  {s['path']} (id {s['id'][:12]}, "
            f"{'encrypted' if s['encrypted'] else 'NOT encrypted'}, key {s['key_id'][:12]})",
            f"size        {human_bytes(s['size_bytes'])} in {s['packs']} packs, "
            f"{s['index_files']} index files, {s['chunks']} chunks",
            f"snapshots   {s['snapshots']}" + (
                f", newest {newest['short_id']} ({human_duration(s['newest_age_seconds'])} ago)"
                if newest else ""),
            f"verified    {v['newest_verified'][:8]} {v['mode']}" if v else "verified    -",
        ])

    ctx.emit(s, human)
    return EXIT_OK


def _render_verify(r: VerifySummary) -> str:
    if r.get("ok"):
        text = (f"repository OK ({r.get('mode')}): {r.get('snapshots_checked')} snapshots, "
                f"{r.get('packs_checked')} packs read, {human_bytes(r.get('bytes_read'))}")
        return text + (f"\nnote: {r['note']}" if r.get("note") else "")
    lines = [f"repository DAMAGED ({r.get('mode')}): {r.get('problem_count')} problem(s)"]
    lines += [f"  {p}" for p in (r.get("problems") or [])[:20]]
    for a in r.get("affected") or []:
        lines.append(f"snapshot {a['short_id']}: {len(a['files'])} damaged file(s):")
        lines += [f"    {f}" for f in a["files"][:20]]
    if r.get("snapshots_ok"):
        lines.append("unaffected snapshots (restore these): " +
                     ", ".join(s[:8] for s in r["snapshots_ok"]))
    return "\n".join(lines)


def run_verify(args: argparse.Namespace, ctx: CliContext) -> int:
    params: dict[str, Any] = {"full": args.full}
    if args.sample is not None:
        params["sample_pct"] = args.sample
    if args.snapshot:
        params["snapshot"] = args.snapshot
    return start_and_follow(ctx, "verify", params, render=_render_verify)


def run_prune(args: argparse.Namespace, ctx: CliContext) -> int:
    def render(s: PruneSummary) -> str:
        head = "would delete" if s.get("dry_run") else "deleted"
        return (f"{head} {s.get('packs_delete')} packs, repacked {s.get('packs_repack')}, kept "
                f"{s.get('packs_keep')}; freed {human_bytes(s.get('bytes_freed'))}, repository "
                f"{human_bytes(s.get('repository_size'))}")

    return start_and_follow(ctx, "prune", {"dry_run": args.dry_run}, render=render)


def run_forget(args: argparse.Namespace, ctx: CliContext) -> int:
    params: dict[str, Any] = {"dry_run": args.dry_run, "prune": args.prune}
    for k in KEEPS:
        v = getattr(args, f"keep_{k}")
        if v is not None:
            if v < 0:
                raise CliError(f"--keep-{k} must be >= 0", 2)
            params[f"keep_{k}"] = v

    def render(s: ForgetSummary) -> str:
        verb = "would remove" if s.get("dry_run") else "removed"
        lines = [f"{verb} {s.get('removed_count')} snapshot(s), keeping {s.get('kept_count')}"]
        lines += [f"  keep   {k['short_id']}  {', '.join(k['reasons'])}" for k in s["kept"]]
        lines += [f"  remove {r['short_id']}" for r in s["removed"]]
        return "\n".join(lines)

    return start_and_follow(ctx, "forget", params, render=render)


def run_drill(args: argparse.Namespace, ctx: CliContext) -> int:
    params: dict[str, Any] = {}
    if args.users:
        params["users"] = args.users
    if args.snapshot:
        params["snapshot"] = args.snapshot

    def render(s: DrillSummary) -> str:
        head = "drill PASSED" if s.get("ok") else "drill FAILED"
        lines = [f"{head}: snapshot {s.get('short_id')} ({human_duration(s.get('snapshot_age_s'))}"
                 f" old), users {', '.join(s.get('users') or [])}: restored "
                 f"{human_bytes(s.get('bytes'))} in {human_duration(s.get('restore_s'))}, "
                 f"recovery time {human_duration(s.get('recovery_time_s'))}"]
        lines += [f"  {p}" for p in s.get("problems") or []]
        return "\n".join(lines)

    return start_and_follow(ctx, "drill", params, render=render)


def run_cancel(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(ctx.client().cancel_job(args.job), f"cancel requested for {args.job}")
    return EXIT_OK


def run_sign_snapshots(args: argparse.Namespace, ctx: CliContext) -> int:
    return start_and_follow(ctx, "sign_snapshots", {}, render=lambda s: (
        f"{s.get('count', 0)} snapshot(s) signed" + "".join(
            f"\n  {old[:12]} -> {new[:12]}" for old, new in (s.get("signed") or {}).items())))


def run_key_show(args: argparse.Namespace, ctx: CliContext) -> int:
    data = ctx.client().call("backup.key_export")
    ctx.emit(data, lambda d: f"key file     {d['key_file']}\nfingerprint  {d['fingerprint']}\n"
                             f"repository   {d['repo_id']}")
    return EXIT_OK


def run_key_export(args: argparse.Namespace, ctx: CliContext) -> int:
    key_file = ctx.cfg.path("backup.key_file")
    try:
        raw = key_file.read_text()
        doc = json.loads(raw)
    except FileNotFoundError:
        raise CliError(f"no key file at {key_file}: without it the backups cannot be read; "
                       "if you exported it earlier, copy that file back there (mode 600)") from None
    except PermissionError:
        raise CliError(f"cannot read {key_file}: only its owner can export the key") from None
    except ValueError:
        raise CliError(f"{key_file} is not a lightkeeper repository key") from None
    if args.output:
        out = Path(args.output)
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CliError(f"{out} already exists; refusing to overwrite it") from None
        with os.fdopen(fd, "w") as f:
            f.write(raw)
        ctx.emit({"key_file": str(key_file), "exported_to": str(out),
                  "fingerprint": doc.get("fingerprint")},
                 f"key {doc.get('fingerprint', '')[:12]} written to {out} (mode 600). Keep it "
                 "offline: anyone with it and the repository can read every backup.")
        return EXIT_OK
    if sys.stdout.isatty() and not ctx.json:
        print("warning: printing the repository key; anyone who sees it can read every backup",
              file=sys.stderr)
    ctx.emit({"key_file": str(key_file), "fingerprint": doc.get("fingerprint"), "key": doc},
             raw.rstrip("\n"))
    return EXIT_OK
