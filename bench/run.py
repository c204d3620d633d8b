"""Pipeline benchmark: `lms mon` against the limits of the pieces it sits between.

    .venv/bin/python bench/run.py                          # the default run (`make bench`)
    .venv/bin/python bench/run.py --messages 50000 --json out.json
    .venv/bin/python bench/run.py --parts a,b,c --single   # one round: a quick look
    .venv/bin/python bench/run.py --parts c --baseline /tmp/main   # two versions, one run
    .venv/bin/python bench/run.py --parts rss              # only the 1,000,000-message RSS check
    .venv/bin/python bench/run.py --tune 1000:2000,5000:10000:1   # BATCHSIZE:MAX_OUTST.[:PULLERS]

One run, one machine, its own Pub/Sub emulator (a free port; its process group is stopped at
the end, always) and a fresh topic, subscription and database for every part. The core parts
(a, a2, b, b0, b2, c) run in --rounds alternating rounds (3; a, b, c, a, b, c, ...), each on
fresh names: every figure is the median of its rounds with the spread (smallest-largest), and
c / min(a, b) is computed within each round before its median is taken, so an order effect or
a noisy neighbour shows up as spread rather than as another verdict. --single is one round.

  a    bare Pub/Sub drain: a backlog of N realistic messages (payloads of 50-2,000 chars,
       published 8 requests of 1,000 at a time) drained by the leanest consumer: unary Pull
       of 1,000 from one task, each response acked at once, no parsing, no database.
  a2   the same drain holding the acks until BATCHSIZE messages are held, as a consumer that
       acks only after its commit must: the ceiling of any hold-until-commit pipeline here.
  b    bare database: the same rows as multi-row INSERTs (aiomysql executemany) in
       transactions of 5,000 rows (plus their service_severity rows), real schema.
  b2   the same rows through lms.storage.Storage.write_batch (our transaction).
  c    `lms mon` (a subprocess) draining the same backlog until every message is committed
       and acked: with the defaults, and with the settings of bench/emulator.env. Rate from
       its "monitor started" line to its last "batch committed" line; peak RSS (VmHWM); CPU
       seconds (user + system) per 1,000 messages of the process itself, and over the same
       span of the emulator (its whole process group) and of mysqld (by the PID in its
       @@pid_file; other clients of a shared server count too). With --baseline DIR (which
       may be repeated), (c) with emulator.env runs again in every round with lms imported
       from DIR, and the ratios of CPU per message and of msg/s to it are taken per round.
  profile  the emulator.env run again under py-spy (top functions, time per area).
  latency  a steady publish rate of half of c (emulator.env, FLUSHINTERVAL=1) for 20 s:
       p50/p99 publish-to-commit latency from the database (created_at - timestamp) and from
       the commit times of the batches.
  pub  `lms pub 200000` (a subprocess) throughput, as it prints it.
  rss  (--rss-check or --parts rss; not in the default run) peak RSS of `lms mon` draining a
       1,000,000-message backlog with bench/emulator.env; must stay <= 250 MB. Slow: the
       emulator hands out such a backlog at ~500-1,000 msg/s (20-30 min).

Figures are printed as a table, written as JSON with --json FILE and written to
docs/performance.md under "Pipeline benchmark" and "Pipeline profile" (--no-docs to skip).

The parts live in bench/pipeline/ (one module each: drain, database, mon, profile, latency,
pub, tune; report writes the table and the docs; main is this command line).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline.main import main

if __name__ == "__main__":
    sys.exit(main())
