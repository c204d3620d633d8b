"""Test traffic: `lms pub N` and the `lms sim` service simulator.

Both count only publishes that Pub/Sub confirmed (lms.devtools.sender), per (service,
severity), so their totals are exactly what `lms mon` must end up storing. They publish
straight to the topic, or with an HttpTarget through `lms api`'s HTTP ingestion.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from google.pubsub_v1 import PublisherAsyncClient, PubsubMessage

from lms.devtools.http_traffic import HttpSender, HttpTarget, http_session
from lms.devtools.messages import Traffic
from lms.devtools.sender import Message, Sender, Tally
from lms.domain.patterns import template_of
from lms.ingest.sources.pubsub import client as pubsub
from lms.settings import Settings

_FILLER = [
    "request",
    "handled",
    "user",
    "order",
    "payment",
    "cache",
    "retry",
    "timeout",
    "database",
    "query",
    "upstream",
    "queue",
    "worker",
    "shard",
    "replica",
]


class LogFactory:
    """Realistic valid log messages (lms.devtools.messages), with the time of `clock`.

    With `payload_chars` (the benchmarks' knob), each payload is cut or padded with words to a
    length drawn from that range; without, payloads keep their natural lengths (~30-120).
    """

    def __init__(
        self,
        rng: random.Random,
        payload_chars: tuple[int, int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rng = rng
        self._payload_chars = payload_chars
        self._clock = clock
        self.traffic = Traffic(rng, clock)

    def make(self, service: str) -> Message:
        log = self.traffic.make(service)
        moment = datetime.fromtimestamp(log.timestamp, UTC)
        body: dict[str, object] = {
            "service_name": service,
            "payload": self._sized(log.payload),
            "severity": log.severity,
            "timestamp": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }
        if log.trace_id is not None:
            body["trace_id"] = log.trace_id
            body["span_id"] = log.span_id
        if log.metadata is not None:
            body["metadata"] = log.metadata
        return json.dumps(body, separators=(",", ":")).encode(), (service, log.severity)

    def rate_factor(self, service: str) -> float:
        """How many times its mean rate `service` logs now (lms.devtools.messages)."""
        return self.traffic.rate_factor(service, self._clock())

    def _sized(self, payload: str) -> str:
        """The payload padded with filler words to a length drawn from `payload_chars`.

        The length and the words are drawn from the payload's template (lms.domain.patterns),
        not per message: a padded payload keeps the pattern of the message it pads, as the
        logs of one line of code do, instead of every padded payload being a template of its
        own, which no service produces and which would make the pattern tables grow by a row
        per log. Cut to the range's top only when the variable parts make it longer."""
        if self._payload_chars is None:
            return payload
        low, high = self._payload_chars
        template = template_of(payload)
        rng = random.Random(zlib.crc32(template.encode()))
        target = rng.randint(low, high)
        parts = [payload]
        length = len(template)
        while length < target:
            word = rng.choice(_FILLER)
            parts.append(word)
            length += len(word) + 1
        text = " ".join(parts)
        while len(text) < low:
            text += " " + rng.choice(_FILLER)
        return text[:high]


class BatchPublisher(Sender):
    """Publishes straight to the topic."""

    def __init__(self, client: PublisherAsyncClient, settings: Settings) -> None:
        super().__init__(settings)
        self._client = client
        self._topic = settings.topic_path

    async def _request(self, chunk: list[Message]) -> None:
        messages = [PubsubMessage(data=data) for data, _ in chunk]
        await self._client.publish(topic=self._topic, messages=messages)


def service_names(count: int) -> list[str]:
    return [f"service-{index:02d}" for index in range(1, count + 1)]


@asynccontextmanager
async def open_sender(settings: Settings, http: HttpTarget | None) -> AsyncIterator[Sender]:
    """A sender to the topic (made if missing), or through `lms api` at `http`."""
    if http is not None:
        async with http_session(settings) as session:
            yield HttpSender(session, http, settings)
        return
    async with pubsub.publisher_client(settings) as client:
        await pubsub.ensure_topic(client, settings)
        yield BatchPublisher(client, settings)


async def publish_n(
    settings: Settings, count: int, seed: int | None = None, http: HttpTarget | None = None
) -> Tally:
    rng = random.Random(seed)
    factory = LogFactory(rng)
    services = service_names(settings.sim_services)
    messages = [factory.make(rng.choice(services)) for _ in range(count)]
    async with open_sender(settings, http) as sender:
        started = time.monotonic()
        await sender.publish(messages)
        sender.tally.seconds = time.monotonic() - started
        return sender.tally


async def simulate(
    settings: Settings, duration: float, seed: int | None = None, http: HttpTarget | None = None
) -> Tally:
    """Each service publishes bursts at random (exponential) intervals for `duration` s.

    Bursts average a tenth of a second's worth of messages, so SIM_RATE holds on average
    while the number of requests stays around ten per second per service; the rate drifts
    around it and doubles during an incident (LogFactory.rate_factor).
    """
    rng = random.Random(seed)
    factory = LogFactory(rng)
    async with open_sender(settings, http) as sender:
        started = time.monotonic()
        end = started + duration
        mean_burst = max(1.0, settings.sim_rate / 10)

        async def service(name: str) -> None:
            while (now := time.monotonic()) < end:
                rate = settings.sim_rate * factory.rate_factor(name) / mean_burst
                await asyncio.sleep(min(rng.expovariate(rate), end - now))
                if time.monotonic() >= end:
                    return
                burst = rng.randint(1, int(2 * mean_burst) - 1 or 1)
                await sender.publish([factory.make(name) for _ in range(burst)])

        async with asyncio.TaskGroup() as group:
            for name in service_names(settings.sim_services):
                group.create_task(service(name))
        sender.tally.seconds = time.monotonic() - started
        return sender.tally
