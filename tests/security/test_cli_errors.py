"""Low: bad local state gives a clean error through the real CLI and agent, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.datagen import generate


def test_low_backup_list_with_world_readable_key_file_is_a_clean_error(
        lk_env: dict[str, str], agent: Any, run_cli: Any) -> None:
    data = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    generate(data, users=1, seed=5, total_mb=0.3)
    run_cli("backup", "run", "--json")
    key_file = Path(json.loads(run_cli("backup", "key", "show", "--json").stdout)["key_file"])
    key_file.chmod(0o644)
    for args in (("backup", "list"), ("backup", "list", "--json"), ("backup", "show", "latest"),
                 ("backup", "stats")):
        r = run_cli(*args, check=False)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
        assert f"chmod 600 {key_file}" in r.stderr, r.stderr
