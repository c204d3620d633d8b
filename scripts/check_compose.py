"""Static check of docker-compose.yml, for machines without a Docker engine.

    python3 scripts/check_compose.py [docker-compose.yml]     (make check-compose)

Needs PyYAML. Checks:

- the services exist; `migrate` waits for a healthy database, `mon` for the finished migration
  and a healthy emulator, `sim` and `api` for a ready `mon` (it creates the subscription);
  every service with a health condition on it has a healthcheck;
- `mon`, `sim`, `api` and `migrate` are configured with valid LMS settings pointing at the
  compose services;
- exposure: every published port binds 127.0.0.1 by default (the emulator, the metrics and
  Prometheus have no authentication; `api` may be opened by a variable, its default loopback);
  `api` listens on all interfaces inside its container and would start, never as anonymous
  ingestion; its port (3000, the web UI's too) is published and API_UI is not turned off;
- secrets: every password and token is `${VAR:?...}`, required and with no default in the
  file; `migrate`, `mon` and `api` each connect as their own MySQL user, never root, with the
  password that the mysql service hands to deploy/mysql/lms-users.sh (mounted in
  /docker-entrypoint-initdb.d/) for that user.

Prints "compose OK" or each problem, exiting 1.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
LMS_SERVICES = ("migrate", "mon", "api", "sim")
REQUIRED = {"mysql", "pubsub", *LMS_SERVICES}
DEPENDENCIES = {
    "migrate": {"mysql": "service_healthy"},
    "mon": {"migrate": "service_completed_successfully", "pubsub": "service_healthy"},
    "sim": {"mon": "service_healthy"},
    "api": {"mon": "service_healthy"},
}
DB_USERS = {
    "migrate": ("lms_migrate", "LMS_MIGRATE_PASSWORD"),
    "mon": ("lms_mon", "LMS_MON_PASSWORD"),
    "api": ("lms_api", "LMS_API_DB_PASSWORD"),
}
"""Service: the MySQL user it connects as, and the variable of its password, which the mysql
service passes under the same name to deploy/mysql/lms-users.sh."""
USERS_SCRIPT = "./deploy/mysql/lms-users.sh"
INIT_DIR = "/docker-entrypoint-initdb.d/"
SECRET_KEY = re.compile(r"PASSWORD|TOKEN")
REQUIRED_VAR = re.compile(r"^\$\{([A-Z0-9_]+):\?[^}]*\}$")
LOOPBACK = "127.0.0.1"
REQUIRED_VALUE = "set-in-env"
"""What a required `${VAR:?message}` stands for here: the value an operator must give."""


def check(compose: dict[str, Any]) -> list[str]:
    services: dict[str, Any] = compose.get("services") or {}
    missing = REQUIRED - set(services)
    if missing:
        return [f"missing services: {sorted(missing)}"]
    problems = _dependency_problems(services)
    if "mysql:8" not in str(services["mysql"].get("image", "")):
        problems.append("mysql: expected a mysql:8 image")
    if services["mon"].get("build") is None:
        problems.append("mon: should be built from the Dockerfile (build: .)")
    if not (ROOT / "Dockerfile").exists():
        problems.append("Dockerfile is missing")
    for name, service in services.items():
        problems += [f"{name}: {p}" for p in _port_problems(service)]
        problems += [f"{name}: {p}" for p in _secret_problems(service)]
    for name in LMS_SERVICES:
        problems += [f"{name}: {p}" for p in _lms_problems(name, services[name])]
    problems += [f"api: {p}" for p in _api_problems(services["api"])]
    problems += _user_problems(services)
    return problems


def _dependency_problems(services: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for name, service in services.items():
        if not (service.get("image") or service.get("build")):
            problems.append(f"{name}: neither image nor build")
        for dep, spec in _depends_on(service).items():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep!r}")
            elif spec.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{name}: waits for {dep} to be healthy, but it has no healthcheck")
    for name, deps in DEPENDENCIES.items():
        got = _depends_on(services[name])
        for dep, condition in deps.items():
            if got.get(dep, {}).get("condition") != condition:
                problems.append(f"{name}: should depend on {dep} with condition {condition}")
    return problems


def _port_problems(service: dict[str, Any]) -> list[str]:
    """Every published port binds loopback once compose's defaults are applied."""
    problems: list[str] = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            host_ip = _interpolate(str(port.get("host_ip", "")))
        else:
            parts = _interpolate(str(port)).split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
        if host_ip != LOOPBACK:
            problems.append(f"port {port!r} is published on all interfaces, not {LOOPBACK}")
    return problems


def _secret_problems(service: dict[str, Any]) -> list[str]:
    return [
        f"{key} should be ${{VAR:?...}}: required, with no default in this file"
        for key, value in _raw_environment(service).items()
        if SECRET_KEY.search(key) and not REQUIRED_VAR.match(str(value))
    ]


def _lms_problems(name: str, service: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    env = _environment(service)
    command = service.get("command")
    if not command or str(command[0] if isinstance(command, list) else command) != name:
        problems.append(f"command should be [{name!r}] (the image's entrypoint is lms)")
    if name != "migrate" and env.get("PUBSUB_EMULATOR_HOST", "").split(":")[0] != "pubsub":
        problems.append("PUBSUB_EMULATOR_HOST should point at the pubsub service")
    if name in DB_USERS and env.get("MYSQL_HOST") != "mysql":
        problems.append("MYSQL_HOST should be the mysql service")
    return problems + _settings_problems(env, exposure=name == "api")


def _api_problems(service: dict[str, Any]) -> list[str]:
    """Ingestion must not be anonymous, and `api` (with its web UI, docs/ui.md) must be
    reachable from the host on its port."""
    problems: list[str] = []
    env = _environment(service)
    port = env.get("API_PORT", "3000")
    published = [_interpolate(str(p)).rsplit(":", 1)[-1] for p in service.get("ports", [])]
    if port not in published:
        problems.append(f"the container's API_PORT {port} should be published (ports)")
    if env.get("API_UI", "true").lower() in ("false", "0", "no", "off"):
        problems.append("API_UI should stay on: the web UI is served on the api port")
    if env.get("API_HOST") != "0.0.0.0":
        problems.append("API_HOST should be 0.0.0.0: loopback inside a container is unreachable")
    if not _raw_environment(service).get("INGEST_TOKENS"):
        problems.append("INGEST_TOKENS must be set: ingestion is never anonymous here")
    if env.get("INGEST_ALLOW_ANONYMOUS", "false").lower() not in ("false", "0", "no", "off"):
        problems.append("INGEST_ALLOW_ANONYMOUS must stay off")
    return problems


def _user_problems(services: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    mysql = services["mysql"]
    mysql_env = _raw_environment(mysql)
    mounts = [str(volume) for volume in mysql.get("volumes") or []]
    if not any(m.startswith(f"{USERS_SCRIPT}:{INIT_DIR}") for m in mounts):
        problems.append(f"mysql: {USERS_SCRIPT} should be mounted in {INIT_DIR}")
    for name, (user, variable) in DB_USERS.items():
        env = _raw_environment(services[name])
        if env.get("MYSQL_USER") != user:
            problems.append(f"{name}: MYSQL_USER should be {user} (its own, not root)")
        password = REQUIRED_VAR.match(str(env.get("MYSQL_PASSWORD", "")))
        if password is None or password.group(1) != variable:
            problems.append(f"{name}: MYSQL_PASSWORD should be ${{{variable}:?...}}")
        handed = REQUIRED_VAR.match(str(mysql_env.get(variable, "")))
        if handed is None or handed.group(1) != variable:
            problems.append(f"mysql: {variable} should be ${{{variable}:?...}} (for {user})")
    return problems


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {dep: {} for dep in deps}
    return {dep: spec or {} for dep, spec in deps.items()}


def _raw_environment(service: dict[str, Any]) -> dict[str, str]:
    """The environment as written in the file, before interpolation."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: _interpolate(value) for key, value in _raw_environment(service).items()}


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
