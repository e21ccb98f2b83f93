"""Remote filesystem operations on one SFTP channel: listing, atomic upload, download,
free space. Every path goes through :class:`RemoteRoot`."""

from __future__ import annotations

import errno
import hashlib
import re
import stat as stat_mod
import struct
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY

from lightkeeper.backup.zones.local_repo import TEMP_SUFFIX, is_temp_name
from lightkeeper.backup.zones.remote_path import RemoteRoot

if TYPE_CHECKING:
    from paramiko.message import Message

CHUNK = 256 * 1024
SYNC_TOKEN = ".lightkeeper-sync"


class Throttle:
    """A token bucket shared by every transfer of a zone (``bandwidth_limit_kbps``)."""

    def __init__(self, kib_per_s: int) -> None:
        self.rate = kib_per_s * 1024.0
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, nbytes: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + nbytes / self.rate
            wait = start - now
        if wait > 0:
            time.sleep(wait)


class Readable(Protocol):
    """What an upload reads from: a binary file, or bytes wrapped in one."""

    def read(self, n: int = -1, /) -> bytes: ...


class Writable(Protocol):
    """What a download writes to: a binary file, or a sink that only counts."""

    def write(self, data: bytes, /) -> int: ...


class Hasher(Protocol):
    def update(self, data: bytes, /) -> object: ...


class _RequestLayer(Protocol):
    """The part of paramiko 5.1's private SFTP request layer this module drives (the version
    is pinned in pyproject; the type stubs declare only the public API)."""

    request_number: int
    _lock: threading.Lock
    _expecting: dict[int, object]

    def _request(self, t: int, *args: object) -> tuple[int, Message]: ...

    def _async_request(self, fileobj: object, t: int, *args: object) -> int: ...

    def _read_response(self, waitfor: int | None = None) -> tuple[int, Message]: ...


class _AttrsWire(Protocol):
    """paramiko's private (de)serialisation of SFTP file attributes."""

    def _pack(self, msg: Message) -> None: ...

    def _from_msg(self, msg: Message) -> paramiko.SFTPAttributes: ...


def _layer(sftp: paramiko.SFTPClient) -> _RequestLayer:
    return cast("_RequestLayer", sftp)


def _wire(attrs: paramiko.SFTPAttributes | type[paramiko.SFTPAttributes]) -> _AttrsWire:
    return cast("_AttrsWire", attrs)


@dataclass
class Listing:
    files: dict[str, int] = field(default_factory=dict)  # rel -> size (not snapshots)
    snapshots: dict[str, int] = field(default_factory=dict)  # id -> size
    temps: list[str] = field(default_factory=list)
    dirs: set[str] = field(default_factory=set)


def connected(sftp: paramiko.SFTPClient) -> bool:
    """The SSH connection under ``sftp`` is still up (an error on a live one is the server's
    answer, not a lost link)."""
    channel = sftp.get_channel()
    transport = channel.get_transport() if channel is not None else None
    return transport is not None and transport.is_active()


def _listdir(sftp: paramiko.SFTPClient, path: str) -> list[paramiko.SFTPAttributes]:
    try:
        return sftp.listdir_attr(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise


# What a zone may name a file or directory. Listings come from another party's server: a name
# with '/', '..', a NUL or absurd length is dropped before anything uses it.
_MAX_NAME = 255
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX2 = re.compile(r"[0-9a-f]{2}")
# The largest index file or manifest we fetch (we write far smaller ones): a zone cannot make
# us download or store more than this for one metadata file.
METADATA_LIMIT = 1 << 30


def safe_name(name: object) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= _MAX_NAME and name not in (".", "..")
            and not any(c in name for c in "/\\\x00"))


def valid_rel(rel: str) -> bool:
    """Is ``rel`` a repository file's path in our layout (config, index/ID, snapshots/ID,
    data/XX/ID with XX the id's first two digits)?"""
    parts = rel.split("/")
    if parts == ["config"]:
        return True
    if len(parts) == 2 and parts[0] in ("index", "snapshots"):
        return _HEX64.fullmatch(parts[1]) is not None
    return (len(parts) == 3 and parts[0] == "data" and _HEX2.fullmatch(parts[1]) is not None
            and _HEX64.fullmatch(parts[2]) is not None and parts[2].startswith(parts[1]))


def _mode(a: paramiko.SFTPAttributes) -> int:
    mode = a.st_mode
    return mode if isinstance(mode, int) and 0 <= mode < 2**32 else 0


def _size(a: paramiko.SFTPAttributes) -> int:
    size = a.st_size
    return size if isinstance(size, int) and size >= 0 else 0


def parse_entries(rel: str, entries: list[paramiko.SFTPAttributes],
                  listing: Listing) -> list[str]:
    """Add the regular files among a directory's ``entries`` to ``listing`` (temp files to its
    temps) and return the subdirectories; names a zone must not use are dropped."""
    subdirs = []
    for a in entries:
        name = a.filename
        if not safe_name(name):
            continue
        sub = f"{rel}/{name}"
        mode = _mode(a)
        if stat_mod.S_ISDIR(mode):
            subdirs.append(sub)
        elif is_temp_name(name):
            listing.temps.append(sub)
        elif stat_mod.S_ISREG(mode):
            listing.files[sub] = _size(a)
    return subdirs


def parse_snapshots(entries: list[paramiko.SFTPAttributes]) -> tuple[dict[str, int], list[str]]:
    snaps: dict[str, int] = {}
    temps: list[str] = []
    for a in entries:
        name = a.filename
        if not safe_name(name):
            continue
        mode = _mode(a)
        if is_temp_name(name):
            temps.append(f"snapshots/{name}")
        elif stat_mod.S_ISREG(mode):
            snaps[name] = _size(a)
    return snaps, temps


def list_snapshots(sftp: paramiko.SFTPClient, root: RemoteRoot) -> tuple[dict[str, int],
                                                                           list[str]]:
    return parse_snapshots(_listdir(sftp, root.join("snapshots")))


def list_dir_files(sftp: paramiko.SFTPClient, root: RemoteRoot, rel: str,
                   listing: Listing) -> list[str]:
    """Add the regular files of ``rel`` to ``listing``; return its subdirectories."""
    return parse_entries(rel, _listdir(sftp, root.join(rel)), listing)


def full_listing(clients: list[paramiko.SFTPClient], root: RemoteRoot) -> Listing:
    """Everything the zone holds, listing data/XX directories on all channels at once."""
    listing = Listing()
    sftp = clients[0]
    top = {a.filename: a for a in _listdir(sftp, root.root) if safe_name(a.filename)}
    if "config" in top and stat_mod.S_ISREG(_mode(top["config"])):
        listing.files["config"] = _size(top["config"])
    for name in ("data", "index", "snapshots"):
        if name in top:
            listing.dirs.add(name)
    listing.snapshots, snap_temps = list_snapshots(sftp, root)
    listing.temps += snap_temps
    if "index" in listing.dirs:
        list_dir_files(sftp, root, "index", listing)
    if "data" in listing.dirs:
        subdirs = list_dir_files(sftp, root, "data", listing)
        listing.dirs.update(subdirs)
        parts: list[Listing] = [Listing() for _ in clients]
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for d in subdirs[i::len(clients)]:
                    deeper = list_dir_files(clients[i], root, d, parts[i])
                    for dd in deeper:  # tolerate one more level, never written by us
                        list_dir_files(clients[i], root, dd, parts[i])
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,), daemon=True)
                   for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        for p in parts:
            listing.files.update(p.files)
            listing.temps += p.temps
    return listing


def read_small(sftp: paramiko.SFTPClient, path: str, limit: int = 1 << 20) -> bytes | None:
    try:
        with sftp.open(path, "rb") as f:
            return f.read(limit)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def ensure_dir(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.mkdir(path, 0o700)
    except OSError:
        st = sftp.stat(path)  # raises if it does not exist after all
        if not stat_mod.S_ISDIR(st.st_mode or 0):
            raise NotADirectoryError(path) from None


def make_dirs(sftp: paramiko.SFTPClient, paths: list[str]) -> list[str]:
    """``mkdir`` every path (give parents before children) in one round trip; returns those
    made. A path that could not be made (already there, or a real problem) is left to
    :func:`ensure_dir`, which tells the two apart."""
    from paramiko.sftp import CMD_MKDIR  # noqa: PLC0415
    from paramiko.sftp_attr import SFTPAttributes  # noqa: PLC0415

    if not paths:
        return []
    pipe = _Pipe(sftp)
    attrs = SFTPAttributes()
    attrs.st_mode = 0o700
    nums = [pipe.req(CMD_MKDIR, path, attrs) for path in paths]
    pipe.flush()
    return [path for path, num in zip(paths, nums, strict=True)
            if _expect_status(sftp, num) is None]


def remove_quiet(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except OSError:
        pass


def upload(sftp: paramiko.SFTPClient, root: RemoteRoot, rel: str, src: Readable, size: int,
           throttle: Throttle | None = None, on_bytes: Callable[[int], None] | None = None,
           should_stop: Callable[[], bool] | None = None) -> int:
    """Write ``src`` to ``rel`` atomically: pipelined writes to a temp name, size check,
    then posix-rename. Returns bytes sent. A failure removes the temp file (best effort)."""
    final = root.join(rel)
    tmp = root.join(rel + TEMP_SUFFIX)
    sent = 0
    try:
        with sftp.open(tmp, "wb") as f:
            f.set_pipelined(True)
            while True:
                if should_stop is not None and should_stop():
                    raise InterruptedError(f"stopped while sending {rel}")
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                if throttle is not None:
                    throttle.take(len(chunk))
                f.write(chunk)
                sent += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            remote_size = f.stat().st_size
        if sent != size or remote_size != size:
            raise OSError(errno.EIO, f"size mismatch after upload of {rel}: local {size}, "
                          f"sent {sent}, remote {remote_size}")
        sftp.posix_rename(tmp, final)
    except BaseException:
        try:
            remove_quiet(sftp, tmp)
        except Exception:  # noqa: BLE001 - the connection may be gone
            pass
        raise
    return sent


class TooLarge(OSError):
    """A remote file larger than the size we know it must have."""


def download(sftp: paramiko.SFTPClient, root: RemoteRoot, rel: str, dest: Writable,
             on_bytes: Callable[[int], None] | None = None, hasher: Hasher | None = None,
             should_stop: Callable[[], bool] | None = None,
             max_size: int | None = None) -> int:
    """Read ``rel`` with prefetch (pipelined reads) into ``dest``; returns the size. With
    ``max_size``, a file claiming or delivering more is refused (TooLarge) before or while
    reading, never downloaded whole."""
    path = root.join(rel)
    got = 0
    with sftp.open(path, "rb") as f:
        size = f.stat().st_size or 0
        if max_size is not None and size > max_size:
            raise TooLarge(errno.EFBIG, f"{rel} on the zone is {size} bytes, more than the "
                           f"{max_size} it can be; not fetched")
        f.prefetch(size, max_concurrent_requests=64)
        while True:
            if should_stop is not None and should_stop():
                raise InterruptedError(f"stopped while reading {rel}")
            chunk = f.read(CHUNK)
            if not chunk:
                break
            if max_size is not None and got + len(chunk) > max_size:
                raise TooLarge(errno.EFBIG, f"{rel} on the zone grew beyond {max_size} bytes "
                               "while being read; not fetched")
            dest.write(chunk)
            if hasher is not None:
                hasher.update(chunk)
            got += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    if got != size:
        raise OSError(errno.EIO, f"short read of {rel}: {got} of {size} bytes")
    return got


def statvfs(sftp: paramiko.SFTPClient, path: str) -> tuple[int, int] | None:
    """(bytes available, total bytes) of the remote filesystem, via OpenSSH's
    statvfs@openssh.com extension; None when the server does not offer it."""
    try:
        t, msg = _layer(sftp)._request(CMD_EXTENDED, "statvfs@openssh.com", path)  # noqa: SLF001
    except (OSError, paramiko.SSHException):
        return None
    if t != CMD_EXTENDED_REPLY:
        return None
    _bsize, frsize, blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
    return bavail * frsize, blocks * frsize


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -- many small files per round trip ---------------------------------------------------------
# paramiko's file API costs four round trips per file (open, fstat, close, rename), which is
# what limits small-file transfers, not bandwidth. For small files we drive the SFTP protocol
# directly: every request of a batch is sent before any answer is read (the server answers in
# order), so a batch of files costs two round trips: one for open/write/fstat/close of all of
# them, one for the renames of those that arrived whole. Uses paramiko 5.1's request layer
# (``_async_request``/``_read_response``), pinned in pyproject.

SMALL_FILE = 1 << 20
BATCH_FILES = 64
BATCH_BYTES = 8 << 20


@dataclass
class BatchItem:
    rel: str
    size: int
    data: bytes | None = None
    error: OSError | None = None


# Every SFTP server takes writes of 32 KiB; OpenSSH's (8.5+) says how much more it takes in
# its limits@openssh.com reply (255 KiB). Fewer, larger writes: fewer requests for the server
# to handle and fewer status replies to decrypt and parse here (bench/replication_bench.py).
WRITE_DEFAULT = 32768
WRITE_MAX = 1 << 20
_WRITE_SIZES: weakref.WeakKeyDictionary[paramiko.SFTPClient, int] = \
    weakref.WeakKeyDictionary()


def write_size(sftp: paramiko.SFTPClient) -> int:
    """The largest write request the server takes, asked once per SFTP channel."""
    size = _WRITE_SIZES.get(sftp)
    if size is None:
        size = WRITE_DEFAULT
        try:
            t, msg = _layer(sftp)._request(CMD_EXTENDED, "limits@openssh.com")  # noqa: SLF001
            if t == CMD_EXTENDED_REPLY:
                _packet, _read, max_write = msg.get_int64(), msg.get_int64(), msg.get_int64()
                if max_write:  # 0: the server states no limit; keep the safe size
                    size = min(max_write, WRITE_MAX)
        except OSError:  # SSH_FX_OP_UNSUPPORTED: not an OpenSSH server (or an old one)
            pass
        _WRITE_SIZES[sftp] = size
    return size


class _Pipe:
    """Queue SFTP requests and send many of them in one channel write: the protocol is a byte
    stream, so coalescing saves an SSH packet (and a syscall) per request."""

    FLUSH_AT = 256 * 1024

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp
        self.buf = bytearray()

    def req(self, t: int, *args: object) -> int:
        from paramiko.message import Message  # noqa: PLC0415
        from paramiko.sftp import int64  # noqa: PLC0415
        from paramiko.sftp_attr import SFTPAttributes  # noqa: PLC0415

        sftp = _layer(self.sftp)
        with sftp._lock:  # noqa: SLF001 - the same bookkeeping as paramiko's _async_request
            num = sftp.request_number
            sftp._expecting[num] = type(None)  # noqa: SLF001
            sftp.request_number += 1
        msg = Message()
        msg.add_int(num)
        for item in args:
            if isinstance(item, int64):
                msg.add_int64(item)
            elif isinstance(item, int):
                msg.add_int(item)
            elif isinstance(item, SFTPAttributes):
                _wire(item)._pack(msg)  # noqa: SLF001
            elif isinstance(item, str | bytes):
                msg.add_string(item)
            else:
                raise TypeError(f"no SFTP encoding for {type(item).__name__}")
        payload = msg.asbytes()
        self.buf += struct.pack(">IB", len(payload) + 1, t)
        self.buf += payload
        if len(self.buf) >= self.FLUSH_AT:
            self.flush()
        return num

    def write(self, handle: bytes, offset: int, data: bytes | memoryview) -> int:
        """A write request, its data copied once (into the buffer): ``req`` would build a
        Message (two more copies of every byte sent)."""
        from paramiko.sftp import CMD_WRITE  # noqa: PLC0415

        sftp = _layer(self.sftp)
        with sftp._lock:  # noqa: SLF001 - the same bookkeeping as paramiko's _async_request
            num = sftp.request_number
            sftp._expecting[num] = type(None)  # noqa: SLF001
            sftp.request_number += 1
        n = len(data)
        self.buf += struct.pack(">IBII", 1 + 4 + 4 + len(handle) + 8 + 4 + n, CMD_WRITE, num,
                                len(handle))
        self.buf += handle
        self.buf += struct.pack(">QI", offset, n)
        self.buf += data
        if len(self.buf) >= self.FLUSH_AT:
            self.flush()
        return num

    def flush(self) -> None:
        if self.buf:
            # A memoryview: Channel.sendall slices what is left after each SSH packet, which
            # on bytes copies the rest of the buffer every 32 KiB (quadratic in the buffer).
            data, self.buf = self.buf, bytearray()
            # paramiko's stubs say bytes; Message.add_string takes any buffer (asbytes
            # returns what it cannot convert unchanged)
            self.sftp.sock.sendall(memoryview(data))  # type: ignore[arg-type]


def _expect_status(sftp: paramiko.SFTPClient, num: int) -> OSError | None:
    try:
        _layer(sftp)._read_response(num)  # noqa: SLF001 - raises IOError for an error status
    except OSError as exc:
        return exc
    return None


def upload_batch(sftp: paramiko.SFTPClient, root: RemoteRoot, items: list[BatchItem],
                 throttle: Throttle | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> list[BatchItem]:
    """Upload small files atomically (temp name, size check, posix-rename) in two round trips.
    Returns the items that arrived whole; the others carry their ``error``."""
    from paramiko.sftp import (  # noqa: PLC0415
        CMD_ATTRS,
        CMD_CLOSE,
        CMD_FSTAT,
        CMD_HANDLE,
        CMD_OPEN,
        CMD_REMOVE,
        SFTP_FLAG_CREATE,
        SFTP_FLAG_TRUNC,
        SFTP_FLAG_WRITE,
    )
    from paramiko.sftp_attr import SFTPAttributes  # noqa: PLC0415

    piece = write_size(sftp)
    pipe = _Pipe(sftp)
    req = pipe.req
    flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
    paths = [(root.join(i.rel + TEMP_SUFFIX), root.join(i.rel)) for i in items]
    # 1. open everything
    opens = [req(CMD_OPEN, tmp, flags, SFTPAttributes()) for tmp, _ in paths]
    pipe.flush()
    handles: list[bytes | None] = []
    for item, num in zip(items, opens, strict=True):
        try:
            t, msg = _layer(sftp)._read_response(num)  # noqa: SLF001
            if t != CMD_HANDLE:
                raise OSError(f"unexpected answer to open of {item.rel}")
            handles.append(msg.get_binary())
        except OSError as exc:
            item.error = exc
            handles.append(None)
    # 2. write, fstat and close every opened file, all in flight
    pending: list[tuple[BatchItem, str, int]] = []
    for item, handle in zip(items, handles, strict=True):
        if handle is None:
            continue
        data = memoryview(item.data or b"")
        for off in range(0, len(data), piece):
            part = data[off:off + piece]
            if throttle is not None:
                throttle.take(len(part))
            pending.append((item, "write", pipe.write(handle, off, part)))
            if on_bytes is not None:
                on_bytes(len(part))
        pending.append((item, "fstat", req(CMD_FSTAT, handle)))
        pending.append((item, "close", req(CMD_CLOSE, handle)))
    pipe.flush()
    for item, what, num in pending:
        if what == "fstat":
            try:
                t, msg = _layer(sftp)._read_response(num)  # noqa: SLF001
                if t != CMD_ATTRS:
                    raise OSError(f"unexpected answer to fstat of {item.rel}")
                size = _wire(SFTPAttributes)._from_msg(msg).st_size  # noqa: SLF001
                if size != item.size and item.error is None:
                    item.error = OSError(errno.EIO, f"size mismatch after upload of {item.rel}: "
                                         f"local {item.size}, remote {size}")
            except OSError as exc:
                item.error = item.error or exc
        else:
            err = _expect_status(sftp, num)
            if err is not None and item.error is None:
                item.error = err
    # 3. publish the whole ones, drop the temp files of the others
    renames: list[tuple[BatchItem | None, int]] = []
    for item, (tmp, final) in zip(items, paths, strict=True):
        if item.error is None:
            renames.append((item, req(CMD_EXTENDED, "posix-rename@openssh.com", tmp, final)))
        else:
            renames.append((None, req(CMD_REMOVE, tmp)))
    pipe.flush()
    done = []
    for renamed, num in renames:
        err = _expect_status(sftp, num)
        if renamed is None:
            continue
        if err is not None:
            renamed.error = err
        else:
            done.append(renamed)
    return done


def upload_stream(sftp: paramiko.SFTPClient, root: RemoteRoot, rel: str, src: Readable,
                  size: int, throttle: Throttle | None = None,
                  on_bytes: Callable[[int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  in_flight_bytes: int = 16 << 20) -> int:
    """Like :func:`upload` with the write requests (as large as the server takes: see
    :func:`write_size`) coalesced into large channel writes, up to ``in_flight_bytes`` of them
    unanswered at a time."""
    from collections import deque  # noqa: PLC0415

    from paramiko.sftp import (  # noqa: PLC0415
        CMD_ATTRS,
        CMD_CLOSE,
        CMD_FSTAT,
        CMD_HANDLE,
        CMD_OPEN,
        CMD_REMOVE,
        SFTP_FLAG_CREATE,
        SFTP_FLAG_TRUNC,
        SFTP_FLAG_WRITE,
    )
    from paramiko.sftp_attr import SFTPAttributes  # noqa: PLC0415

    final = root.join(rel)
    tmp = root.join(rel + TEMP_SUFFIX)
    piece = write_size(sftp)
    chunk_len = max(CHUNK // piece, 4) * piece
    in_flight = max(in_flight_bytes // piece, 8)
    pipe = _Pipe(sftp)
    num = pipe.req(CMD_OPEN, tmp, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC,
                   SFTPAttributes())
    pipe.flush()
    t, msg = _layer(sftp)._read_response(num)  # noqa: SLF001
    if t != CMD_HANDLE:
        raise OSError(f"unexpected answer to open of {rel}")
    handle = msg.get_binary()
    outstanding: deque[int] = deque()
    error: BaseException | None = None
    sent = 0
    closed = False
    try:
        while True:
            if should_stop is not None and should_stop():
                raise InterruptedError(f"stopped while sending {rel}")
            chunk = src.read(chunk_len)
            if not chunk:
                break
            if throttle is not None:
                throttle.take(len(chunk))
            view = memoryview(chunk)
            for off in range(0, len(chunk), piece):
                outstanding.append(pipe.write(handle, sent + off, view[off:off + piece]))
            sent += len(chunk)
            pipe.flush()
            if on_bytes is not None:
                on_bytes(len(chunk))
            while len(outstanding) > in_flight:
                err = _expect_status(sftp, outstanding.popleft())
                error = error or err
            if error is not None:
                break
        fstat = pipe.req(CMD_FSTAT, handle)
        close = pipe.req(CMD_CLOSE, handle)
        pipe.flush()
        while outstanding:
            err = _expect_status(sftp, outstanding.popleft())
            error = error or err
        t, msg = _layer(sftp)._read_response(fstat)  # noqa: SLF001
        remote_size = _wire(SFTPAttributes)._from_msg(msg).st_size if t == CMD_ATTRS else None  # noqa: SLF001
        closed = True
        error = error or _expect_status(sftp, close)
        if error is not None:
            raise error
        if sent != size or remote_size != size:
            raise OSError(errno.EIO, f"size mismatch after upload of {rel}: local {size}, "
                          f"sent {sent}, remote {remote_size}")
        num = pipe.req(CMD_EXTENDED, "posix-rename@openssh.com", tmp, final)
        pipe.flush()
        err = _expect_status(sftp, num)
        if err is not None:
            raise err
    except BaseException:
        try:
            if not closed:
                _layer(sftp)._async_request(type(None), CMD_CLOSE, handle)  # noqa: SLF001
            _layer(sftp)._async_request(type(None), CMD_REMOVE, tmp)  # noqa: SLF001
        except Exception:  # noqa: BLE001 - the connection may be gone
            pass
        raise
    return sent
