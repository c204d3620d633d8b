"""PubSubTransport: batches published straight to the LMS topic, one Publish call each.

It calls the Publish RPC of google-cloud-pubsub's generated client (`google.pubsub_v1`)
rather than the batching `google.cloud.pubsub_v1.PublisherClient.publish()`: the handler
batches already, one synchronous call per batch gives a clear outcome per attempt, and it
starts no threads of its own, so it still works from an `atexit` hook (the library's batching
threads do not run once the interpreter is shutting down). `PUBSUB_EMULATOR_HOST` is honoured
as the library's high-level client does: a plain channel to it, anonymous credentials.

Each log's key is the message attribute `lms_key`, from which `lms mon` derives the row's
idempotency key (lms/ingest/sources/pubsub/keys.py); the body is the log without an `id`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lms_client.entry import Entry
from lms_client.transport import Refused, Retryable, refuse_all

KEY_ATTRIBUTE = "lms_key"
MAX_MESSAGES = 1000
"""Messages of one Publish request (Pub/Sub's limit)."""
MAX_REQUEST_BYTES = 9 << 20
"""Bytes of one Publish request, below Pub/Sub's 10 MB with room for attributes."""
_PERMANENT = ("InvalidArgument", "PermissionDenied", "Unauthenticated", "FailedPrecondition")
"""Errors a retry cannot fix. Every other one, NotFound included (the topic may be created
once `lms mon` starts), is retried."""


def _import_pubsub() -> Any:
    try:
        from google import pubsub_v1
    except ImportError as exc:
        raise ImportError(
            "lms_client.PubSubTransport needs google-cloud-pubsub: pip install 'lms-client[pubsub]'"
        ) from exc
    return pubsub_v1


def _emulator_transport() -> dict[str, Any]:
    """Where $PUBSUB_EMULATOR_HOST is set, a plain gRPC channel to it (the emulator has no
    TLS and no credentials), as google-cloud-pubsub's own clients do."""
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return {}
    import grpc
    from google.auth.credentials import AnonymousCredentials
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    channel = grpc.insecure_channel(host)
    transport = PublisherGrpcTransport(channel=channel, credentials=AnonymousCredentials())
    return {"transport": transport}


class PubSubTransport:
    """Publishes to `projects/{project}/topics/{topic}`, the topic `lms mon` reads
    (`PUBSUB_PROJECT`, `PUBSUB_TOPIC`). `timeout`: seconds one Publish call may take.
    Other keyword arguments go to `google.pubsub_v1.PublisherClient` (credentials,
    client_options, transport); with none, `PUBSUB_EMULATOR_HOST` is honoured."""

    def __init__(
        self, project: str, topic: str, *, timeout: float = 10.0, **client_kwargs: Any
    ) -> None:
        if not project or not topic:
            raise ValueError("PubSubTransport needs a project and a topic")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        pubsub_v1 = _import_pubsub()
        self._client = pubsub_v1.PublisherClient(**(client_kwargs or _emulator_transport()))
        # The raw protobuf class: proto-plus wrappers cost ~10 us a message, on the sending
        # thread, which shares the GIL with the application's emits.
        self._request = pubsub_v1.PublishRequest.pb()
        self.topic_path: str = pubsub_v1.PublisherClient.topic_path(project, topic)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"PubSubTransport({self.topic_path!r})"

    def send(self, batch: Sequence[Entry]) -> list[Refused]:
        from google.api_core import exceptions as gexc

        for chunk in _chunks(batch):
            request = self._request(topic=self.topic_path)
            add = request.messages.add
            for entry in chunk:
                # Filled in place: a quarter of the cost of making each message and then the
                # request from them (which copies them), on the thread that shares the GIL.
                message = add()
                message.data = entry.data
                message.attributes[KEY_ATTRIBUTE] = entry.key
            try:
                self._client.publish(request=request, timeout=self.timeout, retry=None)
            except gexc.GoogleAPICallError as exc:
                detail = f"publish to {self.topic_path}: {type(exc).__name__}: {exc.message}"
                if type(exc).__name__ in _PERMANENT:
                    return refuse_all(batch, type(exc).__name__, detail)
                # The chunks before this one are published; retrying them too stores nothing
                # twice (same lms_key).
                raise Retryable(detail) from exc
            except Exception as exc:
                raise Retryable(f"publish to {self.topic_path}: {exc!r}") from exc
        return []

    def close(self) -> None:
        self._client.transport.close()


def _chunks(batch: Sequence[Entry]) -> list[Sequence[Entry]]:
    """`batch` cut into Publish requests within Pub/Sub's limits, in order."""
    chunks: list[Sequence[Entry]] = []
    start, size = 0, 0
    for index, entry in enumerate(batch):
        full = index - start >= MAX_MESSAGES or size + len(entry.data) > MAX_REQUEST_BYTES
        if index > start and full:
            chunks.append(batch[start:index])
            start, size = index, 0
        size += len(entry.data) + len(entry.key) + 16
    if start < len(batch):
        chunks.append(batch[start:])
    return chunks
