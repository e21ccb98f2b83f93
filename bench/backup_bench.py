"""Backup benchmark: lightkeeper's repository against restic on the same LightRAG-shaped data.

Generates (or reuses) a deterministic ~250 MB data root (``bench/datagen.py``: 30 users, about
1,000 files), then measures, for lightkeeper and for restic (if installed) on the same data in
the same run:

1. first backup (time, repository size)
2. backup with nothing changed (time)
3. backup after rewriting about 5 % of the files with small scattered edits (time, bytes
   added to the repository, measured as the growth of the repository directory for both)
4. full verify (lightkeeper ``verify --full``; restic ``check --read-data``)
5. full restore to a new directory

lightkeeper runs as an operator runs it: the ``lightkeeper`` command (``backup run``,
``backup verify --full``, ``restore latest --target``) against a running agent
(``bench/cli_agent.py``, one agent per repository), which runs the job; the CLI learns of its
end through the long poll. The job's own time (as the agent measured it) is printed beside.
Restores go to new directories that are deleted only at the end (a restore into the place of a
just-deleted tree measures ext4's inode allocator skipping recently freed inodes, for either
tool). Goals (issue 13): restore at most 0.8x restic's time, unchanged backup at most 0.3x.

``--data-set mixed`` uses ``bench/datagen_mixed.py`` (many small JSON files and a few large
GraphML ones per user) instead of the LightRAG-shaped ``bench/datagen.py``.

Run: ``.venv/bin/python bench/backup_bench.py [--data-set mixed] [--data DIR] [--keep]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.cli_agent import BenchAgent, job_seconds  # noqa: E402
from bench.datagen import generate, scatter_edits  # noqa: E402
from bench.datagen_mixed import generate as generate_mixed  # noqa: E402
from lightkeeper.gate import GATE_FILES  # noqa: E402


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total


def digest(root: Path) -> dict[str, str]:
    """Relative path -> content hash of every file (the write gate's own files aside)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and p.name not in GATE_FILES:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def same_tree(got: dict[str, str], want: dict[str, str], who: str) -> None:
    if got != want:
        bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        raise SystemExit(f"{who} restore differs from the data in {len(bad)} files: {bad[:5]}")


def restic(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(["restic", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"restic {' '.join(args)} failed:\n{r.stderr}")
    return wall, r.stdout


def mb(n: float) -> str:
    return f"{n / 1e6:8.2f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="data root to generate into (default: temp dir)")
    ap.add_argument("--work", type=Path, help="directory for repositories and restores")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measure (best is shown)")
    ap.add_argument("--data-set", choices=("lightrag", "mixed"), default="lightrag")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="lk-backup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = a.data or work / "data"
    if data.exists():
        shutil.rmtree(data)
    t = time.perf_counter()
    info = (generate_mixed(data, users=a.users) if a.data_set == "mixed"
            else generate(data, users=a.users, seed=a.seed))
    print(f"data ({a.data_set}): {info['files']} files, {info['bytes'] / 1e6:.1f} MB, "
          f"{a.users} users "
          f"(generated in {time.perf_counter() - t:.1f} s) at {data}")
    have_restic = shutil.which("restic") is not None
    n = a.repeat
    agents = [BenchAgent(work / f"lk-agent-{i}", data, work / f"lk-repo-{i}").start()
              for i in range(n)]
    jobs: dict[str, list[float]] = {}
    restores = iter(range(1000))

    def ours(i: int, *args: str) -> dict:
        """One CLI command against agent i; its job's time is kept for the table."""
        _, job = agents[i].cli(*args)
        if job.get("state") not in ("succeeded", None):
            raise SystemExit(f"lightkeeper {' '.join(args)}: {job.get('state')} "
                             f"{job.get('error')}")
        jobs.setdefault(args[0] + " " + args[1], []).append(job_seconds(job))
        return job.get("summary") or {}

    try:
        _main_runs(a, work, data, n, agents, ours, restores, jobs, have_restic)
    finally:
        for ag in agents:
            ag.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def _main_runs(a, work, data, n, agents, ours, restores, jobs, have_restic):  # noqa: ANN001, ANN202
    rs_env = [{**os.environ, "RESTIC_PASSWORD": "bench-password",
               "RESTIC_REPOSITORY": str(work / f"restic-repo-{i}"),
               "RESTIC_CACHE_DIR": str(work / f"restic-cache-{i}")} for i in range(n)]
    times: dict[str, tuple[list[float], list[float]]] = {}

    def timed(name: str, i: int, ours_fn, restic_fn) -> None:  # noqa: ANN001
        """Run both tools once (alternating which goes first), after a sync."""
        mine, theirs = times.setdefault(name, ([], []))
        order = [("ours", ours_fn), ("restic", restic_fn)]
        if i % 2:
            order.reverse()
        for who, fn in order:
            if fn is None:
                continue
            os.sync()
            t = time.perf_counter()
            fn()
            (mine if who == "ours" else theirs).append(time.perf_counter() - t)

    sizes: dict[str, tuple[int, int | None]] = {}
    # 1. first backup, into n fresh repository pairs
    for i in range(n):
        if have_restic:
            restic(["init", "--repository-version", "2"], rs_env[i])
        timed("first backup", i, lambda i=i: ours(i, "backup", "run"),
              (lambda i=i: restic(["backup", "--json", str(data)], rs_env[i]))
              if have_restic else None)
    sizes["repository size after first"] = (
        dir_size(agents[0].repository), dir_size(Path(rs_env[0]["RESTIC_REPOSITORY"])) if have_restic
        else None)
    # 2. nothing changed
    for i in range(n):
        timed("unchanged backup", i, lambda i=i: ours(i, "backup", "run"),
              (lambda i=i: restic(["backup", "--json", str(data)], rs_env[i]))
              if have_restic else None)
    s = ours(0, "backup", "run")
    assert s["bytes_read"] == 0, s
    unchanged_jobs = jobs["backup run"][n:]
    print(f"  lightkeeper unchanged backup, the agent's job alone: "
          f"{min(unchanged_jobs):.3f} s (best of {len(unchanged_jobs)})")
    # 3. scattered edits
    changed = scatter_edits(data, fraction=0.05, record_fraction=0.02, seed=a.seed + 4)
    changed_bytes = sum((data / c).stat().st_size for c in changed)
    print(f"edited {len(changed)} files ({changed_bytes / 1e6:.1f} MB) at scattered places")
    added_lk, added_rs = [], []
    for i in range(n):
        b_lk = dir_size(agents[i].repository)
        b_rs = dir_size(Path(rs_env[i]["RESTIC_REPOSITORY"])) if have_restic else 0
        timed("backup after edits", i, lambda i=i: ours(i, "backup", "run"),
              (lambda i=i: restic(["backup", "--json", str(data)], rs_env[i]))
              if have_restic else None)
        added_lk.append(dir_size(agents[i].repository) - b_lk)
        if have_restic:
            added_rs.append(dir_size(Path(rs_env[i]["RESTIC_REPOSITORY"])) - b_rs)
    sizes["bytes added after edits"] = (min(added_lk), min(added_rs) if added_rs else None)
    expected = digest(data)
    # 4. full verify
    for i in range(n):
        timed("full verify", i, lambda i=i: ours(i, "backup", "verify", "--full"),
              (lambda i=i: restic(["check", "--read-data"], rs_env[i])) if have_restic
              else None)
    # 5. full restore
    for i in range(n):
        k = next(restores)
        lk_out, rs_out = work / f"lk-restore-{k}", work / f"restic-restore-{k}"
        timed("full restore", i,
              lambda i=i, out=lk_out: ours(i, "restore", "latest", "--target", str(out)),
              (lambda i=i, out=rs_out: restic(["restore", "latest", "--target", str(out)],
                                               rs_env[i])) if have_restic else None)
        same_tree(digest(lk_out), expected, "lightkeeper")
    goals = {"first backup": "<= 1.0", "unchanged backup": "<= 0.3",
             "full restore": "<= 0.8", "bytes added after edits": "<= 0.5"}
    job_of = {"first backup": jobs["backup run"][:n], "unchanged backup": unchanged_jobs,
              "backup after edits": jobs["backup run"][2 * n + 1:],
              "full verify": jobs["backup verify"], "full restore": jobs["restore latest"]}
    rows: list[tuple[str, float, float | None, str, str]] = []
    for name in ("first backup", "unchanged backup", "backup after edits", "full verify",
                 "full restore"):
        mine, theirs = times[name]
        rows.append((name, min(mine), min(theirs) if theirs else None, "s",
                     goals.get(name, "(info)")))
    for name, (mine_b, theirs_b) in sizes.items():
        rows.append((name, mine_b, theirs_b, "bytes", goals.get(name, "(info)")))
    load = os.getloadavg()
    print(f"(CLI wall times through a running agent: best of {n} runs each, tools "
          f"alternating, a sync before every run; load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f})")
    print()
    print(f"{'measure':<30} {'lightkeeper':>14} {'(job)':>8} {'restic 0.14':>14} {'ratio':>8}"
          "  goal (lightkeeper / restic)")
    for name, ours_v, rs_v, unit, goal in rows:
        fmt = (lambda x: f"{x:10.3f} s") if unit == "s" else (lambda x: mb(x))
        ratio = f"{ours_v / rs_v:8.2f}" if rs_v else "       -"
        job = f"{min(job_of[name]):7.3f}s" if unit == "s" and job_of.get(name) else " " * 8
        met = ""
        if rs_v and goal.startswith("<="):
            met = "met" if ours_v / rs_v <= float(goal[3:]) else "NOT met"
        print(f"{name:<30} {fmt(ours_v):>14} {job} "
              f"{fmt(rs_v) if rs_v is not None else '-':>14} {ratio}  {goal} {met}")
    print("all runs (s):")
    for name in ("first backup", "unchanged backup", "backup after edits", "full verify",
                 "full restore"):
        mine, theirs = times[name]
        print(f"  {name:<20} lightkeeper {' '.join(f'{t:.3f}' for t in mine)}; restic "
              f"{' '.join(f'{t:.3f}' for t in theirs)}")
    if not have_restic:
        print("(restic not installed: no reference run)")


if __name__ == "__main__":
    main()
