"""One S3 zone's bucket seen as the repository's files: every immutable, content-named file is
one object (``PREFIX/data/ab/ID``, ``PREFIX/index/ID``, ``PREFIX/snapshots/ID``,
``PREFIX/config``), plus the zone's sync token ``PREFIX/.lightkeeper-sync``.

boto3 does the protocol: request signing, the retry policy ("standard" mode retries 503
SlowDown, throttling and dropped connections with exponential backoff and jitter), paginated
listings. This module adds what a backup needs on top: keys confined to the layout, uploads
checked with Content-MD5 (single requests and every part of a multipart upload), parallel
multipart uploads that resume after an interruption, stale multipart uploads listed and
aborted, the zone's bandwidth limit, and object-lock awareness for deletes.

The client is thread-safe (boto3 clients are), so one store serves every worker thread; it
stands in for an SFTP channel where the zone code hands out "clients"."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from lightkeeper.backup.zones.errors import (
    RemoteIntegrityError,
    RemotePathError,
    ZoneError,
    ZoneUnreachable,
)
from lightkeeper.backup.zones.local_repo import is_temp_name
from lightkeeper.backup.zones.model import S3Settings, Zone
from lightkeeper.backup.zones.remote_ops import SYNC_TOKEN, Listing, Throttle
from lightkeeper.backup.zones.remote_path import RemoteRoot
from lightkeeper.logs import get_logger

log = get_logger("zones.s3")

CHUNK = 256 * 1024
MULTIPART_MEMORY = 256 << 20
# repository file names: hex hashes (data/ab/<id>, index/<id>, snapshots/<id>)
_HEX = re.compile(r"^[0-9a-f]{16,128}$")
_FANOUT = re.compile(r"^[0-9a-f]{2}$")


def _b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _boto() -> tuple[Any, Any]:
    # Never ask the EC2 instance metadata service for credentials: on a machine that is not on
    # EC2 it costs a timeout per attempt, and credentials must come from what the operator
    # configured (environment, profile, file).
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    import boto3  # noqa: PLC0415 - only S3 zones pay for importing boto3
    import botocore.config  # noqa: PLC0415

    return boto3, botocore.config


def check_credentials_file(zone: str, path: str) -> Path:
    """The credentials file must be a regular file only its owner can read."""
    p = Path(path).expanduser()
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ZoneError(zone, f"credentials_file {p} not found") from None
    except OSError as exc:
        raise ZoneError(zone, f"credentials_file {p} cannot be opened: {exc.strerror}") \
            from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ZoneError(zone, f"credentials_file {p} is not a regular file")
    if st.st_mode & 0o077:
        raise ZoneError(zone, f"credentials_file {p} is readable by other accounts (mode "
                        f"{stat.S_IMODE(st.st_mode):o}); chmod 600 it")
    return p


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def shared_client(zone: str, s3: S3Settings, timeout: float = 15.0, retries: int = 5) -> Any:
    """A client per zone settings, kept for the process: building one loads botocore's
    service model (about 0.5 s), which would dominate a no-change sync. boto3 clients are
    thread-safe. A rotated credentials file (other mtime or size) gets a new client."""
    creds: tuple[Any, ...] = ()
    if s3.credentials_file:
        st = check_credentials_file(zone, s3.credentials_file).stat()
        creds = (st.st_mtime_ns, st.st_size)
    else:  # rotated environment keys make another client (the digest, never the key, is kept)
        creds = (hashlib.sha256(os.environ.get("AWS_ACCESS_KEY_ID", "").encode()
                                + os.environ.get("AWS_SECRET_ACCESS_KEY", "").encode())
                 .hexdigest(),)
    # what the client depends on (not the bucket, prefix or part size)
    key = (s3.endpoint_url, s3.region, s3.profile, s3.credentials_file, s3.concurrency, timeout,
           retries, creds)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = make_client(zone, s3, timeout, retries)
            if len(_CLIENTS) > 32:
                _CLIENTS.clear()
            _CLIENTS[key] = client
        return client


def _timestamp(value: Any) -> Any:
    """ISO 8601 timestamps (listings, object-lock dates) without dateutil: botocore's default
    parser cost ~1.6 ms per listed object, a third of a sync's CPU for small objects."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    from botocore.utils import parse_timestamp  # noqa: PLC0415 - RFC 822 dates, epochs

    return parse_timestamp(value)


def make_client(zone: str, s3: S3Settings, timeout: float = 15.0, retries: int = 5) -> Any:
    boto3, bconfig = _boto()
    import botocore.session  # noqa: PLC0415

    core = botocore.session.Session()
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_timestamp)
    if s3.credentials_file:
        core.set_config_variable("credentials_file",
                                 str(check_credentials_file(zone, s3.credentials_file)))
    if s3.profile:
        core.set_config_variable("profile", s3.profile)
    try:
        session = boto3.Session(botocore_session=core, region_name=s3.region)
    except Exception as exc:  # noqa: BLE001  botocore's ProfileNotFound and config errors
        raise ZoneError(zone, f"S3 credentials ({s3.credentials_source}): {exc}") from None
    conf = bconfig.Config(
        retries={"mode": "standard", "total_max_attempts": max(0, retries) + 1},
        connect_timeout=timeout, read_timeout=max(timeout, 60.0),
        max_pool_connections=max(10, s3.concurrency * 2),
        s3={"addressing_style": "path" if s3.endpoint_url else "auto"},
        # Content-MD5 is what every S3 implementation checks; the newer CRC checksums are
        # not understood by all of them
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
    )
    try:
        return session.client("s3", endpoint_url=s3.endpoint_url or None, config=conf)
    except Exception as exc:  # noqa: BLE001  e.g. a malformed endpoint URL, said as such
        raise ZoneError(zone, f"cannot create the S3 client: {exc}") from None


def is_network_error(exc: BaseException) -> bool:
    """Failures a later attempt may cure: connection problems, timeouts, 5xx/throttling that
    outlasted the SDK's own retries."""
    if isinstance(exc, ZoneUnreachable):
        return True
    if isinstance(exc, ZoneError):
        return False
    from botocore import exceptions as bx  # noqa: PLC0415

    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError
                  | bx.ReadTimeoutError | bx.ConnectTimeoutError | bx.ProxyConnectionError
                  | bx.ResponseStreamingError):
        return True
    if isinstance(exc, bx.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout",
                                          "ServiceUnavailable", "InternalError")
    return isinstance(exc, ConnectionError | TimeoutError)


def error_code(exc: BaseException) -> str:
    resp = getattr(exc, "response", None)
    return str((resp or {}).get("Error", {}).get("Code", "")) if isinstance(resp, dict) else ""


def describe_error(exc: BaseException) -> str:
    """A short message without request ids or signatures."""
    code = error_code(exc)
    if code:
        msg = exc.response.get("Error", {}).get("Message", "")  # type: ignore[attr-defined]
        return f"{code}: {msg}" if msg else code
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Upload:
    """A multipart upload in progress on the zone."""

    key: str
    upload_id: str
    initiated: dt.datetime | None = None


@dataclass
class PutResult:
    sent: int = 0
    parts_reused: int = 0
    resumed: bool = False
    multipart: bool = False


@dataclass
class S3Listing(Listing):
    ignored: list[str] = field(default_factory=list)  # keys outside the repository layout


class S3Store:
    """The bucket of one zone. Methods take repository-relative names."""

    def __init__(self, zone: Zone, timeout: float = 15.0, retries: int = 5,
                 throttle: Throttle | None = None) -> None:
        assert zone.s3 is not None
        self.zone = zone
        self.s3 = zone.s3
        self.bucket = zone.s3.bucket
        self.base = zone.s3.prefix + "/" if zone.s3.prefix else ""
        self.root = RemoteRoot(zone.name, "/" + (zone.s3.prefix or "s3-zone-root"))
        self.client = shared_client(zone.name, zone.s3, timeout, retries)
        self.throttle = throttle or Throttle(zone.bandwidth_limit_kbps)
        self._lock_config: bool | None = None

    # -- names -------------------------------------------------------------------------
    def key(self, rel: str) -> str:
        """The object key of ``rel``; refuses anything outside the repository layout."""
        self.root.join(rel)  # same rules as an SFTP zone's paths
        if rel.endswith(".lktmp"):
            raise RemotePathError(self.zone.name, f"refused key {rel!r}: no temp names on S3")
        return self.base + rel

    def rel(self, key: str) -> str | None:
        """The repository-relative name of a listed key, or None when it is not one of ours
        (hostile or foreign names are never used to build paths)."""
        if not key.startswith(self.base):
            return None
        rel = key[len(self.base):]
        parts = rel.split("/")
        if rel in ("config", SYNC_TOKEN):
            return rel
        if len(parts) == 2 and parts[0] in ("index", "snapshots") and _HEX.match(parts[1]):
            return rel
        if (len(parts) == 3 and parts[0] == "data" and _FANOUT.match(parts[1])
                and _HEX.match(parts[2]) and parts[2].startswith(parts[1])):
            return rel
        return None

    # -- reads -------------------------------------------------------------------------
    def _pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix,
                                       PaginationConfig={"PageSize": 1000}):
            yield from page.get("Contents", []) or []

    def list_prefix(self, sub: str, listing: S3Listing) -> None:
        for obj in self._pages(self.base + sub):
            rel = self.rel(obj["Key"])
            size = int(obj.get("Size") or 0)
            if rel is None:
                name = obj["Key"][len(self.base):]
                if not is_temp_name(name.rsplit("/", 1)[-1]):
                    listing.ignored.append(obj["Key"])
                continue
            if rel.startswith("snapshots/"):
                listing.snapshots[rel.split("/", 1)[1]] = size
            elif rel != SYNC_TOKEN:
                listing.files[rel] = size

    def full_listing(self) -> S3Listing:
        listing = S3Listing()
        for sub in ("config", "data/", "index/", "snapshots/"):
            self.list_prefix(sub, listing)
        listing.files = {r: s for r, s in listing.files.items()
                         if r == "config" or "/" in r}
        if listing.ignored:
            log.warning("zones.s3_foreign_keys", zone=self.zone.name,
                        count=len(listing.ignored), first=listing.ignored[0][:200])
        return listing

    def list_snapshots(self) -> dict[str, int]:
        listing = S3Listing()
        self.list_prefix("snapshots/", listing)
        return listing.snapshots

    def head(self, rel: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(rel))
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404 or \
                    error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def read_small(self, rel: str, limit: int = 1 << 20) -> bytes | None:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key(rel))
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        with resp["Body"] as body:
            return body.read(limit)

    def download(self, rel: str, dest: BinaryIO, on_bytes: Callable[[int], None] | None = None,
                 hasher: Any = None, should_stop: Callable[[], bool] | None = None,
                 max_size: int | None = None) -> int:
        """Read ``rel`` into ``dest``; with ``max_size`` an object claiming or delivering more
        is refused before or while reading (a zone cannot make us download without bound)."""
        resp = self.client.get_object(Bucket=self.bucket, Key=self.key(rel))
        size = int(resp.get("ContentLength") or 0)
        got = 0
        with resp["Body"] as body:
            if max_size is not None and size > max_size:
                raise RemoteIntegrityError(self.zone.name, f"{rel} on the zone is {size} "
                                           f"bytes, more than the {max_size} it can be; not "
                                           "fetched")
            while True:
                if should_stop is not None and should_stop():
                    raise InterruptedError(f"stopped while reading {rel}")
                chunk = body.read(CHUNK)
                if not chunk:
                    break
                if max_size is not None and got + len(chunk) > max_size:
                    raise RemoteIntegrityError(self.zone.name, f"{rel} on the zone grew beyond "
                                               f"{max_size} bytes while being read; not fetched")
                dest.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                got += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
        if got != size:
            raise ZoneUnreachable(self.zone.name, f"short read of {rel}: {got} of {size} bytes")
        return got

    # -- writes ------------------------------------------------------------------------
    def _put_args(self) -> dict[str, Any]:
        return {"StorageClass": self.s3.storage_class} if self.s3.storage_class else {}

    def _take(self, n: int, should_stop: Callable[[], bool] | None) -> None:
        for off in range(0, n, CHUNK):
            if should_stop is not None and should_stop():
                raise InterruptedError("stopped")
            self.throttle.take(min(CHUNK, n - off))

    def put_bytes(self, rel: str, data: bytes, on_bytes: Callable[[int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> int:
        """One PUT checked by Content-MD5 (the server refuses a body that does not match)."""
        key = self.key(rel)
        self._take(len(data), should_stop)
        resp = self.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                      ContentMD5=_b64md5(data), **self._put_args())
        etag = str(resp.get("ETag", "")).strip('"')
        if etag and etag != hashlib.md5(data).hexdigest():
            raise RemoteIntegrityError(self.zone.name, f"{rel}: the zone stored other bytes "
                                       f"than were sent (ETag {etag})")
        if on_bytes is not None:
            on_bytes(len(data))
        return len(data)

    def put_file(self, rel: str, path: Path, size: int,
                 on_bytes: Callable[[int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 resume: Upload | None = None) -> PutResult:
        """Upload a local file: one checked PUT when small, else a multipart upload whose parts
        go up in parallel, each checked by Content-MD5. With ``resume`` the parts the zone
        already holds whole (same size and MD5) are kept."""
        if size <= self.s3.part_size:
            with open(path, "rb") as fh:
                data = fh.read()
            if len(data) != size:
                raise ZoneError(self.zone.name, f"local file {rel} changed size while being "
                                "replicated (repository files must be immutable)")
            return PutResult(sent=self.put_bytes(rel, data, on_bytes, should_stop))
        return self._multipart(rel, path, size, on_bytes, should_stop, resume)

    def _multipart(self, rel: str, path: Path, size: int,
                   on_bytes: Callable[[int], None] | None,
                   should_stop: Callable[[], bool] | None,
                   resume: Upload | None) -> PutResult:
        key = self.key(rel)
        psize = self.s3.part_size
        nparts = (size + psize - 1) // psize
        result = PutResult(multipart=True)
        have: dict[int, tuple[int, str]] = {}
        upload_id = None
        if resume is not None:
            try:
                have = self.list_parts(key, resume.upload_id)
                upload_id = resume.upload_id
                result.resumed = True
            except Exception as exc:  # noqa: BLE001 - the upload vanished: start a new one
                log.info("zones.s3_resume_failed", zone=self.zone.name, file=rel,
                         error=describe_error(exc))
        if upload_id is None:
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, **self._put_args())["UploadId"]
        etags: dict[int, str] = {}
        sent = [0]
        lock = threading.Lock()

        def part(num: int) -> None:
            off = (num - 1) * psize
            n = min(psize, size - off)
            with open(path, "rb") as fh:
                fh.seek(off)
                data = fh.read(n)
            if len(data) != n:
                raise ZoneError(self.zone.name, f"local file {rel} changed size while being "
                                "replicated")
            md5 = hashlib.md5(data)
            old = have.get(num)
            if old is not None and old == (n, md5.hexdigest()):
                with lock:
                    etags[num] = old[1]
                    result.parts_reused += 1
                if on_bytes is not None:
                    on_bytes(n)
                return
            self._take(n, should_stop)
            resp = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=num, Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode())
            etag = str(resp["ETag"]).strip('"')
            if etag != md5.hexdigest():
                raise RemoteIntegrityError(self.zone.name, f"{rel} part {num}: the zone stored "
                                           f"other bytes than were sent (ETag {etag})")
            with lock:
                etags[num] = etag
                sent[0] += n
            if on_bytes is not None:
                on_bytes(n)

        # every worker holds one part in memory: at most MULTIPART_MEMORY bytes in flight
        workers = max(1, min(self.s3.concurrency, nparts, MULTIPART_MEMORY // psize))
        with ThreadPoolExecutor(workers, thread_name_prefix="s3-part") as pool:
            futures = [pool.submit(part, i) for i in range(1, nparts + 1)]
            errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            # Leave the upload for a resume when the failure may pass (network, cancel);
            # anything else is aborted so no parts accumulate.
            if not (is_network_error(first) or isinstance(first, InterruptedError)):
                self.abort(Upload(key, upload_id))
            raise first
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": i, "ETag": f'"{etags[i]}"'}
                                       for i in range(1, nparts + 1)]})
        head = self.head(rel)
        if head is None or int(head.get("ContentLength") or -1) != size:
            raise RemoteIntegrityError(self.zone.name, f"{rel}: after the multipart upload the "
                                       f"zone holds {None if head is None else head.get('ContentLength')} "
                                       f"bytes, not {size}")
        result.sent = sent[0]
        return result

    def list_parts(self, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
        out: dict[int, tuple[int, str]] = {}
        paginator = self.client.get_paginator("list_parts")
        for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
            for p in page.get("Parts", []) or []:
                out[int(p["PartNumber"])] = (int(p["Size"]), str(p["ETag"]).strip('"'))
        return out

    def uploads(self) -> list[Upload]:
        """Multipart uploads in progress under the zone's prefix."""
        out = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.base):
            for u in page.get("Uploads", []) or []:
                out.append(Upload(u["Key"], u["UploadId"], u.get("Initiated")))
        return out

    def abort(self, up: Upload) -> None:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=up.key,
                                               UploadId=up.upload_id)
        except ClientError as exc:
            if error_code(exc) != "NoSuchUpload":
                raise

    # -- deletes and object lock -----------------------------------------------------
    def object_lock_enabled(self) -> bool:
        """Whether the bucket has S3 Object Lock (then every delete is checked first)."""
        if self._lock_config is None:
            from botocore.exceptions import ClientError  # noqa: PLC0415

            try:
                conf = self.client.get_object_lock_configuration(Bucket=self.bucket)
                self._lock_config = (conf.get("ObjectLockConfiguration", {})
                                     .get("ObjectLockEnabled") == "Enabled")
            except ClientError:
                self._lock_config = False  # not configured, or not implemented by the server
        return self._lock_config

    def versioning(self) -> str:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            return str(self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
                       or "Disabled")
        except ClientError as exc:
            return f"unknown ({error_code(exc)})"

    def retained(self, rel: str, now: dt.datetime | None = None) -> str | None:
        """Why ``rel`` must not be deleted (object-lock retention or legal hold), or None."""
        head = self.head(rel)
        if head is None:
            return None
        now = now or dt.datetime.now(dt.UTC)
        until = head.get("ObjectLockRetainUntilDate")
        if until is not None and until > now:
            return f"{head.get('ObjectLockMode', 'retention')} until {until.isoformat()}"
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            return "legal hold"
        return None

    def delete(self, rels: list[str]) -> list[str]:
        """Delete objects (1000 per request); returns the names the zone refused to delete."""
        refused: list[str] = []
        for i in range(0, len(rels), 1000):
            batch = rels[i:i + 1000]
            resp = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self.key(r)} for r in batch], "Quiet": True})
            for err in resp.get("Errors", []) or []:
                rel = self.rel(err.get("Key", "")) or err.get("Key", "")
                refused.append(rel)
                log.warning("zones.s3_delete_refused", zone=self.zone.name, file=rel,
                            code=err.get("Code"))
        return refused

    def check_bucket(self) -> None:
        """Fail with a clear message when the bucket is missing or refused."""
        from botocore.exceptions import ClientError, NoCredentialsError  # noqa: PLC0415

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise ZoneError(self.zone.name, f"no S3 credentials found "
                            f"({self.s3.credentials_source}): set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or zones.NAME.profile / credentials_file") \
                from None
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status == 404:
                raise ZoneError(self.zone.name, f"bucket {self.bucket!r} does not exist at "
                                f"{self.s3.endpoint_url or 'AWS'}; create it first") from None
            if status == 403:
                raise ZoneError(self.zone.name, f"access to bucket {self.bucket!r} denied "
                                f"(credentials from {self.s3.credentials_source})") from None
            raise

    def close(self) -> None:
        """The client is shared (see :func:`shared_client`): nothing to release per use."""
