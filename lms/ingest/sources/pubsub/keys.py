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

from lms.domain.identifiers import identifier_problem

KEY_ATTRIBUTE = "lms_key"
"""The message attribute that carries a producer's key (lms.ingest.http.publisher sets it)."""
CLIENT_PREFIX = "key:"
MAX_CLIENT_KEY = 255 - len(CLIENT_PREFIX)
"""Characters of a producer's key: the idempotency_key column holds 255 with the prefix."""


def client_key_problem(attributes: Mapping[str, str]) -> str | None:
    """Why the producer's key cannot be one (a detail for rejected_messages), or None.

    A key with a space at an end would be one with the key without it (the column compares
    PAD SPACE), so the second log would be dropped as a duplicate; a too long one the column
    refuses. Such a message is rejected, under its own message key, never stored altered.
    """
    client = attributes.get(KEY_ATTRIBUTE)
    if not client:
        return None
    if len(client) > MAX_CLIENT_KEY:
        problem: str | None = f"has {len(client)} characters, allowed at most {MAX_CLIENT_KEY}"
    else:
        problem = identifier_problem(client)
    return None if problem is None else f"attribute {KEY_ATTRIBUTE} {problem}"


def message_key(
    message_id: str,
    publish_micros: int,
    attributes: Mapping[str, str],
    keyed_since_micros: int | None,
) -> str:
    """The key of one message; `keyed_since_micros` is when migration 005 was applied (Unix
    microseconds; None: not applied, every message is keyed the old way)."""
    client = attributes.get(KEY_ATTRIBUTE)
    if client and client_key_problem(attributes) is None:
        return CLIENT_PREFIX + client
    if keyed_since_micros is None or publish_micros < keyed_since_micros:
        return message_id
    return f"{message_id}@{publish_micros}"
