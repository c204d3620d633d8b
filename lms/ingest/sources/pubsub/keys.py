"""The idempotency key of a Pub/Sub message: what makes a redelivery, or a client's retry, be
stored once (the unique `idempotency_key` of service_logs, migration 005).

- A key given by the producer (the `lms_key` attribute HTTP ingestion sets) wins, as
  `key:<it>`: a retried request publishes new messages with the same key.
- Otherwise `<message id>@<publish time in microseconds>`: message ids alone repeat across
  emulator restarts, so a database outliving an emulator would drop new logs as duplicates.
- A message published before migration 005 was applied keeps its bare message id, the key
  its row (if stored before the upgrade) was given, so a redelivery across the upgrade is
  still recognised.
"""

from __future__ import annotations

from collections.abc import Mapping

KEY_ATTRIBUTE = "lms_key"
"""The message attribute that carries a producer's key (lms.ingest.http.publisher sets it)."""
CLIENT_PREFIX = "key:"


def message_key(
    message_id: str,
    publish_micros: int,
    attributes: Mapping[str, str],
    keyed_since_micros: int | None,
) -> str:
    """The key of one message; `keyed_since_micros` is when migration 005 was applied (Unix
    microseconds; None: not applied, every message is keyed the old way)."""
    client = attributes.get(KEY_ATTRIBUTE)
    if client:
        return CLIENT_PREFIX + client
    if keyed_since_micros is None or publish_micros < keyed_since_micros:
        return message_id
    return f"{message_id}@{publish_micros}"
