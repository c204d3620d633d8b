"""What is installed is pinned: constraints.txt (scripts/lock.py) covers every requirement of
pyproject.toml at a version it allows, make install and the Dockerfile install with it, and
the Dockerfile's base image is pinned by version and digest."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _lock()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_requirement_is_pinned_within_its_range() -> None:
    pins = _pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = project["dependencies"] + project["optional-dependencies"]["dev"]
    for requirement in map(Requirement, texts):
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in constraints.txt (run make lock)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement}"
        )
    assert not set(pins) & lock.BUILD_TOOLS


def test_transitive_requirements_and_extras_are_followed() -> None:
    pinned = lock.closure(lock.top_level(ROOT / "pyproject.toml"))
    # google-cloud-pubsub needs grpcio (through google-api-core[grpc]), pytest pluggy.
    assert {"grpcio", "google-api-core", "pluggy", "pydantic-core"} <= set(pinned)
    assert "lms" not in pinned


def test_check_tells_a_stale_file(tmp_path: Path) -> None:
    output = tmp_path / "constraints.txt"
    assert lock.main([str(output)]) == 0
    assert lock.main(["--check", str(output)]) == 0
    output.write_text(output.read_text().replace("pytest==", "pytest==0."), encoding="utf-8")
    assert lock.main(["--check", str(output)]) == 1


def test_installs_use_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "$(PIP) install --quiet -c constraints.txt -e '.[dev]'" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^RUN pip install -c constraints\.txt \.", dockerfile, re.MULTILINE)
    assert re.search(r"^COPY [^\n]*constraints\.txt", dockerfile, re.MULTILINE)


def test_the_base_image_is_pinned() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    images = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert images
    for image in images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", image), image
