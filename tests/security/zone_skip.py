"""Skip a zone test module when OpenSSH's server is not installed (as tests/zones does)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.zones.sshd import SFTP_SERVER, SSHD


def require_sshd() -> None:
    if not (os.path.exists(SSHD) and os.path.exists(SFTP_SERVER) and shutil.which("ssh-keygen")):
        pytest.skip("OpenSSH server (sshd, sftp-server, ssh-keygen) is not installed",
                    allow_module_level=True)
