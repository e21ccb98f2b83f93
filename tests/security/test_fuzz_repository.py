"""Fuzz the decoders that read what others may have written (the repository on disk, a zone's
copy of it, a zone's SFTP listing): whatever the bytes, each raises only its module's own
error type (IntegrityError, IndexFormatError) or drops the entry, never anything else.
Bounded (a few hundred examples each) so the module runs in well under 30 s."""

from __future__ import annotations

import json
import struct

import paramiko
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightkeeper.backup import index as index_mod
from lightkeeper.backup.crypto import IntegrityError, Sealer, new_keys
from lightkeeper.backup.packs import decode_block
from lightkeeper.backup.repository import (
    AAD_INDEX,
    AAD_MANIFEST,
    decode_content_list,
    decode_manifest,
    info_from_manifest,
)
from lightkeeper.backup.zones import remote_ops

FAST = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PLAIN = Sealer(new_keys(encrypt=False))
SEALED = Sealer(new_keys(encrypt=True))
SID = "ab" * 32

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=4),
    max_leaves=20)


def _z(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(raw)


@st.composite
def manifests(draw: st.DrawFn) -> bytes:
    """Bytes that get past the outer layers often: a length prefix, zstd frames of JSON or of
    arbitrary bytes, truncations."""
    head_raw = draw(st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                              st.binary(max_size=64)))
    body_raw = draw(st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                              st.binary(max_size=64)))
    head = _z(head_raw) if draw(st.booleans()) else head_raw
    body = _z(body_raw) if draw(st.booleans()) else body_raw
    hlen = draw(st.one_of(st.just(len(head)), st.integers(0, 2**32 - 1)))
    data = struct.pack("<I", hlen) + head + body
    cut = draw(st.integers(0, len(data)))
    return data[:cut] if draw(st.booleans()) else data


@FAST
@given(data=st.one_of(manifests(), st.binary(max_size=300)), files=st.booleans())
def test_fuzz_manifest_decoder_raises_only_integrity_error(data: bytes, files: bool) -> None:
    for sealer, blob, legacy in ((PLAIN, data, True), (PLAIN, data, False),
                                 (PLAIN, PLAIN.tag(data, AAD_MANIFEST), False),
                                 (SEALED, data, False)):
        try:
            doc = decode_manifest(sealer, blob, SID, files, legacy_ok=legacy)
        except IntegrityError:
            continue
        assert isinstance(doc, dict) and doc["id"] == SID
        try:
            info_from_manifest(doc)
        except IntegrityError:
            pass


@FAST
@given(raw=st.binary(max_size=200))
def test_fuzz_content_list_decoder_raises_only_integrity_error(raw: bytes) -> None:
    try:
        ids = decode_content_list(raw)
    except IntegrityError:
        return
    assert all(len(i) == 32 for i in ids) and b"".join(ids) == raw


@st.composite
def index_payloads(draw: st.DrawFn) -> bytes:
    npacks = draw(st.integers(0, 3))
    packs = b"".join(draw(st.binary(min_size=32, max_size=32)) + struct.pack(
        "<Q", draw(st.integers(0, 2**64 - 1))) for _ in range(npacks))
    n = draw(st.integers(0, 4))
    entries = b"".join(index_mod.ENTRY.pack(draw(st.binary(min_size=32, max_size=32)),
                                            draw(st.integers(0, 5)),
                                            *(draw(st.integers(0, 2**32 - 1))
                                              for _ in range(4))) for _ in range(n))
    data = (index_mod.MAGIC + struct.pack("<HI", draw(st.sampled_from([1, 1, 2])),
                                          draw(st.one_of(st.just(npacks),
                                                         st.integers(0, 2**32 - 1))))
            + packs + struct.pack("<I", draw(st.one_of(st.just(n), st.integers(0, 2**32 - 1))))
            + entries)
    return data[:draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


@FAST
@given(data=st.one_of(index_payloads(), st.binary(max_size=200)))
def test_fuzz_index_decoder_raises_only_index_format_error(data: bytes) -> None:
    try:
        packs = index_mod.decode(data)
    except index_mod.IndexFormatError:
        return
    for p in packs:
        assert len(p.pack) == 64
    # the whole path a repository takes for an index file: MAC, zstd, then the decoder
    for sealer, blob in ((PLAIN, PLAIN.tag(_z(data), AAD_INDEX)), (SEALED, _z(data))):
        try:
            index_mod.decode(decode_block(sealer, sealer.untag(blob, AAD_INDEX, "index/x"),
                                          AAD_INDEX))
        except (IntegrityError, index_mod.IndexFormatError):
            pass


names = st.one_of(st.text(max_size=80), st.sampled_from(
    ["..", ".", "", "a/b", "../x", "ab", "config", "x.lktmp", ".tmp-1", "a\x00b", "\\x",
     "ab" * 32, "a" * 300]))


@st.composite
def sftp_attrs(draw: st.DrawFn) -> paramiko.SFTPAttributes:
    a = paramiko.SFTPAttributes()
    a.filename = draw(names)
    a.st_mode = draw(st.one_of(st.none(), st.integers(-(2**40), 2**40),
                               st.sampled_from([0o040755, 0o100600, 0o120777, 0o010600])))
    a.st_size = draw(st.one_of(st.none(), st.integers(-(2**70), 2**70)))
    return a


@FAST
@given(entries=st.lists(sftp_attrs(), max_size=12),
       rel=st.sampled_from(["data", "index", "data/ab"]))
def test_fuzz_zone_listing_parser_never_raises_and_keeps_names_safe(entries, rel) -> None:
    listing = remote_ops.Listing()
    subdirs = remote_ops.parse_entries(rel, entries, listing)
    snaps, temps = remote_ops.parse_snapshots(entries)
    for path in [*subdirs, *listing.files, *listing.temps, *temps,
                 *(f"snapshots/{s}" for s in snaps)]:
        parts = path.split("/")
        assert all(p not in ("", ".", "..") and "\x00" not in p for p in parts), path
        assert len(parts) == len(rel.split("/")) + 1 or path.startswith("snapshots/")
    assert all(isinstance(v, int) and v >= 0 for v in [*listing.files.values(),
                                                        *snaps.values()])
