"""The agent's local API: HTTP/JSON on a Unix socket that only its owner can open."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightkeeper.agent import alerts as alerts_mod
from lightkeeper.agent.httpserver import HTTPError, Request, Response, Router, Server, json_error
from lightkeeper.agent.store import queries
from lightkeeper.logs import get_logger
from lightkeeper.services import CallError, float_param, int_param

if TYPE_CHECKING:
    from lightkeeper.agent.surface import AgentView

log = get_logger("api")

Handler = Callable[[Request], Awaitable[Response]]

MAX_BODY = 8 * 1024 * 1024  # a request body (a tuning set, a job's parameters) is far smaller


def _json(data: Any, status: int = 200) -> Response:
    return Response.json(data, status)


def _error(message: str, status: int = 400, code: str = "bad_request") -> Response:
    return json_error(status, message, code)


def errors(handler: Handler) -> Handler:
    """A handler whose refusals and failures become the API's error document."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except HTTPError:
            raise
        except CallError as exc:
            return _error(str(exc), exc.status, exc.code)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(f"bad request: {exc}", 400)
        except Exception as exc:
            log.exception("api.error", path=request.path)
            return _error(f"internal error: {type(exc).__name__}: {exc}", 500, "internal")

    return guarded


def _int(request: Request, name: str, default: int, lo: int = 0, hi: int = 2**62) -> int:
    """A numeric query parameter, checked: 400 with what is allowed, never a store error."""
    return int_param(dict(request.query), name, default, lo, hi)


def _float(request: Request, name: str, default: float, lo: float, hi: float) -> float:
    """A finite number within [lo, hi] (NaN and infinities refused), else 400."""
    value = float_param(dict(request.query), name, default, lo, hi)
    return default if value is None else value


def build_app(agent: AgentView) -> Router:
    app = Router()
    run = agent.run_blocking

    async def health(request: Request) -> Response:
        return _json({"ok": True, "pid": os.getpid()})

    async def status(request: Request) -> Response:
        return _json(await run(agent.status))

    async def series(request: Request) -> Response:
        q = request.query
        if "metric" not in q:
            raise CallError("series needs ?metric=")
        window = queries.parse_window(q.get("window", "1h"))
        step = float_param(dict(q), "step", None, 1, queries.MAX_STEP)
        store = agent.store
        held = store.series_windows if store is not None else None
        return _json(await run(queries.series, store, q["metric"], q.get("label"), window,
                               step, agent.retention, None, q.get("agg", "avg"), held))

    async def events(request: Request) -> Response:
        q = request.query
        level = q.get("level")
        if level and level not in ("debug", "info", "warning", "error", "critical"):
            raise CallError(f"invalid level {level!r}: use debug, info, warning, error")
        store = agent.store
        if store is None:  # the servers stop before the store closes; say so if not
            raise CallError("the agent is shutting down", 503, "unavailable")
        return _json(await run(store.events, _int(request, "since", 0),
                               _int(request, "limit", 200, 1, 5000), level, q.get("kind"),
                               q.get("q")))

    async def alerts(request: Request) -> Response:
        active = request.query.get("active", "1") not in ("0", "false")
        return _json(await run(alerts_mod.list_alerts, agent.store, active,
                               _int(request, "limit", 100, 1, 5000)))

    async def call(request: Request) -> Response:
        name = request.match_info["name"]
        fn = agent.calls.get(name)
        if fn is None:
            raise CallError(f"unknown call {name!r}", 404, "unknown_call")
        body = await _body(request)
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise CallError("params must be a JSON object")
        if inspect.iscoroutinefunction(fn):  # a long poll (changes.wait) waits on the loop
            result = await fn(agent.services, params)
        else:
            result = await run(fn, agent.services, params)
        return _json({"result": result})

    async def start_job(request: Request) -> Response:
        body = await _body(request)
        kind = body.get("kind")
        if not isinstance(kind, str):
            raise CallError("a job needs a kind")
        job = await run(agent.jobs.start, kind, body.get("params") or {}, body.get("actor"))
        return _json({"id": job.id, "state": job.state}, 201)

    async def list_jobs(request: Request) -> Response:
        active = request.query.get("active", "0") not in ("0", "false")
        return _json(await run(agent.jobs.list_jobs, _int(request, "limit", 50, 1, 5000),
                               active))

    async def get_job(request: Request) -> Response:
        return _json(await run(agent.jobs.get, request.match_info["id"]))

    async def wait_job(request: Request) -> Response:
        """Long poll: answers as soon as the job changed after version ``since`` (progress at
        most every 0.2 s, state and logs at once), or after ``timeout`` seconds (max 60)."""
        job_id = request.match_info["id"]
        since = _int(request, "since", -1, lo=-1)
        timeout = _float(request, "timeout", 20.0, 0.0, 60.0)
        deadline = asyncio.get_running_loop().time() + timeout
        feed = agent.jobs.feed
        while True:
            seen = feed.version
            job = agent.jobs.find(job_id)
            if job is None or job.version > since or job.state not in ("queued", "running"):
                return _json(job.as_dict() if job else await run(agent.jobs.get, job_id))
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or feed.closed:  # closed: the agent is stopping
                return _json(job.as_dict())
            await feed.wait(seen, remaining)

    async def cancel_job(request: Request) -> Response:
        job = agent.jobs.cancel(request.match_info["id"])
        return _json({"id": job.id, "state": job.state, "cancel_requested": True})

    async def reload(request: Request) -> Response:
        body = await _body(request)
        result = await run(agent.reload, body.get("actor"))
        return _json(result)  # a refusal is an answer too: {"ok": false, "error": ...}

    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/v1/health", health), ("POST", "/v1/reload", reload),
        ("GET", "/v1/status", status), ("GET", "/v1/series", series),
        ("GET", "/v1/events", events), ("GET", "/v1/alerts", alerts),
        ("POST", "/v1/call/{name}", call),
        ("POST", "/v1/jobs", start_job), ("GET", "/v1/jobs", list_jobs),
        ("GET", "/v1/jobs/{id}", get_job), ("GET", "/v1/jobs/{id}/wait", wait_job),
        ("POST", "/v1/jobs/{id}/cancel", cancel_job),
    ]
    for method, path, handler in routes:
        app.add(method, path, errors(handler))
    return app


async def _body(request: Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = request.json()
    except ValueError:
        raise CallError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise CallError("request body must be a JSON object")
    return body


async def serve_unix(app: Router, path: Path) -> Server:
    """The API on a Unix socket that only the agent's owner can open."""
    server = Server(app, max_body=MAX_BODY)
    await server.listen_unix(Path(path))
    return server
