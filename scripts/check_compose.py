"""Static check of docker-compose.yml, for machines without a Docker engine.

    python3 scripts/check_compose.py [docker-compose.yml]     (make check-compose)

Needs PyYAML. Checks that the services exist, that `mon` waits for a healthy database and
emulator, that `sim` and `api` wait for a ready `mon` (it creates the subscription), that every
service with a health condition on it has a healthcheck, and that `mon`, `sim` and `api` are
configured with valid LMS settings pointing at the compose services. For `api`: it listens on
all interfaces inside its container, takes its tokens from the environment with no default
(`${VAR:?...}`: nothing anyone can read here), and would start (not refused as anonymous
ingestion beyond loopback). Prints "compose OK" or each problem, exiting 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {"mysql", "pubsub", "mon", "sim", "api"}
LMS_SERVICES = ("mon", "sim", "api")
API_SECRETS = ("INGEST_TOKENS", "API_TOKEN")
"""Settings of `api` that must come from the environment, never from a default in the file."""


def check(compose: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    services: dict[str, Any] = compose.get("services") or {}
    missing = REQUIRED - set(services)
    if missing:
        return [f"missing services: {sorted(missing)}"]

    for name, service in services.items():
        if not (service.get("image") or service.get("build")):
            problems.append(f"{name}: neither image nor build")
        for dep, spec in _depends_on(service).items():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep!r}")
            elif spec.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{name}: waits for {dep} to be healthy, but it has no healthcheck")

    expect_deps = {"mon": {"mysql", "pubsub"}, "sim": {"mon"}, "api": {"mon"}}
    for name, deps in expect_deps.items():
        got = _depends_on(services[name])
        for dep in deps:
            if got.get(dep, {}).get("condition") != "service_healthy":
                problems.append(f"{name}: should depend on {dep} with condition service_healthy")

    if "mysql:8" not in str(services["mysql"].get("image", "")):
        problems.append("mysql: expected a mysql:8 image")
    if services["mon"].get("build") is None:
        problems.append("mon: should be built from the Dockerfile (build: .)")
    if not (ROOT / "Dockerfile").exists():
        problems.append("Dockerfile is missing")

    mysql_env = _environment(services["mysql"])
    for name in LMS_SERVICES:
        env = _environment(services[name])
        command = services[name].get("command")
        if not command or str(command[0] if isinstance(command, list) else command) != name:
            problems.append(f"{name}: command should be [{name!r}] (the image's entrypoint is lms)")
        if env.get("PUBSUB_EMULATOR_HOST", "").split(":")[0] != "pubsub":
            problems.append(f"{name}: PUBSUB_EMULATOR_HOST should point at the pubsub service")
        if name == "mon":
            if env.get("MYSQL_HOST") != "mysql":
                problems.append("mon: MYSQL_HOST should be the mysql service")
            if env.get("MYSQL_PASSWORD", "") != mysql_env.get("MYSQL_ROOT_PASSWORD", ""):
                problems.append("mon: MYSQL_PASSWORD differs from mysql's MYSQL_ROOT_PASSWORD")
        problems += [f"{name}: {p}" for p in _settings_problems(env, exposure=name == "api")]
    problems += [f"api: {p}" for p in _api_problems(services["api"])]
    return problems


def _api_problems(service: dict[str, Any]) -> list[str]:
    """Ingestion must not be anonymous, and no token may be written in the file itself."""
    problems: list[str] = []
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    env = _environment(service)
    if env.get("API_HOST") != "0.0.0.0":
        problems.append("API_HOST should be 0.0.0.0: loopback inside a container is unreachable")
    for key in API_SECRETS:
        value = str(raw.get(key, ""))
        if not (value.startswith("${") and ":?" in value and value.endswith("}")):
            problems.append(f"{key} should be ${{VAR:?...}}: required, with no default here")
    if env.get("INGEST_ALLOW_ANONYMOUS", "false").lower() not in ("false", "0", "no", "off"):
        problems.append("INGEST_ALLOW_ANONYMOUS must stay off")
    return problems


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {dep: {} for dep in deps}
    return {dep: spec or {} for dep, spec in deps.items()}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: _interpolate(str(value)) for key, value in env.items()}


REQUIRED_VALUE = "set-in-env"
"""What a required `${VAR:?message}` stands for here: the value an operator must give."""


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default}, taking the default (what an unset environment gives), and
    ${VAR:?message}, taking REQUIRED_VALUE (compose refuses to start without it)."""
    while "${" in value:
        start = value.index("${")
        end = value.index("}", start)
        inner = value[start + 2 : end]
        if ":?" in inner:
            default = REQUIRED_VALUE
        else:
            default = inner.split(":-", 1)[1] if ":-" in inner else ""
        value = value[:start] + default + value[end + 1 :]
    return value


def _settings_problems(env: dict[str, str], exposure: bool = False) -> list[str]:
    """Load LMS's own settings from this environment, if the package is importable; with
    `exposure`, also whether `lms api` would refuse to start with them (lms.api.auth)."""
    sys.path.insert(0, str(ROOT))
    try:
        from lms.api.auth import check_exposure
        from lms.settings import Settings, SettingsError, load_settings
    except ImportError:
        return []
    known = {name.upper() for name in Settings.model_fields}
    problems = [f"{key} is not an LMS setting" for key in env if key not in known]
    overrides = {key.lower(): value for key, value in env.items() if key in known}
    try:
        settings = load_settings(**overrides)
        if exposure:
            check_exposure(settings)
    except SettingsError as exc:
        problems.append(str(exc))
    return problems


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docker-compose.yml"
    compose = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = check(compose)
    for problem in problems:
        print(f"{path.name}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"compose OK: {', '.join(sorted(compose['services']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
