"""The latency part: a steady publish rate below the drain rate, and how long a log takes from
its publish to its commit (from the database, the batch lines and /metrics)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

from google.pubsub_v1 import PubsubMessage

from bench.pipeline.common import PAYLOAD_CHARS, SERVICES, Context, log_time, say
from bench.pipeline.mon import BenchMonitor
from lms.devtools.database import connect_blocking
from lms.devtools.ports import free_port
from lms.devtools.resources import delete_resources, ensure_resources
from lms.devtools.traffic import LogFactory, service_names
from lms.ingest.sources.pubsub import client as pubsub
from lms.settings import Settings


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def histogram_quantiles(text: str, metric: str, qs: tuple[float, ...]) -> dict[str, float]:
    """Quantiles (linear within a bucket) of a Prometheus histogram in exposition text."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        match = re.match(rf'{metric}_bucket\{{.*?le="([^"]+)".*?\}} ([0-9.e+]+)', line)
        if match:
            buckets.append((float(match.group(1)), float(match.group(2))))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return {}
    total = buckets[-1][1]
    out = {}
    for q in qs:
        rank = q * total
        lower, below = 0.0, 0.0
        for bound, cumulative in buckets:
            if cumulative >= rank:
                if math.isinf(bound):
                    value = lower
                else:
                    share = (rank - below) / (cumulative - below) if cumulative > below else 0
                    value = lower + (bound - lower) * share
                out[f"p{round(q * 100)}"] = value
                break
            lower, below = bound, cumulative
    return out


async def steady_publish(settings: Settings, rate: float, seconds: float) -> dict:
    """Publish `rate` messages/s for `seconds`, in ticks of 20 ms; each message carries the
    time it was sent in `timestamp`."""
    rng = random.Random(7)
    factory = LogFactory(rng, payload_chars=PAYLOAD_CHARS)
    services = service_names(SERVICES)
    bodies = []
    for _ in range(2000):
        data, _key = factory.make(rng.choice(services))
        body = json.loads(data)
        bodies.append((body["service_name"], body["payload"], body["severity"]))
    slots = asyncio.Semaphore(16)
    published = 0
    tick = 0.02
    async with pubsub.publisher_client(settings) as client:

        async def send(messages: list[PubsubMessage]) -> None:
            nonlocal published
            try:
                await client.publish(topic=settings.topic_path, messages=messages)
                published += len(messages)
            finally:
                slots.release()

        tasks = []
        started = time.monotonic()
        due = 0.0
        index = 0
        while (now := time.monotonic()) - started < seconds:
            due += rate * tick
            batch = []
            stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            while len(batch) < int(due):
                service, payload, severity = bodies[index % len(bodies)]
                index += 1
                batch.append(
                    PubsubMessage(
                        data=json.dumps(
                            {
                                "service_name": service,
                                "payload": payload,
                                "severity": severity,
                                "timestamp": stamp,
                            }
                        ).encode()
                    )
                )
            due -= len(batch)
            if batch:
                await slots.acquire()
                tasks.append(asyncio.create_task(send(batch)))
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - now)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    return {"published": published, "seconds": elapsed, "rate": published / elapsed}


def latency_from_db(settings: Settings, batch_lines: list[dict[str, Any]], warmup: float) -> dict:
    """Publish->insert from created_at - timestamp, publish->commit+ack from the batch logs.

    The commit time of a batch is the time of its "batch committed" line (logged after the
    commit and the ack); batches are matched to their rows by commit order (one writer), and
    only used when every batch matches its size.
    """
    conn = connect_blocking(settings, settings.mysql_database)
    try:
        with conn.cursor() as cur:
            # created_at is set in lms mon's session time zone, the server's default one.
            cur.execute("SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW())")
            (tz_offset,) = cur.fetchone()
            cur.execute("SET time_zone = '+00:00'")  # `timestamp` holds UTC
            cur.execute(
                "SELECT batch_id, MIN(id), COUNT(*) FROM service_logs GROUP BY batch_id"
                " ORDER BY MIN(id)"
            )
            batches = list(cur.fetchall())
            cur.execute(
                "SELECT batch_id, UNIX_TIMESTAMP(`timestamp`),"
                " TIMESTAMPDIFF(MICROSECOND, `timestamp`, created_at) FROM service_logs"
            )
            rows = list(cur.fetchall())
    finally:
        conn.close()
    if tz_offset:
        say(f"bench: MySQL's session time zone is not UTC ({tz_offset} s); created_at is off")
    first = min(float(stamp) for _, stamp, _ in rows)
    kept = [row for row in rows if float(row[1]) >= first + warmup]
    insert_ms = [diff / 1000 - tz_offset * 1000 for _, _, diff in kept]
    out: dict[str, Any] = {
        "measured": len(kept),
        "insert_p50_ms": quantile(insert_ms, 0.50),
        "insert_p99_ms": quantile(insert_ms, 0.99),
    }
    logged = [b for b in batch_lines if int(b.get("new", b.get("size", 0)) or 0) > 0]
    if len(logged) == len(batches) and all(
        int(b.get("new", b.get("size", 0))) == n
        for b, (_, _, n) in zip(logged, batches, strict=True)
    ):
        commit_at = {
            batch_id: log_time(event)
            for event, (batch_id, _, _) in zip(logged, batches, strict=True)
        }
        commit_ms = [
            (commit_at[batch_id] - float(stamp)) * 1000
            for batch_id, stamp, _ in kept
            if commit_at.get(batch_id) is not None
        ]
        out["commit_p50_ms"] = quantile(commit_ms, 0.50)
        out["commit_p99_ms"] = quantile(commit_ms, 0.99)
        out["commit_max_ms"] = max(commit_ms)
    else:
        out["commit_match"] = f"{len(logged)} batch lines for {len(batches)} batches"
    return out


async def part_latency(ctx: Context, extra: dict[str, str], rate: float) -> dict:
    """`lms mon` first, then a steady publish; wait until all of it is committed."""
    settings = ctx.settings("latency")
    metrics_port = free_port()
    env = {**extra, "FLUSHINTERVAL": "1", "METRICS_PORT": str(metrics_port)}
    await ensure_resources(settings)
    mon = BenchMonitor(ctx, settings, env, "latency").start()
    try:
        await asyncio.to_thread(mon.wait_started)
        load = os.getloadavg()[0]
        sent = await steady_publish(settings, rate, ctx.args.latency_seconds)
        await asyncio.to_thread(mon.wait_stored, sent["published"], 120.0)
        metrics_text = await asyncio.to_thread(scrape, f"http://127.0.0.1:{metrics_port}/metrics")
        code = await asyncio.to_thread(mon.process.stop_blocking)
    finally:
        mon.process.kill_blocking()
        await delete_resources(settings)
    result: dict[str, Any] = {
        "target_rate": rate,
        "rate": sent["rate"],
        "seconds": sent["seconds"],
        "published": sent["published"],
        "warmup_s": 2.0,
        "flushinterval": 1.0,
        "batches": len(mon.batches),
        "mean_batch": sent["published"] / max(len(mon.batches), 1),
        "exit_code": code,
        "load1": load,
        "env": env,
    }
    result.update(latency_from_db(settings, mon.batches, warmup=2.0))
    hist = histogram_quantiles(metrics_text, "lms_publish_to_commit_seconds", (0.5, 0.99))
    result.update({f"metrics_{key}_ms": value * 1000 for key, value in hist.items()})
    return result


def scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except OSError:
        return ""
