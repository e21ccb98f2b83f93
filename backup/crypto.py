"""Repository keys and the sealed envelope every repository object is stored in.

A key file holds two independent 256-bit secrets, hex-encoded in JSON:

- ``enc``: the AES-256-GCM key that encrypts every block, index file and manifest;
- ``id``: the BLAKE3 key that names chunks (a keyed hash, so chunk names reveal nothing
  about the content to someone who holds the repository but not the key).

Without encryption (``backup.encrypt = false``) the data is in clear, but manifests and index
files are still authenticated: they carry ``MAC_MAGIC || keyed-BLAKE3(mac key, aad || bytes)``
in front, with a MAC key derived from ``id``. Chunk names (and so content lists, which are
chunks) are keyed hashes already. So without the key file nobody can forge a snapshot, even
with write access to the repository or a zone's copy of it.

The key id (``fingerprint``) is a BLAKE3 hash of both secrets; the repository's ``config``
records it so a wrong key is refused with a clear message instead of failing to decrypt.
Without the key file the repository is unreadable: there is no recovery.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_LEN = 12
TAG_LEN = 16
KEY_FORMAT = 1


class KeyFileError(Exception):
    """A key file that is missing, unreadable, malformed or does not match the repository."""


class IntegrityError(Exception):
    """Data that fails authentication or does not match its hash."""


class Unauthenticated(IntegrityError):
    """An object of an unencrypted repository that carries no MAC (written before manifests
    were authenticated, or forged by someone without the key)."""


MAC_MAGIC = b"LKM1"
MAC_LEN = 32
_MAC_CONTEXT = "lightkeeper 2026-11 repository object MAC v1"


@dataclass(frozen=True)
class Keys:
    enc: bytes | None  # None: repository not encrypted
    ident: bytes

    @property
    def fingerprint(self) -> str:
        return blake3.blake3((self.enc or b"") + self.ident).hexdigest()[:32]

    @property
    def encrypted(self) -> bool:
        return self.enc is not None


def new_keys(encrypt: bool = True) -> Keys:
    return Keys(secrets.token_bytes(32) if encrypt else None, secrets.token_bytes(32))


def write_key_file(path: Path, keys: Keys, repo_id: str) -> None:
    """Create ``path`` owner-only (0600), refusing to overwrite an existing key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {"format": KEY_FORMAT, "repo_id": repo_id, "fingerprint": keys.fingerprint,
           "enc": keys.enc.hex() if keys.enc else None, "id": keys.ident.hex()}
    data = (json.dumps(doc, indent=2) + "\n").encode()
    tmp = path.with_name(f".{path.name}.tmp.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if a key already exists: never clobber a key
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
    finally:
        os.unlink(tmp)


def read_key_file(path: Path) -> tuple[Keys, str]:
    """Return the keys and the repository id they were made for."""
    path = Path(path)
    try:
        st = path.stat()
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} not found: without it the repository cannot be read "
            "(restore it from your exported copy, or set backup.key_file)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by others (mode {st.st_mode & 0o777:o}); "
            f"run: chmod 600 {path}"
        )
    try:
        doc = json.loads(raw)
        enc = bytes.fromhex(doc["enc"]) if doc.get("enc") else None
        ident = bytes.fromhex(doc["id"])
        repo_id = str(doc["repo_id"])
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"key file {path} is not a lightkeeper repository key") from None
    if (enc is not None and len(enc) != 32) or len(ident) != 32:
        raise KeyFileError(f"key file {path} has keys of the wrong length")
    return Keys(enc, ident), repo_id


class Sealer:
    """Encrypts and authenticates (AES-256-GCM) or passes through when not encrypted."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._aead = AESGCM(keys.enc) if keys.enc else None
        self._mac_key = blake3.blake3(keys.ident, derive_key_context=_MAC_CONTEXT).digest()

    def mac(self, data: bytes | memoryview, aad: bytes) -> bytes:
        h = blake3.blake3(len(aad).to_bytes(4, "little") + aad, key=self._mac_key)
        h.update(data)
        return h.digest()

    def tag(self, data: bytes, aad: bytes) -> bytes:
        """``data`` with a MAC in front when the repository is not encrypted (AES-GCM
        authenticates encrypted objects already)."""
        if self._aead is not None:
            return data
        return MAC_MAGIC + self.mac(data, aad) + data

    def untag(self, data: bytes | memoryview, aad: bytes, what: str) -> memoryview:
        """The bytes under the MAC, checked; raises IntegrityError, or Unauthenticated for an
        object without a MAC in an unencrypted repository."""
        view = memoryview(data)
        if self._aead is not None:
            return view
        if bytes(view[:4]) != MAC_MAGIC:
            raise Unauthenticated(f"{what} carries no authentication code")
        if len(view) < 4 + MAC_LEN:
            raise IntegrityError(f"{what} is truncated")
        body = view[4 + MAC_LEN:]
        if not hmac.compare_digest(bytes(view[4:4 + MAC_LEN]), self.mac(body, aad)):
            raise IntegrityError(f"{what}: authentication failed (forged or corrupted, or "
                                 "the wrong key)")
        return body

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self.keys.ident).digest()

    def seal(self, data: bytes, aad: bytes) -> bytes:
        if self._aead is None:
            return data
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, data, aad)

    def open(self, data: bytes | memoryview, aad: bytes) -> bytes:
        if self._aead is None:
            return bytes(data)
        if len(data) < NONCE_LEN + TAG_LEN:
            raise IntegrityError("sealed object is truncated")
        try:
            return self._aead.decrypt(bytes(data[:NONCE_LEN]), bytes(data[NONCE_LEN:]), aad)
        except InvalidTag:
            raise IntegrityError("authentication failed (corrupted data or wrong key)") from None
