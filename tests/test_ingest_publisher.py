"""The HTTP ingestion publisher against the real emulator: confirmed means published, a full
in-flight bound is a 429 that published nothing, and a silent Pub/Sub is a 503 in bounded time.

A TCP proxy (tests/proxy.py) in front of the emulator makes Pub/Sub go silent on demand.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from lms.ingest.http.edge import Accepted, Candidate, check
from lms.ingest.http.errors import Overloaded, PublishUnavailable
from lms.ingest.http.publisher import KEY_ATTRIBUTE, LogPublisher
from tests.helpers import ensure_resources, make_log, pull_all

pytestmark = pytest.mark.integration


def accepted(
    count: int, size: int = 100, keyed: bool = False, service: str = "svc-in"
) -> list[Accepted]:
    return [
        Accepted(i, make_log(service, "info", "x" * size), f"key-{i}" if keyed else None)
        for i in range(count)
    ]


async def test_confirmed_logs_are_on_the_topic_with_their_keys(settings) -> None:
    s = settings()
    await ensure_resources(s)
    publisher = LogPublisher(s)
    try:
        ids = await publisher.publish(accepted(5, keyed=True))
        assert len(set(ids)) == 5
        assert publisher.inflight_bytes == 0
    finally:
        await publisher.close()
    messages = await pull_all(s, 5)
    assert sorted(rm.message.message_id for rm in messages) == sorted(ids)
    assert sorted(rm.message.attributes[KEY_ATTRIBUTE] for rm in messages) == [
        f"key-{i}" for i in range(5)
    ]


async def test_a_full_bound_refuses_the_whole_request_and_silence_is_a_503(
    settings, tcp_proxy
) -> None:
    base = settings()
    await ensure_resources(base)
    host, port = base.pubsub_emulator_host.rsplit(":", 1)
    proxy = await tcp_proxy(host, int(port))
    s = settings(
        pubsub_emulator_host=f"127.0.0.1:{proxy.port}",
        ingest_max_inflight_bytes=1 << 20,
        ingest_publish_timeout=2,
    )
    publisher = LogPublisher(s)
    try:
        await publisher.publish(accepted(1))  # the channel is up before the silence
        await proxy.blackhole()
        first = asyncio.create_task(publisher.publish(accepted(8, size=100_000)))
        await asyncio.sleep(0)  # first has handed its messages to the batcher
        assert publisher.inflight_bytes > 800_000
        with pytest.raises(Overloaded, match="INGEST_MAX_INFLIGHT_BYTES") as overloaded:
            await publisher.publish(accepted(3, size=100_000, service="svc-refused"))
        assert overloaded.value.status == 429 and overloaded.value.retry_after
        started = time.monotonic()
        with pytest.raises(PublishUnavailable, match="did not confirm") as unavailable:
            await first
        assert time.monotonic() - started < 10
        assert unavailable.value.status == 503
    finally:
        await proxy.restore()
        await publisher.close()
    # The first log arrives (and the 8 timed-out ones may: a 503 promises nothing either
    # way); none of the 3 refused with 429 was published.
    bodies = [rm.message.data for rm in await pull_all(base, 1)]
    assert any(b"svc-in" in body for body in bodies)
    assert not any(b"svc-refused" in body for body in bodies)


def test_the_edge_refuses_what_lms_mon_would_reject() -> None:
    good = {
        "service_name": "svc",
        "payload": "p",
        "severity": "info",
        "timestamp": "2026-12-01T00:00:00Z",
    }
    bad = {**good, "severity": "loud"}
    published, refused = check([Candidate(0, good, "k0"), Candidate(1, bad), Candidate(2, [])])  # type: ignore[arg-type]
    assert [(a.index, a.key) for a in published] == [(0, "k0")]
    assert [(r.index, r.reason) for r in refused] == [(1, "invalid_field"), (2, "not_an_object")]
