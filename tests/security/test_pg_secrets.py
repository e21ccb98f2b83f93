"""Low: ``sslpassword`` (URL or key=value DSN) never reaches pg_dump's command line, where any
local user reads it (``ps``, /proc/PID/cmdline). Real PostgreSQL on loopback; the pg_dump
given to the backup is a wrapper that records its arguments and runs the real one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lightkeeper.backup.repository import Repository
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from tests.backup.test_databases import PASSWORD, PGBIN

SSLPW = "ssl-Key-Pass-7781"


@pytest.mark.parametrize("form", ["url", "keyvalue"])
def test_low_sslpassword_not_on_pg_dump_command_line(postgres, data_root: Path,
                                                     repo: Repository, tmp_path: Path,
                                                     form: str) -> None:
    seen = tmp_path / "seen"
    wrapper = tmp_path / "pg_dump"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" > {seen}/argv\n"
        f"env > {seen}/env\n"
        f"[ -n \"$PGSERVICEFILE\" ] && stat -c %a \"$PGSERVICEFILE\" > {seen}/svcmode\n"
        f"exec {PGBIN / 'pg_dump'} \"$@\"\n")
    wrapper.chmod(0o700)
    seen.mkdir()
    if form == "url":
        dsn = postgres.dsn("src") + f"?sslmode=disable&sslpassword={SSLPW}"
    else:
        dsn = (f"host=127.0.0.1 port={postgres.port} user=postgres password={PASSWORD} "
               f"dbname=src sslmode=disable sslpassword='{SSLPW}'")
    scratch = tmp_path / "scratch"
    s = run_backup(repo, BackupOptions(data_root, users=[], low_priority=False,
                                       scratch_dir=scratch,
                                       postgres={"main": {"dsn": dsn,
                                                          "pg_dump": str(wrapper)}}))
    assert "postgres/main" in repo.read_snapshot(s["snapshot_id"])["databases"]
    argv = (seen / "argv").read_text()
    assert SSLPW not in argv and PASSWORD not in argv, argv
    assert "service=lightkeeper-dump" in argv
    assert (seen / "svcmode").read_text().strip() == "600"
    assert SSLPW not in (seen / "env").read_text()  # in the service file, not the env
    # the service file is gone, nothing else left in scratch
    assert not [p for p in scratch.rglob("*") if stat.S_ISREG(os.lstat(p).st_mode)]
