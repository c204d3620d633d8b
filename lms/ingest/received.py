"""A message as a source delivered it, before it is parsed: what the pipeline carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Received:
    """`ack_id` settles it with its source, `message_id` is its idempotency key in the
    database; `publish_time` is Unix seconds, for the end-to-end lag metric."""

    ack_id: str
    message_id: str
    data: bytes
    publish_time: float
    received_at: datetime
