"""The backup repository (layout in docs/architecture.md, "Backup repository layout").

::

    <repo>/config                   JSON: format, repo id, chunker params, key id (immutable)
    <repo>/data/<2 hex>/<pack id>   packs of compressed, sealed blocks of chunks (immutable)
    <repo>/index/<index id>         chunk -> (pack, block, offset) (immutable)
    <repo>/snapshots/<snapshot id>  one manifest per snapshot, written last
    <repo>/locks/                   repository locks (never replicated)

Every name except ``config`` and ``locks/`` is the BLAKE3 hash of the file's bytes, so a file
can be checked against its own name. Snapshot manifests list files; a file's content is a
*content list* (the ids of its chunks, concatenated) stored as a tree chunk, so an unchanged
file costs a manifest line and nothing else.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import blake3
import numpy as np
import orjson

from lightkeeper.backup import index as index_mod
from lightkeeper.backup.chunkindex import ChunkIndex
from lightkeeper.backup.crypto import (
    MAC_MAGIC,
    IntegrityError,
    KeyFileError,
    Keys,
    Sealer,
    Unauthenticated,
    new_keys,
    read_key_file,
    write_key_file,
)
from lightkeeper.backup.fsutil import TMP_PREFIX, atomic_write
from lightkeeper.backup.index import Loc, PackInfo
from lightkeeper.backup.packs import AAD_BLOCK, PackWriter, decode_block, encode_block, read_trailer
from lightkeeper.contracts import backup as contracts
from lightkeeper.logs import get_logger

log = get_logger("backup.repository")

FORMAT = 1
ID_LEN = 32
POOL_WORKERS = max(2, min(4, os.cpu_count() or 2))  # compression/encryption threads
AAD_INDEX = b"lk-index"
AAD_SNAPSHOT = b"lk-snapshot"
AAD_SNAPSHOT_FILES = b"lk-snapshot-files"
AAD_MANIFEST = b"lk-manifest"
DEFAULT_CHUNKER = {"algorithm": "fastcdc2020", "min": 2048, "avg": 8192, "max": 65536}
DEFAULT_BLOCK_SIZE = 256 * 1024
DEFAULT_PACK_SIZE = 8 << 20


class RepositoryError(Exception):
    """The repository is missing, not a repository, or cannot be used as asked."""


class SnapshotNotFound(RepositoryError):
    pass


@dataclass
class SnapshotInfo:
    id: str
    time: float
    host: str
    tags: list[str]
    users: list[str]
    summary: contracts.SnapshotSummary  # every manifest carries one (backup/snapshot.py)
    parent: str | None

    def as_dict(self) -> contracts.SnapshotInfo:
        return {"id": self.id, "short_id": self.id[:8], "time": self.time,
                "time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time)),
                "host": self.host, "tags": self.tags, "users": self.users,
                "parent": self.parent, "summary": self.summary}

    def ref(self) -> contracts.SnapshotRef:
        """The short form a forget summary lists (see :class:`contracts.SnapshotRef`)."""
        return {"id": self.id, "short_id": self.id[:8], "time": self.time,
                "tags": list(self.tags), "users": len(self.users),
                "bytes_total": int(self.summary.get("bytes_total") or 0)}


def _hash_name(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


class Repository:
    """An open repository. Not thread-safe: one job uses one instance."""
    def __init__(self, path: Path, config: dict[str, Any], keys: Keys) -> None:
        self.path = Path(path)
        self.config = config
        self.keys = keys
        self.sealer = Sealer(keys)
        self.level = int(config.get("compression_level", 3))
        self._index: ChunkIndex | None = None
        self._pack_index: dict[str, str] = {}       # pack id -> index file name
        self._pack_sizes: dict[str, int] = {}
        self._index_files: dict[str, list[str]] = {}  # index name -> packs it lists
        self._unindexed: list[PackInfo] = []
        self._block_cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.bytes_added = 0
        self.refused: dict[str, str] = {}  # snapshot id -> why snapshots() left it out

    # -- creating and opening -------------------------------------------------------------
    @classmethod
    def init(cls, path: Path, key_file: Path, encrypt: bool = True,
             chunker: dict[str, Any] | None = None, compression_level: int = 3,
             block_size: int = DEFAULT_BLOCK_SIZE, pack_size: int = DEFAULT_PACK_SIZE
             ) -> Repository:
        """Create a repository (and its key file unless one exists for... nothing else)."""
        path = Path(path)
        if (path / "config").exists():
            raise RepositoryError(f"{path} is already a backup repository")
        if path.exists() and any(p for p in path.iterdir() if p.name != "locks"):
            raise RepositoryError(f"{path} exists and is not empty; refusing to create a "
                                  "repository there")
        repo_id = secrets.token_hex(16)
        key_file = Path(key_file)
        if key_file.exists():
            keys, _ = read_key_file(key_file)
            if keys.encrypted != encrypt:
                raise RepositoryError(f"key file {key_file} exists but its encryption setting "
                                      "differs from backup.encrypt")
        else:
            keys = new_keys(encrypt)
            write_key_file(key_file, keys, repo_id)
        config = {"format": FORMAT, "id": repo_id, "created": time.time(),
                  "chunker": dict(chunker or DEFAULT_CHUNKER), "block_size": block_size,
                  "pack_size": pack_size, "compression": "zstd",
                  "compression_level": compression_level, "hash": "blake3-keyed",
                  "encryption": "aes-256-gcm" if keys.encrypted else None,
                  "key_id": keys.fingerprint}
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("data", "index", "snapshots", "locks"):
            (path / sub).mkdir(exist_ok=True, mode=0o700)
        atomic_write(path / "config", (json.dumps(config, indent=2) + "\n").encode())
        log.info("repository.created", repo=str(path), encrypted=keys.encrypted)
        return cls(path, config, keys)

    @classmethod
    def open(cls, path: Path, key_file: Path) -> Repository:
        path = Path(path)
        try:
            config = json.loads((path / "config").read_text())
        except FileNotFoundError:
            raise RepositoryError(f"no backup repository at {path} (run a backup to create "
                                  "one)") from None
        except (OSError, ValueError) as exc:
            raise RepositoryError(f"{path}/config is unreadable: {exc}") from None
        if config.get("format") != FORMAT:
            raise RepositoryError(f"{path}: repository format {config.get('format')} not "
                                  "supported")
        keys, _ = read_key_file(Path(key_file))
        if keys.fingerprint != config.get("key_id"):
            raise KeyFileError(f"key file {key_file} does not belong to the repository at {path} "
                            f"(key id {keys.fingerprint[:12]}, repository expects "
                            f"{str(config.get('key_id'))[:12]})")
        return cls(path, config, keys)

    @classmethod
    def open_or_init(cls, path: Path, key_file: Path, encrypt: bool = True,
                     compression_level: int = 3) -> Repository:
        if (Path(path) / "config").exists():
            return cls.open(path, key_file)
        return cls.init(path, key_file, encrypt=encrypt, compression_level=compression_level)

    @property
    def id(self) -> str:
        return str(self.config["id"])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(POOL_WORKERS, thread_name_prefix="backup-zstd")
        return self._pool

    # -- layout ---------------------------------------------------------------------------
    @staticmethod
    def pack_relpath(pack_id: str) -> str:
        return f"data/{pack_id[:2]}/{pack_id}"

    def pack_path(self, pack_id: str) -> Path:
        return self.path / self.pack_relpath(pack_id)

    def list_pack_files(self) -> dict[str, int]:
        """Packs present on disk (complete ones only) with their sizes."""
        out = {}
        data = self.path / "data"
        for sub in data.iterdir() if data.exists() else ():
            if not sub.is_dir():
                continue
            for p in sub.iterdir():
                if not p.name.startswith(TMP_PREFIX):
                    out[p.name] = p.stat().st_size
        return out

    def list_index_files(self) -> list[str]:
        return sorted(p.name for p in (self.path / "index").iterdir()
                      if not p.name.startswith(TMP_PREFIX))

    def temp_files(self) -> list[Path]:
        """Leftovers of interrupted writes (safe to delete under an exclusive lock)."""
        out = []
        for sub in ("data", "index", "snapshots", ""):
            base = self.path / sub
            out += list(base.glob(TMP_PREFIX + "*"))
            if sub == "data" and base.exists():
                out += list(base.glob("*/" + TMP_PREFIX + "*"))
        return out

    # -- sealed small objects -------------------------------------------------------------
    def _write_object(self, sub: str, payload: bytes, aad: bytes) -> tuple[str, int]:
        data = self.sealer.tag(encode_block(self.sealer, payload, self.level, aad), aad)
        name = _hash_name(data)
        atomic_write(self.path / sub / name, data)
        self.bytes_added += len(data)
        return name, len(data)

    def _read_object(self, sub: str, name: str, aad: bytes) -> bytes:
        data = (self.path / sub / name).read_bytes()
        if _hash_name(data) != name:
            raise IntegrityError(f"{sub}/{name} does not match its name (corrupted)")
        try:
            body = self.sealer.untag(data, aad, f"{sub}/{name[:12]}")
        except Unauthenticated:
            if sub != "index":
                raise
            # An index file written before index files carried a MAC. Accepted: it cannot
            # forge data (every chunk is checked against its keyed id when read) and pack
            # sizes are bounded where they are trusted (zones fetch).
            body = memoryview(data)
        return decode_block(self.sealer, body, aad)

    # -- index ----------------------------------------------------------------------------
    def load_index(self, strict: bool = False) -> list[tuple[str, str]]:
        """Read every index file; returns (index name, error) for unreadable ones."""
        self._index = ChunkIndex()
        self._pack_index.clear()
        self._pack_sizes.clear()
        self._index_files.clear()
        errors = []
        for name in self.list_index_files():
            try:
                packs, entries = index_mod.decode_arrays(
                    self._read_object("index", name, AAD_INDEX))
            except (IntegrityError, index_mod.IndexFormatError, OSError) as exc:
                if strict:
                    raise
                errors.append((name, str(exc)))
                continue
            self._register_arrays(packs, entries, name)
        for info in self._unindexed:
            self._register([info], None)
        self._index.compact()
        return errors

    def _register(self, packs: Iterable[PackInfo], index_name: str | None) -> None:
        assert self._index is not None
        for p in packs:
            pid = p.pack
            if index_name is not None:
                self._pack_index.setdefault(pid, index_name)
                self._index_files.setdefault(index_name, []).append(pid)
            if pid in self._pack_sizes:
                continue  # the same pack listed by two index files (an interrupted prune)
            self._pack_sizes[pid] = p.size
            self._index.add_pack(pid, p.entries)

    def _register_arrays(self, packs: list[tuple[str, int]], entries: Any,
                         index_name: str) -> None:
        """An index file's packs, without a Python object per entry (see ``_register``)."""
        assert self._index is not None
        fresh = []
        for no, (pid, size) in enumerate(packs):
            self._pack_index.setdefault(pid, index_name)
            self._index_files.setdefault(index_name, []).append(pid)
            if pid not in self._pack_sizes:
                self._pack_sizes[pid] = size
                fresh.append(no)
        if len(fresh) < len(packs):  # packs listed by an earlier index file keep that listing
            entries = entries[np.isin(entries["pack"], np.asarray(fresh, dtype=np.uint32))]
        self._index.add_entries([pid for pid, _ in packs], entries)

    @property
    def index(self) -> ChunkIndex:
        if self._index is None:
            self.load_index()
        assert self._index is not None
        return self._index

    def has_chunk(self, cid: bytes) -> bool:
        return cid in self.index

    def index_of_pack(self) -> dict[str, str]:
        self.index  # noqa: B018 - loads
        return dict(self._pack_index)

    def indexed_packs(self) -> dict[str, int]:
        self.index  # noqa: B018
        return dict(self._pack_sizes)

    def pack_entries(self) -> dict[str, list[tuple[bytes, Loc]]]:
        """Every indexed pack with all its entries and full chunk ids (a chunk may sit in more
        than one pack). Read again from the index files: the in-memory index keeps only what
        lookups need, and only prune and verify, which walk everything anyway, ask for this."""
        out: dict[str, list[tuple[bytes, Loc]]] = {}

        def add(packs: Iterable[PackInfo]) -> None:
            for p in packs:
                if p.pack not in out:  # first listing wins, as in the index
                    out[p.pack] = [(e[0], Loc(p.pack, e[1], e[2], e[3], e[4]))
                                   for e in p.entries]

        for name in self.list_index_files():
            try:
                add(index_mod.decode(self._read_object("index", name, AAD_INDEX)))
            except (IntegrityError, index_mod.IndexFormatError, OSError):
                continue  # load_index reports unreadable index files
        add(self._unindexed)
        return out

    def index_file_packs(self) -> dict[str, list[str]]:
        self.index  # noqa: B018
        return {k: list(v) for k, v in self._index_files.items()}

    def write_index(self, packs: list[PackInfo]) -> str | None:
        """Write one index file for ``packs`` (already durable). Returns its name."""
        if not packs:
            return None
        name, _ = self._write_object("index", index_mod.encode(packs), AAD_INDEX)
        self.index  # noqa: B018
        self._register(packs, name)
        self._unindexed = [p for p in self._unindexed if p.pack not in {q.pack for q in packs}]
        return name

    # -- writing chunks -------------------------------------------------------------------
    def pack_writer(self) -> PackWriter:
        def on_pack(info: PackInfo) -> None:
            self.index  # noqa: B018
            self._unindexed.append(info)
            self._register([info], None)

        return PackWriter(self.path / "data", self.sealer, self.pool(), level=self.level,
                          block_size=int(self.config.get("block_size", DEFAULT_BLOCK_SIZE)),
                          pack_size=int(self.config.get("pack_size", DEFAULT_PACK_SIZE)),
                          on_pack=on_pack, workers=POOL_WORKERS)

    def take_unindexed(self) -> list[PackInfo]:
        """Forget the packs finished since the last index write (and return them)."""
        done, self._unindexed = self._unindexed, []
        self._index = None  # their chunks must not count as present any more
        return done

    def flush_index(self) -> str | None:
        """Index every pack finished since the last index write."""
        return self.write_index(list(self._unindexed))

    # -- reading chunks -------------------------------------------------------------------
    def read_block(self, pack_id: str, off: int, length: int) -> bytes:
        key = (pack_id, off)
        with self._cache_lock:
            hit = self._block_cache.get(key)
            if hit is not None:
                self._block_cache.move_to_end(key)
                return hit
        with open(self.pack_path(pack_id), "rb") as f:
            f.seek(off)
            data = f.read(length)
        if len(data) != length:
            raise IntegrityError(f"pack {pack_id[:12]} is truncated")
        raw = decode_block(self.sealer, data, AAD_BLOCK)
        with self._cache_lock:
            self._block_cache[key] = raw
            while len(self._block_cache) > 64:
                self._block_cache.popitem(last=False)
        return raw

    def cached_block(self, key: tuple[str, int, int]) -> bytes | None:
        """A decoded block if the cache holds it (``key``: pack id, offset, length)."""
        with self._cache_lock:
            return self._block_cache.get(key[:2])

    def read_chunk(self, cid: bytes, check: bool = True, loc: Loc | None = None
                   ) -> bytes | memoryview:
        """A chunk's bytes. ``check=False`` skips re-hashing it (blocks of an encrypted
        repository are authenticated anyway; restore checks each whole file's hash). ``loc``:
        its location when the caller looked it up already (``index.get_many``)."""
        loc = loc if loc is not None else self.index.get(cid)
        if loc is None:
            raise IntegrityError(f"chunk {cid.hex()[:16]} is not in any index")
        raw = self.read_block(loc.pack, loc.block_off, loc.block_len)
        data = memoryview(raw)[loc.inner_off:loc.inner_off + loc.length]
        if len(data) != loc.length or (check and self.sealer.chunk_id(data) != cid):
            raise IntegrityError(f"chunk {cid.hex()[:16]} in pack {loc.pack[:12]} does not "
                                 "match its hash")
        return data

    def content_list(self, list_id: str | None) -> list[bytes]:
        """The chunk ids of a file, from its content-list tree chunk."""
        if not list_id:
            return []
        try:
            cid = bytes.fromhex(list_id)
        except (TypeError, ValueError):
            raise IntegrityError(f"content list id {str(list_id)[:70]!r} is not an id") from None
        return decode_content_list(bytes(self.read_chunk(cid)))

    def resolve_files(self, entries: list[dict[str, Any]]) \
            -> list[tuple[list[bytes], list[Loc]] | str]:
        """Each file's chunk ids and their locations, for a batch of manifest entries at once:
        two vectorised index searches (the content lists, then every chunk they name) instead
        of a scalar search per chunk. A file whose chunks cannot be found gets an error text."""
        out: list[tuple[list[bytes], list[Loc]] | str] = [([], [])] * len(entries)
        want: list[int] = []
        list_ids: list[bytes] = []
        for i, entry in enumerate(entries):
            lid = entry.get("list")
            if not lid:
                continue
            try:
                list_ids.append(bytes.fromhex(lid))
            except (TypeError, ValueError):
                out[i] = f"content list id {str(lid)[:70]!r} is not an id"
                continue
            want.append(i)
        ids_of: dict[int, list[bytes]] = {}
        for i, cid, loc in zip(want, list_ids, self.index.get_many(list_ids), strict=True):
            if loc is None:
                out[i] = f"chunk {cid.hex()[:16]} is not in any index"
                continue
            try:
                ids_of[i] = decode_content_list(bytes(self.read_chunk(cid, loc=loc)))
            except IntegrityError as exc:
                out[i] = str(exc)
        flat = [cid for ids in ids_of.values() for cid in ids]
        locs = iter(self.index.get_many(flat))
        for i, ids in ids_of.items():
            found = [next(locs) for _ in ids]
            present = [loc for loc in found if loc is not None]
            if len(present) != len(ids):
                missing = next(cid for cid, loc in zip(ids, found, strict=True) if loc is None)
                out[i] = f"chunk {missing.hex()[:16]} is not in any index"
            else:
                out[i] = (ids, present)
        return out

    # -- snapshots ------------------------------------------------------------------------
    def snapshot_ids(self) -> list[str]:
        d = self.path / "snapshots"
        return sorted(p.name for p in d.iterdir() if not p.name.startswith(TMP_PREFIX))

    # A manifest file is ``u32 len | seal(zstd(header json)) | seal(zstd(files json))`` (with a
    # MAC in front when the repository is not encrypted: see crypto): listing snapshots opens
    # only the small header; the file list is read when it is needed.
    def read_snapshot(self, snapshot_id: str, files: bool = True) -> dict[str, Any]:
        return self._read_manifest(self.resolve_snapshot(snapshot_id), files)

    def _read_manifest(self, sid: str, files: bool) -> dict[str, Any]:
        """The manifest of snapshot ``sid`` (a full id). Its header alone, in an encrypted
        repository, is read without the file list: the header is a block of its own that
        AES-GCM authenticates, so listing the snapshots reads a few hundred bytes of each
        instead of its whole manifest (1.4 MB for 15,000 files). An unencrypted repository's MAC
        covers the whole manifest, which is therefore read whole."""
        path = self.path / "snapshots" / sid
        if files or not self.keys.encrypted:
            data = path.read_bytes()
        else:
            data = _read_head(path)
        if files and _hash_name(data) != sid:
            raise IntegrityError(f"snapshots/{sid} does not match its name (corrupted)")
        return decode_manifest(self.sealer, data, sid, files)

    def write_snapshot(self, manifest: dict[str, Any]) -> str:
        """Write the manifest (the commit point of a snapshot); returns the snapshot id."""
        data = encode_manifest(self.sealer, self.level, manifest)
        name = _hash_name(data)
        atomic_write(self.path / "snapshots" / name, data)
        self.bytes_added += len(data)
        return name

    def legacy_snapshots(self) -> list[str]:
        """Snapshots of an unencrypted repository written before manifests carried a MAC."""
        if self.keys.encrypted:
            return []
        out = []
        for sid in self.snapshot_ids():
            try:
                with open(self.path / "snapshots" / sid, "rb") as f:
                    head = f.read(len(MAC_MAGIC))
            except FileNotFoundError:
                continue
            if head != MAC_MAGIC:
                out.append(sid)
        return out

    def sign_legacy_snapshots(self) -> dict[str, str]:
        """Rewrite every legacy (unauthenticated) manifest with a MAC; returns old id -> new
        id. The operator runs this once after upgrading, vouching that the repository holds
        only snapshots lightkeeper wrote (needs an exclusive lock)."""
        renamed: dict[str, str] = {}
        for sid in self.legacy_snapshots():
            data = (self.path / "snapshots" / sid).read_bytes()
            if _hash_name(data) != sid:
                raise IntegrityError(f"snapshots/{sid} does not match its name (corrupted); "
                                     "not signed")
            doc = decode_manifest(self.sealer, data, sid, True, legacy_ok=True)
            doc.pop("id", None)
            renamed[sid] = self.write_snapshot(doc)
            (self.path / "snapshots" / sid).unlink()
            log.warning("snapshot.legacy_signed", old=sid[:12], new=renamed[sid][:12])
        return renamed

    def delete_snapshot(self, snapshot_id: str) -> None:
        sid = self.resolve_snapshot(snapshot_id)
        (self.path / "snapshots" / sid).unlink()

    def resolve_snapshot(self, prefix: str) -> str:
        """Full snapshot id from an id or a unique prefix (or ``latest``)."""
        ids = self.snapshot_ids()
        if prefix == "latest":
            infos = self.snapshots()
            if not infos:
                raise SnapshotNotFound("the repository has no snapshots yet")
            return infos[-1].id
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            raise SnapshotNotFound(f"invalid snapshot id {prefix!r}")
        matches = [i for i in ids if i.startswith(prefix)]
        if not matches:
            raise SnapshotNotFound(f"no snapshot {prefix!r} in the repository")
        if len(matches) > 1:
            raise SnapshotNotFound(f"snapshot id prefix {prefix!r} is ambiguous")
        return matches[0]

    def snapshots(self) -> list[SnapshotInfo]:
        """Every readable snapshot, oldest first (the others, with why, in ``refused``)."""
        out = []
        self.refused = {}
        for sid in self.snapshot_ids():
            try:
                doc = self._read_manifest(sid, files=False)
            except (IntegrityError, OSError) as exc:
                log.warning("snapshot.unreadable", snapshot=sid[:12], error=str(exc))
                self.refused[sid] = str(exc)
                continue
            out.append(info_from_manifest(doc))
        out.sort(key=lambda s: (s.time, s.id))
        return out

    # -- what a snapshot needs ------------------------------------------------------------
    def snapshot_chunks(self, manifest: dict[str, Any]) -> tuple[set[bytes], list[str]]:
        """All chunk ids a manifest references (content lists included), and problems."""
        needed: set[bytes] = set()
        problems = []
        for f in manifest.get("files", []):
            lid = f.get("list")
            if not lid:
                continue
            needed.add(bytes.fromhex(lid))
            try:
                needed.update(self.content_list(lid))
            except (IntegrityError, OSError) as exc:
                problems.append(f"{f['path']}: {exc}")
        return needed, problems

    def referenced_files(self, snapshot_id: str) -> set[str]:
        """Relative paths (``data/xx/<pack>``, ``index/<name>``) that ``snapshot_id`` needs.

        The snapshot's own manifest (``snapshots/<id>``) is not included: replication uploads
        it last, after everything listed here. Two vectorised index searches (the content
        lists, then every chunk they name, straight from the lists' bytes) instead of one
        scalar search per chunk: a sync asks this before it sends anything (issue 13).
        """
        manifest = self.read_snapshot(snapshot_id)
        damaged = f"snapshot {snapshot_id[:12]} is damaged"
        entries: list[tuple[str, bytes]] = []
        for f in manifest.get("files", []):
            lid = f.get("list")
            if not lid:
                continue
            try:
                entries.append((str(f.get("path")), bytes.fromhex(lid)))
            except (TypeError, ValueError):
                raise IntegrityError(f"{damaged}: {f.get('path')}: content list id "
                                     f"{str(lid)[:70]!r} is not an id") from None
        packs: set[str] = set()
        chunks = bytearray()  # every content list's ids, concatenated
        for (path, cid), loc in zip(entries, self.index.get_many([c for _, c in entries]),
                                    strict=True):
            if loc is None:
                raise IntegrityError(f"{damaged}: {path}: chunk {cid.hex()[:16]} is not in "
                                     "any index")
            packs.add(loc.pack)
            try:
                raw = self.read_block(loc.pack, loc.block_off, loc.block_len)
            except (IntegrityError, OSError) as exc:
                raise IntegrityError(f"{damaged}: {path}: {exc}") from None
            data = memoryview(raw)[loc.inner_off:loc.inner_off + loc.length]
            if len(data) != loc.length or self.sealer.chunk_id(data) != cid:
                raise IntegrityError(f"{damaged}: {path}: chunk {cid.hex()[:16]} in pack "
                                     f"{loc.pack[:12]} does not match its hash")
            if len(data) % ID_LEN:
                raise IntegrityError(f"{damaged}: {path}: content list of {len(data)} bytes "
                                     "is not a list of ids")
            chunks += data
        found, lacking = self.index.packs_of(chunks, ID_LEN)
        if lacking >= 0:
            cid = bytes(chunks[lacking * ID_LEN:(lacking + 1) * ID_LEN])
            raise IntegrityError(f"snapshot {snapshot_id[:12]} needs chunk "
                                 f"{cid.hex()[:16]} which no index lists")
        packs |= found
        pack_index = self.index_of_pack()
        out = {self.pack_relpath(p) for p in packs}
        out.update(f"index/{pack_index[p]}" for p in packs if p in pack_index)
        return out

    def stats(self, chunks: int | None = None) -> contracts.RepositoryStats:
        """Size, file and pack counts (a walk of the repository) and the chunk count (from the
        index; ``chunks``: a count the caller knows is current, so the index is not loaded)."""
        size = 0
        files = 0
        for root, _dirs, names in os.walk(self.path):
            for n in names:
                try:
                    size += os.stat(os.path.join(root, n)).st_size
                    files += 1
                except FileNotFoundError:
                    pass
        packs = self.list_pack_files()
        return {"path": str(self.path), "id": self.id, "size_bytes": size, "files": files,
                "packs": len(packs), "index_files": len(self.list_index_files()),
                "snapshots": len(self.snapshot_ids()),
                "chunks": len(self.index) if chunks is None or self._index is not None
                else chunks,
                "encrypted": self.keys.encrypted, "key_id": self.keys.fingerprint}

    def iter_file_data(self, entry: dict[str, Any], pool: ThreadPoolExecutor | None = None,
                       ahead: int = 4,
                       resolved: tuple[list[bytes], list[Loc]] | None = None,
                       blocks: BlockFetcher | None = None,
                       ) -> Iterator[bytes | memoryview]:
        """A file's content chunk by chunk; with ``pool``, the next ``ahead`` blocks are read
        and decoded on the pool while the caller writes (zstd and AES release the GIL).
        ``resolved``: the file's chunk ids and locations from :meth:`resolve_files`;
        ``blocks``: the fetcher of a batch of files this one belongs to (it replaces ``pool``:
        the batch's blocks are read ahead across its files, each once)."""
        check = not self.keys.encrypted
        if blocks is not None and resolved is not None:
            yield from self._iter_fetched(resolved, blocks, check)
            return
        if resolved is None:
            ids = self.content_list(entry.get("list"))
            if pool is None or len(ids) < 2:
                for cid in ids:
                    yield self.read_chunk(cid, check=check)
                return
            locs = []
            for loc, cid in zip(self.index.get_many(ids), ids, strict=True):
                if loc is None:
                    raise IntegrityError(f"chunk {cid.hex()[:16]} is not in any index")
                locs.append(loc)
        else:
            ids, locs = resolved
        if pool is None or len(locs) < 2:
            pool = None
        order: list[tuple[str, int, int]] = []
        pos: dict[tuple[str, int, int], int] = {}
        for loc in locs:
            key = (loc.pack, loc.block_off, loc.block_len)
            if key not in pos:
                pos[key] = len(order)
                order.append(key)
        futures: dict[tuple[str, int, int], Any] = {}
        submitted = 0

        def pieces() -> Iterator[Piece]:
            nonlocal submitted
            for cid, loc in zip(ids, locs, strict=True):
                key = (loc.pack, loc.block_off, loc.block_len)
                if pool is None:
                    raw = self.read_block(*key)
                else:
                    limit = min(len(order), pos[key] + 1 + ahead)
                    while submitted < limit:
                        futures[order[submitted]] = pool.submit(self.read_block,
                                                                *order[submitted])
                        submitted += 1
                    raw = futures[key].result()
                yield key, raw, loc.inner_off, self._chunk_end(cid, loc, raw, check)

        try:
            yield from _runs(pieces())
        finally:
            for f in futures.values():
                f.cancel()


    def _chunk_end(self, cid: bytes, loc: Loc, raw: bytes, check: bool) -> int:
        """Where chunk ``cid`` ends in its decoded block ``raw``, once it is known to lie
        inside it and (``check``) to match its id."""
        end = loc.inner_off + loc.length
        if end > len(raw):
            raise IntegrityError(f"chunk {cid.hex()[:16]} lies outside its block in "
                                 f"pack {loc.pack[:12]}")
        if check and self.sealer.chunk_id(memoryview(raw)[loc.inner_off:end]) != cid:
            raise IntegrityError(f"chunk {cid.hex()[:16]} in pack {loc.pack[:12]} does "
                                 "not match its hash")
        return end

    def _iter_fetched(self, resolved: tuple[list[bytes], list[Loc]], blocks: BlockFetcher,
                      check: bool) -> Iterator[memoryview]:
        ids, locs = resolved

        def pieces() -> Iterator[Piece]:
            prev_key, prev_raw, prev_end = None, b"", -1
            for cid, loc in zip(ids, locs, strict=True):
                key = (loc.pack, loc.block_off, loc.block_len)
                # the next chunk of the same run: its block is in hand, not asked for again
                raw = prev_raw if key == prev_key and loc.inner_off == prev_end \
                    else blocks.get(key)
                end = self._chunk_end(cid, loc, raw, check)
                prev_key, prev_raw, prev_end = key, raw, end
                yield key, raw, loc.inner_off, end

        yield from _runs(pieces())


# A chunk's place in its decoded block: the block's key, its bytes, the chunk's start and end.
Piece = tuple[tuple[str, int, int], bytes, int, int]


def _runs(pieces: Iterable[Piece]) -> Iterator[memoryview]:
    """Chunks stored one after another in the same block leave as one piece."""
    run_raw: bytes | None = None
    run_key = None
    run_start = run_end = 0
    for key, raw, start, end in pieces:
        if key == run_key and start == run_end:
            run_end = end
            continue
        if run_raw is not None:
            yield memoryview(run_raw)[run_start:run_end]
        run_raw, run_key, run_start, run_end = raw, key, start, end
    if run_raw is not None:
        yield memoryview(run_raw)[run_start:run_end]


class BlockFetcher:
    """The decoded blocks a batch of files needs, in their order of first use: the next
    ``ahead`` of them are read and decoded on ``pool`` (zstd and AES release the GIL) while
    the caller writes, each block once for the whole batch (neighbouring small files share
    blocks); blocks in the repository's cache are taken from it. Without ``pool`` the blocks
    are read when asked for. A block asked for again after the fetcher moved on is read
    again (through the cache). Not thread-safe: one batch, one thread."""

    def __init__(self, repo: Repository, locs_of_files: Iterable[list[Loc]],
                 pool: ThreadPoolExecutor | None, ahead: int = 8) -> None:
        pos: dict[tuple[str, int, int], int] = {}
        for locs in locs_of_files:
            for loc in locs:
                pos.setdefault((loc.pack, loc.block_off, loc.block_len), len(pos))
        self._repo = repo
        self._pool = pool
        self._ahead = ahead
        self._pos = pos
        self._keys = list(pos)
        self._next = 0   # first block not yet asked for
        self._low = 0    # first block still held
        self._held: dict[tuple[str, int, int], Any] = {}  # bytes or a Future of them

    def get(self, key: tuple[str, int, int]) -> bytes:
        i = self._pos.get(key)
        if i is None or self._pool is None:
            return self._repo.read_block(*key)
        keys, held = self._keys, self._held
        limit = min(len(keys), i + 1 + self._ahead)
        while self._next < limit:
            k = keys[self._next]
            self._next += 1
            hit = self._repo.cached_block(k)
            held[k] = hit if hit is not None else self._pool.submit(self._repo.read_block, *k)
        while self._low < i - 1:  # keep the previous block: a file may end in it
            held.pop(keys[self._low], None)
            self._low += 1
        got = held.get(key)
        if got is None:
            return self._repo.read_block(*key)
        if not isinstance(got, bytes):
            got = held[key] = got.result()
        return cast(bytes, got)

    def close(self) -> None:
        for got in self._held.values():
            if not isinstance(got, bytes):
                got.cancel()
        self._held.clear()


LEGACY_MANIFEST_HELP = (
    "it carries no authentication code: either it was written before lightkeeper "
    "authenticated the manifests of unencrypted repositories, or someone without the key "
    "forged it. If this repository predates that change and only lightkeeper writes it, run "
    "'lightkeeper backup key sign-snapshots' once to authenticate the existing snapshots")


def _files_json(files: list[dict[str, Any]]) -> bytes:
    """The file list as compact JSON: orjson (several times faster on a list of 10,000s of
    entries, which every backup writes), or the standard library for what orjson refuses (a
    path that is not valid UTF-8 carries lone surrogates)."""
    try:
        return orjson.dumps(files)
    except TypeError:
        return json.dumps(files, separators=(",", ":")).encode()


def _files_from_json(raw: bytes) -> Any:
    """Parse a file list written by either encoder (see :func:`_files_json`)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)  # lone surrogates (escaped), or a real error: ValueError


def _read_head(path: Path) -> bytes:
    """The length prefix and header block of an encrypted manifest (the file list left unread);
    a file too short for its header comes back whole, for decode_manifest to refuse."""
    with open(path, "rb") as fh:
        prefix = fh.read(4)
        if len(prefix) < 4:
            return prefix
        (hlen,) = struct.unpack("<I", prefix)
        return prefix + fh.read(min(hlen, os.fstat(fh.fileno()).st_size - 4))


def encode_manifest(sealer: Sealer, level: int, manifest: dict[str, Any]) -> bytes:
    header = {k: v for k, v in manifest.items() if k not in ("files", "id")}
    head = encode_block(sealer, json.dumps(header, separators=(",", ":"),
                                           sort_keys=True).encode(), level, AAD_SNAPSHOT)
    body = encode_block(sealer, _files_json(manifest.get("files", [])),
                        level, AAD_SNAPSHOT_FILES)
    return sealer.tag(struct.pack("<I", len(head)) + head + body, AAD_MANIFEST)


def decode_manifest(sealer: Sealer, data: bytes, sid: str, files: bool = True,
                    legacy_ok: bool = False) -> dict[str, Any]:
    """A manifest's header (and file list); raises IntegrityError for anything that is not
    a whole, authentic manifest."""
    try:
        view = sealer.untag(data, AAD_MANIFEST, f"snapshots/{sid[:12]}")
    except Unauthenticated:
        if not legacy_ok:
            raise Unauthenticated(f"snapshot {sid[:12]} refused: {LEGACY_MANIFEST_HELP}") \
                from None
        view = memoryview(data)
    if len(view) < 4:
        raise IntegrityError(f"snapshots/{sid[:12]} is truncated")
    (hlen,) = struct.unpack_from("<I", view, 0)
    if 4 + hlen > len(view):
        raise IntegrityError(f"snapshots/{sid[:12]} is truncated")
    try:
        doc = json.loads(decode_block(sealer, view[4:4 + hlen], AAD_SNAPSHOT))
        if files:
            doc_files = _files_from_json(decode_block(sealer, view[4 + hlen:],
                                                      AAD_SNAPSHOT_FILES))
    except (ValueError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise IntegrityError(f"snapshots/{sid[:12]} is malformed: {exc}") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"snapshots/{sid[:12]} is malformed: header is not an object")
    if files:
        if not isinstance(doc_files, list) or not all(
                isinstance(f, dict) and isinstance(f.get("path"), str) for f in doc_files):
            raise IntegrityError(f"snapshots/{sid[:12]} is malformed: bad file list")
        doc["files"] = doc_files
    doc["id"] = sid
    return doc


def decode_content_list(raw: bytes) -> list[bytes]:
    """The chunk ids of a content list (a tree chunk: ids concatenated)."""
    if len(raw) % ID_LEN:
        raise IntegrityError(f"content list of {len(raw)} bytes is not a list of ids")
    return [raw[i:i + ID_LEN] for i in range(0, len(raw), ID_LEN)]


def info_from_manifest(doc: dict[str, Any]) -> SnapshotInfo:
    try:
        return _info(doc)
    except (TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"snapshots/{str(doc.get('id'))[:12]} has a malformed header: "
                             f"{exc}") from None


def _info(doc: dict[str, Any]) -> SnapshotInfo:
    return SnapshotInfo(id=doc["id"], time=float(doc.get("time", 0)),
                        host=str(doc.get("host", "")), tags=list(doc.get("tags", [])),
                        users=sorted(doc.get("users", {})), parent=doc.get("parent"),
                        # the manifest's JSON as backup/snapshot.py wrote it
                        summary=cast("contracts.SnapshotSummary", dict(doc.get("summary", {}))))


def repo_size(path: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            try:
                total += os.stat(os.path.join(root, n)).st_size
            except FileNotFoundError:
                pass
    return total


def reindex_orphans(repo: Repository) -> dict[str, Any]:
    """Index complete packs that no index lists (a run killed before its index was written,
    or a lost index file), using each pack's trailer. Needs an exclusive lock.

    Returns {"reindexed": [pack ids], "unreadable": [pack ids]}; unreadable orphans are left
    for prune (they hold nothing any index or snapshot can name).
    """

    indexed = repo.indexed_packs()
    on_disk = repo.list_pack_files()
    recovered: list[PackInfo] = []
    bad = []
    for pid, size in sorted(on_disk.items()):
        if pid in indexed:
            continue
        try:
            data = repo.pack_path(pid).read_bytes()
            if _hash_name(data) != pid:
                raise IntegrityError("pack does not match its name")
            entries = read_trailer(repo.sealer, data)
        except Exception as exc:  # noqa: BLE001 - any damage means "not recoverable"
            log.warning("pack.orphan_unreadable", pack=pid[:12], error=str(exc))
            bad.append(pid)
            continue
        recovered.append(PackInfo(pid, size, entries))
    if recovered:
        repo.write_index(recovered)
        log.info("pack.orphans_reindexed", packs=len(recovered))
    return {"reindexed": [p.pack for p in recovered], "unreadable": bad}
