"""The spool: logs that could not be sent, in local files, resent oldest first.

One file per batch, `<unix ns>-<pid>-<seq>.ndjson`, so names sort oldest first across
processes; each line is a log with its key as `id` (Entry.line), so a log resent keeps its
key and LMS stores it once even if an earlier attempt did arrive. A file is written under a
temporary name and renamed, so a reader never sees half of one; it is deleted only once its
logs are delivered, so a crash in between sends it again (stored once). One process at a time
resends (an advisory lock on `.lock`), while any number may add files.

The directory is bounded by `max_bytes`: a batch that does not fit is not written, and the
handler counts its logs as dropped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lms_client.entry import BadLine, Entry, from_line

if sys.platform != "win32":
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

else:  # pragma: no cover - no flock: resends may overlap, and LMS stores each log once

    def _try_lock(fd: int) -> bool:
        return True

    def _unlock(fd: int) -> None:
        pass


SUFFIX = ".ndjson"
LOCK_NAME = ".lock"


class Spool:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._seq = itertools.count()

    def files(self) -> list[Path]:
        """The spooled batches, oldest first."""
        with contextlib.suppress(FileNotFoundError):
            return sorted(
                (Path(e.path) for e in os.scandir(self.directory) if e.name.endswith(SUFFIX)),
                key=lambda p: p.name,
            )
        return []

    def size(self) -> int:
        total = 0
        for path in self.files():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def write(self, batch: list[Entry]) -> bool:
        """Add `batch` as one file; False (nothing written) when it would pass `max_bytes`."""
        body = b"\n".join(e.line() for e in batch) + b"\n"
        if self.size() + len(body) > self.max_bytes:
            return False
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}{SUFFIX}"
        temporary = self.directory / f".{name}.tmp"
        with temporary.open("wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        temporary.rename(self.directory / name)
        return True

    @contextlib.contextmanager
    def resending(self) -> Iterator[bool]:
        """Holds the resend lock while the block runs; yields False when another process
        has it (that one resends, this one need not)."""
        with (self.directory / LOCK_NAME).open("a+b") as lock:
            if not _try_lock(lock.fileno()):
                yield False
                return
            try:
                yield True
            finally:
                _unlock(lock.fileno())


def read(path: Path) -> tuple[list[Entry], int]:
    """The logs of a spool file, and how many of its lines are not logs (a corrupted file:
    the handler counts them as dropped)."""
    entries: list[Entry] = []
    bad = 0
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            entries.append(from_line(line))
        except BadLine:
            bad += 1
    return entries, bad
