"""SSH connections to a zone: host-key check before authentication, key file or ssh-agent,
large windows, several SFTP channels over one or more connections."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko

from lightkeeper.backup.zones import hostkeys
from lightkeeper.backup.zones.errors import ZoneError, ZoneUnreachable
from lightkeeper.backup.zones.model import Zone
from lightkeeper.logs import get_logger

log = get_logger("zones.connection")

# A large window keeps many pipelined writes in flight (paramiko's default is 2 MiB).
WINDOW_SIZE = 64 * 1024 * 1024
MAX_PACKET = 32768 + 4096

NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, paramiko.SSHException, socket.timeout,
)


def is_network_error(exc: BaseException) -> bool:
    """Errors that a reconnect may cure (as opposed to refused keys, bad paths, full disks)."""
    if isinstance(exc, ZoneUnreachable):
        return True
    if isinstance(exc, ZoneError):
        return False
    if isinstance(exc, paramiko.AuthenticationException | paramiko.BadHostKeyException):
        return False
    if isinstance(exc, paramiko.SSHException | EOFError | socket.timeout | ConnectionError):
        return True
    if isinstance(exc, OSError):
        # SFTP status errors arrive as IOError with errno of the SFTP code or None; a socket
        # error carries a socket errno.
        return exc.errno in (errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE,
                             errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
                             errno.ECONNABORTED, errno.ENETDOWN)
    return False


def _load_private_key(zone: Zone) -> paramiko.PKey:
    path = Path(zone.key_file)
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise ZoneError(zone.name, f"key file {path} not found") from None
    except PermissionError:
        raise ZoneError(zone.name, f"key file {path} is not readable") from None
    except paramiko.PasswordRequiredException:
        raise ZoneError(zone.name, f"key file {path} is passphrase-protected; load it into "
                        "ssh-agent and leave zones.NAME.key_file empty") from None
    except (paramiko.SSHException, ValueError) as exc:
        raise ZoneError(zone.name, f"key file {path} cannot be used: {type(exc).__name__}") \
            from None


def start_transport(zone: Zone, timeout: float = 15.0) -> paramiko.Transport:
    """TCP connect and key exchange, without any host-key decision (callers decide)."""
    try:
        sock = socket.create_connection((zone.host, zone.port), timeout=timeout)
    except OSError as exc:
        raise ZoneUnreachable(zone.name, f"cannot connect to {zone.host}:{zone.port}: "
                              f"{exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = paramiko.Transport(sock, default_window_size=WINDOW_SIZE,
                           default_max_packet_size=MAX_PACKET)
    t.set_keepalive(15)
    opts = t.get_security_options()
    opts.key_types = hostkeys.preferred_key_types(zone, tuple(opts.key_types))
    # AES-GCM first: no separate MAC pass, about 10 % more throughput than paramiko's default
    # aes128-ctr + hmac-sha2-256 here (bench/replication_bench.py)
    gcm = tuple(c for c in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
                if c in opts.ciphers)
    opts.ciphers = gcm + tuple(c for c in opts.ciphers if c not in gcm)
    try:
        t.start_client(timeout=timeout)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        t.close()
        raise ZoneUnreachable(zone.name, f"SSH handshake with {zone.host}:{zone.port} failed: "
                              f"{exc}") from None
    return t


def authenticate(zone: Zone, t: paramiko.Transport) -> None:
    if zone.key_file:
        keys = [_load_private_key(zone)]
    else:
        keys = list(paramiko.Agent().get_keys())
        if not keys:
            raise ZoneError(zone.name, "no key_file configured and ssh-agent offers no keys")
    last: Exception | None = None
    for key in keys:
        try:
            t.auth_publickey(zone.user, key)
        except paramiko.AuthenticationException as exc:
            last = exc
            continue
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ZoneUnreachable(zone.name, f"connection lost during authentication: "
                                  f"{exc}") from None
        if t.is_authenticated():
            return
    source = f"key file {zone.key_file}" if zone.key_file else "ssh-agent keys"
    raise ZoneError(zone.name, f"authentication as {zone.user!r} with {source} was refused"
                    + (f" ({type(last).__name__})" if last else ""))


def connect(zone: Zone, timeout: float = 15.0) -> paramiko.Transport:
    """An authenticated transport to a zone whose host key is trusted (else refused)."""
    t = start_transport(zone, timeout)
    try:
        hostkeys.check(zone, t.get_remote_server_key())
        authenticate(zone, t)
    except BaseException:
        t.close()
        raise
    return t


def probe_host_key(zone: Zone, timeout: float = 15.0) -> paramiko.PKey:
    """The server's host key, without trusting or authenticating."""
    t = start_transport(zone, timeout)
    try:
        return t.get_remote_server_key()
    finally:
        t.close()


class ZoneSession:
    """``channels`` SFTP channels spread over ``connections`` SSH connections. Each SFTP
    client must be used by one thread at a time (paramiko's synchronous requests are not
    thread-safe), so workers take one client each. With ``lazy`` only one channel opens at
    first; :meth:`expand` opens the rest when there is work for them."""

    def __init__(self, zone: Zone, channels: int = 1, connections: int = 1,
                 timeout: float = 15.0, lazy: bool = False) -> None:
        self.zone = zone
        self.channels = max(1, channels)
        self.connections = min(max(1, connections), self.channels)
        self.timeout = timeout
        self.transports: list[paramiko.Transport] = []
        self.clients: list[paramiko.SFTPClient] = []
        try:
            self.transports.append(connect(zone, timeout))
            self._open_channel(self.transports[0])
            if not lazy:
                self.expand()
        except BaseException:
            self.close()
            raise

    def _open_channel(self, t: paramiko.Transport) -> None:
        try:
            sftp = paramiko.SFTPClient.from_transport(t)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ZoneUnreachable(self.zone.name, f"cannot open SFTP channel: {exc}") from None
        channel = sftp.get_channel() if sftp is not None else None
        if sftp is None or channel is None:
            raise ZoneUnreachable(self.zone.name, "cannot open SFTP channel")
        channel.settimeout(max(self.timeout, 60.0))
        self.clients.append(sftp)

    def expand(self) -> None:
        """Open the remaining connections and channels."""
        while len(self.transports) < self.connections:
            self.transports.append(connect(self.zone, self.timeout))
        while len(self.clients) < self.channels:
            self._open_channel(self.transports[len(self.clients) % len(self.transports)])

    @property
    def sftp(self) -> paramiko.SFTPClient:
        return self.clients[0]

    def close(self) -> None:
        for c in self.clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing a dead channel must not mask errors
                pass
        for t in self.transports:
            t.close()
        self.clients.clear()
        self.transports.clear()

    def __enter__(self) -> ZoneSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def session(zone: Zone, channels: int = 1, connections: int = 1,
            timeout: float = 15.0, lazy: bool = False) -> Iterator[ZoneSession]:
    s = ZoneSession(zone, channels, connections, timeout, lazy)
    try:
        yield s
    finally:
        s.close()


@contextmanager
def network_guard(zone: Zone, sess: ZoneSession | None = None) -> Iterator[None]:
    """Turn a lost connection inside the block into ZoneUnreachable naming the zone."""
    try:
        yield
    except ZoneError:
        raise
    except (paramiko.SSHException, EOFError, OSError) as exc:
        # a transport that ended, or an SFTP channel the zone closed (its sftp-server went
        # away: paramiko then raises OSError("Socket is closed") with no errno, possibly
        # before the transport itself notices the connection is gone)
        dead = sess is not None and (
            not all(t.is_active() for t in sess.transports)
            or any(c.get_channel() is None or c.get_channel().closed  # type: ignore[union-attr]
                   for c in sess.clients))
        if dead or is_network_error(exc):
            raise ZoneUnreachable(zone.name, f"connection lost: {exc}") from None
        raise
