"""Forget snapshots by policy, and prune data no remaining snapshot references.

Prune runs under an exclusive lock and is crash-safe by ordering:

1. re-index orphan packs (so nothing readable is ever treated as garbage);
2. read every snapshot and content list: the referenced set (any unreadable snapshot or
   content list aborts the prune: we could not know what it needs);
3. copy the still-referenced chunks out of mostly-unused packs into new packs;
4. write new index files covering every pack that stays, then delete the old index files;
5. delete the packs no index lists any more.

A SIGKILL between any two steps leaves a repository that verifies: at worst some chunks are
indexed twice (step 3-4) or some unreferenced packs are left unindexed (step 5), which the next
backup or prune re-indexes and removes.
"""

from __future__ import annotations

import time
from collections.abc import Set as AbstractSet
from typing import Any

from lightkeeper.backup import retention
from lightkeeper.backup.crypto import IntegrityError
from lightkeeper.backup.fsutil import require_space
from lightkeeper.backup.index import PackInfo
from lightkeeper.backup.lock import LockLost, RepoLock
from lightkeeper.backup.priority import lowered
from lightkeeper.backup.repository import ID_LEN, Repository, reindex_orphans, repo_size
from lightkeeper.contracts.backup import ForgetSummary, PrunePlan, PruneSummary
from lightkeeper.logs import get_logger
from lightkeeper.progress import JobContext, LocalContext

log = get_logger("backup.prune")

REPACK_UNUSED_FRACTION = 0.3
INDEX_ENTRIES_PER_FILE = 200_000


class PruneError(Exception):
    pass


def _sources(manifest: dict[str, Any]) -> list[str]:
    return [f"user:{u}" for u in manifest.get("users", {})] + \
        [f"db:{d}" for d in manifest.get("databases", {})]


def forget(repo: Repository, policy: retention.Policy, dry_run: bool = False,
           protected: AbstractSet[str] = frozenset(), ctx: JobContext | None = None,
           job_id: str = "") -> ForgetSummary:
    """Remove snapshot manifests the policy does not keep (data stays until prune)."""
    ctx = ctx or LocalContext()
    if policy.empty():
        raise PruneError("no retention policy given: pass at least one --keep-* option "
                         "(refusing to forget every snapshot)")
    with RepoLock(repo.path, exclusive=not dry_run, purpose="forget", job_id=job_id):
        infos = repo.snapshots()
        groups = {}
        for info in infos:
            m = repo.read_snapshot(info.id, files=False)
            groups[info.id] = retention.group_key(info, _sources(m))
        kept, removed = retention.apply(infos, policy, groups, protected)
        if not dry_run:
            for i, s in enumerate(removed):
                ctx.check_cancelled()
                repo.delete_snapshot(s.id)
                ctx.progress(phase="forget", files_done=i + 1, files_total=len(removed),
                             current=s.id[:8])
    out: ForgetSummary = {"dry_run": dry_run, "policy": policy.as_dict(), "kept": kept,
           "removed": [s.ref() for s in removed], "kept_count": len(kept),
           "removed_count": len(removed)}
    log.info("forget.finished", dry_run=dry_run, kept=len(kept), removed=len(removed))
    return out


def prune(repo: Repository, ctx: JobContext | None = None, job_id: str = "",
          low_priority: bool = True, dry_run: bool = False,
          without: frozenset[str] = frozenset()) -> PruneSummary:
    """Delete or repack the packs no snapshot uses. ``without`` (dry run only): plan as if
    these snapshots were already forgotten, so forget + prune can be shown before either runs."""
    if without and not dry_run:
        raise ValueError("prune: 'without' is only for a dry run")
    with lowered(low_priority):
        return _prune(repo, ctx, job_id, dry_run, without)


def _prune(repo: Repository, ctx: JobContext | None, job_id: str,
           dry_run: bool, without: frozenset[str] = frozenset()) -> PruneSummary:
    ctx = ctx or LocalContext()
    started = time.time()
    size_before = repo_size(repo.path)
    with RepoLock(repo.path, exclusive=True, purpose="prune", job_id=job_id) as lock:
        ctx.progress(phase="index")
        for tmp in repo.temp_files():
            tmp.unlink(missing_ok=True)
        errors = repo.load_index()
        if errors:
            raise PruneError(f"index file {errors[0][0][:12]} is unreadable ({errors[0][1]}); "
                             "run 'lightkeeper backup verify' before pruning")
        orphans = reindex_orphans(repo)
        index = repo.index
        # 2. referenced chunks
        referenced: set[bytes] = set()
        lists: set[bytes] = set()
        ids = [sid for sid in repo.snapshot_ids() if sid not in without]
        for i, sid in enumerate(ids):
            ctx.check_cancelled()
            ctx.progress(phase="snapshots", files_done=i, files_total=len(ids), current=sid[:8])
            try:
                m = repo.read_snapshot(sid)
                for f in m.get("files", []):
                    if not f.get("list"):
                        continue
                    lid = bytes.fromhex(f["list"])
                    if lid in lists:
                        continue
                    raw = bytes(repo.read_chunk(lid))
                    lists.add(lid)
                    referenced.update(raw[j:j + ID_LEN] for j in range(0, len(raw), ID_LEN))
            except (IntegrityError, OSError, ValueError) as exc:
                raise PruneError(f"snapshot {sid[:8]} cannot be read completely ({exc}); "
                                 "prune would not know what it needs. Run 'lightkeeper backup "
                                 "verify', then forget the damaged snapshot") from None
        referenced |= lists
        missing = [c for c in referenced if c not in index]
        # 3. classify packs
        # A chunk found in several packs (after an interrupted prune) is served by the pack
        # the index picked; its other copies count as unused.
        by_pack = repo.pack_entries()
        sizes = repo.indexed_packs()
        delete, repack, keep = [], [], []
        unused_in_repacked = 0
        for pack, entries in by_pack.items():
            used = sum(loc.length for cid, loc in entries
                       if cid in referenced and index[cid].pack == pack)
            total = sum(loc.length for _, loc in entries) or 1
            if used == 0:
                delete.append(pack)
            elif 1 - used / total >= REPACK_UNUSED_FRACTION:
                repack.append(pack)
                unused_in_repacked += total - used
            else:
                keep.append(pack)
        repack_bytes = sum(sizes.get(p, 0) for p in repack)
        plan: PrunePlan = {"packs_total": len(by_pack), "packs_delete": len(delete),
                "packs_repack": len(repack), "packs_keep": len(keep),
                "bytes_delete": sum(sizes.get(p, 0) for p in delete),
                "bytes_repack": repack_bytes, "missing_chunks": len(missing),
                # what deleting and repacking frees (chunk bytes; pack headers aside)
                "bytes_free_estimate": sum(sizes.get(p, 0) for p in delete)
                + unused_in_repacked,
                "orphans_reindexed": len(orphans["reindexed"])}
        if dry_run:
            return {**plan, "dry_run": True}
        if not delete and not repack and len(repo.list_index_files()) <= 1:
            return {**plan, "packs_written": 0, "index_files": len(repo.list_index_files()),
                    "bytes_freed": 0, "repository_size": size_before,
                    "duration_s": round(time.time() - started, 3)}
        if repack:
            require_space(repo.path, repack_bytes + (16 << 20), "prune (repacking)")
        # copy referenced chunks out of packs being repacked
        ctx.progress(phase="repack", files_done=0, files_total=len(repack))
        data_w = repo.pack_writer()
        tree_w = repo.pack_writer()
        try:
            for i, pack in enumerate(repack):
                ctx.check_cancelled()
                for cid, _loc in sorted(by_pack[pack], key=lambda e: (e[1].block_off,
                                                                       e[1].inner_off)):
                    if cid in referenced and index[cid].pack == pack:
                        (tree_w if cid in lists else data_w).add(cid, repo.read_chunk(cid))
                ctx.progress(phase="repack", files_done=i + 1, current=pack[:12])
            new_packs = data_w.flush() + tree_w.flush()
        except BaseException:
            data_w.abort()
            tree_w.abort()
            raise
        # 4. new index for every pack that stays, then drop the old index files
        ctx.progress(phase="index")
        old_index_files = repo.list_index_files()
        stay: list[PackInfo] = []
        for pack in keep:
            stay.append(PackInfo(pack, sizes[pack],
                                 [(cid, loc.block_off, loc.block_len, loc.inner_off, loc.length)
                                  for cid, loc in by_pack[pack]]))
        stay += new_packs
        new_index_files = set()
        batch: list[PackInfo] = []
        count = 0
        for p in stay:
            batch.append(p)
            count += len(p.entries)
            if count >= INDEX_ENTRIES_PER_FILE:
                new_index_files.add(repo.write_index(batch))
                batch, count = [], 0
        if batch:
            new_index_files.add(repo.write_index(batch))
        ctx.check_cancelled()
        try:
            lock.check()  # nothing is deleted by a prune that no longer holds the repository
        except LockLost as exc:
            raise PruneError(f"{exc}; nothing was deleted (the packs and index files this "
                             "prune wrote are kept, as after an interrupted prune): run it "
                             "again") from None
        for name in old_index_files:
            if name not in new_index_files:
                (repo.path / "index" / name).unlink(missing_ok=True)
        # 5. delete packs no index lists any more
        ctx.progress(phase="delete", files_done=0, files_total=len(delete) + len(repack))
        for i, pack in enumerate(delete + repack):
            repo.pack_path(pack).unlink(missing_ok=True)
            ctx.progress(phase="delete", files_done=i + 1, current=pack[:12])
        repo.load_index()
    size_after = repo_size(repo.path)
    out: PruneSummary = {**plan, "packs_written": len(new_packs), "index_files": len(new_index_files),
           "bytes_freed": size_before - size_after, "repository_size": size_after,
           "duration_s": round(time.time() - started, 3)}
    if missing:
        out["state"] = "problems"
        out["problem"] = (f"{len(missing)} referenced chunk(s) are in no index: run "
                          "'lightkeeper backup verify' to see the affected snapshots")
    log.info("prune.finished", **{k: v for k, v in out.items() if isinstance(v, int)})
    return out
