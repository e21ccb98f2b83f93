"""A clock step does not make a live process look like another one.

psutil's ``create_time()`` is the start in clock ticks plus the kernel's boot time, which the
kernel derives from the wall clock: an NTP step at boot, a resumed virtual machine or an
operator's ``date -s`` moves the ``create_time`` of every running process by the step. Records
that identified a process by it stopped matching their own live process: a running job's
repository lock looked stale and another job removed it (two jobs on one repository); ``demo
--stop`` left the demo's servers running; the ingester took a live writer's spool file for
finished, read its partial line as a bad record and deleted the file under it; the processes
panel showed an instrumented server as not instrumented, and counted a restart of each process
it watches by pid file or pattern.

The step is simulated where the kernel's value enters psutil (``psutil._pslinux.boot_time``),
in the process that checks; stepping the machine's real clock would disturb every other test.
Every process here is real."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from psutil import _pslinux

from lightkeeper import procstart
from lightkeeper.agent.ingest import SpoolIngester
from lightkeeper.agent.store.db import Store
from lightkeeper.backup.lock import RepoLock, RepositoryLocked
from lightkeeper.backup.repository import Repository
from lightkeeper.cli.demo_servers import _stop_one, alive
from lightkeeper.collectors.lightrag_procs import spool_writers, writes_spool
from lightkeeper.collectors.processes import ProcessCollector
from tests.agent.spoolgen import record, spool_name, write_records

REPO_ROOT = Path(__file__).resolve().parents[2]
STEP = 7.0  # seconds the wall clock jumps forward


@pytest.fixture
def clock_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, this process sees the boot time a forward clock step leaves."""
    real = _pslinux.boot_time
    monkeypatch.setattr(_pslinux, "boot_time", lambda: real() + STEP)


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    """A real child process that runs ``code``, says 'ready' and waits for its stdin to close."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO_ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), line
    return proc


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def holder(repo: Repository) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the repository's exclusive lock (a running backup)."""
    proc = _python("import sys\n"
                   "from lightkeeper.backup.lock import RepoLock\n"
                   "with RepoLock(sys.argv[1], exclusive=True, purpose='backup', job_id='j1'):\n"
                   "    print('ready', flush=True)\n"
                   "    sys.stdin.read()\n", str(repo.path))
    try:
        yield proc
    finally:
        _end(proc)


def test_identity_is_the_boot_and_the_start_in_ticks(clock_step: None) -> None:
    me = procstart.identity(os.getpid())
    assert me["boot_id"] and me["boot_id"] == procstart.boot_id()
    since_boot = psutil.Process().create_time() - psutil.boot_time()  # both moved by the step
    assert abs(me["start_ticks"] / os.sysconf("SC_CLK_TCK") - since_boot) < 0.02
    assert procstart.same_process(os.getpid(), me) is True
    assert procstart.same_process(os.getpid(), {**me, "start_ticks": me["start_ticks"] + 1}) \
        is False  # the pid now runs another process
    assert procstart.same_process(os.getpid(), {**me, "boot_id": "another-boot"}) is False
    assert procstart.same_process(os.getpid(), {"pid": os.getpid()}) is None  # older record
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    assert procstart.start_ticks(int(done.stdout)) is None


def test_a_running_jobs_lock_survives_a_clock_step(repo: Repository, holder, clock_step) -> None:
    locks = list((Path(repo.path) / "locks").glob("*.lock"))
    assert len(locks) == 1
    doc = json.loads(locks[0].read_text())
    assert doc["pid"] == holder.pid and doc["boot_id"] == procstart.boot_id()
    # the holder's wall-clock start, as this process now computes it, moved by the step
    assert abs(psutil.Process(holder.pid).create_time() - doc["proc_start"]) >= STEP - 1
    with pytest.raises(RepositoryLocked, match="exclusively by backup"):
        RepoLock(repo.path, exclusive=True, purpose="prune").acquire()
    assert locks[0].exists()  # not taken for stale


def test_locks_of_ended_or_replaced_processes_are_still_stale(repo: Repository) -> None:
    lock_dir = Path(repo.path) / "locks"
    lock_dir.mkdir(exist_ok=True)
    me = procstart.identity(os.getpid())
    base = {"host": socket.gethostname(), "pid": os.getpid(), "exclusive": True,
            "purpose": "backup", "time": time.time()}
    stale = {"reused.lock": {**base, **me, "start_ticks": me["start_ticks"] - 100},
             "earlier-boot.lock": {**base, **me, "boot_id": "0" * 8},
             "older-version.lock": {**base, "proc_start": 12345.0}}
    for name, doc in stale.items():
        (lock_dir / name).write_text(json.dumps(doc))
    with RepoLock(repo.path, exclusive=True, purpose="backup") as held:
        assert held.stale_removed == 3
    assert not any((lock_dir / name).exists() for name in stale)


def test_demo_stop_ends_its_process_after_a_clock_step(clock_step: None) -> None:
    proc = _python("import sys\nprint('ready', flush=True)\nsys.stdin.read()", "offline-llm")
    try:
        entry = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time() - STEP,
                 **procstart.identity(proc.pid), "marker": "offline-llm"}
        assert alive(entry, "offline-llm")
        assert not alive(entry, "serve")  # the marker still has to be in its command line
        assert _stop_one(entry, "offline-llm", timeout=20)
        assert proc.wait(20) is not None
        assert not alive(entry, "offline-llm")
    finally:
        _end(proc)


def test_a_live_writers_spool_file_is_not_taken_for_finished(tmp_path: Path,
                                                              monkeypatch) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    writer = _python("import sys\n"
                     "from lightkeeper.rag.spool import SpoolWriter\n"
                     "from tests.agent.spoolgen import record\n"
                     "w = SpoolWriter(sys.argv[1])\n"
                     "w.write(record(0))\n"
                     "print('ready', flush=True)\n"
                     "sys.stdin.read()\n", str(spool))
    try:
        store = Store(tmp_path / "m.duckdb")
        ing = SpoolIngester(store, spool, stage_dir=tmp_path)
        real = _pslinux.boot_time
        monkeypatch.setattr(_pslinux, "boot_time", lambda: real() + STEP)
        (name,) = os.listdir(spool)
        assert ing.ingest_once() == 1
        assert (spool / name).exists()  # the writer still has it open: not finished
        with open(spool / name, "ab") as fh:  # the writer is mid-line
            fh.write(b'{"ts": ')
        assert ing.ingest_once() == 0
        assert store.execute("SELECT count(*) FROM spool_quarantine")[0][0] == 0
        assert writes_spool(writer.pid, psutil.Process(writer.pid).create_time(),
                            spool_writers(str(spool)))  # the panel: still instrumented
        # a process that merely got a writer's pid (another start, the file not open) is not
        # that writer: its file is finished, and it is not instrumented
        other = spool / spool_name(os.getpid(), 12345, 0)
        write_records(other, [record(7)])
        assert ing.ingest_once() == 1 and not other.exists()
        assert not writes_spool(os.getpid(), psutil.Process().create_time(),
                                {(os.getpid(), 12345): str(other)})
    finally:
        _end(writer)
    # the writer has ended: its file is finished (the partial line it left is quarantined)
    assert ing.ingest_once() == 0
    assert not (spool / name).exists()
    assert store.execute("SELECT count(*) FROM spool_quarantine")[0][0] == 1
    store.close()


def test_a_clock_step_counts_no_restart(tmp_path: Path, monkeypatch) -> None:
    child = _python("import sys\nprint('ready', flush=True)\nsys.stdin.read()")
    try:
        pidfile = tmp_path / "service.pid"
        pidfile.write_text(f"{child.pid}\n")
        c = ProcessCollector(interval=0.01, pidfiles=[str(pidfile)], discover_interval=0)
        (label,) = [lab for m, lab, _ in c.collect() if m == "process_restarts" and lab != "agent"]
        real = _pslinux.boot_time
        monkeypatch.setattr(_pslinux, "boot_time", lambda: real() + STEP)
        time.sleep(0.05)  # the next sample runs discovery again
        restarts = {lab: v for m, lab, v in c.collect() if m == "process_restarts"}
        assert restarts[label] == 0.0
    finally:
        _end(child)
    # a real restart is still one: the pid file names a new process
    child = _python("import sys\nprint('ready', flush=True)\nsys.stdin.read()")
    try:
        pidfile.write_text(f"{child.pid}\n")
        time.sleep(0.05)
        restarts = {lab: v for m, lab, v in c.collect() if m == "process_restarts"}
        assert restarts[label] == 1.0
    finally:
        _end(child)
