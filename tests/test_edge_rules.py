"""The rules of issue 14 hold for every HTTP decoder alike, because each hands its logs to
the same edge check (lms.domain.record through lms.ingest.http.edge.check): names and ids
without whitespace at their ends or control characters, timestamps at most MAX_FUTURE_SKEW
ahead of the clock (injected here), each refused with the reason `lms mon` would give."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from lms.domain.record import Rules
from lms.ingest.http import elastic, loki, native, otlp
from lms.ingest.http.edge import Candidate, Refused, check

NOW = datetime(2026, 12, 1, 9, 0, 0)
RULES = Rules(max_future_skew=600, clock=lambda: NOW.replace(tzinfo=UTC).timestamp())
SOON = NOW + timedelta(seconds=599)
LATE = NOW + timedelta(seconds=601)


def _nanos(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat() + "Z"


def native_items(moments: list[datetime], service: str) -> list[Candidate | Refused]:
    logs = [
        {"service_name": service, "payload": "p", "severity": "info", "timestamp": _rfc3339(m)}
        for m in moments
    ]
    return native.decode(json.dumps(logs).encode(), None, 10)


def otlp_items(moments: list[datetime], service: str) -> list[Candidate | Refused]:
    message = ExportLogsServiceRequest()
    resource_logs = message.resource_logs.add()
    resource_logs.resource.attributes.append(KeyValue(key="service.name"))
    resource_logs.resource.attributes[0].value.string_value = service
    records = resource_logs.scope_logs.add().log_records
    for moment in moments:
        records.add(time_unix_nano=_nanos(moment)).body.string_value = "p"
    return otlp.decode(message.SerializeToString(), otlp.Encoding.PROTOBUF)


def loki_items(moments: list[datetime], service: str) -> list[Candidate | Refused]:
    body = {
        "streams": [
            {"stream": {"app": service}, "values": [[str(_nanos(m)), "p"] for m in moments]}
        ]
    }
    return loki.decode(json.dumps(body).encode(), "application/json")


def elastic_items(moments: list[datetime], service: str) -> list[Candidate | Refused]:
    lines = []
    for moment in moments:  # epoch milliseconds, as Elasticsearch's default date format
        lines += [{"index": {}}, {"message": "p", "@timestamp": _nanos(moment) // 1_000_000}]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return elastic.parse_bulk(body, service).decoded


Decoder = Callable[[list[datetime], str], list[Candidate | Refused]]
DECODERS: list[Decoder] = [native_items, otlp_items, loki_items, elastic_items]


@pytest.mark.parametrize("decoded", DECODERS)
def test_a_timestamp_past_the_grace_is_refused_by_every_decoder(decoded: Decoder) -> None:
    items = decoded([SOON, LATE, NOW], "checkout")
    accepted, refused = check(items, RULES)
    assert [a.index for a in accepted] == [0, 2]
    assert [(r.index, r.reason) for r in refused] == [(1, "invalid_field")]
    assert "MAX_FUTURE_SKEW" in refused[0].detail


@pytest.mark.parametrize("decoded", DECODERS)
@pytest.mark.parametrize("service", ["checkout ", " checkout", "check\x1bout"])
def test_a_service_name_no_decoder_may_pass_on(decoded: Decoder, service: str) -> None:
    items = decoded([NOW], service)
    accepted, refused = check(items, RULES)
    assert accepted == []
    assert [(r.index, r.reason) for r in refused] == [(0, "invalid_field")]
    assert "service_name" in refused[0].detail
