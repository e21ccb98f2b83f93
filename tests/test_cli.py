"""Every command has --help; usage errors exit 2."""

from __future__ import annotations

import argparse

import pytest

from lightkeeper.cli.main import build_parser, main


def all_command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append(prefix + [name])
                    walk(sub, prefix + [name])

    walk(build_parser(), [])
    return paths


def test_commands_present() -> None:
    top = {p[0] for p in all_command_paths()}
    assert {"agent", "status", "config", "alerts", "events", "metrics", "jobs"} <= top


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p))
def test_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    assert "usage: lightkeeper" in capsys.readouterr().out


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["status", "--no-such-flag"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["metrics", "query"])
    assert exc.value.code == 2


def test_configuration_reference_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/configuration.md is generated from the schema; it must list every key."""
    from pathlib import Path

    from lightkeeper import config

    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    assert config.reference_markdown() in doc, \
        "regenerate docs/configuration.md with 'lightkeeper config reference'"


def test_scripts_set_no_lightkeeper_variable_the_config_refuses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """LIGHTKEEPER_* variables are configuration keys: a script exporting one the schema does not
    know makes every command refuse to start (run-demo.sh did, with LIGHTKEEPER_DEMO_STEPS)."""
    import re
    from pathlib import Path

    from lightkeeper import config as config_mod

    scripts = Path(__file__).resolve().parent.parent / "scripts"
    checked = 0
    for script in sorted(scripts.glob("*.sh")):
        found = [(n, v) for n, v in re.findall(r"(LIGHTKEEPER_[A-Z0-9_]+)=(\S*)",
                                               script.read_text()) if n != "LIGHTKEEPER_CONFIG"]
        with monkeypatch.context() as m:  # a script's variables together, as it sets them
            for name, value in found:
                m.setenv(name, value.strip("'\"") or "x")
            try:
                config_mod.load(read_system=False)
            except config_mod.ConfigError as exc:  # values are shell-expanded: check names
                assert "unknown key" not in str(exc), f"{script.name}: {exc}"
        checked += len(found)
    assert checked  # screenshots.sh configures its demo zone this way


@pytest.mark.parametrize("argv, command", [
    (["backup", "run"], "backup"),
    (["--config", "f.toml", "--set", "a.b=1", "restore", "latest"], "restore"),
    (["--conf", "status", "backup", "run"], "backup"),  # an abbreviated option's value
    (["--config=f.toml", "offline-llm"], "offline-llm"),
    (["--help"], None), ([], None), (["nosuch"], None)])
def test_a_named_command_builds_only_its_own_parser(argv: list[str], command: str | None
                                                    ) -> None:
    """``lightkeeper backup run`` imports and builds only the backup command's parser, which
    is the same as in the full parser (same subcommands and options)."""
    from lightkeeper.cli.main import COMMANDS, command_of

    assert command_of(argv) == command
    full = build_parser()
    full_sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert set(full_sub.choices) == set(COMMANDS)
    for name in ([command] if command else []):
        lazy = build_parser(name)
        sub = next(a for a in lazy._actions if isinstance(a, argparse._SubParsersAction))
        assert list(sub.choices) == [name]
        assert sub.choices[name].format_help() == full_sub.choices[name].format_help()
