"""``lightkeeper rag``: insert, query, delete and list LightRAG users from the command line.

These run LightRAG in this process (no agent needed) and write one spool record per operation,
which the agent ingests when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
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
    human_bytes,
    table,
)
from lightkeeper.ids import InvalidUserId, validate_user_id

MODES = ("naive", "local", "global", "hybrid", "mix", "bypass")
MAX_FILE_BYTES = 50 * 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rag", help="insert into, query and list users' LightRAG data",
                       description="Run LightRAG operations for one user (offline provider "
                       "unless rag.provider = 'openai'). Each operation is measured and "
                       "spooled for the agent.")
    rs = p.add_subparsers(dest="rag_command", metavar="ACTION")
    rs.required = True

    ins = rs.add_parser("insert", help="insert text files into a user's knowledge base")
    ins.add_argument("--user", required=True, help="user id ([a-z0-9][a-z0-9_-]{0,63})")
    ins.add_argument("files", nargs="+", metavar="FILE",
                     help="UTF-8 text files ('-' reads one document from standard input)")
    add_json_flag(ins)
    ins.set_defaults(func=cmd_insert)

    q = rs.add_parser("query", help="ask a user's knowledge base")
    q.add_argument("--user", required=True, help="user id")
    q.add_argument("--mode", choices=MODES, default=None,
                   help="retrieval mode (default: the tuning's query_mode)")
    q.add_argument("question", help="the question")
    add_json_flag(q)
    q.set_defaults(func=cmd_query)

    d = rs.add_parser("delete", help="delete a document (by id) from a user's knowledge base")
    d.add_argument("--user", required=True, help="user id")
    d.add_argument("doc_id", help="document id as printed by 'rag insert'")
    add_json_flag(d)
    d.set_defaults(func=cmd_delete)

    u = rs.add_parser("users", help="users with document, entity, relation counts and size")
    u.add_argument("--user", help="only this user")
    add_json_flag(u)
    u.set_defaults(func=cmd_users)


def _user(value: str) -> str:
    try:
        return validate_user_id(value)
    except InvalidUserId as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _read_files(paths: list[str]) -> list[tuple[str, str]]:
    docs = []
    for name in paths:
        if name == "-":
            try:
                text = sys.stdin.buffer.read(MAX_FILE_BYTES + 1).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CliError(f"standard input: not UTF-8 text (byte {exc.start})",
                               EXIT_USAGE) from None
            if len(text.encode("utf-8")) > MAX_FILE_BYTES:
                raise CliError("standard input: larger than the "
                               f"{human_bytes(MAX_FILE_BYTES)} limit for one document", EXIT_USAGE)
            if not text.strip():
                raise CliError("standard input: the document is empty", EXIT_USAGE)
            docs.append((text, "stdin"))
            continue
        path = Path(name)
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise CliError(f"{name}: not a regular file", EXIT_USAGE)
            if size > MAX_FILE_BYTES:
                raise CliError(f"{name}: {human_bytes(size)} is larger than the "
                               f"{human_bytes(MAX_FILE_BYTES)} limit for one document",
                               EXIT_USAGE)
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CliError(f"{name}: no such file", EXIT_USAGE) from None
        except UnicodeDecodeError as exc:
            raise CliError(f"{name}: not UTF-8 text (byte {exc.start}); convert it first",
                           EXIT_USAGE) from None
        except OSError as exc:
            raise CliError(f"{name}: cannot read: {exc.strerror}", EXIT_USAGE) from None
        if not text.strip():
            raise CliError(f"{name}: the file is empty", EXIT_USAGE)
        docs.append((text, str(path)))
    return docs


def _run(ctx: CliContext, fn: Any) -> Any:
    from lightkeeper.rag.gate import GateTimeout
    from lightkeeper.rag.runtime import RagError, RagRuntime

    async def main() -> Any:
        async with RagRuntime(ctx.cfg) as rt:
            return await fn(rt)

    try:
        return asyncio.run(main())
    except GateTimeout as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    except RagError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except InvalidUserId as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def cmd_insert(args: argparse.Namespace, ctx: CliContext) -> int:
    user = _user(args.user)
    docs = _read_files(args.files)
    t0 = time.perf_counter()
    res = _run(ctx, lambda rt: rt.insert(user, [t for t, _ in docs], [p for _, p in docs]))
    res["duration_s"] = round(time.perf_counter() - t0, 3)
    res["files"] = [p for _, p in docs]

    def human(r: dict[str, Any]) -> str:
        lines = [f"{user}: inserted {r['documents'] - len(r['failed'])} of {r['documents']} "
                 f"document(s) in {r['duration_s']} s"]
        lines += [f"  {i}" for i in r["ids"]]
        if r["failed"]:
            lines.append("failed: " + ", ".join(r["failed"]))
        return "\n".join(lines)

    ctx.emit(res, human)
    return EXIT_FAILED if res["failed"] else EXIT_OK


def cmd_query(args: argparse.Namespace, ctx: CliContext) -> int:
    user = _user(args.user)
    if not args.question.strip():
        raise CliError("the question is empty", EXIT_USAGE)
    out: dict[str, Any] = {}

    async def ask(rt: Any) -> str:
        answer = await rt.query(user, args.question, args.mode)
        out["record"] = rt.instrument.last
        return answer

    answer = _run(ctx, ask)
    rec = out.get("record") or {}
    data = {"user": user, "mode": rec.get("mode") or args.mode, "question": args.question,
            "answer": answer, "duration_s": rec.get("duration_s"),
            "llm_calls": rec.get("llm_calls"), "tuning_version": rec.get("tuning_version")}
    ctx.emit(data, lambda d: d["answer"])
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    user = _user(args.user)
    res = _run(ctx, lambda rt: rt.delete(user, args.doc_id))
    ctx.emit(res, lambda r: f"{user}: {r['doc_id']}: {r['status']} {r.get('message') or ''}")
    return EXIT_OK if res.get("status") == "success" else EXIT_FAILED


def cmd_users(args: argparse.Namespace, ctx: CliContext) -> int:
    from lightkeeper.rag import inventory

    root = ctx.cfg.path("paths.data_root")
    if args.user:
        user = _user(args.user)
        if not (root / user).is_dir():
            raise CliError(f"user {user!r} has no data under {root}", EXIT_FAILED)
        rows = [inventory.user_summary(root, user)]
    else:
        rows = inventory.users(root)
    if ctx.json:
        print(json.dumps({"data_root": str(root), "users": rows}, indent=2))
        return EXIT_OK
    shown = [{**r, "size": human_bytes(r["size_bytes"]),
              "other": ", ".join(f"{k} {v}" for k, v in r["documents_by_status"].items()
                                 if k != "processed")} for r in rows]
    print(table(shown, [("user", "USER"), ("documents", "DOCS"), ("entities", "ENTITIES"),
                        ("relations", "RELATIONS"), ("size", "SIZE"), ("other", "OTHER")],
                empty=f"(no users under {root})"))
    return EXIT_OK
