"""docker-compose.yml, checked statically (no Docker engine here): scripts/check_compose.py
accepts the file as it is and refuses the unsafe variants, and scripts/compose_env.py makes
the secrets the file requires, once, without touching an operator's own."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
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
    ("service", "key", "value", "expected"),
    [
        ("api", "INGEST_TOKENS", "", "without INGEST_TOKENS"),
        ("api", "INGEST_TOKENS", "${LMS_INGEST_TOKENS:-dev-token}", "no default in this file"),
        ("api", "API_TOKEN", "a-token-in-the-file", "no default in this file"),
        ("api", "INGEST_ALLOW_ANONYMOUS", "true", "INGEST_ALLOW_ANONYMOUS must stay off"),
        ("api", "API_HOST", "127.0.0.1", "API_HOST should be 0.0.0.0"),
        ("mysql", "MYSQL_ROOT_PASSWORD", "lms", "no default in this file"),
        ("mon", "MYSQL_USER", "root", "MYSQL_USER should be lms_mon"),
        ("api", "MYSQL_USER", "lms_mon", "MYSQL_USER should be lms_api"),
        ("mon", "MYSQL_PASSWORD", "${LMS_API_DB_PASSWORD:?x}", "${LMS_MON_PASSWORD:?...}"),
        ("migrate", "MYSQL_PASSWORD", "${LMS_MIGRATE_PASSWORD:-lms}", "no default"),
    ],
)
def test_unsafe_settings_are_refused(service: str, key: str, value: str, expected: str) -> None:
    compose = _compose()
    compose["services"][service]["environment"][key] = value
    problems = check_compose.check(compose)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize("service", ["mysql", "pubsub", "mon", "api", "prometheus"])
@pytest.mark.parametrize("form", ["short", "long"])
def test_ports_published_beyond_loopback_are_refused(service: str, form: str) -> None:
    compose = _compose()
    [port] = compose["services"][service]["ports"]
    container = port.rsplit(":", 1)[1]
    compose["services"][service]["ports"] = [
        f"{container}:{container}" if form == "short" else {"target": int(container)}
    ]
    problems = check_compose.check(compose)
    assert any(p.startswith(f"{service}: port") for p in problems), problems


def test_only_the_api_may_be_opened_by_a_variable() -> None:
    services = _compose()["services"]
    ports = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert set(ports) == {"mysql", "pubsub", "mon", "api", "prometheus"}
    for name, [port] in ports.items():
        assert port.startswith("${LMS_API_BIND:-127.0.0.1}:" if name == "api" else "127.0.0.1:")


@pytest.mark.parametrize(
    ("service", "dependency", "condition"),
    [
        ("api", "mon", "service_healthy"),
        ("sim", "mon", "service_healthy"),
        ("mon", "migrate", "service_completed_successfully"),
        ("migrate", "mysql", "service_healthy"),
    ],
)
def test_start_up_order_is_checked(service: str, dependency: str, condition: str) -> None:
    compose = _compose()
    del compose["services"][service]["depends_on"][dependency]
    expected = f"{service}: should depend on {dependency} with condition {condition}"
    assert expected in check_compose.check(compose)


def test_the_users_script_must_be_mounted() -> None:
    compose = _compose()
    compose["services"]["mysql"]["volumes"] = ["mysql-data:/var/lib/mysql"]
    assert any("lms-users.sh should be mounted" in p for p in check_compose.check(compose))


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


def test_the_users_script_makes_the_users_compose_connects_as() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LMS_")}
    passwords = {variable: f"pw-{variable}" for _user, variable in check_compose.DB_USERS.values()}
    sql = subprocess.run(
        ["bash", str(ROOT / check_compose.USERS_SCRIPT), "--print"],
        env={**env, **passwords, "MYSQL_DATABASE": "lms"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for user, variable in check_compose.DB_USERS.values():
        assert f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY 'pw-{variable}';" in sql
        assert f"TO '{user}'@'%';" in sql
