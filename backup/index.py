"""Index files: which chunk lives in which pack, in which block, at which offset.

Binary payload (then zstd-compressed and sealed like every repository object)::

    b"LKIX" u16 version
    u32 npacks, npacks x (32-byte pack id, u64 pack size)
    u32 nentries, nentries x ENTRY

A pack's trailer holds the same entries (without the pack number), so a lost index can be
rebuilt from the packs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

MAGIC = b"LKIX"
VERSION = 1
# chunk id, pack number, block offset, block length, offset inside the block, chunk length
ENTRY = struct.Struct("<32sIIIII")
TRAILER_ENTRY = struct.Struct("<32sIIII")
PACK = struct.Struct("<32sQ")


class IndexFormatError(ValueError):
    pass


class Loc(NamedTuple):
    pack: str        # pack id (hex)
    block_off: int
    block_len: int
    inner_off: int
    length: int


@dataclass
class PackInfo:
    pack: str
    size: int
    entries: list[tuple[bytes, int, int, int, int]]  # id, block_off, block_len, inner, len


def encode(packs: list[PackInfo]) -> bytes:
    out = [MAGIC, struct.pack("<HI", VERSION, len(packs))]
    for p in packs:
        out.append(PACK.pack(bytes.fromhex(p.pack), p.size))
    total = sum(len(p.entries) for p in packs)
    out.append(struct.pack("<I", total))
    for no, p in enumerate(packs):
        for cid, boff, blen, inner, length in p.entries:
            out.append(ENTRY.pack(cid, no, boff, blen, inner, length))
    return b"".join(out)


def decode(data: bytes) -> list[PackInfo]:
    if data[:4] != MAGIC:
        raise IndexFormatError("not an index file")
    try:
        version, npacks = struct.unpack_from("<HI", data, 4)
        if version != VERSION:
            raise IndexFormatError(f"index format {version} not supported")
        pos = 10
        packs = []
        for pid, size in PACK.iter_unpack(data[pos:pos + PACK.size * npacks]):
            packs.append(PackInfo(pid.hex(), size, []))
        pos += PACK.size * npacks
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        body = data[pos:pos + ENTRY.size * n]
        if len(body) != ENTRY.size * n:
            raise IndexFormatError("index file is truncated")
        for cid, no, boff, blen, inner, length in ENTRY.iter_unpack(body):
            packs[no].entries.append((cid, boff, blen, inner, length))
    except (struct.error, IndexError):
        raise IndexFormatError("index file is malformed") from None
    return packs


ENTRY_DTYPE = [("id", "u1", (32,)), ("pack", "<u4"), ("boff", "<u4"), ("blen", "<u4"),
               ("inner", "<u4"), ("length", "<u4")]


def decode_arrays(data: bytes) -> tuple[list[tuple[str, int]], Any]:
    """Like :func:`decode`, without a Python object per entry: (packs as (id, size), a numpy
    structured array of the entries, fields id/pack/boff/blen/inner/length)."""
    if data[:4] != MAGIC:
        raise IndexFormatError("not an index file")
    try:
        version, npacks = struct.unpack_from("<HI", data, 4)
        if version != VERSION:
            raise IndexFormatError(f"index format {version} not supported")
        pos = 10
        body = data[pos:pos + PACK.size * npacks]
        if len(body) != PACK.size * npacks:
            raise IndexFormatError("index file is truncated")
        packs = [(pid.hex(), size) for pid, size in PACK.iter_unpack(body)]
        pos += PACK.size * npacks
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
    except struct.error:
        raise IndexFormatError("index file is malformed") from None
    if len(data) - pos < ENTRY.size * n:
        raise IndexFormatError("index file is truncated")
    entries = np.frombuffer(data, dtype=np.dtype(ENTRY_DTYPE), count=n, offset=pos)
    if n and int(entries["pack"].max()) >= npacks:
        raise IndexFormatError("index file is malformed")
    return packs, entries


def encode_trailer(entries: list[tuple[bytes, int, int, int, int]]) -> bytes:
    return b"".join(TRAILER_ENTRY.pack(*e) for e in entries)


def decode_trailer(data: bytes) -> list[tuple[bytes, int, int, int, int]]:
    return list(TRAILER_ENTRY.iter_unpack(data))
