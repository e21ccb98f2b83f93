"""Non-finite numbers (nan, inf) are refused everywhere a setting or a tuning parameter is read.

``nan`` passes every ``min``/``max`` comparison (all of them are false), so before there was one
coercion engine, ``collect.system_interval = nan`` was accepted by the configuration while the
tuning model refused ``nan``. Both now go through ``lightkeeper.coerce``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightkeeper import config
from lightkeeper.config import ConfigError
from lightkeeper.tuning.params import PARAMS
from lightkeeper.tuning.validate import TuningError, check_fields, validate_full

NON_FINITE_TOML = ["nan", "+nan", "-nan", "inf", "+inf", "-inf"]
NON_FINITE_TEXT = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"]


def _load(tmp_path: Path, text: str, **extra_env: str) -> config.Config:
    f = tmp_path / "lightkeeper.toml"
    f.write_text(text)
    return config.load(env={**os.environ, "LIGHTKEEPER_CONFIG": str(f), **extra_env})


@pytest.mark.parametrize("literal", NON_FINITE_TOML)
def test_config_file_refuses_non_finite_interval(tmp_path: Path, literal: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f"[collect]\nsystem_interval = {literal}\n")
    text = str(err.value)
    assert "collect.system_interval" in text, text
    assert "not a finite number" in text, text
    assert str(tmp_path / "lightkeeper.toml") in text, text  # names the file that set it


@pytest.mark.parametrize("text_value", NON_FINITE_TEXT)
def test_environment_refuses_non_finite_interval(tmp_path: Path, text_value: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "", LIGHTKEEPER_COLLECT__SYSTEM_INTERVAL=text_value)
    assert "collect.system_interval" in str(err.value)
    assert "not a finite number" in str(err.value)


def test_every_float_setting_refuses_nan(tmp_path: Path) -> None:
    floats = [s for s in config.SETTINGS if s.type == "float"]
    assert floats
    for s in floats:
        section, _, name = s.key.rpartition(".")
        with pytest.raises(ConfigError, match="not a finite number"):
            _load(tmp_path, f"[{section}]\n{name} = nan\n")


def test_config_check_refuses_nan_with_exit_2(run_cli, tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[collect]\nsystem_interval = nan\n")
    r = run_cli("--config", str(f), "config", "check", check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "collect.system_interval = nan is not allowed (not a finite number)" in r.stderr
    r = run_cli("--set", "collect.system_interval=inf", "config", "check", check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "collect.system_interval" in r.stderr and "not a finite number" in r.stderr


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "nan", "inf"])
def test_tuning_parameters_refuse_non_finite(value: object) -> None:
    numeric = [p for p in PARAMS if p.type in ("int", "float")]
    assert numeric
    for p in numeric:
        values, errors = check_fields({p.name: value})
        assert p.name in errors and p.name not in values, (p.name, value)
        assert "not a finite number" in errors[p.name] or "not allowed" in errors[p.name]
    with pytest.raises(TuningError):
        validate_full({numeric[0].name: value})


def test_settings_and_parameters_agree_on_the_same_input() -> None:
    """One engine: a float setting and a float parameter give the same verdict and reason."""
    setting = next(s for s in config.SETTINGS if s.key == "collect.system_interval")
    param = next(p for p in PARAMS if p.type == "float" and p.min is not None)
    for raw in ["nan", "inf", float("nan"), True, "x"]:
        with pytest.raises(ConfigError) as cfg_err:
            config.coerce(setting, raw, "test", setting.key)
        _, errors = check_fields({param.name: raw})
        reason_cfg = str(cfg_err.value).split(" is not allowed")[1].split(";")[0]
        reason_param = errors[param.name].split(" is not allowed")[1].split(";")[0]
        assert reason_cfg == reason_param, (raw, reason_cfg, reason_param)
