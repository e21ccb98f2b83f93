"""``lightkeeper tuning``: versioned LightRAG parameters (show, set, diff, revert, compare...)."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from lightkeeper.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliContext,
    CliError,
    add_json_flag,
    human_duration,
    table,
)
from lightkeeper.contracts import tuning as t
from lightkeeper.contracts.agent import CompareResponse

EPILOG = """examples:
  lightkeeper tuning show --user alice
  lightkeeper tuning set chunk_token_size=600 top_k=60 --note "smaller chunks for FAQ docs"
  lightkeeper tuning set top_k=default --user alice --note "drop alice's override"
  lightkeeper tuning diff 3 5
  lightkeeper tuning revert 3 --note "latency p95 doubled"
  lightkeeper tuning compare 3 5
  lightkeeper tuning export-env --output lightrag.env
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tuning", help="versioned LightRAG tuning parameters",
                       description="Show, change, diff, revert and compare LightRAG tuning "
                       "versions. Every change is a new version with who and why.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = p.add_subparsers(dest="tuning_command", metavar="ACTION")
    p.set_defaults(func=lambda args, ctx: _usage(p))

    s = tsub.add_parser("show", help="effective parameters and where each value comes from")
    s.add_argument("--user", help="show the effective values for this user")
    add_json_flag(s)
    s.set_defaults(func=run_show)

    s = tsub.add_parser("set", help="change parameters (a new version)")
    s.add_argument("assignments", nargs="+", metavar="KEY=VALUE",
                   help="parameter=value; value 'default' resets it (removes a user override)")
    s.add_argument("--note", required=True, help="why (recorded with the version)")
    s.add_argument("--user", help="set per-user overrides instead of the global value")
    s.add_argument("--acknowledge-rebuild", action="store_true",
                   help="allow an embedding change on data that has vectors (rebuild needed)")
    add_json_flag(s)
    s.set_defaults(func=run_set)

    s = tsub.add_parser("validate", help="check KEY=VALUE edits without applying them")
    s.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    s.add_argument("--user")
    s.add_argument("--acknowledge-rebuild", action="store_true")
    add_json_flag(s)
    s.set_defaults(func=run_validate)

    s = tsub.add_parser("diff", help="differences between two versions")
    s.add_argument("a", type=int, help="version A")
    s.add_argument("b", type=int, nargs="?", help="version B (default: the latest)")
    add_json_flag(s)
    s.set_defaults(func=run_diff)

    s = tsub.add_parser("revert", help="make a new version equal to version N")
    s.add_argument("version", type=int)
    s.add_argument("--note", required=True, help="why (recorded with the version)")
    s.add_argument("--acknowledge-rebuild", action="store_true")
    add_json_flag(s)
    s.set_defaults(func=run_revert)

    s = tsub.add_parser("history", help="list versions, newest first")
    s.add_argument("--limit", type=int, default=50)
    add_json_flag(s)
    s.set_defaults(func=run_history)

    s = tsub.add_parser("compare", help="LightRAG latency under version A and version B")
    s.add_argument("a", type=int)
    s.add_argument("b", type=int)
    add_json_flag(s)
    s.set_defaults(func=run_compare)

    s = tsub.add_parser("export-env", help="write the equivalent .env for LightRAG's server")
    s.add_argument("--output", "-o", metavar="FILE", help="write to FILE (default: stdout)")
    s.add_argument("--version", type=int, help="version to export (default: the latest)")
    s.add_argument("--user", help="export the effective values for this user")
    add_json_flag(s)
    s.set_defaults(func=run_export_env)

    s = tsub.add_parser("import-env", help="read a LightRAG .env into a new version")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--note", required=True, help="why (recorded with the version)")
    s.add_argument("--user", help="import as per-user overrides")
    s.add_argument("--acknowledge-rebuild", action="store_true")
    add_json_flag(s)
    s.set_defaults(func=run_import_env)

    s = tsub.add_parser("servers", help="running `lightkeeper serve` processes: the tuning "
                        "version each runs and whether it needs a restart")
    add_json_flag(s)
    s.set_defaults(func=run_servers)

    s = tsub.add_parser("params", help="the parameter model: types, ranges, units, effects")
    add_json_flag(s)
    s.set_defaults(func=run_params)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


def _call(ctx: CliContext, call: str, /, **params: Any) -> Any:
    from lightkeeper.client import AgentError, default_actor

    if call in ("tuning.set", "tuning.revert", "tuning.import_env"):
        params.setdefault("actor", default_actor())
    try:
        return ctx.client().call(call, **params)
    except AgentError as exc:
        code = EXIT_USAGE if getattr(exc, "status", 500) in (400, 404, 422) else EXIT_FAILED
        raise CliError(str(exc), code) from None


def _assignments(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"expected KEY=VALUE, got {item!r} "
                           "(see `lightkeeper tuning params` for the names)", EXIT_USAGE)
        key = key.strip()
        if key in out:
            raise CliError(f"{key} given twice", EXIT_USAGE)
        out[key] = value
    return out


def _when(ts: float | None) -> str:
    return "" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return "''"
    return str(value)


def _render_diff_rows(rows: list[dict[str, Any]]) -> str:
    view = []
    for r in rows:
        view.append({"mark": {"changed": "~", "added": "+", "removed": "-"}[r["change"]],
                     "key": r["key"], "old": "" if r["change"] == "added" else _fmt(r["old"]),
                     "new": "" if r["change"] == "removed" else _fmt(r["new"]),
                     "effect": r["effect"]})
    return table(view, [("mark", ""), ("key", "PARAMETER"), ("old", "OLD"), ("new", "NEW"),
                        ("effect", "TAKES EFFECT")], empty="no differences")


def _render_change(result: dict[str, Any]) -> str:
    if not result.get("changed"):
        return result.get("message") or f"nothing changed (version {result['version']})"
    lines = [f"tuning version {result['version']} recorded "
             f"(was {result['previous']}); active file {result.get('file', '')}",
             _render_diff_rows(result["diff"])]
    if result.get("effects"):
        lines.append("")
        lines += [f"  {e}" for e in result["effects"]]
    if result.get("acknowledged_rebuild"):
        lines.append("rebuild acknowledged for: " + ", ".join(result["acknowledged_rebuild"]))
    if result.get("ignored"):
        lines.append("ignored (not tuning): " + ", ".join(result["ignored"]))
    lines += _server_lines(result.get("servers") or [], changed=result["diff"])
    return "\n".join(lines)


def _server_lines(servers: list[dict[str, Any]], changed: list[dict[str, Any]] | None = None
                  ) -> list[str]:
    """What the running `lightkeeper serve` processes need: a restart, or nothing."""
    out: list[str] = []
    for s in servers:
        text = s.get("notice")
        if text:
            out += text.splitlines()
        elif s.get("state") == "running" and changed:
            out.append(f"lightkeeper serve for {s['user']} (pid {s['pid']}) applies this at "
                       "its next query or document; no restart needed")
    return [""] + out if out else []


# -- handlers -----------------------------------------------------------------------------
def run_show(args: argparse.Namespace, ctx: CliContext) -> int:
    doc: t.ShowResponse = _call(ctx, "tuning.show", user=args.user)

    def human(d: dict[str, Any]) -> str:
        who = f" for user {d['user']}" if d.get("user") else ""
        head = [f"tuning version {d['version']}{who} ({_when(d['ts'])}, {d['actor']}: "
                f"{d['note']})",
                f"active file: {d['file']} ({d['file_state']})"]
        if d.get("users") and not d.get("user"):
            head.append("users with overrides: " + ", ".join(d["users"]))
        rows = [{**r, "value": _fmt(r["value"]), "default": _fmt(r["default"])}
                for r in d["params"]]
        return "\n".join(head) + "\n\n" + table(rows, [
            ("name", "PARAMETER"), ("value", "VALUE"), ("origin", "FROM"),
            ("default", "DEFAULT"), ("unit", "UNIT"), ("effect", "TAKES EFFECT")])

    ctx.emit(doc, human)
    return EXIT_OK


def run_set(args: argparse.Namespace, ctx: CliContext) -> int:
    result: t.CommitResponse = _call(ctx, "tuning.set", changes=_assignments(args.assignments), note=args.note,
                   user=args.user, acknowledge_rebuild=args.acknowledge_rebuild, source="cli")
    ctx.emit(result, _render_change)
    return EXIT_OK


def run_validate(args: argparse.Namespace, ctx: CliContext) -> int:
    result: t.ValidateResponse = _call(ctx, "tuning.validate", changes=_assignments(args.assignments),
                   user=args.user, acknowledge_rebuild=args.acknowledge_rebuild)

    def human(r: dict[str, Any]) -> str:
        lines = ["valid" if r["ok"] else "invalid"]
        lines += [f"  error   {k}: {v}" for k, v in r["errors"].items()]
        lines += [f"  warning {k}: {v}" for k, v in r["warnings"].items()]
        if r["ok"]:
            lines.append(_render_diff_rows(r["diff"]))
        return "\n".join(lines)

    ctx.emit(result, human)
    return EXIT_OK if result["ok"] else EXIT_FAILED


def run_diff(args: argparse.Namespace, ctx: CliContext) -> int:
    result: t.DiffResponse = _call(ctx, "tuning.diff", a=args.a, b=args.b)

    def human(r: dict[str, Any]) -> str:
        a, b = r["a"], r["b"]
        lines = [f"version {a['version']} ({_when(a['ts'])}, {a['actor']}: {a['note']})",
                 f"     -> {b['version']} ({_when(b['ts'])}, {b['actor']}: {b['note']})", "",
                 _render_diff_rows(r["rows"])]
        if r.get("effects"):
            lines.append("")
            lines += [f"  {e}" for e in r["effects"]]
        return "\n".join(lines)

    ctx.emit(result, human)
    return EXIT_OK


def run_revert(args: argparse.Namespace, ctx: CliContext) -> int:
    result: t.CommitResponse = _call(ctx, "tuning.revert", version=args.version, note=args.note,
                   acknowledge_rebuild=args.acknowledge_rebuild)
    ctx.emit(result, _render_change)
    return EXIT_OK


def run_history(args: argparse.Namespace, ctx: CliContext) -> int:
    result: t.HistoryResponse = _call(ctx, "tuning.history", limit=args.limit)

    def human(r: dict[str, Any]) -> str:
        rows = []
        for v in r["versions"]:
            what = ", ".join(v["changes"][:4]) + (" ..." if len(v["changes"]) > 4 else "")
            if v.get("reverted_from"):
                what = f"revert to {v['reverted_from']}: {what}"
            rows.append({"version": v["version"], "when": _when(v["ts"]), "actor": v["actor"],
                         "source": v["source"], "what": what, "note": v["note"]})
        return table(rows, [("version", "VERSION"), ("when", "WHEN"), ("actor", "WHO"),
                            ("source", "SOURCE"), ("what", "CHANGED"), ("note", "NOTE")])

    ctx.emit(result, human)
    return EXIT_OK


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.0f}%"


def run_compare(args: argparse.Namespace, ctx: CliContext) -> int:
    result: CompareResponse = _call(ctx, "rag.compare_versions", a=args.a, b=args.b)

    def human(r: dict[str, Any]) -> str:
        rows = []
        for row in r.get("rows", []):
            view: dict[str, Any] = {"op": row["op"], "mode": row.get("mode") or "-"}
            for tag in ("a", "b"):
                view[f"{tag}_n"] = row.get(f"{tag}_count", 0)
                view[f"{tag}_lat"] = " / ".join(
                    human_duration(row.get(f"{tag}_{q}")) for q in ("p50", "p95", "p99"))
            view["change"] = " / ".join(_pct(row.get(f"change_{q}"))
                                        for q in ("p50", "p95", "p99"))
            view["note"] = "thin evidence" if row.get("thin_evidence") else ""
            rows.append(view)
        a, b = r.get("a", args.a), r.get("b", args.b)
        lines = [f"latency under tuning version {a} (A) and {b} (B): p50 / p95 / p99", "",
                 table(rows, [("op", "OP"), ("mode", "MODE"), ("a_n", "A N"),
                              ("a_lat", "A LATENCY"), ("b_n", "B N"), ("b_lat", "B LATENCY"),
                              ("change", "CHANGE B vs A"), ("note", "")],
                       empty=f"no LightRAG operations recorded under version {a} or {b}")]
        if any(row.get("thin_evidence") for row in r.get("rows", [])):
            lines.append("\nthin evidence: fewer than 30 operations on one side; "
                         "run more (e.g. `lightkeeper bench`) before trusting the change")
        runs = r.get("bench_runs") or []
        if runs:
            lines.append("\nbench runs:")
            for run in runs:
                lines.append(f"  {run['id']}  version {run['tuning_version']}  "
                             f"{_when(run['ts'])}")
        return "\n".join(lines)

    ctx.emit(result, human)
    return EXIT_OK


def _write_file(path: Path, text: str) -> None:
    path = path.expanduser()
    if path.is_dir():
        raise CliError(f"{path} is a directory; give a file name", EXIT_USAGE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


def run_export_env(args: argparse.Namespace, ctx: CliContext) -> int:
    result: t.ExportEnvResponse = _call(ctx, "tuning.export_env", version=args.version,
                                        user=args.user)
    if args.output:
        _write_file(Path(args.output), result["text"])
        output = str(Path(args.output).expanduser())
        ctx.emit({**result, "output": output},
                 f"wrote {output} from tuning version {result['version']}")
    elif ctx.json:
        ctx.emit(result)
    else:
        print(result["text"], end="")
    return EXIT_OK


def run_import_env(args: argparse.Namespace, ctx: CliContext) -> int:
    path = Path(args.file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file", EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}", EXIT_USAGE) from None
    result: t.CommitResponse = _call(ctx, "tuning.import_env", text=text, file_name=str(path), note=args.note,
                   user=args.user, acknowledge_rebuild=args.acknowledge_rebuild)
    ctx.emit(result, _render_change)
    return EXIT_OK


def run_params(args: argparse.Namespace, ctx: CliContext) -> int:
    result: t.ParamsResponse = _call(ctx, "tuning.params")

    def human(r: dict[str, Any]) -> str:
        rows = [{"name": p["name"], "type": p["type"], "default": _fmt(p["default"]),
                 "allowed": p["allowed"], "unit": p["unit"], "effect": p["effect"],
                 "env": p["env"] or "-", "meaning": p["meaning"]} for p in r["params"]]
        legend = "\n".join(f"  {k}: {v}" for k, v in r["effects"].items())
        return table(rows, [("name", "PARAMETER"), ("type", "TYPE"), ("default", "DEFAULT"),
                            ("allowed", "ALLOWED"), ("unit", "UNIT"), ("effect", "EFFECT"),
                            ("env", "SERVER ENV"), ("meaning", "MEANING")]) + \
            "\n\neffect classes:\n" + legend

    ctx.emit(result, human)
    return EXIT_OK


def run_servers(args: argparse.Namespace, ctx: CliContext) -> int:
    result: t.ServersResponse = _call(ctx, "tuning.servers")

    def human(r: dict[str, Any]) -> str:
        if not r["servers"]:
            return "no lightkeeper serve process runs"
        rows = []
        for x in r["servers"]:
            need = ", ".join(x.get("restart_needed") or []) or "-"
            if x.get("state") != "running":
                need = x.get("reason") or "-"
            rows.append({"user": x.get("user") or "?", "pid": x.get("pid") or "-",
                         "state": x["state"], "built": x.get("tuning_version") or "-",
                         "need": need, "url": x.get("url") or ""})
        lines = [f"latest tuning version {r['version']}", "",
                 table(rows, [("user", "USER"), ("pid", "PID"), ("state", "STATE"),
                              ("built", "BUILT WITH"), ("need", "NEEDS A RESTART FOR"),
                              ("url", "URL")])]
        lines += _server_lines(r["servers"])
        lines += ["", r["restart_hint"]]
        return "\n".join(lines)

    ctx.emit(result, human)
    return EXIT_OK
