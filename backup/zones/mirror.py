"""A local copy of a zone's repository metadata (config, index/, snapshots/) so that
``backup.repository`` can answer questions about remote snapshots (their time, the files they
reference) even when the local repository no longer has them, or is lost. Pack files are
fetched into it on demand (the packs holding a snapshot's content lists, or everything a
restore needs). Every fetched file is checked against its name (BLAKE3 of its bytes)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import blake3
import paramiko

from lightkeeper.backup.zones import remote_ops
from lightkeeper.backup.zones.errors import RemoteIntegrityError, RemotePathError, ZoneError
from lightkeeper.backup.zones.remote_path import RemoteRoot

TMP_PREFIX = ".tmp-"  # the backup package's temp prefix: its scans skip these


def _download(src: Any, root: RemoteRoot, rel: str, dest: Any,
              on_bytes: Callable[[int], None] | None, hasher: Any,
              should_stop: Callable[[], bool] | None, max_size: int | None = None) -> int:
    """Read ``rel`` from an SFTP channel, or from any other zone store (an S3 bucket) that
    offers ``download(rel, dest, on_bytes, hasher, should_stop, max_size)``."""
    if isinstance(src, paramiko.SFTPClient):
        return remote_ops.download(src, root, rel, dest, on_bytes, hasher, should_stop,
                                   max_size)
    return int(src.download(rel, dest, on_bytes, hasher, should_stop, max_size))


def _read_small(src: Any, root: RemoteRoot, rel: str) -> bytes | None:
    if isinstance(src, paramiko.SFTPClient):
        return remote_ops.read_small(src, root.join(rel))
    return src.read_small(rel)


def content_ok(rel: str, data_hash: str) -> bool:
    """Every repository file except ``config`` is named by the BLAKE3 hash of its bytes."""
    return rel == "config" or rel.rsplit("/", 1)[-1] == data_hash


def fetch(sftp: paramiko.SFTPClient, root: RemoteRoot, rel: str, dest_root: Path,
          on_bytes: Callable[[int], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          max_size: int | None = None) -> int:
    """Download ``rel`` into ``dest_root/rel`` atomically after checking its hash. ``rel``
    comes from the zone's listing: it is checked against the repository layout before any
    file or directory is created, and the download stops at ``max_size`` bytes (the size the
    index records for a pack; a cap for metadata)."""
    if not remote_ops.valid_rel(rel):
        raise RemotePathError(root.zone, f"refused remote file name {rel[:200]!r}: not a "
                              "repository file")
    if max_size is None and rel != "config" and not rel.startswith("data/"):
        max_size = remote_ops.METADATA_LIMIT
    dest = dest_root / rel
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    h = blake3.blake3()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "wb") as fh:
            try:
                size = _download(sftp, root, rel, fh, on_bytes, h, should_stop, max_size)
            except remote_ops.TooLarge as exc:
                raise RemoteIntegrityError(root.zone, str(exc)) from None
            fh.flush()
            os.fsync(fh.fileno())
        if not content_ok(rel, h.hexdigest()):
            raise RemoteIntegrityError(root.zone, f"{rel} on the zone does not match its name "
                                       "(corrupted); run `lightkeeper zones verify "
                                       f"{root.zone} --full`")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def link_or_copy(src: Path, dest: Path) -> bool:
    """Reuse an identical immutable file from the local repository (same name, same bytes)."""
    if not src.is_file():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return True


class Mirror:
    def __init__(self, path: Path, key_file: Path, local_repo: Path | None = None) -> None:
        self.path = Path(path)
        self.key_file = Path(key_file)
        self.local_repo = local_repo
        self._repo: Any = None
        self.bad: dict[str, str] = {}  # rel -> why the zone's copy was refused (refresh)

    def _have(self, rel: str) -> bool:
        return (self.path / rel).is_file()

    def _get(self, sftp: paramiko.SFTPClient, root: RemoteRoot, rel: str,
             size: int | None = None, max_size: int | None = None) -> None:
        if self._have(rel):
            return
        if self.local_repo is not None and rel != "config":
            src = self.local_repo / rel
            if src.is_file() and (size is None or src.stat().st_size == size):
                link_or_copy(src, self.path / rel)
                return
        fetch(sftp, root, rel, self.path, max_size=max_size)

    def refresh(self, sftp: paramiko.SFTPClient, root: RemoteRoot,
                files: dict[str, int], snapshots: dict[str, int]) -> None:
        """Make the mirror's config, index/ and snapshots/ equal to the zone's."""
        if "config" not in files:
            raise ZoneError(root.zone, f"{root.root} holds no repository (no config file)")
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("data", "index", "snapshots", "locks"):
            (self.path / sub).mkdir(exist_ok=True, mode=0o700)
        cfg_path = self.path / "config"
        remote_cfg = _read_small(sftp, root, "config")
        if remote_cfg is None:
            raise ZoneError(root.zone, f"{root.root}/config vanished")
        if not cfg_path.exists() or cfg_path.read_bytes() != remote_cfg:
            if cfg_path.exists():  # another repository now lives there: start over
                self.clear()
                return self.refresh(sftp, root, files, snapshots)
            cfg_path.write_bytes(remote_cfg)
        wanted = {r for r in files if r.startswith("index/")} | {f"snapshots/{s}"
                                                                 for s in snapshots}
        self.bad = {}
        for rel in sorted(wanted):
            try:
                self._get(sftp, root, rel, files.get(rel, snapshots.get(rel.split("/")[-1])))
            except RemoteIntegrityError as exc:  # the zone's copy is damaged or not ours
                self.bad[rel] = str(exc)
                wanted.discard(rel)
        for sub in ("index", "snapshots"):
            for p in (self.path / sub).iterdir():
                if f"{sub}/{p.name}" not in wanted:
                    p.unlink(missing_ok=True)
        self.close()

    def clear(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
        self._repo = None

    def open(self) -> Any:
        if self._repo is None:
            from lightkeeper.backup.repository import Repository  # noqa: PLC0415

            self._repo = Repository.open(self.path, self.key_file)
        return self._repo

    def ensure_tree_packs(self, sftp: paramiko.SFTPClient, root: RemoteRoot, sid: str) -> None:
        """Fetch the packs holding a snapshot's content lists (needed to know its files)."""
        repo = self.open()
        manifest = repo.read_snapshot(sid)
        packs = set()
        for f in manifest.get("files", []):
            lid = f.get("list")
            loc = repo.index.get(bytes.fromhex(lid)) if lid else None
            if loc is not None:
                packs.add(loc.pack)
        sizes = repo.indexed_packs()
        for p in sorted(packs):
            # never more than the (authenticated) index says the pack holds
            self._get(sftp, root, repo.pack_relpath(p), max_size=sizes.get(p, 0))

    def referenced_files(self, sftp: paramiko.SFTPClient, root: RemoteRoot,
                         sid: str) -> set[str]:
        self.ensure_tree_packs(sftp, root, sid)
        return set(self.open().referenced_files(sid))

    def snapshot_infos(self) -> list[Any]:
        return list(self.open().snapshots())

    def fetch_many(self, clients: list[paramiko.SFTPClient], root: RemoteRoot,
                   rels: Iterable[str], ctx: Any, report: Callable[[], None],
                   counters: Any) -> None:
        from lightkeeper.backup.zones.pool import run_tasks  # noqa: PLC0415

        sizes = {self.open().pack_relpath(p): n
                 for p, n in self.open().indexed_packs().items()}

        def one(sftp: paramiko.SFTPClient, rel: str, stop: Any) -> None:
            if not self._have(rel):
                if self.local_repo is not None and link_or_copy(self.local_repo / rel,
                                                                self.path / rel):
                    pass
                else:
                    limit = sizes.get(rel, 0) if rel.startswith("data/") else None
                    fetch(sftp, root, rel, self.path, counters.add_bytes, stop.is_set, limit)
            counters.file_done(rel)

        run_tasks(clients, [r for r in rels], one, ctx, report)

    def drop_packs(self) -> None:
        self.close()
        shutil.rmtree(self.path / "data", ignore_errors=True)
        (self.path / "data").mkdir(exist_ok=True, mode=0o700)
