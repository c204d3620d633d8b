"""Give docker-compose its secrets: random ones, kept in `.env`, made once.

    python3 scripts/compose_env.py [ENV_FILE]     (`make up` runs it; default: ./.env)

docker-compose.yml has no default for any password or token (a default everyone can read in
the repository is no secret): it refuses to start until each is set. This writes the missing
ones into the file Compose reads by itself, `.env` beside docker-compose.yml, with random
values, and never changes one that is there, so a MySQL volume initialised with them keeps
working (MySQL reads its passwords only when its data directory is first made) and an
operator's own values win. The file is created readable by its owner only.
Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRETS = (
    "LMS_MYSQL_ROOT_PASSWORD",
    "LMS_MIGRATE_PASSWORD",
    "LMS_MON_PASSWORD",
    "LMS_API_DB_PASSWORD",
    "LMS_INGEST_TOKENS",
    "LMS_API_TOKEN",
)
"""The variables docker-compose.yml requires (`${NAME:?...}`), none with a default."""


def missing(path: Path) -> list[str]:
    """The SECRETS that `path` does not set (all of them when it does not exist)."""
    present: set[str] = set()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, sep, _value = line.partition("=")
            if sep and not name.lstrip().startswith("#"):
                present.add(name.strip().removeprefix("export ").strip())
    return [name for name in SECRETS if name not in present]


def ensure(path: Path) -> list[str]:
    """Append a random value for every missing secret; returns their names."""
    names = missing(path)
    if not names:
        return []
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = [f"{name}={secrets.token_urlsafe(24)}" for name in names]
    prefix = "" if not existing or existing.endswith("\n") else "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(prefix + "\n".join(lines) + "\n")
    return names


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".env"
    added = ensure(path)
    if added:
        print(f"{path}: generated {', '.join(added)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
