"""Structured logging: JSON lines to a rotating file, readable lines on a terminal.

Every record has ``ts``, ``level``, ``event``, ``component`` and any context passed as keyword
arguments (``job_id``, ``user``, ``duration_ms``, ``error``...). Secrets are redacted before a
record is formatted, whatever handler it goes to.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Any

# The masking rules live in lightkeeper.redact (below config and logs, which both use them).
from lightkeeper.redact import REDACTED, SECRET_KEYS, redact, redact_text

__all__ = ["REDACTED", "SECRET_KEYS", "get_logger", "redact", "redact_text", "setup"]


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


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Log files hold every user's operations and errors: created 0600 (and an existing one
    made 0600), whatever the umask, on every rotation."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


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


class SharedRotatingFileHandler(PrivateRotatingFileHandler):
    """A rotating JSON-lines file that several short-lived processes (in-process commands such
    as ``zones --local``) append to: every write and every rollover happens under an exclusive
    ``flock`` on ``FILE.lock``, and a process that finds the file already rotated by another
    reopens it instead of rotating it again. The agent never writes this file (it has its own,
    ``log.file``), so no two processes ever rotate one file at the same time."""

    def __init__(self, filename: Path, max_bytes: int, backups: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._lock_fd = os.open(f"{self.baseFilename}.lock",
                                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)

    def _rotated_elsewhere(self) -> bool:
        if self.stream is None:
            return False
        try:
            here = os.stat(self.baseFilename)
        except FileNotFoundError:
            return True
        mine = os.fstat(self.stream.fileno())
        return (here.st_dev, here.st_ino) != (mine.st_dev, mine.st_ino)

    def emit(self, record: logging.LogRecord) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            if self._rotated_elsewhere() and self.stream is not None:
                self.stream.close()
                self.stream = self._open()
            super().emit(record)  # rolls over first when the file is full
            if self.stream is not None:
                self.stream.flush()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        super().close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def in_process_log_file(agent_log: Path) -> Path:
    """The log file of commands that run work in their own process (``zones --local``): beside
    the agent's ``log.file``, never the same file (lightkeeper.jsonl -> lightkeeper.cli.jsonl)."""
    agent_log = Path(agent_log)
    return agent_log.with_name(f"{agent_log.stem}.cli{agent_log.suffix or '.jsonl'}")


def get_logger(component: str) -> Logger:
    return Logger(component)


def setup(
    level: str = "info",
    file: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
    console: bool | None = None,
    shared: bool = False,
) -> None:
    """Configure the ``lightkeeper`` logger tree (idempotent). ``shared``: ``file`` is one that
    several processes append to (:class:`SharedRotatingFileHandler`)."""
    root = logging.getLogger("lightkeeper")
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.propagate = False
    if file is not None:
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh: logging.Handler
        if shared:
            fh = SharedRotatingFileHandler(file, max_bytes, backups)
        else:
            fh = PrivateRotatingFileHandler(
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
