"""Ingestion benchmark: `lms api`'s POST /v1/logs against `lms pub` straight to Pub/Sub.

    .venv/bin/python bench/ingest.py                        # the default run (`make bench-ingest`)
    .venv/bin/python bench/ingest.py --seconds 3 --workers 1 --no-docs   # a quick look
    BENCH_INGEST_SECONDS=15 .venv/bin/python bench/ingest.py           # knobs by environment

One run, one machine, its own Pub/Sub emulator (stopped at the end, always), and per
API_WORKERS value (--workers, default 1,2) one `lms api` child process on a fresh topic with a
subscription, ingest-only (API_QUERY=false), with INGEST_TOKENS set. The load generator is
wrk (Debian's `wrk` package), driven by bench/ingestion/client.lua:

  a    `lms pub N` (a subprocess) publishing N logs straight to Pub/Sub: logs/s confirmed,
       as it prints them. Runs once, after the first server. The baseline of b.
  b    8 concurrent keep-alive clients POSTing NDJSON bodies of 1,000 logs (the logs `lms
       pub` makes) to /v1/logs, plain and gzip: logs/s acknowledged with 202.
  c    64 concurrent keep-alive clients POSTing one log per request: requests/s, p50/p99.
  d    GET /healthz on the same server with the same 64 clients: the do-nothing baseline
       of c (uvicorn, the access middleware, routing; no body, no publish).
  d2   one log the edge refuses (400) per request, same clients: c without the publish.

Targets (reported, not asserted): b >= 0.5 x a in logs/s, c >= 0.5 x d in requests/s. The
RSS of `lms api` (all its processes) is sampled every 0.2 s; its peak is reported. Figures
are printed as a table, written as JSON with --json FILE and to docs/performance.md under
"HTTP ingestion" (--no-docs to skip). The modules are in bench/ingestion/.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingestion.main import main

if __name__ == "__main__":
    sys.exit(main())
