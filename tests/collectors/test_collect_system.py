"""System collectors against the real machine: values agree with psutil and the kernel."""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import psutil
import pytest

from lightkeeper.collectors import build_collectors
from lightkeeper.collectors.cpu import CpuCollector
from lightkeeper.collectors.disk import DiskCollector, mount_of
from lightkeeper.collectors.memory import MemoryCollector
from lightkeeper.collectors.network import NetworkCollector
from lightkeeper.collectors.processes import ProcessCollector
from lightkeeper.config import load

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def as_dict(triples):
    return {(m, lab): v for m, lab, v in triples}


def labels(triples, metric):
    return {lab for m, lab, _ in triples if m == metric}


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def test_cpu_first_call_has_no_ratio_then_sane_values():
    c = CpuCollector()
    first = c.collect()
    assert "cpu_usage_ratio" not in {m for m, _, _ in first}
    assert labels(first, "cpu_load_average") == {"1m", "5m", "15m"}
    burn(0.3)
    second = as_dict(c.collect())
    total = second[("cpu_usage_ratio", "")]
    assert 0.0 < total <= 1.0  # we just kept one core busy
    assert 0.0 <= second[("cpu_iowait_ratio", "")] <= 1.0
    cores = {lab for (m, lab) in second if m == "cpu_usage_ratio" and lab}
    assert cores == {f"cpu{i}" for i in range(psutil.cpu_count())}
    assert second[("cpu_cores", "")] == psutil.cpu_count()
    assert second[("cpu_load_average", "1m")] == pytest.approx(os.getloadavg()[0], abs=1.0)


def test_memory_matches_psutil():
    got = as_dict(MemoryCollector().collect())
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    assert got[("memory_total_bytes", "")] == vm.total
    assert got[("memory_swap_total_bytes", "")] == sw.total
    assert 0 < got[("memory_available_bytes", "")] <= vm.total
    assert 0 < got[("memory_used_bytes", "")] <= vm.total
    ratio = got[("memory_available_ratio", "")]
    assert 0 < ratio <= 1
    assert ratio == pytest.approx(got[("memory_available_bytes", "")] / vm.total)


def test_disk_reports_the_mount_holding_the_data_root(tmp_path):
    mount = mount_of(tmp_path)
    c = DiskCollector(exclude=["/proc", "/sys"], always=[tmp_path / "data"])
    got = as_dict(c.collect())
    st = os.statvfs(mount)
    assert got[("disk_total_bytes", mount)] == st.f_blocks * st.f_frsize
    used, free = got[("disk_used_bytes", mount)], got[("disk_free_bytes", mount)]
    assert used + free <= got[("disk_total_bytes", mount)]
    assert 0.0 <= got[("disk_free_ratio", mount)] <= 1.0
    if st.f_files:
        assert got[("disk_inodes_capacity", mount)] == st.f_files
    # no pseudo filesystem slipped in
    for m, lab in got:
        if m == "disk_total_bytes" and lab != mount:
            assert not lab.startswith(("/proc", "/sys"))


def test_disk_excludes_configured_prefixes(tmp_path):
    mount = mount_of(tmp_path)
    if mount == "/":
        exclude = ["/"]
    else:
        exclude = [mount]
    got = DiskCollector(exclude=exclude).collect()
    assert mount not in labels(got, "disk_total_bytes")


def test_disk_io_rates_after_writing(tmp_path):
    if not psutil.disk_io_counters(perdisk=True):
        pytest.skip("this kernel exposes no per-disk I/O counters")
    c = DiskCollector(always=[tmp_path])
    first = c.collect()
    assert not labels(first, "disk_write_bytes_per_second")
    with open(tmp_path / "blob", "wb") as f:
        f.write(os.urandom(4 << 20))
        f.flush()
        os.fsync(f.fileno())
    time.sleep(0.2)
    second = as_dict(c.collect())
    rates = {lab: v for (m, lab), v in second.items() if m == "disk_write_bytes_per_second"}
    assert rates, "no device reported I/O rates"
    assert all(v >= 0 for v in rates.values())
    assert sum(rates.values()) > 0


def loopback_name() -> str:
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address == "127.0.0.1" for a in addrs):
            return name
    pytest.skip("no interface carries 127.0.0.1")


def test_network_rates_none_first_then_positive_after_loopback_traffic():
    lo = loopback_name()
    c = NetworkCollector()
    first = c.collect()
    assert first == []  # rates only, and none on the first call

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received = []

    def sink():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                received.append(len(data))

    t = threading.Thread(target=sink)
    t.start()
    with socket.create_connection(server.getsockname()) as client:
        client.sendall(b"x" * (2 << 20))
    t.join(10)
    server.close()
    assert sum(received) == 2 << 20
    time.sleep(0.05)
    second = as_dict(c.collect())
    assert second[("network_receive_bytes_per_second", lo)] > 0
    assert second[("network_transmit_packets_per_second", lo)] > 0
    assert second[("network_receive_errors_per_second", lo)] >= 0
    assert ("network_transmit_drops_per_second", lo) in second


def test_network_exclude_patterns():
    lo = loopback_name()
    c = NetworkCollector(exclude=[lo[:1] + "*"])
    c.collect()
    assert lo not in labels(c.collect(), "network_receive_bytes_per_second")


@pytest.fixture
def sleepers(tmp_path):
    marker = f"lk-test-{uuid.uuid4().hex[:8]}"
    procs = [subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(60)", marker])
             for _ in range(4)]
    yield marker, procs
    for p in procs:
        p.kill()
        p.wait()


def test_processes_by_pattern_and_pidfile(tmp_path, sleepers):
    marker, procs = sleepers
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile = tmp_path / "other.pid"
        pidfile.write_text(f"{other.pid}\n")
        c = ProcessCollector(pidfiles=[str(pidfile), str(tmp_path / "missing.pid")],
                             patterns=[marker])
        c.collect()
        burn(0.3)
        got = as_dict(c.collect())
        rss_labels = {lab for (m, lab) in got if m == "process_resident_memory_bytes"}
        # labelled by what they are, not by pid (several of one name are numbered)
        name = psutil.Process(other.pid).name()
        assert f"pidfile:{name}" in rss_labels
        matched = {lab for lab in rss_labels if lab.startswith(f"match:{name}")}
        assert len(matched) == len(procs)
        assert rss_labels == {"agent", f"pidfile:{name}"} | matched
        assert got[("process_watched", "")] == len(rss_labels)
        assert got[("process_resident_memory_bytes", "agent")] == pytest.approx(
            psutil.Process().memory_info().rss, rel=0.5)
        assert got[("process_threads", "agent")] >= 1
        assert got[("process_open_fds", "agent")] >= 3
        assert got[("process_cpu_usage_ratio", "agent")] > 0
        # a process that exits disappears from the next sample
        procs[0].kill()
        procs[0].wait()
        after = c.collect()
        assert len(labels(after, "process_resident_memory_bytes")) == len(rss_labels) - 1
    finally:
        other.kill()
        other.wait()


def test_processes_are_bounded(sleepers):
    marker, procs = sleepers
    c = ProcessCollector(patterns=[marker], max_processes=3)
    got = labels(c.collect(), "process_resident_memory_bytes")
    assert len(got) == 3 and "agent" in got


# A process that writes its first spool record after it was found, through the real spool
# writer, when the file "go" appears; it then keeps running.
SPOOL_WRITER = r"""
import sys, time
from pathlib import Path
from lightkeeper.rag.spool import SpoolWriter
go, spool = Path(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.02)
SpoolWriter(spool).write({"v": 1, "op": "query", "user": "alice", "ts": time.time(),
                          "duration_s": 0.01})
time.sleep(60)
"""


def test_a_process_that_starts_writing_the_spool_is_instrumented_before_the_next_discovery(
        tmp_path):
    marker = f"lk-spool-{uuid.uuid4().hex[:8]}"
    spool = tmp_path / "spool"
    go = tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", SPOOL_WRITER, str(go), str(spool), marker])
    try:
        c = ProcessCollector(patterns=[marker], discover_interval=3600, spool_dir=spool,
                             data_root=tmp_path / "data")

        def row() -> dict:
            c.collect()
            return next(r for r in c.snapshot() if r["pid"] == proc.pid)

        assert row()["instrumented"] is False  # found by the pass, before its first record
        go.touch()
        deadline = time.monotonic() + 30
        while not list(spool.glob(f"ops-*-{proc.pid}-*.jsonl")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert row()["instrumented"] is True  # the next sample, no discovery pass between
        got = {(m, lab): v for m, lab, v in c.collect()}
        label = next(r["label"] for r in c.snapshot() if r["pid"] == proc.pid)
        assert got[("process_instrumented", label)] == 1.0
    finally:
        proc.kill()
        proc.wait()


def test_build_collectors_uses_configured_intervals(tmp_path):
    env = {"LIGHTKEEPER_PATHS__STATE_DIR": str(tmp_path / "state"),
           "LIGHTKEEPER_PATHS__DATA_ROOT": str(tmp_path / "data"),
           "LIGHTKEEPER_COLLECT__SYSTEM_INTERVAL": "2",
           "LIGHTKEEPER_COLLECT__USERDIR_INTERVAL": "30"}
    (tmp_path / "data" / "alice").mkdir(parents=True)
    cfg = load(env=env, read_system=False)
    collectors = build_collectors(cfg, watch=False)
    try:
        names = {c.name: c.interval for c in collectors}
        assert names == {"cpu": 2, "memory": 2, "disk": 2, "network": 2, "processes": 2,
                         "userdirs": 30}
        for _ in range(2):
            for c in collectors:
                for metric, label, value in c.collect():
                    assert NAME_RE.match(metric), metric
                    assert isinstance(label, str) and len(label) <= 128
                    assert isinstance(value, float) and math.isfinite(value), (metric, value)
    finally:
        for c in collectors:
            c.close()


def test_every_emitted_metric_is_in_the_catalog(tmp_path):
    from lightkeeper.catalog import METRICS, PER_USER

    env = {"LIGHTKEEPER_PATHS__STATE_DIR": str(tmp_path / "state"),
           "LIGHTKEEPER_PATHS__DATA_ROOT": str(tmp_path / "data")}
    (tmp_path / "data" / "alice").mkdir(parents=True)
    (tmp_path / "data" / "alice" / "f").write_bytes(b"12345")
    collectors = build_collectors(load(env=env, read_system=False), watch=False)
    seen = set()
    for _ in range(2):
        time.sleep(0.05)
        for c in collectors:
            for metric, label, _value in c.collect():
                seen.add(metric)
                assert metric in METRICS, f"{metric} missing from lightkeeper/catalog.py"
                assert not metric.endswith("_total"), "gauges must not end in _total"
                if metric in PER_USER:
                    assert label == "alice"
    for c in collectors:
        c.close()
    assert PER_USER - {"rag_silent_seconds"} <= seen  # that one is the agent's (rag_health)


def test_a_network_mount_that_hangs_is_skipped_until_it_answers(tmp_path, caplog):
    # a dead NFS server makes statvfs block; simulated by a statvfs that waits for an event
    import logging

    mount = mount_of(tmp_path)
    c = DiskCollector(always=[tmp_path])
    c.mounts()
    c._network.add(mount)
    server_up = threading.Event()
    real = os.statvfs

    def statvfs(path):
        if path == mount:
            server_up.wait(30)
        return real(path)

    c.statvfs = statvfs
    with caplog.at_level(logging.INFO, logger="lightkeeper"):
        t0 = time.monotonic()
        assert mount not in labels(c.collect(), "disk_total_bytes")
        assert mount not in labels(c.collect(), "disk_total_bytes")  # still stuck: no wait
        assert time.monotonic() - t0 < 15
        server_up.set()
        c._stuck[mount].join(5)
        assert mount in labels(c.collect(), "disk_total_bytes")
    events = [r.getMessage() for r in caplog.records]
    assert events.count("disk.mount_not_answering") == 1
    assert "disk.mount_answers_again" in events
