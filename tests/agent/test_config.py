"""Configuration: precedence, origins, validation messages, unknown keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightkeeper import config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_precedence_and_origins(lk_env: dict[str, str], tmp_path: Path) -> None:
    user_file = write(config.user_config_path(), "[store]\nflush_interval = 3\n"
                      "retention_raw_hours = 10\n[log]\nlevel = 'debug'\n")
    explicit = write(tmp_path / "explicit.toml", "[store]\nretention_raw_hours = 20\n"
                     "size_budget_mb = 500\n")
    env = {**os.environ, "LIGHTKEEPER_STORE__SIZE_BUDGET_MB": "600"}
    cfg = config.load(explicit, overrides=[("log.level", "warning")], env=env)
    assert cfg["store.flush_interval"] == 3.0
    assert cfg.origin("store.flush_interval") == str(user_file)
    assert cfg["store.retention_raw_hours"] == 20.0
    assert cfg.origin("store.retention_raw_hours") == str(explicit)
    assert cfg["store.size_budget_mb"] == 600.0
    assert cfg.origin("store.size_budget_mb") == "environment LIGHTKEEPER_STORE__SIZE_BUDGET_MB"
    assert cfg["log.level"] == "warning"
    assert cfg.origin("log.level") == "command line"
    assert cfg.origin("store.retention_1h_days") == "default"
    # derived defaults follow the state dir
    assert cfg["store.path"] == str(Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "metrics.duckdb")


def test_config_env_var_selects_file(lk_env: dict[str, str], tmp_path: Path) -> None:
    f = write(tmp_path / "c.toml", "[http]\nenabled = false\n")
    cfg = config.load(env={**os.environ, "LIGHTKEEPER_CONFIG": str(f)})
    assert cfg["http.enabled"] is False
    assert cfg.origin("http.enabled") == str(f)


@pytest.mark.parametrize("text, fragment", [
    ("[store]\nretention_raw_hours = 'soon'\n", "store.retention_raw_hours = 'soon' is not allowed"),
    ("[store]\nretention_raw_hours = 0\n", "smaller than"),
    ("[log]\nlevel = 'loud'\n", "one of 'debug', 'info', 'warning', 'error'"),
    ("[http]\nenabled = 'maybe'\n", "expected true or false"),
    ("[http]\nlisten = 'nowhere'\n", "expected host:port"),
    ("[zones.eu1]\nhost = 'h'\n", "zone 'eu1' needs zones.eu1.user"),
])
def test_invalid_values_name_file_key_value_and_allowed(lk_env: dict[str, str], tmp_path: Path,
                                                        text: str, fragment: str) -> None:
    f = write(tmp_path / "bad.toml", text)
    env = {k: v for k, v in os.environ.items() if k != "LIGHTKEEPER_HTTP__LISTEN"}
    with pytest.raises(config.ConfigError) as exc:
        config.load(f, env=env)
    assert fragment in str(exc.value)
    assert str(f) in str(exc.value)


def test_unknown_key_suggests(lk_env: dict[str, str], tmp_path: Path) -> None:
    f = write(tmp_path / "typo.toml", "[store]\nretention_raw_hour = 5\n")
    with pytest.raises(config.ConfigError, match="did you mean 'store.retention_raw_hours'"):
        config.load(f)
    with pytest.raises(config.ConfigError, match="did you mean 'zones.eu1.host'"):
        config.load(write(tmp_path / "z.toml", "[zones.eu1]\nhots = 'x'\n"))


def test_unknown_environment_variable(lk_env: dict[str, str]) -> None:
    env = {**os.environ, "LIGHTKEEPER_STORE__RETENTON_RAW_HOURS": "3"}
    with pytest.raises(config.ConfigError, match="did you mean 'store.retention_raw_hours'"):
        config.load(env=env)


def test_invalid_toml_and_missing_file(lk_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="invalid TOML"):
        config.load(write(tmp_path / "broken.toml", "[store\n"))
    with pytest.raises(config.ConfigError, match="config file not found"):
        config.load(tmp_path / "absent.toml")


def test_cli_show_origin_and_bad_config_exit_code(run_cli, tmp_path: Path) -> None:
    out = run_cli("--set", "store.flush_interval=4", "config", "show", "--origin").stdout
    line = next(row for row in out.splitlines() if row.startswith("store.flush_interval"))
    assert "4.0" in line and "command line" in line
    data = run_cli("config", "show", "--json").stdout
    assert '"key": "paths.data_root"' in data
    bad = write(tmp_path / "bad.toml", "[store]\nflush_interval = -1\n")
    r = run_cli("--config", str(bad), "config", "check", check=False)
    assert r.returncode == 2
    assert "store.flush_interval = -1 is not allowed" in r.stderr


def test_secret_values_masked_in_show(run_cli, tmp_path: Path) -> None:
    f = write(tmp_path / "pg.toml",
              "[sources.postgres.main]\ndsn = 'postgresql://app:hunter2@127.0.0.1/app'\n")
    out = run_cli("--config", str(f), "config", "show", "--origin").stdout
    assert "hunter2" not in out
    assert "sources.postgres.main.dsn" in out
