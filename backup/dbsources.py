"""Database sources: SQLite (online backup API), PostgreSQL (``pg_dump -Fc``) and restore.

Connection strings never reach a command line or a log: the password is taken out of the DSN
and handed to libpq through ``PGPASSWORD`` in the child's environment, the ``sslpassword``
through a temporary owner-only service file (``PGSERVICEFILE``), and any error text is
redacted before it is raised.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from lightkeeper.logs import redact_text
from lightkeeper.progress import JobCancelled

_KV_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_KV_DBNAME = re.compile(r"\bdbname\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class SourceError(Exception):
    """A source that could not be read consistently (message safe to log)."""


def split_password(dsn: str) -> tuple[str, str | None]:
    """Return (dsn without password, password or None)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        password = unquote(parts.password) if parts.password is not None else None
        netloc = parts.netloc
        if password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            netloc = userinfo.split(":", 1)[0] + "@" + hostport
        query = parse_qsl(parts.query, keep_blank_values=True)
        for k, v in query:
            if k == "password":
                password = v
        query = [(k, v) for k, v in query if k != "password"]
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), "")), password
    m = _KV_PASSWORD.search(dsn)
    if not m:
        return dsn, None
    value = m.group(1)
    if value.startswith("'"):
        value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return (dsn[:m.start()] + dsn[m.end():]).strip(), value


_KV_SSLPASSWORD = re.compile(r"\bsslpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_KV_SERVICE = re.compile(r"\bservice\s*=", re.IGNORECASE)
SERVICE_NAME = "lightkeeper-dump"


def split_sslpassword(dsn: str) -> tuple[str, str | None]:
    """Return (dsn without sslpassword, sslpassword or None). libpq has no environment
    variable for it, so it goes into a temporary service file instead of the command line."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        query = parse_qsl(parts.query, keep_blank_values=True)
        found = [v for k, v in query if k == "sslpassword"]
        if not found:
            return dsn, None
        query = [(k, v) for k, v in query if k != "sslpassword"]
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), "")), \
            found[-1]
    m = _KV_SSLPASSWORD.search(dsn)
    if not m:
        return dsn, None
    value = m.group(1)
    if value.startswith("'"):
        value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return (dsn[:m.start()] + dsn[m.end():]).strip(), value


@contextmanager
def pg_connection(dsn: str, scratch: Path) -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """(DSN safe for a command line, environment for libpq, secrets to redact): the password
    travels in PGPASSWORD, the sslpassword in a service file created owner-only and
    exclusively (O_CREAT|O_EXCL, random name) in ``scratch`` and removed afterwards."""
    clean, password = split_password(dsn)
    clean, sslpassword = split_sslpassword(clean)
    env = _pg_env(password)
    secrets = [x for x in (password, sslpassword) if x]
    if sslpassword is None:
        yield clean, env, secrets
        return
    if "\n" in sslpassword or "\r" in sslpassword:
        raise SourceError("sslpassword must not contain a line break")
    has_service = (("service" in dict(parse_qsl(urlsplit(clean).query))) if "://" in clean
                   else _KV_SERVICE.search(clean) is not None)
    if has_service:
        raise SourceError("a DSN with both service= and sslpassword= is not supported: put "
                          "sslpassword into that service's entry in your pg_service.conf")
    fd, name = tempfile.mkstemp(prefix=".pgservice-", dir=scratch)  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(f"[{SERVICE_NAME}]\nsslpassword={sslpassword}\n")
        env["PGSERVICEFILE"] = name
        if "://" in clean:
            parts = urlsplit(clean)
            query = [*parse_qsl(parts.query, keep_blank_values=True), ("service", SERVICE_NAME)]
            clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        else:
            clean = f"{clean} service={SERVICE_NAME}".strip()
        yield clean, env, secrets
    finally:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def with_dbname(dsn: str, dbname: str) -> str:
    if "://" in dsn:
        parts = urlsplit(dsn)
        return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))
    if _KV_DBNAME.search(dsn):
        return _KV_DBNAME.sub(f"dbname={dbname}", dsn)
    return f"{dsn} dbname={dbname}".strip()


def _safe(text: str, secret: str | list[str] | None) -> str:
    for s in [secret] if isinstance(secret, str) else (secret or []):
        if s:
            text = text.replace(s, "***")
    return redact_text(text).strip()


def _run(cmd: list[str], env: dict[str, str], secret: str | list[str] | None, what: str,
         check_cancelled: object = None, timeout: float = 3600.0) -> None:
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SourceError(f"{what}: executable {cmd[0]!r} not found") from None
    deadline = time.monotonic() + timeout
    while True:
        try:
            out, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            try:
                if callable(check_cancelled):
                    check_cancelled()
                if time.monotonic() > deadline:
                    raise SourceError(f"{what}: timed out after {timeout:g} s")
            except (JobCancelled, SourceError):
                proc.kill()
                proc.wait()
                raise
    if proc.returncode != 0:
        msg = _safe(err.decode(errors="replace"), secret) or f"exit status {proc.returncode}"
        raise SourceError(f"{what} failed: {msg[-600:]}")


def _pg_env(password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    if password is not None:
        env["PGPASSWORD"] = password
    return env


def dump_postgres(name: str, dsn: str, dest: Path, pg_dump: str = "pg_dump",
                  check_cancelled: object = None) -> Path:
    """``pg_dump -Fc`` of the database in ``dsn`` to ``dest``."""
    if not dsn:
        raise SourceError(f"postgres source {name!r}: sources.postgres.{name}.dsn is empty")
    with pg_connection(dsn, Path(dest).parent) as (clean, env, secrets):
        cmd = [pg_dump, "-Fc", "--no-password", "-f", str(dest), "--dbname", clean]
        _run(cmd, env, secrets, f"pg_dump of postgres source {name!r}", check_cancelled)
    if not dest.exists() or dest.stat().st_size == 0:
        raise SourceError(f"pg_dump of postgres source {name!r} produced no output")
    return dest


def restore_postgres(dump: Path, dsn: str, target_db: str, pg_restore: str = "pg_restore",
                     create: bool = True) -> None:
    """Restore a ``pg_dump -Fc`` file into database ``target_db`` (created unless it exists)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", target_db):
        raise SourceError(f"invalid target database name {target_db!r}")
    bindir = Path(shutil.which(pg_restore) or pg_restore).parent
    with pg_connection(dsn, Path(dump).parent) as (clean, env, secrets):
        if create:
            createdb = str(bindir / "createdb") if (bindir / "createdb").exists() \
                else "createdb"
            _run([createdb, "--no-password", "--maintenance-db", clean, target_db], env,
                 secrets, f"createdb {target_db}")
        target = with_dbname(clean, target_db)
        _run([pg_restore, "--no-owner", "--no-password", "--exit-on-error", "--dbname", target,
              str(dump)], env, secrets, f"pg_restore into {target_db}")


def backup_sqlite(name: str, path: Path, dest: Path) -> Path:
    """A consistent copy of a live SQLite database (the online backup API)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"sqlite source {name!r}: {path} does not exist")
    try:
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(dest)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise SourceError(f"sqlite source {name!r} ({path}): {exc}") from None
    return dest
