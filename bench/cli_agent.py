"""A real agent for the benches, and the ``lightkeeper`` CLI timed against it.

``BenchAgent(work, data_root, repository, zones=...)`` writes a configuration file, starts
``python -m lightkeeper.cli.main --config FILE agent`` in the foreground (collectors at long
intervals, no HTTP listener, no metrics in the backups: restic has no such part), and
``agent.cli("backup", "run")`` runs the installed ``lightkeeper`` command against it the way
an operator does (interpreter start, imports, the agent round trips and the long poll
``/v1/jobs/ID/wait`` until the job ends), returning the wall time and the job record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def lightkeeper_command() -> list[str]:
    """The operator's command: the venv's ``lightkeeper`` script (beside this interpreter)."""
    script = Path(sys.executable).with_name("lightkeeper")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lightkeeper.cli.main"]


def precompile() -> None:
    """Write the byte code of the lightkeeper package folders, as a wheel install does."""
    import compileall

    for folder in ("agent", "backup", "collectors", "lightkeeper", "rag", "tuning", "tui"):
        compileall.compile_dir(REPO / folder, quiet=1)


class BenchAgent:
    def __init__(self, work: Path, data_root: Path, repository: Path,
                 zones: dict[str, dict[str, Any]] | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.state = self.work / "state"
        self.repository = Path(repository)
        conf: dict[str, Any] = {
            "paths.state_dir": self.state, "paths.data_root": data_root,
            "backup.repository": repository, "backup.key_file": self.work / "repo.key",
            "backup.include_metrics": False, "http.enabled": False,
            "collect.system_interval": 3600.0, "collect.userdir_interval": 3600.0,
            "replication.status_schedule": "",
            # no wait for a quiet directory (restic has none; freshly generated or edited
            # data would make every backup wait the default 2 s)
            "backup.quiet_seconds": 0.0, **(settings or {})}
        sections: dict[str, dict[str, Any]] = {}
        for key, value in conf.items():
            sec, _, name = key.rpartition(".")
            sections.setdefault(sec, {})[name] = value
        for zname, zone in (zones or {}).items():
            sections[f"zones.{zname}"] = zone
        lines = []
        for sec, values in sections.items():
            lines.append(f"[{sec}]")
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
        self.config = self.work / "lightkeeper.toml"
        self.config.write_text("\n".join(lines) + "\n")
        # As installed by pip: byte code compiled once (this sandbox may forbid writing it,
        # which makes every command compile its modules again).
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("LIGHTKEEPER_") and k != "PYTHONDONTWRITEBYTECODE"}
        precompile()
        self.env["XDG_CONFIG_HOME"] = str(self.work / "xdg")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> BenchAgent:
        from lightkeeper.client import AgentClient

        out = open(self.work / "agent.out", "wb")  # noqa: SIM115  the child writes it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lightkeeper.cli.main", "--config", str(self.config),
             "agent"], cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        client = AgentClient(self.state / "agent.sock", timeout=5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the agent exited with {self.proc.returncode}:\n"
                                 + (self.work / "agent.out").read_text()[-2000:])
            if client.ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the agent did not answer within {timeout:.0f} s")

    def wait_probed(self, zones: list[str], timeout: float = 120.0) -> None:
        """Wait until the agent's zone probe has reached every zone in ``zones``."""
        from lightkeeper.client import AgentClient

        client = AgentClient(self.state / "agent.sock", timeout=10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reached = {z["name"] for z in client.call("zones.list") if z.get("reachable")}
            if reached >= set(zones):
                return
            time.sleep(0.2)
        raise SystemExit(f"the agent's probe did not reach {zones} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> BenchAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cli(self, *args: str) -> tuple[float, dict[str, Any]]:
        """Run ``lightkeeper --config FILE ARGS... --json`` and time it; returns the wall
        time and the job's final record (its summary and its own ``duration_s``)."""
        cmd = [*lightkeeper_command(), "--config", str(self.config), *args, "--json"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=self.work, env=self.env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"lightkeeper {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stderr[-2000:]}\n{r.stdout[-2000:]}")
        job: dict[str, Any] = {}
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                msg = json.loads(line)
                if msg.get("type") == "summary":
                    job = msg.get("job") or {}
        return wall, job


def job_seconds(job: dict[str, Any]) -> float:
    """The job's own time as the agent measured it (start to end of the job function)."""
    return float(job.get("duration_s") or 0.0)
