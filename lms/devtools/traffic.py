"""Test traffic: `lms pub N` and the `lms sim` service simulator.

Both count only publishes that Pub/Sub confirmed, per (service, severity), so their totals are
exactly what `lms mon` must end up storing.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.pubsub_v1 import PublisherAsyncClient, PubsubMessage

from lms.domain.severity import Severity
from lms.ingest.sources.pubsub import client as pubsub
from lms.settings import Settings

SEVERITY_WEIGHTS = {
    Severity.DEBUG: 30,
    Severity.INFO: 45,
    Severity.WARN: 15,
    Severity.ERROR: 8,
    Severity.FATAL: 2,
}
_WORDS = [
    "request",
    "handled",
    "user",
    "order",
    "payment",
    "cache",
    "miss",
    "retry",
    "timeout",
    "connected",
    "failed",
    "to",
    "connect",
    "database",
    "query",
    "slow",
    "upstream",
    "downstream",
    "queue",
    "worker",
    "started",
    "stopped",
    "shard",
    "replica",
]

Key = tuple[str, str]


@dataclass
class Tally:
    """Confirmed publishes per (service, severity)."""

    counts: Counter[Key] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_report(self) -> dict[str, object]:
        return {
            "published": self.total,
            "seconds": round(self.seconds, 3),
            "totals": [
                {"service": service, "severity": severity, "count": count}
                for (service, severity), count in sorted(self.counts.items())
            ],
        }

    def table(self) -> str:
        lines = [f"{'service':<24} {'severity':<8} {'count':>10}"]
        lines += [
            f"{service:<24} {severity:<8} {count:>10}"
            for (service, severity), count in sorted(self.counts.items())
        ]
        rate = self.total / self.seconds if self.seconds else 0.0
        lines.append(f"{'total':<33} {self.total:>10}  ({self.seconds:.2f} s, {rate:,.0f} msg/s)")
        return "\n".join(lines)


class LogFactory:
    """Random but valid log messages (payload sizes in `payload_chars`)."""

    def __init__(self, rng: random.Random, payload_chars: tuple[int, int] = (20, 200)) -> None:
        self._rng = rng
        self._payload_chars = payload_chars
        self._severities = list(SEVERITY_WEIGHTS)
        self._weights = list(SEVERITY_WEIGHTS.values())

    def make(self, service: str) -> tuple[bytes, Key]:
        severity = self._rng.choices(self._severities, self._weights)[0].value
        body = {
            "service_name": service,
            "payload": self._payload(),
            "severity": severity,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        return json.dumps(body).encode(), (service, severity)

    def _payload(self) -> str:
        target = self._rng.randint(*self._payload_chars)
        words: list[str] = []
        length = 0
        while length < target:
            word = self._rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        return " ".join(words)[:target]


class BatchPublisher:
    """Publishes in requests of PUBLISH_BATCH_SIZE, PUBLISH_CONCURRENCY at a time."""

    def __init__(self, client: PublisherAsyncClient, settings: Settings) -> None:
        self._client = client
        self._topic = settings.topic_path
        self._batch_size = settings.publish_batch_size
        self._slots = asyncio.Semaphore(settings.publish_concurrency)
        self.tally = Tally()

    async def publish(self, messages: list[tuple[bytes, Key]]) -> None:
        """Publish all of `messages`, counting each request once it is confirmed."""
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(messages), self._batch_size):
                await self._slots.acquire()
                group.create_task(self._request(messages[start : start + self._batch_size]))

    async def _request(self, chunk: list[tuple[bytes, Key]]) -> None:
        try:
            await self._client.publish(
                topic=self._topic, messages=[PubsubMessage(data=data) for data, _ in chunk]
            )
        finally:
            self._slots.release()
        self.tally.counts.update(key for _, key in chunk)


def service_names(count: int) -> list[str]:
    return [f"service-{index:02d}" for index in range(1, count + 1)]


async def publish_n(settings: Settings, count: int, seed: int | None = None) -> Tally:
    rng = random.Random(seed)
    factory = LogFactory(rng)
    services = service_names(settings.sim_services)
    messages = [factory.make(rng.choice(services)) for _ in range(count)]
    async with pubsub.publisher_client(settings) as client:
        await pubsub.ensure_topic(client, settings)
        publisher = BatchPublisher(client, settings)
        started = time.monotonic()
        await publisher.publish(messages)
        publisher.tally.seconds = time.monotonic() - started
        return publisher.tally


async def simulate(settings: Settings, duration: float, seed: int | None = None) -> Tally:
    """Each service publishes bursts at random (exponential) intervals for `duration` s.

    Bursts average a tenth of a second's worth of messages, so SIM_RATE holds on average
    while the number of requests stays around ten per second per service.
    """
    rng = random.Random(seed)
    factory = LogFactory(rng)
    async with pubsub.publisher_client(settings) as client:
        await pubsub.ensure_topic(client, settings)
        publisher = BatchPublisher(client, settings)
        started = time.monotonic()
        end = started + duration
        mean_burst = max(1.0, settings.sim_rate / 10)

        async def service(name: str) -> None:
            while (now := time.monotonic()) < end:
                await asyncio.sleep(min(rng.expovariate(settings.sim_rate / mean_burst), end - now))
                if time.monotonic() >= end:
                    return
                burst = rng.randint(1, int(2 * mean_burst) - 1 or 1)
                await publisher.publish([factory.make(name) for _ in range(burst)])

        async with asyncio.TaskGroup() as group:
            for name in service_names(settings.sim_services):
                group.create_task(service(name))
        publisher.tally.seconds = time.monotonic() - started
        return publisher.tally
