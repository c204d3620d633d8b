"""Is a subscription drained? For checks by tests, benchmarks and `make run`, never by `lms mon`."""

from __future__ import annotations

from google.api_core import exceptions as gexc

from lms.ingest.sources.pubsub.client import subscriber_client
from lms.settings import Settings


async def subscription_backlog(settings: Settings, pull_timeout: float = 2.0) -> int:
    """How many messages the subscription would deliver now (0 when drained).

    Pulls until a pull comes back empty, then hands everything back (deadline 0) so other
    consumers see it again. Messages leased by another consumer are not counted. For checks
    (tests, benchmarks, `make run`) that a subscription is drained.
    """
    seen: set[str] = set()
    ack_ids: list[str] = []
    async with subscriber_client(settings) as client:
        try:
            while True:
                try:
                    response = await client.pull(
                        subscription=settings.subscription_path,
                        max_messages=1000,
                        timeout=pull_timeout,
                        retry=None,
                    )
                except gexc.DeadlineExceeded:
                    break
                received = response.received_messages
                ack_ids.extend(rm.ack_id for rm in received)
                fresh = {rm.message.message_id for rm in received} - seen
                if not fresh:
                    break
                seen |= fresh
        finally:
            for start in range(0, len(ack_ids), 1000):
                await client.modify_ack_deadline(
                    subscription=settings.subscription_path,
                    ack_ids=ack_ids[start : start + 1000],
                    ack_deadline_seconds=0,
                )
    return len(seen)
