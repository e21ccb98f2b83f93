"""Replication benchmark: lightkeeper's SFTP sync to a loopback zone (a real sshd started here)
next to OpenSSH's own tools on the same repository, printed as ratios.

1. Build a backup repository from the benchmark data root (bench/datagen.py, ~250 MB) with
   the backup engine.
2. Full sync and no-change sync with lightkeeper; the same repository with ``sftp -b``
   (``put -r``), ``scp -r`` and ``rsync -a -e ssh`` (full and no-change).
3. A repository of 10,000 small objects: full sync, then the no-change sync (goal <= 1 s).

Run: ``.venv/bin/python -m bench.replication_bench [--users 30] [--mb 250] [--objects 10000]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backup.zones import hostkeys  # noqa: E402
from backup.zones.connection import probe_host_key  # noqa: E402
from backup.zones.local_repo import LocalRepo  # noqa: E402
from backup.zones.model import Zone  # noqa: E402
from backup.zones.sync import SyncOptions, sync_zone  # noqa: E402
from tests.zones.sshd import Sshd, keygen  # noqa: E402


def du(path: Path) -> tuple[int, int]:
    n = size = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            n += 1
            size += os.path.getsize(os.path.join(root, f))
    return n, size


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def build_repo(work: Path, users: int, mb: float) -> Path:
    from backup.repository import Repository
    from backup.snapshot import BackupOptions, run_backup
    from bench.datagen import generate

    data = work / "data"
    print(f"generating the data root ({users} users, ~{mb:.0f} MB)...", flush=True)
    generate(data, users=users, seed=7, total_mb=mb)
    repo = Repository.init(work / "repo", work / "repo.key", encrypt=True)
    t, _ = timed(lambda: run_backup(repo, BackupOptions(data_root=data, low_priority=False)))
    repo.close()
    n, size = du(work / "repo")
    print(f"repository: {n} files, {size / 1e6:.1f} MB (backup took {t:.1f} s)", flush=True)
    return work / "repo"


def fake_repo(path: Path, objects: int) -> Path:
    """A repository layout with ``objects`` small immutable files (content-named)."""
    import blake3

    for d in ("data", "index", "snapshots"):
        (path / d).mkdir(parents=True, exist_ok=True)
    (path / "config").write_text('{"format": 1, "id": "bench"}\n')
    for i in range(objects):
        body = os.urandom(512) + i.to_bytes(4, "little")
        h = blake3.blake3(body).hexdigest()
        sub = "index" if i % 50 == 0 else f"data/{h[:2]}"
        (path / sub).mkdir(exist_ok=True)
        (path / sub / h).write_bytes(body)
    body = b"snapshot"
    (path / "snapshots" / blake3.blake3(body).hexdigest()).write_bytes(body)
    return path


def ssh_opts(server: Sshd, key: Path, known: Path) -> list[str]:
    return ["-i", str(key), "-o", f"UserKnownHostsFile={known}", "-o",
            "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]


def run(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--mb", type=float, default=250.0)
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lk-repl-bench-"))
    server = None
    try:
        key = keygen(work / "id_ed25519")
        server = Sshd(work / "sshd", key.with_suffix(".pub"), "bench")
        server.start()
        known = work / "known_hosts"
        user = os.environ.get("USER") or __import__("getpass").getuser()

        def zone(name: str, remote: Path, kbps: int = 0) -> Zone:
            return Zone(name, "127.0.0.1", server.port, user, str(key), str(remote), known,
                        bandwidth_limit_kbps=kbps)

        hostkeys.record(zone("z", work / "r"), probe_host_key(zone("z", work / "r")))
        repo = build_repo(work, args.users, args.mb)
        nfiles, nbytes = du(repo)
        nfiles_repl = nfiles - len(list((repo / "locks").glob("*")))
        opts = SyncOptions(channels=args.channels, connections=1)
        rows: list[tuple[str, float, float | None]] = []

        def lk_sync(remote: Path, state: Path) -> dict:
            return sync_zone(zone("z", remote), LocalRepo(repo), state, None, opts)

        for d in ("remote-lk", "remote-many"):
            (work / d).mkdir()
        t_full, r = timed(lambda: lk_sync(work / "remote-lk" / "repo", work / "state-lk"))
        assert r["bytes_sent"] > 0
        t_none, r2 = timed(lambda: lk_sync(work / "remote-lk" / "repo", work / "state-lk"))
        assert r2["bytes_sent"] == 0
        rows.append(("lightkeeper full sync", t_full, nbytes / t_full))
        rows.append(("lightkeeper no-change sync", t_none, None))

        ssh = ssh_opts(server, key, known)
        batch = work / "sftp.batch"
        (work / "remote-sftp").mkdir()
        batch.write_text(f"put -r {repo} {work / 'remote-sftp'}/repo\n")
        t = run(["sftp", *ssh, "-P", str(server.port), "-b", str(batch),
                 f"{user}@127.0.0.1"])
        rows.append(("OpenSSH sftp -b put -r", t, nbytes / t))
        (work / "remote-scp").mkdir()
        t = run(["scp", "-q", "-r", *ssh, "-P", str(server.port), str(repo),
                 f"{user}@127.0.0.1:{work / 'remote-scp'}/repo"])
        rows.append(("OpenSSH scp -r", t, nbytes / t))
        if shutil.which("rsync"):
            rsh = " ".join(["ssh", *ssh, "-p", str(server.port)])
            dest = f"{user}@127.0.0.1:{work / 'remote-rsync'}/"
            (work / "remote-rsync").mkdir()
            t = run(["rsync", "-a", "--exclude", "locks/", "-e", rsh, f"{repo}/", dest])
            rows.append(("rsync -a -e ssh full", t, nbytes / t))
            t = run(["rsync", "-a", "--exclude", "locks/", "-e", rsh, f"{repo}/", dest])
            rows.append(("rsync -a -e ssh no-change", t, None))

        print(f"\nrepository of {nfiles_repl} files, {nbytes / 1e6:.1f} MB, loopback sshd, "
              f"{args.channels} SFTP channel(s), {os.cpu_count()} cores")
        print(f"{'run':34} {'seconds':>8} {'MB/s':>8}")
        for name, secs, rate in rows:
            print(f"{name:34} {secs:8.2f} {'' if rate is None else f'{rate / 1e6:8.1f}'}")
        ref = {name: secs for name, secs, _ in rows}
        print("\nratios (reference time / lightkeeper time; > 1 means lightkeeper is faster):")
        for name in ("OpenSSH sftp -b put -r", "OpenSSH scp -r", "rsync -a -e ssh full"):
            if name in ref:
                print(f"  full sync vs {name:26} {ref[name] / t_full:6.2f}")
        if "rsync -a -e ssh no-change" in ref:
            print(f"  no-change vs rsync no-change      "
                  f"{ref['rsync -a -e ssh no-change'] / t_none:6.2f}")

        # 10,000 small objects
        many = fake_repo(work / "many", args.objects)
        t_full_many, r = timed(lambda: sync_zone(zone("z", work / "remote-many" / "repo"),
                                                 LocalRepo(many), work / "state-many", None,
                                                 opts))
        times = []
        for _ in range(3):
            t, r = timed(lambda: sync_zone(zone("z", work / "remote-many" / "repo"),
                                           LocalRepo(many), work / "state-many", None, opts))
            assert r["bytes_sent"] == 0
            times.append(t)
        print(f"\n{args.objects} objects: full sync {t_full_many:.2f} s "
              f"({args.objects / t_full_many:.0f} files/s); no-change sync "
              f"{min(times):.3f} s best, {max(times):.3f} s worst of 3 (goal <= 1 s)")
        batch.write_text(f"put -r {many} {work / 'remote-many-sftp'}\n")
        t = run(["sftp", *ssh, "-P", str(server.port), "-b", str(batch), f"{user}@127.0.0.1"])
        print(f"  OpenSSH sftp -b put -r on the same: {t:.2f} s "
              f"(ratio {t / t_full_many:.2f})")
        if shutil.which("rsync"):
            rsh = " ".join(["ssh", *ssh, "-p", str(server.port)])
            dest = f"{user}@127.0.0.1:{work / 'remote-many-rsync'}/"
            (work / "remote-many-rsync").mkdir()
            t1 = run(["rsync", "-a", "-e", rsh, f"{many}/", dest])
            t2 = run(["rsync", "-a", "-e", rsh, f"{many}/", dest])
            print(f"  rsync -a -e ssh on the same: full {t1:.2f} s (ratio {t1 / t_full_many:.2f}), "
                  f"no-change {t2:.3f} s (ratio {t2 / min(times):.2f})")
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
