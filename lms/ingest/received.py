"""A message as a source delivered it, before it is parsed: what the pipeline carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Received:
    """`ack_id` settles it with its source; `key` makes it stored once (its message id when
    the source gives no other, lms.ingest.sources.pubsub.keys); `publish_time` is Unix
    seconds, for the end-to-end lag metric; `key_problem`, when set, says why the producer's
    key is unusable: the message is then rejected with it (under its own key)."""

    ack_id: str
    message_id: str
    data: bytes
    publish_time: float
    received_at: datetime
    key: str | None = None
    key_problem: str | None = None

    @property
    def idempotency_key(self) -> str:
        return self.key or self.message_id
