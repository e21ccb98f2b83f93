"""Host keys: unknown keys are refused, trust needs the operator's yes (or the fingerprint
given up front), a changed key is an error naming the zone and both fingerprints."""

from __future__ import annotations

import json

import pytest

from lightkeeper.backup.zones import hostkeys
from lightkeeper.backup.zones.connection import connect, probe_host_key
from lightkeeper.backup.zones.errors import ChangedHostKey, UnknownHostKey
from tests.zones.repo_helper import write_user_files


def _fingerprint(server) -> str:
    import subprocess

    out = subprocess.run(["ssh-keygen", "-lf", str(server.host_key) + ".pub"], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1]


def test_unknown_host_key_is_refused_and_nothing_is_written(lab):
    server = lab.add_zone("a", trusted=False)
    write_user_files(lab.data_root, "alice", 2, 10_000, 1)
    lab.backup()
    summary_error = None
    with pytest.raises(Exception) as info:
        lab.run_job("replicate")
    summary_error = str(info.value)
    assert "unknown host key" in summary_error
    assert _fingerprint(server) in summary_error
    assert not lab.remote("a").exists()
    with pytest.raises(UnknownHostKey):
        connect(lab.zone("a"))


def test_trust_prompt_records_only_after_yes(lab, run_cli):
    server = lab.add_zone("a", trusted=False)
    zone = lab.zone("a")
    fp = _fingerprint(server)
    r = run_cli("zones", "trust", "a", "--local", input="no\n", check=False)
    assert r.returncode == 1
    assert fp in r.stderr and "ssh-ed25519" in r.stderr
    assert "not trusted" in r.stderr
    assert hostkeys.recorded_keys(zone) == {}
    r = run_cli("zones", "trust", "a", "--local", input="yes\n")
    assert fp in r.stderr and fp in r.stdout
    assert set(hostkeys.recorded_keys(zone)) == {"ssh-ed25519"}
    connect(zone).close()
    r = run_cli("zones", "trust", "a", "--local", "--json")
    assert json.loads(r.stdout)["state"] == "trusted"


def test_trust_with_fingerprint_given_up_front(lab, run_cli):
    server = lab.add_zone("a", trusted=False)
    zone = lab.zone("a")
    wrong = "SHA256:" + "A" * 43
    r = run_cli("zones", "trust", "a", "--local", "--fingerprint", wrong, check=False)
    assert r.returncode == 1 and "nothing recorded" in r.stderr
    assert hostkeys.recorded_keys(zone) == {}
    r = run_cli("zones", "trust", "a", "--local", "--fingerprint", _fingerprint(server))
    assert "trusted ssh-ed25519" in r.stdout
    assert hostkeys.recorded_keys(zone)["ssh-ed25519"] == probe_host_key(zone)


def test_changed_host_key_is_an_error_naming_both_fingerprints(lab, run_cli):
    server = lab.add_zone("a")
    zone = lab.zone("a")
    old = _fingerprint(server)
    server.kill()
    server.new_host_key()
    server.start()
    new = _fingerprint(server)
    assert old != new
    with pytest.raises(ChangedHostKey) as info:
        connect(zone)
    msg = str(info.value)
    assert "'a'" in msg and old in msg and new in msg
    write_user_files(lab.data_root, "alice", 1, 1000, 1)
    lab.backup()
    with pytest.raises(ChangedHostKey):
        lab.run_job("replicate")
    # the trust command refuses to re-trust silently, even with the new fingerprint given
    r = run_cli("zones", "trust", "a", "--local", "--fingerprint", new, check=False)
    assert r.returncode == 1 and "HOST KEY CHANGED" in r.stderr and old in r.stderr
    assert hostkeys.recorded_keys(zone)["ssh-ed25519"].fingerprint == old
    assert not lab.remote("a").exists()
