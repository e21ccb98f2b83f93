"""Make real repositories for zone tests with ``backup.repository`` (packs, index, manifests),
using the backup engine's snapshot function when it exists."""

from __future__ import annotations

from pathlib import Path

from lightkeeper.backup.repository import Repository


def write_user_files(data_root: Path, user: str, nfiles: int, size: int, seed: int) -> Path:
    d = data_root / user
    d.mkdir(parents=True, exist_ok=True)
    rnd = __import__("random").Random(seed)
    for i in range(nfiles):
        (d / f"kv_store_{i}.json").write_bytes(rnd.randbytes(size))
    (d / "graph_chunk_entity_relation.graphml").write_text(f"<graphml seed='{seed}'/>\n")
    return d


def snapshot_dirs(repo: Repository, data_root: Path, users: list[str] | None = None,
                  when: float | None = None) -> str:
    """A real snapshot by the backup engine; returns its id."""
    from lightkeeper.backup.snapshot import BackupOptions, run_backup

    before = set(repo.snapshot_ids())
    run_backup(repo, BackupOptions(data_root=data_root, users=users, low_priority=False,
                                   space_check=False))
    (new,) = set(repo.snapshot_ids()) - before
    return new


def restore_user(repo: Repository, snapshot_id: str, user: str, target: Path) -> list[Path]:
    doc = repo.read_snapshot(snapshot_id)
    out = []
    for f in doc["files"]:
        if f["user"] != user:
            continue
        dest = target / f["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as fh:
            for piece in repo.iter_file_data(f):
                fh.write(piece)
        out.append(dest)
    return out


def make_repo(path: Path, key_file: Path, pack_size: int = 1 << 20) -> Repository:
    repo = Repository.init(path, key_file, encrypt=True)
    repo.config["pack_size"] = pack_size
    return repo


def tree_digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


