"""The request bodies of the ingestion benchmark, written once to files wrk sends.

The logs are those `lms pub` publishes (lms.devtools.traffic's LogFactory with its defaults:
realistic templated payloads of their natural lengths, request logs with their metadata,
SIM_SERVICES services), so the HTTP parts move the same
messages as the baseline and their logs/s compare.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

from lms.devtools.traffic import LogFactory, service_names
from lms.ingest.http.native import NDJSON

JSON = "application/json"
SERVICES = 5


@dataclass(frozen=True)
class Body:
    """A body file, what it is sent as, and how many logs it holds."""

    path: Path
    content_type: str
    logs: int
    encoding: str | None = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def make_logs(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    factory = LogFactory(rng)
    services = service_names(SERVICES)
    return [factory.make(rng.choice(services))[0] for _ in range(count)]


def write_bodies(directory: Path, batch: int, seed: int) -> dict[str, Body]:
    """`ndjson` (`batch` logs, one per line), `gzip` (the same, gzipped), `single` (one log
    object) and `refused` (one log that the edge refuses: no publish, a 400)."""
    directory.mkdir(parents=True, exist_ok=True)
    logs = make_logs(batch, seed)
    ndjson = b"\n".join(logs) + b"\n"
    refused = json.loads(logs[0])
    refused["severity"] = "loud"
    files = {
        "ndjson": (ndjson, NDJSON, batch, None),
        "gzip": (gzip.compress(ndjson, compresslevel=6), NDJSON, batch, "gzip"),
        "single": (logs[0], JSON, 1, None),
        "refused": (json.dumps(refused).encode(), JSON, 1, None),
    }
    bodies: dict[str, Body] = {}
    for name, (data, content_type, count, encoding) in files.items():
        path = directory / f"{name}.body"
        path.write_bytes(data)
        bodies[name] = Body(path, content_type, count, encoding)
    return bodies
