"""docker-compose.yml, checked statically (no Docker engine here): scripts/check_compose.py
accepts the file as it is and refuses the unsafe variants, and scripts/compose_env.py makes
the secrets the file requires, once, without touching an operator's own."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_compose = _script("check_compose")
compose_env = _script("compose_env")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_the_compose_file_passes() -> None:
    assert check_compose.check(_compose()) == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("INGEST_TOKENS", "", "without INGEST_TOKENS"),
        ("INGEST_TOKENS", "${LMS_INGEST_TOKENS:-dev-token}", "no default here"),
        ("API_TOKEN", "a-token-in-the-file", "no default here"),
        ("INGEST_ALLOW_ANONYMOUS", "true", "INGEST_ALLOW_ANONYMOUS must stay off"),
        ("API_HOST", "127.0.0.1", "API_HOST should be 0.0.0.0"),
    ],
)
def test_unsafe_api_settings_are_refused(key: str, value: str, expected: str) -> None:
    compose = _compose()
    compose["services"]["api"]["environment"][key] = value
    problems = check_compose.check(compose)
    assert any(expected in problem for problem in problems), problems


def test_api_must_wait_for_the_subscription() -> None:
    compose = _compose()
    del compose["services"]["api"]["depends_on"]
    assert "api: should depend on mon with condition service_healthy" in check_compose.check(
        compose
    )


def test_every_required_secret_is_generated(tmp_path: Path) -> None:
    required = {
        value.split("${", 1)[1].split(":?", 1)[0]
        for value in _strings(_compose())
        if "${" in value and ":?" in value
    }
    assert required == set(compose_env.SECRETS)
    env = tmp_path / ".env"
    assert set(compose_env.ensure(env)) == required
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env.read_text().splitlines())
    assert all(len(value) >= 32 for value in values.values())
    assert compose_env.ensure(env) == []
    assert dict(line.split("=", 1) for line in env.read_text().splitlines()) == values


def test_an_operators_values_are_kept(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# mine\nLMS_API_TOKEN=my-own-token")
    added = compose_env.ensure(env)
    assert "LMS_API_TOKEN" not in added
    lines = env.read_text().splitlines()
    assert lines[:2] == ["# mine", "LMS_API_TOKEN=my-own-token"]
    assert {line.split("=", 1)[0] for line in lines[2:]} == set(added)


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []
