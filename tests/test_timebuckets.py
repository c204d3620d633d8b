"""The calendar of the analytics buckets (lms.query.timebuckets) and which source answers
(lms.query.volume.build_statements): pure, no database."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lms.query.errors import QueryError, TooManyBuckets
from lms.query.filters import LogQuery
from lms.query.timebuckets import bucket_window, make_buckets, zone
from lms.query.volume import Shape, build_statements

BERLIN = ZoneInfo("Europe/Berlin")


def test_days_follow_the_zones_midnight_through_dst() -> None:
    b = make_buckets("day", BERLIN, datetime(2026, 3, 28, 12), datetime(2026, 3, 30, 1), 100)
    assert b.starts == (
        datetime(2026, 3, 27, 23),
        datetime(2026, 3, 28, 23),
        datetime(2026, 3, 29, 22),
    )
    assert [b.start_text(i) for i in range(3)] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]
    assert b.grain == "hour"
    assert b.index(datetime(2026, 3, 29, 21, 59)) == 1
    assert b.index(datetime(2026, 3, 29, 22)) == 2


def test_a_midnight_skipped_by_dst_starts_the_day_at_the_jump() -> None:
    # Santiago: 2026-09-06 00:00 local does not exist, the clock goes to 01:00 (-03).
    b = make_buckets(
        "day", ZoneInfo("America/Santiago"), datetime(2026, 9, 5, 12), datetime(2026, 9, 7), 10
    )
    assert b.start_text(1) == "2026-09-06T01:00:00-03:00"


def test_weeks_start_on_monday_and_half_hour_zones_group_by_minute() -> None:
    b = make_buckets("week", zone("UTC"), datetime(2026, 3, 12), datetime(2026, 3, 24), 10)
    assert b.starts == (datetime(2026, 3, 9), datetime(2026, 3, 16), datetime(2026, 3, 23))
    india = make_buckets(
        "day", zone("Asia/Kolkata"), datetime(2026, 3, 1), datetime(2026, 3, 4), 10
    )
    assert india.starts[1] == datetime(2026, 3, 1, 18, 30)
    assert india.grain == "minute"
    assert (
        make_buckets("minute", BERLIN, datetime(2026, 3, 1), datetime(2026, 3, 1, 1), 100).grain
        == "minute"
    )


def test_the_previous_period_moves_back_by_the_calendar() -> None:
    day = make_buckets("day", BERLIN, datetime(2026, 3, 29, 22), datetime(2026, 3, 30, 22), 10)
    before = day.previous(10)
    assert (before.since, before.until) == (datetime(2026, 3, 28, 23), datetime(2026, 3, 29, 22))
    hour = make_buckets("hour", BERLIN, datetime(2026, 3, 1, 10, 30), datetime(2026, 3, 1, 12), 10)
    assert hour.previous(10).since == datetime(2026, 3, 1, 8, 30)


def test_limits_and_defaults() -> None:
    with pytest.raises(TooManyBuckets) as caught:
        make_buckets("minute", BERLIN, datetime(2026, 1, 1), datetime(2026, 1, 8), 10_000)
    assert caught.value.field == "bucket"
    assert (
        len(make_buckets("hour", BERLIN, datetime(2026, 1, 1), datetime(2026, 1, 2), 24).starts)
        == 24
    )
    with pytest.raises(TooManyBuckets):  # 25 when the range does not start on the hour
        make_buckets("hour", BERLIN, datetime(2026, 1, 1, 0, 30), datetime(2026, 1, 2, 0, 1), 24)
    with pytest.raises(QueryError) as bad:
        zone("Not/AZone")
    assert bad.value.field == "tz"
    now = datetime(2026, 5, 1, 12)
    assert bucket_window("week", None, None, now) == (now - timedelta(weeks=26), now)
    with pytest.raises(QueryError) as order:
        bucket_window("hour", now, now)
    assert order.value.field == "to"


def test_the_rollup_answers_whole_hours_and_service_logs_the_rest() -> None:
    b = make_buckets("day", BERLIN, datetime(2026, 3, 1, 10, 15), datetime(2026, 3, 5, 7, 40), 10)
    rollup, edges = build_statements(LogQuery(service="api"), b, Shape(), None)
    assert "FROM volume_rollup" in rollup[0] and rollup[1][:2] == [
        datetime(2026, 3, 1, 11),
        datetime(2026, 3, 5, 7),
    ]
    assert "FROM service_logs" in edges[0]
    assert [datetime(2026, 3, 1, 10, 15), datetime(2026, 3, 1, 11)] == edges[1][-4:-2]
    commit, commit_edges = build_statements(LogQuery(commit="c1"), b, Shape(), None)
    assert "FROM commit_rollup" in commit[0] and "c1" in commit[1]
    assert "FROM service_logs" in commit_edges[0] and "c1" in commit_edges[1]
    (only,) = build_statements(LogQuery(commit="c1", resource_id="r"), b, Shape(), None)
    assert "FROM service_logs" in only[0]
    aligned = make_buckets("hour", BERLIN, datetime(2026, 3, 1), datetime(2026, 3, 2), 100)
    (whole,) = build_statements(LogQuery(severities=("error",)), aligned, Shape(errors=True), None)
    assert "FROM volume_rollup" in whole[0]
    india = make_buckets(
        "day", zone("Asia/Kolkata"), datetime(2026, 3, 1), datetime(2026, 3, 4), 10
    )
    (exact,) = build_statements(LogQuery(), india, Shape(), None)
    assert "FROM service_logs" in exact[0]
