"""Pub/Sub clients and resources: one place that knows about the emulator and channel options."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.pubsub_v1 import PublisherAsyncClient, SubscriberAsyncClient
from google.pubsub_v1.services.publisher.transports import (
    PublisherGrpcAsyncIOTransport,
    PublisherGrpcTransport,
)
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport

from lms.settings import Settings

C = TypeVar("C")

# A pull of 1,000 large messages easily exceeds gRPC's default 4 MB receive limit.
# Keepalive: a ping every 10 s, and a connection whose ping is not acked within 5 s is
# closed, failing its calls (UNAVAILABLE), so a dead link is noticed in seconds rather than
# at the 20 s default timeout of a 30 s ping. Pings without data stay at gRPC's default of 2
# per idle spell: the emulator's server (grpc-java) answers more with a GOAWAY "too many
# pings"; an idle stream is checked by the stream's own health check instead
# (lms.ingest.sources.pubsub.stream_health). Reconnect attempts back off to 5 s, not gRPC's
# 120 s: after a long outage a call on a channel still waiting to reconnect fails at once, so
# a long wait there would add itself to the pull retry's own backoff.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


def subscriber_client(settings: Settings) -> SubscriberAsyncClient:
    return _client(SubscriberAsyncClient, SubscriberGrpcAsyncIOTransport, settings)


def publisher_client(settings: Settings) -> PublisherAsyncClient:
    return _client(PublisherAsyncClient, PublisherGrpcAsyncIOTransport, settings)


def _client(client_cls: Callable[..., C], transport_cls: type, settings: Settings) -> C:
    """Real Pub/Sub uses the library defaults; the emulator needs a plain channel of ours."""
    if not settings.pubsub_emulator_host:
        return client_cls()
    channel = grpc.aio.insecure_channel(settings.pubsub_emulator_host, CHANNEL_OPTIONS)
    return client_cls(transport=transport_cls(channel=channel, credentials=AnonymousCredentials()))


def emulator_transport(settings: Settings) -> dict[str, Any]:
    """Keyword arguments that point the high-level (threaded) PublisherClient at the emulator
    of `settings`, rather than wherever $PUBSUB_EMULATOR_HOST says; {} for real Pub/Sub."""
    if not settings.pubsub_emulator_host:
        return {}
    channel = grpc.insecure_channel(settings.pubsub_emulator_host, CHANNEL_OPTIONS)
    return {
        "transport": PublisherGrpcTransport(channel=channel, credentials=AnonymousCredentials())
    }


async def ensure_topic(publisher: PublisherAsyncClient, settings: Settings) -> None:
    with contextlib.suppress(gexc.AlreadyExists):
        await publisher.create_topic(name=settings.topic_path)


async def ensure_subscription(
    publisher: PublisherAsyncClient, subscriber: SubscriberAsyncClient, settings: Settings
) -> None:
    await ensure_topic(publisher, settings)
    with contextlib.suppress(gexc.AlreadyExists):
        await subscriber.create_subscription(
            name=settings.subscription_path,
            topic=settings.topic_path,
            ack_deadline_seconds=settings.ack_deadline,
        )


async def subscription_ack_deadline(subscriber: SubscriberAsyncClient, settings: Settings) -> int:
    """The deadline Pub/Sub really applies, which may differ from ACK_DEADLINE if it existed."""
    subscription = await subscriber.get_subscription(subscription=settings.subscription_path)
    return int(subscription.ack_deadline_seconds) or 10


# Errors worth retrying: the service or the connection, not the request.
TRANSIENT_ERRORS = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.Unknown,
    gexc.ResourceExhausted,
)
