"""Verify a repository: structure always, data with ``full`` or a ``sample_pct`` of packs.

Structure: every index file decrypts, every indexed pack exists with its recorded size, every
snapshot manifest decrypts, and every chunk a snapshot names (its content lists and their
chunks) is in an index and in a pack that is present and whole. Data: packs are read, their
bytes hashed against their names, every block decrypted (authenticated) and decompressed and
every chunk hashed against its id. Problems are mapped back to the snapshots and files they
affect, so an operator knows what is lost and which snapshots still restore.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import blake3

from lightkeeper.backup.crypto import IntegrityError
from lightkeeper.backup.lock import RepoLock
from lightkeeper.backup.packs import AAD_BLOCK, decode_block
from lightkeeper.backup.priority import lowered
from lightkeeper.backup.repository import ID_LEN, Repository
from lightkeeper.contracts.backup import AffectedSnapshot, VerifyReport
from lightkeeper.logs import get_logger
from lightkeeper.progress import JobContext, LocalContext

log = get_logger("backup.verify")


def _check_pack(repo: Repository, pack: str, entries: list[tuple[bytes, Any]]) -> tuple[
        set[bytes], list[str], int]:
    """Read one pack; returns (bad chunk ids, problems, bytes read)."""
    try:
        data = repo.pack_path(pack).read_bytes()
    except OSError as exc:
        return {cid for cid, _ in entries}, [f"pack {pack[:12]}: cannot read: {exc}"], 0
    problems = []
    if blake3.blake3(data).hexdigest() != pack:
        problems.append(f"pack {pack[:12]}: content does not match its name")
    bad: set[bytes] = set()
    blocks: dict[tuple[int, int], list[tuple[bytes, Any]]] = defaultdict(list)
    for cid, loc in entries:
        blocks[(loc.block_off, loc.block_len)].append((cid, loc))
    for (off, length), items in blocks.items():
        raw = None
        if off + length <= len(data):
            try:
                raw = decode_block(repo.sealer, memoryview(data)[off:off + length], AAD_BLOCK)
            except IntegrityError as exc:
                problems.append(f"pack {pack[:12]} block at {off}: {exc}")
        else:
            problems.append(f"pack {pack[:12]} block at {off}: beyond the end of the pack "
                            "(truncated)")
        for cid, loc in items:
            if raw is None:
                bad.add(cid)
                continue
            chunk = raw[loc.inner_off:loc.inner_off + loc.length]
            if len(chunk) != loc.length or repo.sealer.chunk_id(chunk) != cid:
                bad.add(cid)
                problems.append(f"pack {pack[:12]}: chunk {cid.hex()[:16]} does not match "
                                "its hash")
    return bad, problems, len(data)


def verify(repo: Repository, snapshot_id: str | None = None, full: bool = False,
           sample_pct: float | None = None, ctx: JobContext | None = None,
           job_id: str = "", low_priority: bool = True, seed: int | None = None
           ) -> VerifyReport:
    with lowered(low_priority):
        return _verify(repo, snapshot_id, full, sample_pct, ctx, job_id, seed)


def _verify(repo: Repository, snapshot_id: str | None, full: bool,
            sample_pct: float | None, ctx: JobContext | None, job_id: str,
            seed: int | None) -> VerifyReport:
    ctx = ctx or LocalContext()
    started = time.time()
    problems: list[str] = []
    with RepoLock(repo.path, exclusive=False, purpose="verify", job_id=job_id):
        ctx.progress(phase="index")
        for name, err in repo.load_index():
            problems.append(f"index {name[:12]}: unreadable: {err}")
        index = repo.index
        indexed = repo.indexed_packs()
        on_disk = repo.list_pack_files()
        bad_packs: set[str] = set()
        for pack, size in sorted(indexed.items()):
            actual = on_disk.get(pack)
            if actual is None:
                problems.append(f"pack {pack[:12]}: missing ({repo.pack_relpath(pack)})")
                bad_packs.add(pack)
            elif actual != size:
                problems.append(f"pack {pack[:12]}: size {actual}, expected {size} (truncated "
                                "or damaged)")
                bad_packs.add(pack)
        orphans = sorted(set(on_disk) - set(indexed))
        # snapshots
        ids = repo.snapshot_ids()
        if snapshot_id:
            ids = [repo.resolve_snapshot(snapshot_id)]
        manifests = {}
        unreadable = []
        for sid in ids:
            try:
                manifests[sid] = repo.read_snapshot(sid)
            except (IntegrityError, OSError, ValueError) as exc:
                problems.append(f"snapshot {sid[:8]}: unreadable: {exc}")
                unreadable.append(sid)
        # data
        by_pack: dict[str, list[tuple[bytes, Any]]] | None = None
        bad_chunks: set[bytes] = set()
        if bad_packs:
            by_pack = repo.pack_entries()
            bad_chunks = {
                cid for pack in bad_packs for cid, loc in by_pack.get(pack, [])
                if index[cid].pack == pack
                and loc.block_off + loc.block_len > on_disk.get(pack, 0)}
        bytes_read = 0
        packs_checked = 0
        wanted_packs: set[str] = set()
        if snapshot_id:
            for m in manifests.values():
                for f in m.get("files", []):
                    if f.get("list"):
                        loc = index.get(bytes.fromhex(f["list"]))
                        if loc:
                            wanted_packs.add(loc.pack)
        if full or sample_pct:
            by_pack = by_pack if by_pack is not None else repo.pack_entries()
            packs = sorted(p for p in by_pack if p in on_disk)
            if snapshot_id:
                needed = set()
                for m in manifests.values():
                    got = list(_chunks_of(repo, m, set())[0])
                    needed |= {loc.pack for loc in index.get_many(got) if loc is not None}
                packs = [p for p in packs if p in needed]
            if sample_pct and not full:
                rng = random.Random(seed)
                k = max(1, round(len(packs) * min(100.0, sample_pct) / 100.0)) if packs else 0
                packs = sorted(rng.sample(packs, k))
            total_bytes = sum(on_disk[p] for p in packs)
            ctx.progress(phase="read data", files_done=0, files_total=len(packs), bytes_done=0,
                         bytes_total=total_bytes)
            with ThreadPoolExecutor(2, thread_name_prefix="verify") as pool:
                futures = [(p, pool.submit(_check_pack, repo, p, by_pack[p])) for p in packs]
                for p, fut in futures:
                    ctx.check_cancelled()
                    bad, probs, n = fut.result()
                    bad_chunks |= bad
                    problems += probs
                    bytes_read += n
                    packs_checked += 1
                    ctx.progress(phase="read data", files_done=packs_checked,
                                 bytes_done=bytes_read, current=p[:12])
        # map damage to snapshots and files
        ctx.progress(phase="snapshots")
        affected: list[AffectedSnapshot] = []
        ok_snaps: list[str] = []
        memo: dict[bytes, list[bytes]] = {}
        for sid, m in manifests.items():
            ctx.check_cancelled()
            _, files = _chunks_of(repo, m, bad_chunks, memo)
            if files:
                affected.append({"snapshot": sid, "short_id": sid[:8], "time": m.get("time"),
                                 "files": sorted(files)})
            else:
                ok_snaps.append(sid)
    for a in affected:
        problems.append(f"snapshot {a['short_id']}: {len(a['files'])} file(s) damaged, e.g. "
                        f"{a['files'][0]}")
    ok = not problems
    out: VerifyReport = {
        "ok": ok, "mode": "full" if full else (f"sample {sample_pct:g}%" if sample_pct
                                               else "structure"),
        "snapshots_checked": len(manifests) + len(unreadable),
        "snapshots_ok": sorted(ok_snaps), "snapshots_unreadable": unreadable,
        "affected": affected, "packs_indexed": len(indexed), "packs_checked": packs_checked,
        "unindexed_packs": len(orphans), "bytes_read": bytes_read,
        "problems": problems[:200], "problem_count": len(problems),
        "duration_s": round(time.time() - started, 3),
    }
    if orphans:
        out["note"] = (f"{len(orphans)} pack(s) not in any index (left by an interrupted run "
                       "or a lost index); the next prune re-indexes them from their trailers")
    if not ok:
        out["state"] = "problems"
    log.info("verify.finished", ok=ok, mode=out["mode"], problems=len(problems),
             affected_snapshots=len(affected))
    return out


def _chunks_of(repo: Repository, manifest: dict[str, Any], bad: set[bytes],
               lists: dict[bytes, list[bytes]] | None = None) -> tuple[set[bytes], set[str]]:
    """(every chunk the manifest needs, paths of files touching a bad or missing chunk).
    ``lists`` memoizes content lists shared by many snapshots. The index is searched once for
    all the manifest's content lists and once for all the chunks they name (a scalar search
    per file and per chunk was most of a full verify of many small files)."""
    index = repo.index
    lists = {} if lists is None else lists
    needed: set[bytes] = set()
    damaged: set[str] = set()
    files = [(f["path"], bytes.fromhex(f["list"])) for f in manifest.get("files", [])
             if f.get("list")]
    to_read = list({lcid for _, lcid in files if lcid not in lists and lcid not in bad})
    for lcid, loc in zip(to_read, index.get_many(to_read), strict=True):
        if loc is None:
            continue  # not in the index: its files are damaged below
        try:
            raw = bytes(repo.read_chunk(lcid, loc=loc))
        except (IntegrityError, OSError):
            bad.add(lcid)
            continue
        lists[lcid] = [raw[i:i + ID_LEN] for i in range(0, len(raw), ID_LEN)]
    listed: list[tuple[str, list[bytes]]] = []
    for path, lcid in files:
        needed.add(lcid)
        ids = lists.get(lcid)
        if ids is None or lcid in bad:
            damaged.add(path)  # unreadable, bad or not in the index
            continue
        listed.append((path, ids))
    distinct = list({c for _, ids in listed for c in ids})
    needed.update(distinct)
    missing = {c for c, found in zip(distinct, index.contains_many(distinct), strict=True)
               if not found}
    if missing or bad:
        for path, ids in listed:
            if any(c in bad or c in missing for c in ids):
                damaged.add(path)
    return needed, damaged
