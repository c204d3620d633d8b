"""Topics and subscriptions of one run: made before it, deleted after it.

Tests, benchmarks and the end-to-end run each work on a topic and subscription of their own,
so that nothing one of them publishes reaches another. `lms mon` creates its own too, but a
backlog published before it starts needs the subscription first. Deleting them afterwards
frees the emulator's memory, which keeps every message of a subscription until it is acked.
"""

from __future__ import annotations

import contextlib

from google.api_core import exceptions as gexc

from lms.ingest.sources.pubsub.client import (
    ensure_subscription,
    publisher_client,
    subscriber_client,
)
from lms.settings import Settings


async def ensure_resources(settings: Settings) -> None:
    """Create the topic and subscription of `settings` if missing."""
    async with publisher_client(settings) as publisher, subscriber_client(settings) as subscriber:
        await ensure_subscription(publisher, subscriber, settings)


async def delete_resources(settings: Settings) -> None:
    """Delete the subscription and topic of `settings`; either may be gone already."""
    async with publisher_client(settings) as publisher, subscriber_client(settings) as subscriber:
        with contextlib.suppress(gexc.NotFound):
            await subscriber.delete_subscription(subscription=settings.subscription_path)
        with contextlib.suppress(gexc.NotFound):
            await publisher.delete_topic(topic=settings.topic_path)
