"""Pack files: chunks grouped into compressed, sealed blocks, many blocks per pack.

A pack is ``block* trailer u32`` where every block is ``seal(zstd(chunk || chunk || ...))`` and
the trailer is ``seal(zstd(entries))`` followed by its length. Chunks that are written together
(usually consecutive pieces of one file) share a block, so zstd sees more context than one small
chunk and the per-object overhead (nonce, tag, frame header) is paid once per block. Blocks are
compressed and sealed on a thread pool (zstandard and AES-GCM release the GIL); the writer keeps
their order. A pack gets its final name (the BLAKE3 hash of its bytes) only when complete and
fsynced, so a crash leaves at most a temp file.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import blake3
import zstandard

from lightkeeper.backup import index as index_mod
from lightkeeper.backup.crypto import IntegrityError, Sealer
from lightkeeper.backup.fsutil import fsync_dir, tmp_name

AAD_BLOCK = b"lk-block"
AAD_TRAILER = b"lk-trailer"

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    comp = getattr(_local, "comp", None)
    if comp is None or _local.level != level:
        comp = zstandard.ZstdCompressor(level=level)
        _local.comp, _local.level = comp, level
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "dec", None)
    if d is None:
        d = _local.dec = zstandard.ZstdDecompressor()
    return d


def encode_block(sealer: Sealer, raw: bytes, level: int, aad: bytes = AAD_BLOCK) -> bytes:
    return sealer.seal(_compressor(level).compress(raw), aad)


# Larger than any block, index or manifest we write; a frame claiming more is refused before
# zstd allocates its output (an unauthenticated object must not make us allocate gigabytes).
MAX_DECODED = 1 << 30


def decode_block(sealer: Sealer, data: bytes | memoryview, aad: bytes = AAD_BLOCK) -> bytes:
    plain = sealer.open(data, aad)
    try:
        claimed = zstandard.frame_content_size(plain)
        if claimed > MAX_DECODED:
            raise IntegrityError(f"block claims {claimed} bytes decompressed (limit "
                                 f"{MAX_DECODED})")
        return _decompressor().decompress(plain, max_output_size=MAX_DECODED)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"block does not decompress: {exc}") from None


def read_trailer(sealer: Sealer, data: bytes) -> list[tuple[bytes, int, int, int, int]]:
    (n,) = struct.unpack_from("<I", data, len(data) - 4)
    body = data[len(data) - 4 - n:len(data) - 4]
    return index_mod.decode_trailer(decode_block(sealer, body, AAD_TRAILER))


class PackWriter:
    """Accepts chunks, writes packs under ``data_dir``; ``completed`` lists finished packs."""
    def __init__(self, data_dir: Path, sealer: Sealer, pool: ThreadPoolExecutor, *,
                 level: int = 3, block_size: int = 256 * 1024, pack_size: int = 8 << 20,
                 on_pack: Callable[[index_mod.PackInfo], None] | None = None,
                 workers: int = 2) -> None:
        self.data_dir = Path(data_dir)
        self.sealer = sealer
        self.pool = pool
        self.level = level
        self.block_size = block_size
        self.pack_size = pack_size
        self.on_pack = on_pack
        self.max_inflight = max(2, 2 * workers)  # ``pool``'s size: enough to keep it busy
        self.pending: dict[bytes, None] = {}           # chunk ids accepted, not yet in a pack
        self.completed: list[index_mod.PackInfo] = []
        self.bytes_written = 0
        self._buf = bytearray()
        self._buf_entries: list[tuple[bytes, int, int]] = []
        self._queue: deque[tuple[Future[bytes], list[tuple[bytes, int, int]]]] = deque()
        self._fd: int | None = None
        self._tmp: Path | None = None
        self._hash = blake3.blake3()
        self._size = 0
        self._entries: list[tuple[bytes, int, int, int, int]] = []

    # -- adding -------------------------------------------------------------------------
    def add(self, cid: bytes, data: bytes | memoryview) -> None:
        self._buf_entries.append((cid, len(self._buf), len(data)))
        self._buf += data
        self.pending[cid] = None
        if len(self._buf) >= self.block_size:
            self._submit()

    def _submit(self) -> None:
        if not self._buf_entries:
            return
        raw = bytes(self._buf)
        fut = self.pool.submit(encode_block, self.sealer, raw, self.level)
        self._queue.append((fut, self._buf_entries))
        self._buf = bytearray()
        self._buf_entries = []
        while len(self._queue) > self.max_inflight:
            self._write_next()

    def _write_next(self) -> None:
        fut, entries = self._queue.popleft()
        block = fut.result()
        if self._fd is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._tmp = tmp_name(self.data_dir)
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._hash = blake3.blake3()
            self._size = 0
            self._entries = []
        self._write(block)
        for cid, inner, length in entries:
            self._entries.append((cid, self._size - len(block), len(block), inner, length))
        if self._size >= self.pack_size:
            self._finish_pack()

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._hash.update(data)
        self._size += len(data)
        self.bytes_written += len(data)

    def _finish_pack(self) -> None:
        assert self._fd is not None and self._tmp is not None
        trailer = encode_block(self.sealer, index_mod.encode_trailer(self._entries), self.level,
                               AAD_TRAILER)
        self._write(trailer + struct.pack("<I", len(trailer)))
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        pack_id = self._hash.hexdigest()
        final_dir = self.data_dir / pack_id[:2]
        final_dir.mkdir(exist_ok=True)
        os.replace(self._tmp, final_dir / pack_id)
        fsync_dir(final_dir)
        self._tmp = None
        info = index_mod.PackInfo(pack_id, self._size, self._entries)
        self.completed.append(info)
        for e in self._entries:
            self.pending.pop(e[0], None)
        if self.on_pack is not None:
            self.on_pack(info)

    # -- finishing ----------------------------------------------------------------------
    def flush(self) -> list[index_mod.PackInfo]:
        """Write everything accepted so far into complete packs; return and clear them."""
        self._submit()
        while self._queue:
            self._write_next()
        if self._fd is not None:
            self._finish_pack()
        done, self.completed = self.completed, []
        return done

    def take_completed(self) -> list[index_mod.PackInfo]:
        done, self.completed = self.completed, []
        return done

    def abort(self) -> None:
        """Drop unfinished work and the temp pack (after an error or a cancel)."""
        for fut, _ in self._queue:
            fut.cancel()
        self._queue.clear()
        self._buf = bytearray()
        self._buf_entries = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None
