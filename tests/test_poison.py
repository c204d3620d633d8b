"""Unit level of the poison flood: the catalogue says what `parse_message` must decide (to the
stored service and severity, or the rejection reason), and hypothesis' invented messages never
make it raise (scenario 5 then publishes both kinds, expecting what the catalogue declares)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from lms.domain.record import (
    MAX_PAYLOAD,
    MAX_SERVICE_NAME,
    LogRecord,
    Reason,
    Rejection,
    parse_message,
)
from lms.domain.severity import SEVERITIES
from tests.poison import (
    CATALOGUE,
    Kind,
    Rejected,
    Stored,
    catalogue_messages,
    hypothesis_messages,
    poison_messages,
    valid_log,
)


@pytest.mark.parametrize("kind", CATALOGUE, ids=lambda kind: kind.name)
def test_catalogue_outcome(kind: Kind) -> None:
    outcome = parse_message(kind.build(random.Random(0)))
    if isinstance(kind.expect, Stored):
        assert isinstance(outcome, LogRecord), outcome
        assert Stored(outcome.service_name, outcome.severity) == kind.expect
    else:
        assert isinstance(outcome, Rejection), outcome
        assert outcome.reason == kind.expect.reason, outcome.detail
        assert outcome.detail


def test_catalogue_covers_every_reason_and_some_valid_edge_cases() -> None:
    reasons = {kind.expect.reason for kind in CATALOGUE if isinstance(kind.expect, Rejected)}
    assert reasons == set(Reason)
    assert sum(isinstance(kind.expect, Stored) for kind in CATALOGUE) >= 5
    assert sum(kind.big for kind in CATALOGUE) >= 4


def test_catalogue_messages_cycle_through_kinds() -> None:
    messages = catalogue_messages(random.Random(1), 2 * len(CATALOGUE), big=2)
    assert len(messages) == 2 * len(CATALOGUE) + 2
    assert all(len(body) > 1_000_000 for body, _ in messages[-2:])
    assert all(isinstance(expect, Rejected) for _, expect in messages)
    edge = catalogue_messages(random.Random(1), 10, big=1, valid=True)
    assert all(isinstance(expect, Stored) for _, expect in edge)


def test_valid_logs_are_stored_as_declared() -> None:
    rng = random.Random(3)
    for index in range(200):
        body, expect = valid_log(rng, index)
        outcome = parse_message(body)
        assert isinstance(outcome, LogRecord), outcome
        assert Stored(outcome.service_name, outcome.severity) == expect


@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(poison_messages())
def test_parse_message_never_raises_on_poison(data: bytes) -> None:
    outcome = parse_message(data)
    if isinstance(outcome, Rejection):
        assert outcome.reason in Reason
        assert outcome.detail
    else:
        assert isinstance(outcome, LogRecord)
        assert 1 <= len(outcome.service_name) <= MAX_SERVICE_NAME
        assert len(outcome.payload) <= MAX_PAYLOAD
        assert outcome.severity in SEVERITIES
        assert outcome.timestamp.tzinfo is None


def test_hypothesis_messages_are_repeatable_and_mostly_invalid() -> None:
    first = hypothesis_messages(200)
    assert first == hypothesis_messages(200)
    assert len(first) >= 150
    assert all(first)  # Pub/Sub refuses empty messages
    rejected = sum(isinstance(parse_message(body), Rejection) for body in first)
    assert rejected >= 0.8 * len(first)
