"""Database sources: a real PostgreSQL on loopback (pg_dump -Fc / pg_restore) and SQLite."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightkeeper.backup.dbsources import restore_postgres, split_password
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupError, BackupOptions, run_backup

PGBIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "s3cret-Pw!x"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port

    def dsn(self, db: str, password: str = PASSWORD) -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{db}"

    def psql(self, db: str, sql: str) -> str:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        r = subprocess.run([str(PGBIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "postgres", "-d", db, "-At", "-v", "ON_ERROR_STOP=1",
                            "-c", sql], env=env, capture_output=True, text=True, check=True)
        return r.stdout.strip()


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    if not (PGBIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 is not installed")
    if os.geteuid() == 0:
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no postgres user to run initdb as")
    base = Path(tempfile.mkdtemp(prefix="lk-pg-", dir="/tmp"))
    (base / "pw").write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        for p in (base, base / "pw"):
            os.chown(p, pg.pw_uid, pg.pw_gid)
    subprocess.run(_as_postgres([str(PGBIN / "initdb"), "-D", str(base / "data"), "-U",
                                 "postgres", "--auth=scram-sha-256", f"--pwfile={base}/pw"]),
                   check=True, capture_output=True)
    port = _free_port()
    subprocess.run(_as_postgres([str(PGBIN / "pg_ctl"), "-D", str(base / "data"), "-l",
                                 str(base / "log"), "-w", "-o",
                                 f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
                                 "start"]), check=True, capture_output=True)
    try:
        pgs = Postgres(base, port)
        pgs.psql("postgres", "CREATE DATABASE src")
        pgs.psql("src", "CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL);"
                 "INSERT INTO docs SELECT g, md5(g::text) || repeat('x', g % 50) "
                 "FROM generate_series(1, 5000) g")
        yield pgs
    finally:
        subprocess.run(_as_postgres([str(PGBIN / "pg_ctl"), "-D", str(base / "data"), "-m",
                                     "immediate", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


CHECK = "SELECT count(*) || ':' || md5(string_agg(body, ',' ORDER BY id)) FROM docs"


def test_postgres_dump_and_restore(postgres: Postgres, data_root: Path, repo: Repository,
                                   tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    spec = {"main": {"dsn": postgres.dsn("src"), "pg_dump": str(PGBIN / "pg_dump")}}
    s = run_backup(repo, BackupOptions(data_root, postgres=spec))
    m = repo.read_snapshot(s["snapshot_id"])
    assert m["databases"]["postgres/main"]["format"] == "pg_dump -Fc"
    assert PASSWORD not in str(s) and PASSWORD not in str(m) and PASSWORD not in caplog.text
    out = tmp_path / "out"
    restore(repo, s["snapshot_id"], RestoreOptions(target=out, dbs=["postgres/main"]))
    dump = out / "postgres" / "main.dump"
    assert dump.read_bytes()[:5] == b"PGDMP"
    restore_postgres(dump, postgres.dsn("postgres"), "restored",
                     pg_restore=str(PGBIN / "pg_restore"))
    assert postgres.psql("restored", CHECK) == postgres.psql("src", CHECK)
    assert postgres.psql("restored", CHECK).startswith("5000:")


def test_failed_dump_fails_the_whole_snapshot(postgres: Postgres, data_root: Path,
                                              repo: Repository,
                                              caplog: pytest.LogCaptureFixture) -> None:
    first = run_backup(repo, BackupOptions(data_root))
    wrong = "wrong-Secret-77"
    spec = {"main": {"dsn": postgres.dsn("src", password=wrong),
                     "pg_dump": str(PGBIN / "pg_dump")}}
    with pytest.raises(BackupError, match="pg_dump of postgres source 'main' failed") as ei:
        run_backup(repo, BackupOptions(data_root, postgres=spec))
    assert wrong not in str(ei.value) and wrong not in caplog.text
    assert "nothing was committed" in str(ei.value)
    assert repo.snapshot_ids() == [first["snapshot_id"]]
    assert not list((repo.path / "locks").iterdir())


def test_dsn_password_is_split_out() -> None:
    assert split_password("postgresql://u:p%40ss@h:5/db?sslmode=disable") == (
        "postgresql://u@h:5/db?sslmode=disable", "p@ss")
    assert split_password("host=h password='a b' dbname=x") == ("host=h  dbname=x", "a b")
    assert split_password("host=h dbname=x") == ("host=h dbname=x", None)


def test_sqlite_online_backup(data_root: Path, repo: Repository, tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(2000)])
    con.commit()
    con.execute("INSERT INTO t (v) VALUES ('uncommitted')")  # an open write transaction
    s = run_backup(repo, BackupOptions(data_root, sqlite={"app": db}))
    con.rollback()
    con.close()
    out = tmp_path / "out"
    restore(repo, s["snapshot_id"], RestoreOptions(target=out, dbs=["sqlite/app"]))
    r = sqlite3.connect(out / "sqlite" / "app.sqlite")
    assert r.execute("SELECT count(*) FROM t").fetchone()[0] == 2000
    assert r.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with pytest.raises(BackupError, match="does not exist"):
        run_backup(repo, BackupOptions(data_root, sqlite={"gone": tmp_path / "nope.db"}))
