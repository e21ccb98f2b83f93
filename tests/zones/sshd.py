"""A real OpenSSH server on 127.0.0.1 for tests: own host key, config and authorized_keys in a
temp directory, a free port, started with ``/usr/sbin/sshd -D -f CFG -p PORT``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "lightkeeper-test",
                    "-f", str(path)], check=True)
    return path


class Sshd:
    def __init__(self, base: Path, client_pub: Path, name: str = "zone") -> None:
        self.base = base
        self.name = name
        base.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(base / "ssh_host_ed25519_key")
        self.port = free_port()
        self.authorized = base / "authorized_keys"
        self.authorized.write_text(client_pub.read_text())
        self.config = base / "sshd_config"
        self.log = base / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config()

    def write_config(self) -> None:
        root_login = "prohibit-password" if os.geteuid() == 0 else "no"
        self.config.write_text(f"""
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.base}/sshd.pid
AuthorizedKeysFile {self.authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin {root_login}
StrictModes no
UsePAM no
MaxSessions 64
MaxStartups 64:30:128
LogLevel ERROR
Subsystem sftp {SFTP_SERVER}
""")

    def new_host_key(self) -> None:
        """Replace the server's host key (a reinstalled server, or an impostor)."""
        for p in (self.host_key, self.host_key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        keygen(self.host_key)

    def start(self) -> None:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        with open(self.log, "ab") as logf:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config), "-p",
                                          str(self.port)], stdout=logf, stderr=logf,
                                         start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the server and every process it started (sessions, sftp-server)."""
        if self.proc is None:
            return
        try:
            procs = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        for p in [*procs]:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        self.kill()
