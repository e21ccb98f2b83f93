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

lightkeeper runs in a fresh Python process per step (interpreter start and imports included,
as restic's process start is), and the in-process job time is printed next to it. Goals
(issue 4): first backup and restore no slower than restic, unchanged backup at most half of
restic's time, bytes added after the scattered edits at most half of restic's.

Run: ``.venv/bin/python bench/backup_bench.py [--data DIR] [--keep]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.datagen import generate, scatter_edits  # noqa: E402

CHILD = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.verify import verify
op, repo_path, key, arg = sys.argv[1:5]
if op == "init":
    Repository.init(Path(repo_path), Path(key)); out = {}
else:
    repo = Repository.open(Path(repo_path), Path(key))
    t1 = time.perf_counter()
    if op == "backup":
        out = run_backup(repo, BackupOptions(Path(arg), low_priority=False))
    elif op == "verify":
        out = verify(repo, full=True, low_priority=False)
    elif op == "restore":
        out = restore(repo, "latest", RestoreOptions(target=Path(arg), low_priority=False))
    out["job_s"] = time.perf_counter() - t1
    repo.close()
print(json.dumps(out, default=str))
"""


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and p.name != ".lightkeeper.lock":
            h.update(str(p.relative_to(root)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def ours(op: str, repo: Path, key: Path, arg: str = "") -> tuple[float, dict]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, op, str(repo), str(key), arg],
                       cwd=REPO_ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"lightkeeper {op} failed:\n{r.stderr}")
    return wall, json.loads(r.stdout.strip().splitlines()[-1])


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
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="lk-backup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = a.data or work / "data"
    if data.exists():
        shutil.rmtree(data)
    t = time.perf_counter()
    info = generate(data, users=a.users, seed=a.seed)
    print(f"data: {info['files']} files, {info['bytes'] / 1e6:.1f} MB, {a.users} users "
          f"(generated in {time.perf_counter() - t:.1f} s) at {data}")
    have_restic = shutil.which("restic") is not None
    n = a.repeat
    lk = [(work / f"lk-repo-{i}", work / f"lk-{i}.key") for i in range(n)]
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
        ours("init", *lk[i])
        if have_restic:
            restic(["init", "--repository-version", "2"], rs_env[i])
        timed("first backup", i, lambda i=i: ours("backup", *lk[i], str(data)),
              (lambda i=i: restic(["backup", "--json", str(data)], rs_env[i]))
              if have_restic else None)
    sizes["repository size after first"] = (
        dir_size(lk[0][0]), dir_size(Path(rs_env[0]["RESTIC_REPOSITORY"])) if have_restic
        else None)
    # 2. nothing changed
    for i in range(n):
        timed("unchanged backup", i, lambda i=i: ours("backup", *lk[i], str(data)),
              (lambda i=i: restic(["backup", "--json", str(data)], rs_env[i]))
              if have_restic else None)
    _, s = ours("backup", *lk[0], str(data))
    assert s["bytes_read"] == 0, s
    print(f"  lightkeeper unchanged backup in-process (agent job): {s['job_s']:.3f} s")
    # 3. scattered edits
    changed = scatter_edits(data, fraction=0.05, record_fraction=0.02, seed=a.seed + 4)
    changed_bytes = sum((data / c).stat().st_size for c in changed)
    print(f"edited {len(changed)} files ({changed_bytes / 1e6:.1f} MB) at scattered places")
    added_lk, added_rs = [], []
    for i in range(n):
        b_lk = dir_size(lk[i][0])
        b_rs = dir_size(Path(rs_env[i]["RESTIC_REPOSITORY"])) if have_restic else 0
        timed("backup after edits", i, lambda i=i: ours("backup", *lk[i], str(data)),
              (lambda i=i: restic(["backup", "--json", str(data)], rs_env[i]))
              if have_restic else None)
        added_lk.append(dir_size(lk[i][0]) - b_lk)
        if have_restic:
            added_rs.append(dir_size(Path(rs_env[i]["RESTIC_REPOSITORY"])) - b_rs)
    sizes["bytes added after edits"] = (min(added_lk), min(added_rs) if added_rs else None)
    expected = digest(data)
    # 4. full verify
    for i in range(n):
        timed("full verify", i, lambda i=i: ours("verify", *lk[i]),
              (lambda i=i: restic(["check", "--read-data"], rs_env[i])) if have_restic
              else None)
    # 5. full restore
    lk_out, rs_out = work / "lk-restore", work / "restic-restore"
    for i in range(n):
        shutil.rmtree(lk_out, ignore_errors=True)
        shutil.rmtree(rs_out, ignore_errors=True)
        timed("full restore", i, lambda i=i: ours("restore", *lk[i], str(lk_out)),
              (lambda i=i: restic(["restore", "latest", "--target", str(rs_out)], rs_env[i]))
              if have_restic else None)
        assert digest(lk_out) == expected, "lightkeeper restore differs from the data"
    goals = {"first backup": "<= 1.0", "unchanged backup": "<= 0.5",
             "full restore": "<= 1.0", "bytes added after edits": "<= 0.5"}
    rows: list[tuple[str, float, float | None, str, str]] = []
    for name in ("first backup", "unchanged backup", "backup after edits", "full verify",
                 "full restore"):
        mine, theirs = times[name]
        rows.append((name, min(mine), min(theirs) if theirs else None, "s",
                     goals.get(name, "(info)")))
    for name, (mine_b, theirs_b) in sizes.items():
        rows.append((name, mine_b, theirs_b, "bytes", goals.get(name, "(info)")))
    print(f"(times: best of {n} runs each, tools alternating, a sync before every run; "
          f"machine load average {os.getloadavg()[0]:.1f})")
    print()
    print(f"{'measure':<30} {'lightkeeper':>14} {'restic 0.14':>14} {'ratio':>8}  goal "
          "(lightkeeper / restic)")
    for name, ours_v, rs_v, unit, goal in rows:
        fmt = (lambda x: f"{x:10.2f} s") if unit == "s" else (lambda x: mb(x))
        ratio = f"{ours_v / rs_v:8.2f}" if rs_v else "       -"
        met = ""
        if rs_v and goal.startswith("<="):
            met = "met" if ours_v / rs_v <= float(goal[3:]) else "NOT met"
        print(f"{name:<30} {fmt(ours_v):>14} {fmt(rs_v) if rs_v is not None else '-':>14} "
              f"{ratio}  {goal} {met}")
    if not have_restic:
        print("(restic not installed: no reference run)")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
