"""lms.query.reader without a database: cursors, the full-text query builder and the SQL shapes."""

from __future__ import annotations

import base64
import contextlib
import re
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lms.query.buckets import MAX_BUCKETS, bucket_range
from lms.query.cursor import MAX_CURSOR, Cursor, RequestCursor
from lms.query.errors import QueryError
from lms.query.filters import MAX_LIMIT, LogQuery
from lms.query.probe import build_probe_sql, first_probe_depth, next_probe_depth
from lms.query.search import MAX_Q, TextSearch, parse_search
from lms.query.sql import build_logs_sql
from lms.query.user_requests import RequestsQuery, build_requests_sql

T0 = datetime(2024, 5, 1, 12, 0, 0, 123_456)


# --- cursors -------------------------------------------------------------------------------


@given(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)),
    st.integers(min_value=0, max_value=2**64 - 1),
)
def test_cursor_round_trips(moment: datetime, row_id: int) -> None:
    cursor = Cursor(moment, row_id)
    text = cursor.encode()
    assert len(text) <= 64
    assert text.replace("-", "").replace("_", "").isalnum()
    assert Cursor.decode(text) == cursor


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "!!!!",
        "a" * 65,
        base64.urlsafe_b64encode(b"2:1:1").decode(),  # unknown version
        base64.urlsafe_b64encode(b"1:x:1").decode(),
        base64.urlsafe_b64encode(b"1:1:-1").decode(),
        base64.urlsafe_b64encode(b"1:1").decode(),
        base64.urlsafe_b64encode(b"1:99999999999999999999:1").decode(),  # beyond year 9999
        base64.urlsafe_b64encode(b"1:0:1").decode(),  # 1970 is fine...
    ][:-1],
)
def test_garbage_cursor_is_a_query_error(text: str) -> None:
    with pytest.raises(QueryError) as info:
        Cursor.decode(text)
    assert info.value.field == "cursor"


@given(st.text(max_size=80))
def test_cursor_decode_never_raises_anything_but_query_error(text: str) -> None:
    with contextlib.suppress(QueryError):
        Cursor.decode(text)


@given(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)),
    st.text(max_size=255),
    st.integers(min_value=0, max_value=10**18 - 1),
    st.integers(min_value=0, max_value=2**64 - 1),
)
def test_request_cursor_round_trips(moment: datetime, instance: str, seq: int, row_id: int) -> None:
    cursor = RequestCursor(moment, instance, seq, row_id)
    text = cursor.encode()
    assert len(text) <= MAX_CURSOR
    assert re.fullmatch(r"[A-Za-z0-9_-]+", text)
    assert RequestCursor.decode(text) == cursor


@pytest.mark.parametrize(
    "raw",
    [b"r1:1:2:3", b"r1:x:2:3:h", b"r1:1:-2:3:h", b"r1:1:2:3.0:h", b"r2:1:2:3:h", b"\xff"],
)
def test_garbage_request_cursor_is_a_query_error(raw: bytes) -> None:
    with pytest.raises(QueryError, match="not a cursor returned by GET /v1/users"):
        RequestCursor.decode(base64.urlsafe_b64encode(raw).decode().rstrip("="))


def test_each_listing_refuses_the_others_cursor_by_name() -> None:
    logs = Cursor(T0, 7).encode()
    requests = RequestCursor(T0, "h:1", 3, 7).encode()
    with pytest.raises(QueryError, match=r"a cursor of GET /v1/logs, not of GET /v1/users"):
        RequestCursor.decode(logs)
    with pytest.raises(QueryError, match=r"a cursor of GET /v1/users/\{user_id\}/requests, not"):
        Cursor.decode(requests)


@given(st.text(max_size=80))
def test_request_cursor_decode_never_raises_anything_but_query_error(text: str) -> None:
    with contextlib.suppress(QueryError):
        RequestCursor.decode(text)


# --- full-text -----------------------------------------------------------------------------


def w(*words: str) -> str:
    """The REGEXP of a word or phrase."""
    return r"(?i)\b" + r"\W+".join(words) + r"\b"


@pytest.mark.parametrize(
    ("text", "against", "patterns"),
    [
        ("timeout", "+timeout", [w("timeout")]),
        ("Failed connect", "+Failed +connect", [w("Failed"), w("connect")]),
        ('"Failed to connect"', "+Failed +connect", [w("Failed", "to", "connect")]),
        (
            '"Failed to connect" db_primary',
            "+Failed +connect +db_primary",
            [w("Failed", "to", "connect"), w("db_primary")],
        ),
        ("the timeout to", "+timeout", [w("timeout")]),  # stopwords cannot be required
        ('"failed to', "+failed", [w("failed", "to")]),  # an unclosed quote runs to the end
        ("+timeout -retry", "+timeout +retry", [w("timeout"), w("retry")]),  # no operators
        ("tim*eout (a OR b) ~x @3 >y <z", "+tim +eout", [w("tim"), w("eout")]),
        ("user@example.com", "+user +example", [w("user"), w("example")]),  # com: stopword
        ('"a" "to be" payment', "+payment", [w("payment")]),  # stopword-only phrases go
        ("payment payment", "+payment", [w("payment")]),
        ('"payment" payment', "+payment", [w("payment")]),
        ("日本語 ログ", "+日本語", []),  # not ASCII: no REGEXP (ログ has 2 characters)
        ('"café au lait" milk', '+"café au lait" +milk', []),  # InnoDB checks the phrase
    ],
)
def test_parse_search(text: str, against: str, patterns: list[str]) -> None:
    assert parse_search(text) == TextSearch(against, tuple(patterns))


@pytest.mark.parametrize("text", ["", "to", "a b c", '"to be"', "+-<>()~*", '""'])
def test_search_without_searchable_word_is_an_error(text: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_search(text)
    assert info.value.field == "q"
    assert "searchable" in info.value.message


def test_search_limits() -> None:
    with pytest.raises(QueryError, match="characters"):
        parse_search("x" * (MAX_Q + 1))
    with pytest.raises(QueryError, match="words"):
        parse_search(" ".join(f"word{i}" for i in range(17)))


def test_search_honours_the_server_token_size() -> None:
    assert parse_search("db timeout", min_token=2).against == "+db +timeout"
    assert parse_search("db timeout", min_token=4).against == "+timeout"
    assert parse_search("x" * 85 + " ok1").against == "+ok1"


@given(st.text(max_size=200))
def test_search_output_holds_no_operator_from_the_input(text: str) -> None:
    try:
        search = parse_search(text)
    except QueryError:
        return
    for term in search.against.split(" +"):
        body = term.lstrip("+")
        if body.startswith('"'):
            assert body.endswith('"')
            body = body[1:-1]
        assert all(ch.isalnum() or ch in "_ " for ch in body), search
    for pattern in search.patterns:
        inner = pattern.removeprefix(r"(?i)\b").removesuffix(r"\b").replace(r"\W+", "")
        assert re.fullmatch(r"[A-Za-z0-9_]+", inner), pattern


@given(st.lists(st.sampled_from(["failed", "to", "connect", "db", "x1", "the"]), max_size=6))
def test_patterns_match_the_text_they_came_from(words: list[str]) -> None:
    text = '"' + " ".join(words) + '"'
    try:
        search = parse_search(text)
    except QueryError:
        return
    payload = "Error: " + ",  ".join(words).upper() + "!"
    assert all(re.search(p, payload) for p in search.patterns)


# --- equality filters: what no stored name or id can be is an error (issue 14) --------------


@pytest.mark.parametrize(
    "field", ["service", "resource_id", "trace_id", "span_id", "commit", "parent_resource_id"]
)
@pytest.mark.parametrize("value", ["svc ", " svc", "svc\t", "s\x1bvc", "s\x9bvc"])
def test_an_exact_filter_no_stored_value_can_match_is_a_query_error(field: str, value: str) -> None:
    # PAD SPACE: `service = 'svc '` would silently match `svc`; say so instead.
    with pytest.raises(QueryError) as caught:
        LogQuery.from_input({field: value})
    assert caught.value.field == field
    assert "whitespace" in caught.value.message or "control character" in caught.value.message


def test_inner_spaces_in_an_exact_filter_are_fine() -> None:
    assert LogQuery(service="checkout api", trace_id="a b").service == "checkout api"


# --- SQL shapes ----------------------------------------------------------------------------


def test_no_filter_reads_each_severity_index_branch() -> None:
    sql, args = build_logs_sql(LogQuery(limit=10))
    assert sql.count("UNION ALL") == 4
    assert args == [s for sev in ("debug", "info", "warn", "error", "fatal") for s in (sev, 11)] + [
        11
    ]
    assert "SELECT id, `timestamp` FROM service_logs FORCE INDEX" in sql  # ids only
    assert sql.count("FORCE INDEX (ix_service_logs_severity_ts)") == 5
    assert "%s" in sql and "'" not in sql  # values are never spliced into the text


def test_service_with_several_severities_is_a_union_of_those() -> None:
    sql, args = build_logs_sql(LogQuery(service="api", severities=("fatal", "error"), limit=5))
    assert sql.count("UNION ALL") == 1
    assert sql.count("FORCE INDEX (ix_service_logs_service_severity_ts)") == 2
    # eq prefix, severity, then the other filters (service again: harmless), per branch.
    assert args == ["api", "error", "api", 6, "api", "fatal", "api", 6, 6]


def test_single_severity_is_one_branch() -> None:
    sql, args = build_logs_sql(LogQuery(severities=("warn",), limit=5))
    assert "UNION" not in sql
    assert args == ["warn", 6, 6]


@pytest.mark.parametrize(
    ("field", "index"),
    [
        ("resource_id", "ix_service_logs_resource_ts"),
        ("commit", "ix_service_logs_commit_ts"),
        ("parent_resource_id", "ix_service_logs_parent_ts"),
        ("service", "ix_service_logs_service_severity_ts"),
    ],
)
def test_a_filter_drives_its_index_and_only_ids_are_merged(field: str, index: str) -> None:
    sql, _ = build_logs_sql(LogQuery(**{field: "v"}))  # type: ignore[arg-type]
    assert sql.count(f"FORCE INDEX ({index})") == 5
    assert sql.count("SELECT id, `timestamp` FROM service_logs") == 5
    assert "JOIN service_logs AS l ON l.id = page.id" in sql


def test_selective_filter_drives_one_select() -> None:
    sql, args = build_logs_sql(
        LogQuery(trace_id="t", service="api", severities=("info", "warn"), since=T0)
    )
    assert "UNION" not in sql
    assert "severity IN (%s, %s)" in sql
    assert args == ["t", "api", "info", "warn", T0, 101]


def test_cursor_is_an_expanded_row_comparison() -> None:
    sql, args = build_logs_sql(LogQuery(trace_id="t", cursor=Cursor(T0, 42), limit=3))
    assert "`timestamp` <= %s AND (`timestamp` < %s OR id < %s)" in sql
    assert args == ["t", T0, T0, 42, 4]


def test_a_users_logs_are_sorted_from_index_entries_only() -> None:
    sql, args = build_logs_sql(LogQuery(user_id="u", cursor=Cursor(T0, 42), limit=3))
    assert sql.startswith("SELECT l.id, ")
    assert "(SELECT id, `timestamp` FROM service_logs WHERE user_id = %s AND `timestamp` <=" in sql
    assert args == ["u", T0, T0, 42, 4, 4]


def test_a_users_requests_are_read_forwards_along_their_index() -> None:
    cursor = RequestCursor(T0, "h:1", 9, 42)
    sql, args = build_requests_sql(RequestsQuery("u", 3, cursor))
    assert (
        "FORCE INDEX (ix_service_logs_user_requests) WHERE user_id = %s AND request_instance IS"
        " NOT NULL AND request_seq IS NOT NULL AND `timestamp` >= %s AND (`timestamp` > %s OR"
        " (request_instance >= %s AND (request_instance > %s OR (request_seq >= %s AND"
        " (request_seq > %s OR id > %s))))) ORDER BY `timestamp`, request_instance,"
        " request_seq, id LIMIT %s"
    ) in sql
    assert args == ["u", T0, T0, "h:1", "h:1", 9, 9, 42, 4]
    assert "`timestamp` >=" not in build_requests_sql(RequestsQuery("u"))[0]


@pytest.mark.parametrize(
    ("user_id", "limit", "field"),
    [("", 1, "user_id"), ("u" * 256, 1, "user_id"), ("u", 0, "limit")],
)
def test_requests_query_checks_its_input(user_id: str, limit: int, field: str) -> None:
    with pytest.raises(QueryError) as info:
        RequestsQuery(user_id, limit)
    assert info.value.field == field


def test_fulltext_is_a_bound_parameter() -> None:
    text = "x'); DROP TABLE t; --"
    sql, args = build_logs_sql(LogQuery(q=text), parse_search(text))
    assert "MATCH (payload) AGAINST (%s IN BOOLEAN MODE) AND payload REGEXP %s" in sql
    assert args[:2] == ["+DROP +TABLE", w("DROP")]
    assert "DROP" not in sql


def test_search_in_a_trace_needs_no_fulltext_index() -> None:
    query = LogQuery(q="timeout", trace_id="t")
    sql, args = build_logs_sql(query, parse_search("timeout"), use_index=False)
    assert "MATCH" not in sql
    assert args == ["t", w("timeout"), 101]


def test_probe_streams_follow_the_most_selective_index() -> None:
    search = parse_search("timeout")
    # No filter: one walk down the timestamp index bounds the severity streams, whose entries
    # hold short_payload: the word is tested there, every row is checked again when read.
    query = LogQuery(q="timeout")
    plan = build_probe_sql(query, search, 20_000)
    assert "FORCE INDEX (ix_service_logs_timestamp)" in plan.bounds_sql
    assert plan.bounds_args == [19_999]
    sql, args = plan.probe(Cursor(T0, 7))
    assert sql.count("FORCE INDEX (ix_service_logs_severity_ts)") == 5
    assert sql.count("(short_payload IS NULL OR (short_payload REGEXP %s))") == 5
    assert sql.count("`timestamp` >= %s AND (`timestamp` > %s OR id >= %s)") == 5  # one floor
    assert "WHERE payload REGEXP %s ORDER BY c.`timestamp` DESC, c.id DESC LIMIT %s" in sql
    assert args[:5] == ["debug", w("timeout"), T0, T0, 7]
    assert args[-2:] == [w("timeout"), 101]
    # A deeper probe walks and reads only below what the previous one read, and fetches only
    # what is missing.
    t1 = T0 + timedelta(1)
    plan = build_probe_sql(query, search, 5_000, ceiling=Cursor(t1, 9))
    assert "`timestamp` <= %s AND (`timestamp` < %s OR id < %s)" in plan.bounds_sql
    assert plan.bounds_args == [t1, t1, 9, 4_999]
    sql, args = plan.probe(Cursor(T0, 7), 40)
    assert sql.count("`timestamp` <= %s AND (`timestamp` < %s OR id < %s)") == 5
    assert args[:8] == ["debug", t1, t1, 9, w("timeout"), T0, T0, 7]
    assert args[-1] == 40
    # Severities asked for: their own streams bound themselves.
    plan = build_probe_sql(LogQuery(q="x1y", severities=("error", "fatal")), search, 20_000)
    assert plan.bounds_sql.count("FORCE INDEX (ix_service_logs_severity_ts)") == 2
    assert plan.bounds_args == ["error", 9_999, "fatal", 9_999]
    # A service: five streams along its index, which holds short_payload too.
    query = LogQuery(q="x1y", service="api")
    plan = build_probe_sql(query, parse_search("x1y"), 20_000)
    assert plan.bounds_sql.count("FORCE INDEX (ix_service_logs_service_severity_ts)") == 5
    assert plan.bounds_args[-3:] == ["api", "fatal", 3_999]
    sql, args = plan.probe(Cursor(T0, 7))
    assert sql.count("FORCE INDEX (ix_service_logs_service_severity_ts)") == 5
    # Deeper, only the stream that gave the floor (the densest) is walked for the next one.
    plan = build_probe_sql(query, parse_search("x1y"), 10_000, Cursor(T0, 7), walk=1)
    assert plan.bounds_sql.count("FORCE INDEX") == 1
    assert ", 1 FROM service_logs" in plan.bounds_sql
    assert plan.bounds_args == ["api", "info", T0, T0, 7, 1_999]
    sql, args = plan.probe(Cursor(T0 - timedelta(1), 3))
    assert sql.count("FORCE INDEX (ix_service_logs_service_severity_ts)") == 5
    # Another filter drives: its streams are read along its index, the others are checked on
    # the rows.
    query = LogQuery(q="x1y", service="api", commit="c", severities=("warn",))
    plan = build_probe_sql(query, parse_search("x1y"), 20_000)
    assert "FORCE INDEX (ix_service_logs_commit_ts)" in plan.bounds_sql
    assert plan.bounds_args == ["c", "warn", 19_999]
    sql, args = plan.probe(None)
    assert sql.count("short_payload REGEXP %s") == 1
    assert "`commit` = %s AND payload REGEXP %s AND service_name = %s AND severity IN (%s)" in sql
    assert args == ["c", "warn", w("x1y"), "c", w("x1y"), "api", "warn", 101]


def test_probes_start_shallow_and_go_as_deep_as_their_matches_suggest() -> None:
    assert first_probe_depth(20_000, 100) == 2_000
    assert first_probe_depth(5_000, 1000) == 1_001
    assert first_probe_depth(60, 37) == 38
    assert first_probe_depth(1, 5) == 1
    # 40 of 101 at 2,000: ~5,050 needed, asked for 40% more.
    assert next_probe_depth(2_000, 40, 100, 20_000) == 6_060
    assert next_probe_depth(2_000, 0, 100, 20_000) == 20_000  # nothing: full depth
    assert next_probe_depth(2_000, 3, 100, 20_000) == 20_000  # capped
    assert next_probe_depth(2_000, 99, 100, 20_000) == 3_000  # at least 1.5 times as deep


def test_time_range_is_half_open() -> None:
    sql, args = build_logs_sql(LogQuery(trace_id="r", since=T0, until=T0 + timedelta(1)))
    assert "`timestamp` >= %s" in sql and "`timestamp` < %s" in sql
    assert args == ["r", T0, T0 + timedelta(1), 101]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": MAX_LIMIT + 1}, "limit"),
        ({"severities": ("trace",)}, "severity"),
        ({"since": T0, "until": T0}, "to"),
        ({"since": T0, "until": T0 - timedelta(seconds=1)}, "to"),
    ],
)
def test_invalid_log_query(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(QueryError) as info:
        LogQuery(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_bucket_range_defaults_and_limits() -> None:
    now = datetime(2024, 5, 1, 12, 0)
    assert bucket_range("minute", None, None, now) == (now - timedelta(hours=1), now)
    assert bucket_range("hour", None, None, now) == (now - timedelta(days=1), now)
    assert bucket_range("day", None, None, now) == (now - timedelta(days=30), now)
    start = now - timedelta(minutes=MAX_BUCKETS)
    assert bucket_range("minute", start, now) == (start, now)
    with pytest.raises(QueryError, match="buckets"):
        bucket_range("minute", start - timedelta(minutes=1), now)
    with pytest.raises(QueryError):
        bucket_range("hour", now, now)
    with pytest.raises(QueryError):
        bucket_range("week", None, None, now)  # type: ignore[arg-type]
