"""``lightkeeper serve``: LightRAG's own API server, in-process, under watch.

The application is lightrag-hku 1.5.7's own (``lightrag.api``: same routes, WebUI, auth,
arguments and environment); ``rag/lightrag_api.py`` (the adapter) builds it with its
``LightRAG`` subclassed so that:

- every query (each mode, streaming included), pipeline insert (one record per document, with
  ``queue_wait_s``: enqueue to start, apart from ``duration_s``: the run), delete and graph
  operation is one spool record (op, mode, LLM/embedding split, tokens, outcome);
- every write holds the user's write gate (``LOCK_EX``): a REST enqueue, each pipeline
  document from its first storage write to its final flush, a delete, a graph edit, a
  query's LLM-cache flush; and, underneath, every storage method that writes a file (the
  pipeline's parse and analyze stages update ``doc_status`` and commit the LLM cache outside
  any one document's processing). Overlapping writes share one hold; when a backup is waiting
  (it holds the gate's intent file) new operations wait for the hold to end, so the backup
  gets in. A storage write joins a hold in progress instead: LightRAG may call it under its
  own locks, which the holder may be waiting for;
- the active tuning is applied when the instance is built. While it runs, a new active
  version's ``next_operation`` parameters apply to the next query and its ``new_documents``
  ones to the next document; ``restart``/``rebuild`` ones are reported (log, status file)
  as needing a restart, which ``lightkeeper serve --restart`` (SIGHUP) does without dropping
  requests: the listening socket stays open, in-flight requests finish, the pipeline drains,
  and a new application is built on the same socket.

A status file ``<state_dir>/serve/<user>.json`` says pid, URL, workspace, the tuning version
applied and what needs a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from lightkeeper import gate as core_gate
from lightkeeper.config import Config
from lightkeeper.ids import validate_user_id
from lightkeeper.logs import get_logger
from lightkeeper.rag import lightrag_api
from lightkeeper.rag.instrument import Instrument, current_op, wrap_embed, wrap_llm
from lightkeeper.rag.params import ParamSource
from lightkeeper.rag.spool import SpoolWriter
from lightkeeper.rag.tokenizer import offline_tokenizer, serve_offline_encodings
from lightkeeper.tuning import params as tuning_params

log = get_logger("rag.serve")

_in_gate: ContextVar[bool] = ContextVar("lightkeeper_serve_in_gate", default=False)
LIVE_EFFECTS = tuning_params.LIVE_EFFECTS


class ServeError(ValueError):
    """``serve`` cannot start with these arguments (exit 2)."""


class SharedWriteGate:
    """The user's write gate held across overlapping writes of one process (see module doc)."""

    def __init__(self, directory: Path, timeout: float) -> None:
        self.directory = directory
        self.timeout = timeout
        self.count = 0
        self.holds = 0  # how many times the flock was taken (tests, status)
        self._cm: Any = None
        self._acquire = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def hold(self, yield_to_reader: bool = True) -> AsyncIterator[None]:
        """Hold the gate for one write. ``yield_to_reader=False`` (a storage write, maybe under
        LightRAG's locks) joins a hold in progress even when a backup waits: waiting for that
        hold to end could wait for ourselves."""
        if _in_gate.get() and self.count > 0:  # a write inside a write: already covered
            yield
            return
        if yield_to_reader and self.count > 0 and core_gate.reader_waiting(self.directory):
            await self._idle.wait()  # let the hold end so the waiting backup gets in
        async with self._acquire:
            if self.count == 0:
                cm = core_gate.async_write_gate(self.directory, self.timeout)
                await cm.__aenter__()
                self._cm = cm
                self.holds += 1
                self._idle.clear()
            self.count += 1
        token = _in_gate.set(True)
        try:
            yield
        finally:
            _in_gate.reset(token)
            self.count -= 1
            if self.count == 0:
                cm, self._cm = self._cm, None
                self._idle.set()
                await cm.__aexit__(None, None, None)


class _Scope:
    """One recorded operation as an async context manager (``None`` when nested)."""

    def __init__(self, inst: Instrument, user: str, op: str, mode: str | None,
                 version: int | None, force: bool) -> None:
        self.scope: Any = None
        if force or current_op() is None:
            self.scope = inst.op(user, op, mode)
            self.scope.rec.tuning_version = version

    async def __aenter__(self) -> Any:
        return None if self.scope is None else self.scope.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.scope is not None:
            self.scope.__exit__(exc_type, exc, tb)

    def detach(self) -> None:
        if self.scope is not None:
            self.scope.detach()


class ServeRuntime:
    """Instrumentation, gate and tuning for one served workspace."""

    def __init__(self, cfg: Config, user: str, user_dir: Path, *, instrumented: bool = True,
                 gated: bool = True, watch_tuning: bool = True) -> None:
        self.cfg = cfg
        self.user = user
        self.user_dir = user_dir
        self.instrumented = instrumented
        self.gated = gated
        self.tuning = ParamSource(cfg, watch=watch_tuning)
        writer = SpoolWriter(cfg.path("paths.spool_dir"), cfg["rag.spool_max_bytes"]) \
            if instrumented else None
        self.instrument = Instrument(writer)
        self.gate = SharedWriteGate(user_dir, float(cfg["rag.gate_timeout"]))
        self.built_version: int | None = None
        self.built_params: dict[str, Any] = {}
        self.live_version: int | None = None
        self.restart_needed: list[str] = []
        self.status_path: Path | None = None
        self.status_extra: dict[str, Any] = {}
        self.hooks = lightrag_api.Hooks(
            op=self._op, write=self._write, store_write=self._store_write,
            wrap_llm=wrap_llm if instrumented else (lambda f: f),
            wrap_embed=wrap_embed if instrumented else (lambda f: f),
            tokenizer=offline_tokenizer(), configure=self._configure,
            query_param=self._query_param, before_document=self._apply_live)

    # -- hooks -----------------------------------------------------------------------------
    def _op(self, op: str, mode: str | None, force: bool = False) -> _Scope:
        if not self.instrumented:
            return _NullScope()  # type: ignore[return-value]
        return _Scope(self.instrument, self.user, op, mode, self.live_version, force)

    def _write(self) -> Any:
        return self.gate.hold() if self.gated else _NullScope()

    def _store_write(self) -> Any:
        return self.gate.hold(yield_to_reader=False) if self.gated else _NullScope()

    def _configure(self, rag: Any) -> None:
        """Apply the active tuning to a LightRAG instance being built (before __post_init__)."""
        self.tuning.refresh()
        version, p = self.tuning.get(self.user)
        self.built_version = self.live_version = version
        self.built_params = dict(p)
        self.restart_needed = []
        if version is None:
            return  # no active tuning: the server's own arguments and environment rule
        for name, value in tuning_params.lightrag_kwargs(p).items():
            if hasattr(rag, name):
                setattr(rag, name, value)
        kwargs = dict(getattr(rag, "vector_db_storage_cls_kwargs", None) or {})
        kwargs["cosine_better_than_threshold"] = p["cosine_better_than_threshold"]
        rag.vector_db_storage_cls_kwargs = kwargs
        log.info("serve.tuning.applied", user=self.user, version=version)

    def _apply_live(self, rag: Any) -> None:
        """A new active tuning version: apply what can change live, report the rest."""
        version, p = self.tuning.get(self.user)
        if version == self.live_version or version is None:
            return
        changed = [k for k, v in p.items() if self.built_params.get(k) != v]
        live = [k for k in changed if tuning_params.effect_of(k) in LIVE_EFFECTS]
        fields = tuning_params.lightrag_kwargs(p)
        by_param = {q.name: q.lightrag_field for q in tuning_params.PARAMS}
        for k in live:
            field = by_param.get(k)
            if field and hasattr(rag, field):
                setattr(rag, field, fields[field])
        self.restart_needed = sorted(k for k in changed if k not in live)
        self.live_version = version
        self.write_status()
        if self.restart_needed:
            log.warning("serve.tuning.restart_needed", user=self.user, version=version,
                        params=",".join(self.restart_needed),
                        hint=f"lightkeeper serve --restart --user {self.user}")
        else:
            log.info("serve.tuning.live", user=self.user, version=version, params=",".join(live))

    def _query_param(self, rag: Any, param: Any) -> None:
        self._apply_live(rag)
        if self.live_version is None:
            return
        _, p = self.tuning.get(self.user)
        for name, value in tuning_params.query_param_kwargs(p).items():
            if name != "mode" and hasattr(param, name):
                setattr(param, name, value)

    # -- status file -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "user": self.user, "user_dir": str(self.user_dir),
                "instrumented": self.instrumented, "gated": self.gated,
                "tuning_version": self.built_version, "live_tuning_version": self.live_version,
                "restart_needed": self.restart_needed, "updated": time.time(),
                **self.status_extra}

    def write_status(self) -> None:
        if self.status_path is None:
            return
        write_json_atomic(self.status_path, self.status())

    def close(self) -> None:
        self.tuning.close()
        if self.instrument.spool is not None:
            self.instrument.spool.close()


class _NullScope:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def detach(self) -> None:
        return None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(data).encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)


def status_path(cfg: Config, user: str) -> Path:
    return cfg.path("paths.state_dir") / "serve" / f"{user}.json"


def _has_flag(argv: list[str], *names: str) -> bool:
    return any(a == n or a.startswith(n + "=") for a in argv for n in names)


def server_argv(cfg: Config, user: str | None, argv: list[str]) -> tuple[list[str], str]:
    """lightrag-server's arguments: ``--workspace``/``--working-dir`` from ``user`` and the
    data root unless given (as arguments or ``WORKSPACE``/``WORKING_DIR``)."""
    argv = list(argv)
    workspace = user
    if user is not None:
        validate_user_id(user)
        if _has_flag(argv, "--workspace"):
            raise ServeError("give the workspace once: --user or lightrag-server's --workspace")
        argv += ["--workspace", user]
    if not _has_flag(argv, "--working-dir") and not os.environ.get("WORKING_DIR"):
        argv += ["--working-dir", str(cfg.path("paths.data_root"))]
    return argv, workspace or ""


@contextmanager
def _listening_socket(host: str, port: int) -> Any:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    try:
        yield sock
    finally:
        sock.close()


def run(cfg: Config, user: str | None, argv: list[str], *, ready: Callable[[dict], None],
        instrumented: bool = True, gated: bool = True) -> int:
    """Run the server until SIGTERM/SIGINT; SIGHUP restarts it in place. Returns 0."""
    lightrag_api.check_version()
    serve_offline_encodings()
    argv, _ = server_argv(cfg, user, argv)
    args = lightrag_api.parse_server_args(argv)
    workspace = str(getattr(args, "workspace", "") or "")
    if user is not None and workspace != user:
        raise ServeError(f"LightRAG's server keeps only letters, digits and '_' in a workspace "
                         f"name: user {user!r} would be stored as {workspace!r}; serve a user "
                         "id without '-' (or rename it)")
    if not workspace:
        raise ServeError("lightkeeper serve needs a user or workspace: --user U (or "
                         "lightrag-server's --workspace / WORKSPACE)")
    try:
        validate_user_id(workspace)
    except ValueError as exc:
        raise ServeError(f"workspace {workspace!r}: {exc}") from None
    user_dir = Path(args.working_dir).resolve() / workspace
    user_dir.mkdir(parents=True, exist_ok=True)
    rt = ServeRuntime(cfg, workspace, user_dir, instrumented=instrumented, gated=gated)
    rt.status_path = status_path(cfg, workspace)
    lightrag_api.configure_logging()
    try:
        with _listening_socket(args.host, int(args.port)) as sock:
            port = sock.getsockname()[1]
            shown = f"[{args.host}]" if ":" in args.host else args.host
            scheme = "https" if getattr(args, "ssl", False) else "http"
            rt.status_extra = {"url": f"{scheme}://{shown}:{port}", "host": args.host,
                               "port": port, "workspace": workspace,
                               "working_dir": str(args.working_dir)}
            asyncio.run(_serve_loop(rt, args, sock, ready))
    finally:
        if rt.status_path is not None:
            rt.status_path.unlink(missing_ok=True)
        rt.close()
    return 0


async def _serve_loop(rt: ServeRuntime, args: Any, sock: socket.socket,
                      ready: Callable[[dict], None]) -> None:
    import uvicorn  # noqa: PLC0415  the server stack loads only when serving

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Any:  # our own handlers below (restart on SIGHUP)
            yield

    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"restart": False, "stop": False, "server": None}

    def ask(kind: str) -> None:
        state[kind] = True
        if state["server"] is not None:
            state["server"].should_exit = True

    loop.add_signal_handler(signal.SIGTERM, ask, "stop")
    loop.add_signal_handler(signal.SIGINT, ask, "stop")
    loop.add_signal_handler(signal.SIGHUP, ask, "restart")
    first = True
    restarts = 0
    while not state["stop"]:
        app = lightrag_api.create_app(args, rt.hooks)
        config = uvicorn.Config(app, log_config=None, access_log=False,
                                timeout_graceful_shutdown=None,
                                ssl_certfile=args.ssl_certfile if args.ssl else None,
                                ssl_keyfile=args.ssl_keyfile if args.ssl else None)
        server = Server(config)
        state["server"] = server
        state["restart"] = False
        listener = sock.dup()  # uvicorn closes its listener; ours stays open across restarts

        async def announce(server: Any = server, first: bool = first,
                           restarts: int = restarts) -> None:
            while not server.started and not server.should_exit:
                await asyncio.sleep(0.05)
            if server.started:
                rt.status_extra["restarts"] = restarts
                rt.write_status()
                if first:
                    ready(rt.status())
                else:
                    log.info("serve.restarted", user=rt.user, restarts=restarts,
                             tuning_version=rt.built_version)

        watcher = asyncio.create_task(announce())
        try:
            await server.serve(sockets=[listener])
        finally:
            watcher.cancel()
            listener.close()
        first = False
        if not state["restart"]:
            break
        restarts += 1
