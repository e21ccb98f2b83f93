"""``lightkeeper offline-llm``: an OpenAI-compatible endpoint backed by the offline providers.

Point LightRAG's OpenAI binding (the stock ``lightrag-server``, ``lightkeeper serve``, or your
own service) at ``http://127.0.0.1:PORT/v1`` to run with no model and no network. Binds
127.0.0.1 unless ``--host`` says otherwise. With ``--port 0`` (the default) the OS picks a free
port; the first line on standard output (and ``--ready-file``) says which, as JSON:
``{"url": "http://127.0.0.1:PORT/v1", "host": ..., "port": ..., "pid": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from lightkeeper.cli.common import EXIT_OK, EXIT_USAGE, CliContext, CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("offline-llm", help="serve the offline LLM and embedder over an "
                       "OpenAI-compatible HTTP API (no model, no network)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else exposes it)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: the OS picks)")
    p.add_argument("--embed-dim", type=int, default=1024,
                   help="embedding dimension when a request does not say (default 1024, "
                   "lightrag-server's default for the openai binding)")
    p.add_argument("--llm-ms", type=float, default=None,
                   help="simulated delay per chat completion (default rag.simulate_llm_ms)")
    p.add_argument("--llm-ms-per-token", type=float, default=None,
                   help="simulated delay per output token (default "
                   "rag.simulate_llm_ms_per_token)")
    p.add_argument("--embed-ms", type=float, default=None,
                   help="simulated delay per embeddings request (default rag.simulate_embed_ms)")
    p.add_argument("--ready-file", metavar="FILE",
                   help="write the listening address here (JSON) once the port is open")
    p.set_defaults(func=cmd_offline_llm)


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    """Write ``info`` as JSON to ``path`` atomically (an exclusive temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(info).encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)


def cmd_offline_llm(args: argparse.Namespace, ctx: CliContext) -> int:
    from lightkeeper.rag.openai_server import MAX_DIM, ServerSettings, serve
    from lightkeeper.rag.providers.offline import Latency

    if not 0 <= args.port <= 65535:
        raise CliError(f"--port {args.port}: must be from 0 to 65535", EXIT_USAGE)
    if not 8 <= args.embed_dim <= MAX_DIM:
        raise CliError(f"--embed-dim {args.embed_dim}: must be from 8 to {MAX_DIM}", EXIT_USAGE)
    cfg = ctx.cfg
    lat = Latency(
        cfg["rag.simulate_llm_ms"] if args.llm_ms is None else args.llm_ms,
        cfg["rag.simulate_llm_ms_per_token"] if args.llm_ms_per_token is None
        else args.llm_ms_per_token,
        cfg["rag.simulate_embed_ms"] if args.embed_ms is None else args.embed_ms)
    for name, value in (("--llm-ms", lat.llm_ms), ("--llm-ms-per-token", lat.llm_ms_per_token),
                        ("--embed-ms", lat.embed_ms)):
        if value < 0:
            raise CliError(f"{name} {value}: must not be negative", EXIT_USAGE)
    ready_file = Path(args.ready_file) if args.ready_file else None

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        info = {"url": f"http://{shown}:{port}/v1", "host": host, "port": port,
                "pid": os.getpid()}
        if ready_file is not None:  # before the line: whoever reads it may look for the file
            write_ready_file(ready_file, info)
        print(json.dumps(info), flush=True)

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        await serve(ServerSettings(lat, args.embed_dim), args.host, args.port, ready)

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                       EXIT_USAGE if exc.errno in (98, 99, 13) else 1) from None
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
    print("offline-llm: stopped", file=sys.stderr)
    return EXIT_OK
