"""Disks: space and inodes per mount, read/write throughput and IOPS per device.

Mounts come from ``/proc/self/mounts`` (``psutil.disk_partitions(all=True)``) minus pseudo
filesystems and ``collect.mounts_exclude`` prefixes; one mount per filesystem (bind mounts of the
same device are reported once, under the shortest mount point). The mounts holding the paths
given in ``always`` (the data root and the state directory) are reported even when they are a
pseudo filesystem such as tmpfs, since that is where the operator's data lives.

Space follows ``df``: ``disk_free_bytes`` is what an unprivileged writer can still use
(``f_bavail``), ``disk_used_bytes`` is ``total - f_bfree``, and ``disk_free_ratio`` is
``free / (used + free)`` (``1 - df's Use%``). I/O counters are mapped to the mount whose
device they belong to (label = mount point); devices with I/O but no reported mount are labelled
with their device name (``vdb``), so mount labels start with ``/`` and device labels never do.
A network filesystem whose server stops answering is skipped (logged once) instead of blocking
the collector.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from lightkeeper.collectors.base import RateTracker, Triple
from lightkeeper.logs import get_logger

log = get_logger("collectors.disk")

PSEUDO_FS = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs",
    "devpts", "devtmpfs", "efivarfs", "fusectl", "fuse.gvfsd-fuse", "fuse.lxcfs", "fuse.portal",
    "hugetlbfs", "mqueue", "nsfs", "proc", "pstore", "ramfs", "rpc_pipefs", "securityfs",
    "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs", "nfsd", "none", "iso9660",
})
MOUNT_REFRESH_SECONDS = 30.0
MAX_MOUNTS = 64
# statvfs on a network filesystem whose server is gone blocks for minutes: such mounts are
# asked from a helper thread and skipped (logged once) while an earlier call is still stuck.
NETWORK_FS_PREFIXES = ("nfs", "cifs", "smb", "ceph", "glusterfs", "9p", "fuse.sshfs",
                       "fuse.s3fs", "fuse.rclone", "afs", "lustre", "gpfs", "beegfs")
NETWORK_TIMEOUT = 2.0


def mount_of(path: str | Path) -> str:
    """The mount point holding ``path`` (the path itself need not exist yet)."""
    p = os.path.realpath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    while not os.path.ismount(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def _excluded(mountpoint: str, prefixes: Iterable[str]) -> bool:
    for prefix in prefixes:
        prefix = prefix.rstrip("/") or "/"
        if prefix == "/":
            if mountpoint == "/":
                return True
            continue
        if mountpoint == prefix or mountpoint.startswith(prefix + "/"):
            return True
    return False


def _block_device_name(device: str, mountpoint: str, known: Iterable[str]) -> str | None:
    """The ``disk_io_counters`` key of the device behind a mount, if it can be found."""
    known = set(known)
    if device.startswith("/dev/"):
        name = os.path.basename(os.path.realpath(device))
        if name in known:
            return name
    try:
        dev = os.stat(mountpoint).st_dev
        link = os.readlink(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    except OSError:
        return None
    name = os.path.basename(link)
    return name if name in known else None


class DiskCollector:
    name = "disk"

    def __init__(self, interval: float = 5.0, exclude: Iterable[str] = (),
                 always: Iterable[str | Path] = ()) -> None:
        self.interval = interval
        self.exclude = list(exclude)
        self.always = [str(p) for p in always]
        self._rates = RateTracker()
        self._mounts: list[tuple[str, str]] = []  # (mountpoint, device)
        self._network: set[str] = set()  # mount points on a network filesystem
        self._stuck: dict[str, threading.Thread] = {}
        self.statvfs = os.statvfs
        self._mounts_at = -1e18
        self._device_of: dict[str, str | None] = {}

    def mounts(self) -> list[tuple[str, str]]:
        """(mount point, device) pairs reported, refreshed every MOUNT_REFRESH_SECONDS."""
        now = time.monotonic()
        if now - self._mounts_at < MOUNT_REFRESH_SECONDS:
            return self._mounts
        wanted = {mount_of(p) for p in self.always}
        candidates = []
        for part in psutil.disk_partitions(all=True):
            mp = part.mountpoint
            if mp in wanted:
                candidates.append((mp, part.device))
                continue
            if part.fstype in PSEUDO_FS or _excluded(mp, self.exclude):
                continue
            candidates.append((mp, part.device))
            if part.fstype.startswith(NETWORK_FS_PREFIXES):
                self._network.add(mp)
        by_dev: dict[int, tuple[str, str]] = {}
        # wanted mounts first, then the shortest mount point of each filesystem
        for mp, device in sorted(candidates, key=lambda c: (c[0] not in wanted, len(c[0]), c[0])):
            try:
                if not os.path.isdir(mp):
                    continue  # a bind-mounted file (containers mount /etc/hosts this way)
                st_dev = os.stat(mp).st_dev
            except OSError:
                continue
            by_dev.setdefault(st_dev, (mp, device))
        keep = [m for m in by_dev.values() if m[0] in wanted]
        keep += sorted(m for m in by_dev.values() if m[0] not in wanted)[:MAX_MOUNTS]
        mounts = sorted(keep)
        self._mounts, self._mounts_at = mounts, now
        self._device_of = {}
        return mounts

    def collect(self) -> list[Triple]:
        out: list[Triple] = []
        mounts = self.mounts()
        for mp, _device in mounts:
            try:
                st = self._statvfs(mp)
            except OSError:
                continue  # unmounted since the last refresh
            if st is None:
                continue  # a network filesystem that does not answer
            total = st.f_blocks * st.f_frsize
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            free = st.f_bavail * st.f_frsize
            out += [("disk_total_bytes", mp, float(total)), ("disk_used_bytes", mp, float(used)),
                    ("disk_free_bytes", mp, float(free)),
                    ("disk_free_ratio", mp, free / (used + free) if used + free else 0.0)]
            if st.f_files:
                out += [("disk_inodes_capacity", mp, float(st.f_files)),
                        ("disk_inodes_free", mp, float(st.f_favail)),
                        ("disk_inodes_free_ratio", mp, st.f_favail / st.f_files)]
        out += self._io(mounts)
        return out

    def _statvfs(self, mp: str) -> os.statvfs_result | None:
        if mp not in self._network:
            return self.statvfs(mp)
        stuck = self._stuck.get(mp)
        if stuck is not None:
            if stuck.is_alive():
                return None
            del self._stuck[mp]
            log.info("disk.mount_answers_again", mount=mp)
        result: list[os.statvfs_result | BaseException] = []

        def ask() -> None:
            try:
                result.append(self.statvfs(mp))
            except BaseException as exc:  # noqa: BLE001  handed to the caller below
                result.append(exc)

        t = threading.Thread(target=ask, name=f"statvfs {mp}", daemon=True)
        t.start()
        t.join(NETWORK_TIMEOUT)
        if t.is_alive():
            self._stuck[mp] = t
            log.warning("disk.mount_not_answering", mount=mp, timeout_s=NETWORK_TIMEOUT,
                        hint="the file server may be down; the mount is skipped until it answers")
            return None
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def _io(self, mounts: list[tuple[str, str]]) -> list[Triple]:
        counters = psutil.disk_io_counters(perdisk=True, nowrap=True) or {}
        label_of: dict[str, str] = {}
        for mp, device in mounts:
            if mp not in self._device_of:
                self._device_of[mp] = _block_device_name(device, mp, counters)
            name = self._device_of[mp]
            if name is not None and name not in label_of:
                label_of[name] = mp
        mapped = set(label_of)
        for name, c in counters.items():
            if name in mapped:
                continue
            if any(os.path.exists(f"/sys/class/block/{name}/{m}") for m in mapped):
                continue  # the whole disk of a mounted partition: counted under the mount
            if c.read_count == 0 and c.write_count == 0:
                continue  # never used (loop, ram, zram devices)
            if len(label_of) < MAX_MOUNTS * 2:
                label_of[name] = name
        out: list[Triple] = []
        now = time.monotonic()
        for name, label in sorted(label_of.items()):
            c = counters[name]
            for metric, value in (("disk_read_bytes_per_second", c.read_bytes),
                                  ("disk_write_bytes_per_second", c.write_bytes),
                                  ("disk_reads_per_second", c.read_count),
                                  ("disk_writes_per_second", c.write_count)):
                rate = self._rates.rate(metric, label, float(value), now)
                if rate is not None:
                    out.append((metric, label, rate))
        return out

    def close(self) -> None:
        pass
