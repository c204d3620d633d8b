"""LMS installed from a wheel migrates a fresh database: the migrations are package data.

Before, they were read from `../sql` beside the checkout, so an installed wheel found no files
and `lms migrate` printed "schema is up to date" having applied nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from lms.devtools.monitor_process import child_environment
from lms.settings import Settings
from lms.store.errors import TerminalStorageError
from lms.store.migrations import Migrator, migration_files
from tests.helpers import db_query

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=240, check=False, **kwargs
    )


def _mysql_env(settings: Settings) -> dict[str, str]:
    """The child's settings, without a PYTHONPATH that could lead it back to the checkout."""
    return {k: v for k, v in child_environment(settings).items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the lms wheel installed (its dependencies are borrowed from
    this venv through a .pth path, so nothing else is downloaded); returns its bin/."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources, and a
    # test must not write into the checkout.
    source = tmp / "source"
    shutil.copytree(ROOT / "lms", source / "lms", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp), str(source)],
        cwd=tmp,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = tmp.glob("lms-*.whl")
    venv = tmp / "venv"
    created = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    assert created.returncode == 0, created.stderr
    site = Path(
        _run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            cwd=tmp,
        ).stdout.strip()
    )
    installed = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            f"--target={site}",
            str(wheel),
        ],
        cwd=tmp,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # A plain path line: this venv's packages, without processing its .pth files (so the
    # editable install of the checkout is not on the path).
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    (venv / "bin" / "lms").write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom lms.cli import main\nsys.exit(main())\n"
    )
    (venv / "bin" / "lms").chmod(0o755)
    return venv / "bin"


def test_the_wheel_carries_every_migration(installed_wheel: Path, tmp_path: Path) -> None:
    where = _run(
        [
            str(installed_wheel / "python"),
            "-c",
            "import lms.store.migrations as m; print(m.__file__)",
        ],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed_wheel.parent), where.stdout
    names = _run(
        [
            str(installed_wheel / "python"),
            "-c",
            "from lms.store.migrations import migration_files;"
            " print(' '.join(f.name for f in migration_files()))",
        ],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
    )
    assert names.stdout.split() == [script.name for script in migration_files()]


def test_the_wheel_carries_the_built_web_ui(installed_wheel: Path, tmp_path: Path) -> None:
    """lms/ui/static (built by make install, not committed) is package data too: the image
    and any installed lms serve the UI."""
    where = _run(
        [str(installed_wheel / "python"), "-c", "import lms.ui as u; print(u.STATIC_DIR)"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
    )
    static = Path(where.stdout.strip())
    assert static.is_relative_to(installed_wheel.parent), where.stdout + where.stderr
    source = ROOT / "lms" / "ui" / "static"
    assert (source / "index.html").is_file(), "the UI is not built: make install"
    built = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert sorted(p.relative_to(static) for p in static.rglob("*") if p.is_file()) == built


async def test_lms_migrate_from_the_wheel_applies_the_schema(
    installed_wheel: Path, settings, tmp_path: Path
) -> None:
    s = settings()
    expected = [script.name for script in migration_files()]
    first = _run([str(installed_wheel / "lms"), "migrate"], cwd=tmp_path, env=_mysql_env(s))
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.strip() == f"applied: {', '.join(expected)}"
    rows = await db_query(s, "SELECT version FROM schema_migrations ORDER BY version")
    assert [row[0] for row in rows] == expected
    again = _run([str(installed_wheel / "lms"), "migrate"], cwd=tmp_path, env=_mysql_env(s))
    assert again.stdout.strip() == "schema is up to date"


async def test_a_package_without_migrations_is_an_error_not_up_to_date(
    settings, tmp_path: Path
) -> None:
    with pytest.raises(TerminalStorageError, match="no migrations found"):
        await Migrator(settings(), tmp_path).migrate()


def test_lms_migrate_with_the_database_down_prints_one_line(settings, tmp_path: Path) -> None:
    s = settings(mysql_port=1)
    lms = Path(sys.executable).with_name("lms")
    result = _run([str(lms), "migrate"], cwd=tmp_path, env=_mysql_env(s))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lms migrate: migration failed:")
    assert "Traceback" not in result.stdout + result.stderr
