"""Structured logging: JSON lines to a rotating file, readable lines on a terminal.

Every record has ``ts``, ``level``, ``event``, ``component`` and any context passed as keyword
arguments (``job_id``, ``user``, ``duration_ms``, ``error``...). Secrets are redacted before a
record is formatted, whatever handler it goes to.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
import time
from pathlib import Path
from typing import Any

REDACTED = "***"

# Keys whose values are always secret.
SECRET_KEYS = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|key[_-]?material|"
    r"authorization|credential|dsn)$",
    re.IGNORECASE,
)
# Secrets embedded in free text.
_TEXT_PATTERNS = [
    # URLs / DSNs with a password: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]+:)([^@\s]+)(@)", re.IGNORECASE), r"\1***\3"),
    # libpq key=value DSNs: password=...
    (re.compile(r"(\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1***"),
    # Bearer tokens and common API key shapes
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "***"),
    # PEM private keys
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     "***"),
    # key=value / key: value for secret-looking keys in free text
    (re.compile(r"\b((?:api[_-]?key|token|secret|passwd|password)[\"']?\s*[:=]\s*[\"']?)"
                r"([^\s\"',;]+)", re.IGNORECASE), r"\1***"),
]


def redact_text(text: str) -> str:
    for pattern, repl in _TEXT_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact(value: Any, key: str = "") -> Any:
    """Return ``value`` with secrets replaced, recursively for dicts and lists."""
    if key and SECRET_KEYS.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    ctx = getattr(record, "ctx", None) or {}
    extra = {k: v for k, v in vars(record).items() if k not in _RESERVED and k != "ctx"}
    return {**extra, **ctx}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": redact_text(record.getMessage()),
            "component": record.name.removeprefix("lightkeeper."),
        }
        doc.update(redact(_context(record)))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            doc.setdefault("error", redact_text(f"{type(exc).__name__}: {exc}"))
        return json.dumps(doc, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ctx = redact(_context(record))
        tail = " ".join(f"{k}={v}" for k, v in ctx.items())
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name.removeprefix('lightkeeper.')}: " \
               f"{redact_text(record.getMessage())}"
        if tail:
            line += "  " + tail
        if record.exc_info and record.exc_info[1] is not None:
            line += f"  error={redact_text(str(record.exc_info[1]))}"
        return line


class Logger:
    """A thin wrapper so call sites read ``log.info("job.started", job_id=..., user=...)``."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger("lightkeeper." + name)

    def _emit(self, level: int, event: str, exc_info: Any = None, **ctx: Any) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, event, extra={"ctx": ctx}, exc_info=exc_info)

    def debug(self, event: str, **ctx: Any) -> None:
        self._emit(logging.DEBUG, event, **ctx)

    def info(self, event: str, **ctx: Any) -> None:
        self._emit(logging.INFO, event, **ctx)

    def warning(self, event: str, **ctx: Any) -> None:
        self._emit(logging.WARNING, event, **ctx)

    def error(self, event: str, exc_info: Any = None, **ctx: Any) -> None:
        self._emit(logging.ERROR, event, exc_info=exc_info, **ctx)

    def exception(self, event: str, **ctx: Any) -> None:
        self._emit(logging.ERROR, event, exc_info=True, **ctx)


def get_logger(component: str) -> Logger:
    return Logger(component)


def setup(
    level: str = "info",
    file: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
    console: bool | None = None,
) -> None:
    """Configure the ``lightkeeper`` logger tree (idempotent)."""
    root = logging.getLogger("lightkeeper")
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.propagate = False
    if file is not None:
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        fh.setFormatter(JsonFormatter())
        root.addHandler(fh)
    if console is None:
        console = sys.stderr.isatty()
    if console:
        ch = logging.StreamHandler(sys.stderr)
        ch.setFormatter(ConsoleFormatter())
        root.addHandler(ch)
