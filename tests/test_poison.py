"""Unit level of the poison flood: the catalogue says what `parse_message` must decide, and
hypothesis' invented messages never make it raise (scenario 5 then publishes both kinds)."""

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
    VALID,
    Kind,
    catalogue_messages,
    hypothesis_messages,
    poison_messages,
)


@pytest.mark.parametrize("kind", CATALOGUE, ids=lambda kind: kind.name)
def test_catalogue_outcome(kind: Kind) -> None:
    outcome = parse_message(kind.build(random.Random(0)))
    if kind.expect == VALID:
        assert isinstance(outcome, LogRecord), outcome
    else:
        assert isinstance(outcome, Rejection), outcome
        assert outcome.reason == kind.expect, outcome.detail
        assert outcome.detail


def test_catalogue_covers_every_reason_and_some_valid_edge_cases() -> None:
    expected = {kind.expect for kind in CATALOGUE}
    assert expected == {VALID, *(reason.value for reason in Reason)}
    assert sum(kind.big for kind in CATALOGUE) >= 4


def test_catalogue_messages_cycle_through_kinds() -> None:
    messages = catalogue_messages(random.Random(1), 2 * len(CATALOGUE), big=2)
    assert len(messages) == 2 * len(CATALOGUE) + 2
    assert all(len(body) > 1_000_000 for body, _ in messages[-2:])
    assert VALID not in {expect for _, expect in messages}
    edge = catalogue_messages(random.Random(1), 10, big=1, valid=True)
    assert {expect for _, expect in edge} == {VALID}


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
