"""Request analytics: GET /v1/analytics/requests and `lms requests`.

Which logs are requests, their route template and latency bin, is lms.domain.requests' rule.
Every count is exact (what counting the request logs of service_logs with the same filters
gives); latency percentiles come from the rollup's fixed histogram (ACCURACY). Two sources,
each period read in one consistent snapshot, as the volume (lms.query.volume):

- the rollups (sql/011), one row per key and UTC hour (request_rollup, request_users) or UTC
  day (request_rollup_day, request_users_day) of the log's own timestamp, for the whole hours
  of the range, when no bucket boundary inside it cuts an hour: the totals and rankings read
  its whole UTC days from the day tables and only the hours around them from the hourly ones
  (a month is ~24 times fewer rows; the users without a service filter, request_users_all_day
  of sql/014, one row per day and user; the route totals read a day the range cuts as its
  day row minus the hours outside when those are fewer, _route_tiers); the series of the
  top `limit` routes reads only their rows (the hourly ones along the index that leads with
  the route, or the daily ones when no bucket boundary cuts a UTC day), folded into one row
  per route (lms.query.fold);
- service_logs itself for the rest (the partial hours at the range's ends, minute buckets, a
  zone whose boundaries cut hours): the logs whose metadata names "http", read over the time
  (and service) index and classified here by the same code the writer uses. Its cost grows
  with the logs of those spans, so minute buckets suit ranges of hours, not weeks.

The filters are the rollup's keys: service, route, method and the time range. Any other
filter of GET /v1/logs is refused (422) rather than answered approximately. `users` honours
service and the range only: request_users is not keyed by route.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from itertools import accumulate
from typing import Any

from typing_extensions import TypedDict

from lms.domain.requests import (
    ACCURACY,
    BIN_VALUES,
    PERCENTILES,
    Request,
    request_of,
    sparse_percentiles,
)
from lms.domain.requests import percentiles as histogram_percentiles
from lms.domain.severity import SEVERITY_ORDER
from lms.domain.timefmt import rfc3339
from lms.query.errors import QueryError, TooManyBuckets
from lms.query.filters import exact_problem
from lms.query.fold import Folded, fetch_folded
from lms.query.overlap import Step, overlapped
from lms.query.reader import Fetch, LogReader
from lms.query.sql import Conditions
from lms.query.timebuckets import Buckets, BucketSize
from lms.query.volume import SeriesRequest, ceil_hour, periods, series_answer
from lms.store.request_rollup import BIN_COLUMNS, RouteFigures
from lms.store.volume_rollup import hour_of

DEFAULT_ROUTES = 10
MAX_ROUTES = 100
DEFAULT_USERS = 10
MIN_COUNT = 10
"""Requests a route needs in the range to be ranked among the slowest or the most failing
(so one slow or failed request does not top the list)."""
MAX_METHOD = 16

RouteKey = tuple[str, str, str]
"""(service, route, method)."""
Statement = tuple[str, list[object]]


def _sparse(values: Sequence[str]) -> str:
    """The histogram's non-zero bins as one text, `i:count` separated by spaces (`values`:
    the SQL of each bin's count, integers): a route's hour holds a few of the 70 bins, so the
    text is a fraction of the dense one, for the server to send and for Python to parse."""
    pairs = ", ".join(f"CONCAT('{i}:', NULLIF({v}, 0))" for i, v in enumerate(values))
    return f"CONCAT_WS(' ', {pairs})"


_FIGURES = (
    "CAST(SUM(`count`) AS UNSIGNED), CAST(SUM(count_4xx) AS UNSIGNED),"
    " CAST(SUM(count_5xx) AS UNSIGNED), SUM(sum_ms),"
    f" CONCAT_WS(',', {', '.join(f'SUM({b} + 0E0)' for b in BIN_COLUMNS)})"
)
"""The sums of a group, the histogram's as one text, as the driver decodes a field at a few
microseconds and a month of hourly routes has tens of thousands of groups. The bins are
summed as doubles (exact below 2^53): SUM of an integer column is DECIMAL arithmetic, which
made the 70 sums 2-3 times slower. Dense: the sparse text of the series (_sparse) made these
sums ~2 times slower (NULLIF of an aggregate)."""
ROUTE_KEY = ("service_name", "route", "method")
SERIES_VALUES = ("unit", "sum_ms", "`count`", "count_4xx", "count_5xx", "bins")
"""What one rollup row of a route's series holds (one key of one hour or day: nothing to
sum), folded into one row per route (lms.query.fold): a month's series of 10 routes is ~7,200
rows, most of the answer's cost when each came as a row of the pure-Python driver."""


BUCKET_SPANS: tuple[tuple[BucketSize, timedelta], ...] = (
    ("hour", timedelta(days=14)),
    ("day", timedelta(days=366)),
)
"""The default bucket of a range: the first whose span reaches its length, else `week`."""


def default_bucket(
    since: datetime | None, until: datetime | None, now: datetime | None = None
) -> BucketSize:
    """The bucket when the caller names none: hourly up to 14 days (without `from`, the
    hour's default range of 1 day), daily up to 366 days, weekly beyond. A month of hourly
    buckets is 720 per route: 10 routes near API_MAX_BUCKETS, 14 beyond it (422), and read
    from the hourly rollup row by row, where daily buckets read the day tier."""
    if since is None:
        return "hour"
    length = (until or now or datetime.now(UTC).replace(tzinfo=None)) - since
    return next((size for size, span in BUCKET_SPANS if length <= span), "week")


@dataclass(frozen=True, slots=True)
class RequestsRequest:
    """One question: the range, bucket, zone and comparison of a series (its query only
    holds service, from and to), the route and method, and how many routes and users."""

    series: SeriesRequest
    route: str | None = None
    method: str | None = None
    limit: int = DEFAULT_ROUTES
    users: int = DEFAULT_USERS
    min_count: int = MIN_COUNT

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_ROUTES:
            raise QueryError("limit", f"must be 1..{MAX_ROUTES}, not {self.limit}")
        if not 1 <= self.users <= MAX_ROUTES:
            raise QueryError("users", f"must be 1..{MAX_ROUTES}, not {self.users}")
        if self.min_count < 1:
            raise QueryError("min_count", f"must be at least 1, not {self.min_count}")
        if self.route is not None and (problem := exact_problem(self.route)) is not None:
            raise QueryError("route", problem)
        if self.method is not None and not 1 <= len(self.method) <= MAX_METHOD:
            raise QueryError("method", f"must have 1..{MAX_METHOD} characters")


# --- SQL ---------------------------------------------------------------------------------

Span = tuple[datetime, datetime]
"""[start, end) of naive UTC moments."""


@dataclass(frozen=True, slots=True)
class Tier:
    """One table of a rollup and the column that dates its rows."""

    table: str
    time: str
    day: bool = False
    """Dated by UTC day (a DATE column): its spans are whole days."""

    def bounds(self, span: Span) -> list[object]:
        return [moment.date() for moment in span] if self.day else list(span)


ROUTE_HOURS = Tier("request_rollup", "hour_start")
ROUTE_DAYS = Tier("request_rollup_day", "day_start", day=True)
USER_HOURS = Tier("request_users", "hour_start")
USER_DAYS = Tier("request_users_day", "day_start", day=True)
USER_ALL_DAYS = Tier("request_users_all_day", "day_start", day=True)
"""The users' day tier over all services (sql/014): one row per day and user, where
request_users_day has one per service they called (a month's users grouped 7-9 times faster)."""
ROUTE_INDEX = "ix_request_rollup_route"
"""request_rollup's index that leads with (service, route, method): the hours of a few routes."""


def _rollup_cond(
    ask: RequestsRequest, tier: Tier, spans: Sequence[Span], users: bool
) -> Conditions:
    time = tier.time
    cond = Conditions()
    cond.add(
        "(" + " OR ".join([f"({time} >= %s AND {time} < %s)"] * len(spans)) + ")",
        *[bound for span in spans for bound in tier.bounds(span)],
    )
    if ask.series.query.service is not None:
        cond.add("service_name = %s", ask.series.query.service)
    if not users:
        if ask.route is not None:
            cond.add("route = %s", ask.route)
        if ask.method is not None:
            cond.add("method = %s", ask.method)
    return cond


def route_totals_sql(ask: RequestsRequest, tier: Tier, spans: Sequence[Span]) -> Statement:
    """Per (service, route, method) over `spans` of `tier` (whole hours or whole days)."""
    cond = _rollup_cond(ask, tier, spans, users=False)
    sql = (
        f"SELECT service_name, route, method, {_FIGURES} FROM {tier.table}{cond.where()}"
        " GROUP BY service_name, route, method"
    )
    return sql, cond.args


def route_series_sql(
    ask: RequestsRequest, tier: Tier, spans: Sequence[Span], keys: Sequence[RouteKey]
) -> Statement:
    """The rows (one per hour or day and key) of the routes `keys` over `spans` of `tier`; the
    hourly rows along ROUTE_INDEX, so that only those routes' rows are read."""
    cond = _rollup_cond(ask, tier, spans, users=False)
    cond.add(
        f"(service_name, route, method) IN ({', '.join(['(%s, %s, %s)'] * len(keys))})",
        *[part for key in keys for part in key],
    )
    index = "" if tier.day else f" FORCE INDEX ({ROUTE_INDEX})"
    values = ", ".join(SERIES_VALUES[1:-1])
    sql = (
        f"SELECT service_name, route, method, CAST({tier.time} AS DATETIME) AS unit, {values},"
        f" {_sparse(BIN_COLUMNS)} AS bins FROM {tier.table}{index}{cond.where()}"
    )
    return sql, cond.args


USER_VALUES = ("hex_id", "requests", "last_text")


def users_sql(ask: RequestsRequest, tier: Tier, spans: Sequence[Span]) -> Statement:
    """Per user (as hex: an id may hold any character, a separator of the fold too),
    requests and last one's timestamp as text, read folded (lms.query.fold): the thousands of
    users of a month cost the pure-Python driver more as rows than the grouping itself. HEX
    is taken outside the grouping: inside it made the grouping 10x slower."""
    cond = _rollup_cond(ask, tier, spans, users=True)
    grouped = (
        "SELECT user_id, CAST(SUM(`count`) AS UNSIGNED) AS requests,"
        f" CAST(MAX(last_seen) AS CHAR) AS last_text FROM {tier.table}{cond.where()}"
        " GROUP BY user_id"
    )
    sql = f"SELECT HEX(user_id) AS hex_id, requests, last_text FROM ({grouped}) AS grouped"
    return sql, cond.args


def logs_sql(ask: RequestsRequest, ranges: Sequence[tuple[datetime, datetime]]) -> Statement:
    """The logs of `ranges` that may be requests (their metadata names "http"), over the
    timestamp index, or the (service, severity, timestamp) one for a service."""
    cond = Conditions()
    if ask.series.query.service is not None:
        cond.add("service_name = %s", ask.series.query.service)
        cond.add(f"severity IN ({', '.join(['%s'] * len(SEVERITY_ORDER))})", *SEVERITY_ORDER)
    spans = " OR ".join(["(`timestamp` >= %s AND `timestamp` < %s)"] * len(ranges))
    cond.add(f"({spans})", *[moment for pair in ranges for moment in pair])
    cond.add("metadata LIKE %s", '%"http"%')
    return f"SELECT `timestamp`, service_name, metadata FROM service_logs{cond.where()}", cond.args


# --- the figures ---------------------------------------------------------------------------


class LatencyJson(TypedDict):
    count: int
    count_4xx: int
    count_5xx: int
    rate_4xx: float | None
    rate_5xx: float | None
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class RouteBucketJson(LatencyJson):
    """One route's requests in one bucket; `start` is RFC 3339 at the zone's offset."""

    start: str


class RouteJson(LatencyJson):
    method: str
    route: str
    service: str


class RouteSeriesJson(RouteJson):
    buckets: list[RouteBucketJson]


class UserJson(TypedDict):
    user_id: str
    count: int
    last_seen: str


def _rate(part: int, total: int) -> float | None:
    return part / total if total else None


def figures_json(f: RouteFigures) -> LatencyJson:
    p50, p95, p99 = histogram_percentiles(f.bins)
    return LatencyJson(
        count=f.count,
        count_4xx=f.count_4xx,
        count_5xx=f.count_5xx,
        rate_4xx=_rate(f.count_4xx, f.count),
        rate_5xx=_rate(f.count_5xx, f.count),
        avg_ms=round(f.sum_ms / f.count, 3) if f.count else None,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
    )


_EMPTY = figures_json(RouteFigures())
"""The figures of a bucket without requests."""


def _text_percentiles(text: str) -> tuple[float | None, ...]:
    """percentiles() of a sparse histogram text of _sparse (`i:count ...`, bins ascending),
    with C-speed list work only: most buckets of an hourly series are one rollup row's text."""
    numbers = list(map(int, text.replace(":", " ").split(" ")))
    cumulative = list(accumulate(numbers[1::2]))
    total = cumulative[-1]
    bins = numbers[0::2]
    return tuple(
        BIN_VALUES[bins[bisect_left(cumulative, max(1, -(-p * total // 100)))]] for p in PERCENTILES
    )


@dataclass(slots=True)
class BucketSums:
    """One route's requests in one bucket. A month of hourly buckets is 7,200 of these, most
    made of one rollup row: its histogram stays that row's sparse text (`text`) until a
    second part comes, then it is the non-zero bins (`bins`); the dense 70-bin histogram's
    list and percentiles were a third of that answer's time."""

    count: int = 0
    count_4xx: int = 0
    count_5xx: int = 0
    sum_ms: float = 0.0
    bins: dict[int, int] = field(default_factory=dict)
    text: str = ""

    def _spread(self) -> dict[int, int]:
        """`bins`, with the text held so far added to them."""
        bins = self.bins
        if self.text:
            numbers = map(int, self.text.replace(":", " ").split(" "))
            for i, n in zip(numbers, numbers, strict=True):
                bins[i] = bins.get(i, 0) + n
            self.text = ""
        return bins

    def add(self, request: Request) -> None:
        self.count += 1
        self.count_4xx += 400 <= request.status <= 499
        self.count_5xx += request.status >= 500
        self.sum_ms += request.duration_ms
        bins = self._spread()
        bins[request.bin] = bins.get(request.bin, 0) + 1

    def add_entry(self, entry: Sequence[str]) -> None:
        """Add one folded entry of SERIES_VALUES (its unit already placed); its bins are the
        sparse text of _sparse (empty for a row of no requests)."""
        _unit_text, sum_ms, count, count_4xx, count_5xx, text = entry
        first = not self.count and not self.bins
        self.count += int(count)
        self.count_4xx += int(count_4xx)
        self.count_5xx += int(count_5xx)
        self.sum_ms += float(sum_ms)
        if first:
            self.text = text
        elif text:
            self._spread()
            self.text = text
            self._spread()

    def as_json(self, start: str) -> RouteBucketJson:
        count = self.count
        if not count:
            return RouteBucketJson(start=start, **_EMPTY)
        if self.text and not self.bins:
            p50, p95, p99 = _text_percentiles(self.text)
        else:
            p50, p95, p99 = sparse_percentiles(self._spread())
        return RouteBucketJson(
            start=start,
            count=count,
            count_4xx=self.count_4xx,
            count_5xx=self.count_5xx,
            rate_4xx=self.count_4xx / count,
            rate_5xx=self.count_5xx / count,
            avg_ms=round(self.sum_ms / count, 3),
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
        )


def _merge(into: RouteFigures, row: Sequence[Any], sign: int = 1) -> None:
    """Add (`sign` -1: subtract) a group's sums (count, 4xx, 5xx, sum_ms, the histogram's
    SUM(... + 0E0) text: doubles, which may print with an exponent)."""
    into.count += sign * int(row[0] or 0)
    into.count_4xx += sign * int(row[1] or 0)
    into.count_5xx += sign * int(row[2] or 0)
    into.sum_ms += sign * float(row[3] or 0)
    if row[4]:
        more = map(int, map(float, str(row[4]).split(",")))
        into.bins = [a + sign * b for a, b in zip(into.bins, more, strict=True)]


def _unit(value: Any) -> datetime:
    """A DATETIME (or a DATE, as its midnight) the driver returned."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value))


@dataclass(slots=True)
class Figures:
    """What one period's reads add up to."""

    buckets: Buckets
    routes: dict[RouteKey, RouteFigures] = field(default_factory=dict)
    by_bucket: dict[tuple[int, RouteKey], BucketSums] = field(default_factory=dict)
    users: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    logs: list[tuple[datetime, RouteKey, Any]] = field(default_factory=list)
    """The requests counted from service_logs: (timestamp, key, Request)."""
    unit_index: dict[str, int] = field(default_factory=dict)
    """The bucket of a series entry's unit (an hour or a day, as text): thousands of entries,
    a few hundred units."""

    def route(self, key: RouteKey) -> RouteFigures:
        found = self.routes.get(key)
        if found is None:
            found = self.routes[key] = RouteFigures()
        return found

    def in_bucket(self, i: int, key: RouteKey) -> BucketSums:
        found = self.by_bucket.get((i, key))
        if found is None:
            found = self.by_bucket[(i, key)] = BucketSums()
        return found

    def add_user(self, user: str, count: int, last: datetime) -> None:
        before, seen = self.users.get(user, (0, last))
        self.users[user] = (before + count, max(seen, last))

    def add_logs(self, ask: RequestsRequest, rows: Sequence[Sequence[Any]]) -> None:
        for moment, service, metadata in rows:
            request = request_of(None if metadata is None else str(metadata))
            if request is None:
                continue
            stamp = _unit(moment)
            if request.user_id is not None:
                self.add_user(request.user_id, 1, stamp)
            if ask.route is not None and request.route != ask.route:
                continue
            if ask.method is not None and request.method != ask.method:
                continue
            key = (str(service), request.route, request.method)
            self.route(key).add(request)
            self.logs.append((stamp, key, request))

    def add_totals(self, sign: int, rows: Sequence[Sequence[Any]]) -> None:
        """Rows of route_totals_sql, added (`sign` -1: subtracted)."""
        for row in rows:
            _merge(self.route((str(row[0]), str(row[1]), str(row[2]))), row[3:], sign)

    def add_users(self, folded: Folded) -> None:
        """The folded rows of users_sql."""
        for _, entries in folded:
            for hex_id, count, seen in entries:
                user = bytes.fromhex(hex_id).decode()
                self.add_user(user, int(count), datetime.fromisoformat(seen))

    def add_series(self, folded: Folded) -> None:
        """The folded rows of route_series_sql, each entry into its bucket."""
        indexes = self.unit_index
        for (service, route, method), entries in folded:
            key = (service, route, method)
            for entry in entries:
                i = indexes.get(entry[0])
                if i is None:
                    i = indexes[entry[0]] = self.buckets.index(datetime.fromisoformat(entry[0]))
                self.in_bucket(i, key).add_entry(entry)

    def ranked(self) -> list[RouteKey]:
        """Routes by requests, most first (ties by service, route, method)."""
        return sorted(self.routes, key=lambda k: (-self.routes[k].count, k))

    def as_json(self, ask: RequestsRequest, top: Sequence[RouteKey]) -> dict[str, Any]:
        total = RouteFigures()
        for f in self.routes.values():
            total.count += f.count
            total.count_4xx += f.count_4xx
            total.count_5xx += f.count_5xx
            total.sum_ms += f.sum_ms
            total.bins = [a + b for a, b in zip(total.bins, f.bins, strict=True)]
        starts = [self.buckets.start_text(i) for i in range(len(self.buckets.starts))]

        def route_json(key: RouteKey) -> RouteJson:
            service, route, method = key
            return RouteJson(
                method=method, route=route, service=service, **figures_json(self.routes[key])
            )

        routes = []
        empty = BucketSums()
        for key in top:
            series = [
                self.by_bucket.get((i, key), empty).as_json(start) for i, start in enumerate(starts)
            ]
            routes.append(RouteSeriesJson(**route_json(key), buckets=series))
        enough = [k for k, f in self.routes.items() if f.count >= ask.min_count]
        p95 = {k: histogram_percentiles(self.routes[k].bins)[1] or 0.0 for k in enough}
        slowest = sorted(enough, key=lambda k: (-p95[k], -self.routes[k].count, k))
        failing = [k for k in enough if self.routes[k].count_4xx + self.routes[k].count_5xx]

        def failure(k: RouteKey) -> tuple[float, int, RouteKey]:
            f = self.routes[k]
            failed = f.count_4xx + f.count_5xx
            return (-failed / f.count, -failed, k)

        users = sorted(self.users.items(), key=lambda u: (-u[1][0], u[0]))[: ask.users]
        return {
            "since": rfc3339(self.buckets.since),
            "until": rfc3339(self.buckets.until),
            "accuracy": ACCURACY,
            "totals": figures_json(total),
            "routes": routes,
            "slowest": [route_json(k) for k in slowest[: ask.limit]],
            "failing": [route_json(k) for k in sorted(failing, key=failure)[: ask.limit]],
            "users": [
                UserJson(user_id=user, count=count, last_seen=rfc3339(last))
                for user, (count, last) in users
            ],
        }


def _split(
    buckets: Buckets,
) -> tuple[tuple[datetime, datetime] | None, list[tuple[datetime, datetime]]]:
    """The whole hours the rollup answers (None: none) and the spans read from the logs."""
    since, until = buckets.since, buckets.until
    if buckets.grain == "hour":
        first, last = ceil_hour(since), hour_of(until)
        if first < last:
            edges = [(a, b) for a, b in ((since, first), (last, until)) if a < b]
            return (first, last), edges
    return None, [(since, until)]


def _day_of(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _tiers(whole: Span) -> tuple[list[Span], list[Span]]:
    """The whole hours `whole` as the whole UTC days in them (read from the day tier) and
    the hours before and after those (from the hourly one)."""
    first, last = whole
    start = _day_of(first)
    if start < first:
        start += timedelta(days=1)
    end = _day_of(last)
    if start >= end:
        return [], [whole]
    return [(start, end)], [(a, b) for a, b in ((first, start), (end, last)) if a < b]


def _route_tiers(whole: Span) -> tuple[list[Span], list[Span], list[Span]]:
    """The whole hours `whole` for the route totals: the days to read from the day tier, the
    hours to add from the hourly one and those to subtract. A UTC day the range cuts is read
    as its hours inside the range, or, when those are more than the hours outside, as its
    day row minus those outside (a month starting just after midnight reads 1 hour, not 23).
    Exact: a day row is its hours' sums (the writer upserts both in one transaction). Not for
    the users: a day's last_seen cannot be subtracted."""
    first, last = whole
    one = timedelta(days=1)
    days, plus, minus = _tiers(whole)[0], [], []
    for day in sorted({_day_of(first), _day_of(last - timedelta(hours=1))}):
        start, end = max(first, day), min(last, day + one)
        if (start, end) == (day, day + one):
            continue  # a whole day, in _tiers' days
        outside = [(a, b) for a, b in ((day, start), (end, day + one)) if a < b]
        if sum((b - a for a, b in outside), timedelta()) < end - start:
            days.append((day, day + one))
            minus += outside
        else:
            plus.append((start, end))
    joined: list[Span] = []
    for a, b in sorted(days):
        if joined and joined[-1][1] == a:
            joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    return joined, plus, minus


def _days_whole(buckets: Buckets) -> bool:
    """No bucket boundary inside the range cuts a UTC day (day or week buckets in UTC): a
    day's row of the day tier goes whole into one bucket."""
    return all(start.hour == 0 for start in buckets.starts[1:])


async def _period(fetch: Fetch, ask: RequestsRequest, buckets: Buckets, cap: int) -> dict[str, Any]:
    figures = Figures(buckets)
    whole, edges = _split(buckets)
    # The reads that rank the routes, then those of the top routes' series; in each, a read
    # runs on the server while Python works on the rows of the one before (lms.query.overlap).
    # The users come before the route totals, so that only the last totals wait for nothing.
    ranking: list[Step[Any]] = []
    if edges:
        ranking.append(Step(partial(fetch, *logs_sql(ask, edges)), partial(figures.add_logs, ask)))
    days, hours = _tiers(whole) if whole is not None else ([], [])
    if whole is not None:
        user_days = USER_DAYS if ask.series.query.service is not None else USER_ALL_DAYS
        for tier, spans in ((user_days, days), (USER_HOURS, hours)):
            if spans:
                statement = users_sql(ask, tier, spans)
                read = partial(fetch_folded, fetch, statement, (), USER_VALUES)
                ranking.append(Step(read, figures.add_users))
        route_days, plus, minus = _route_tiers(whole)
        for tier, spans, sign in (
            (ROUTE_DAYS, route_days, 1),
            (ROUTE_HOURS, plus, 1),
            (ROUTE_HOURS, minus, -1),
        ):
            if spans:
                statement = route_totals_sql(ask, tier, spans)
                ranking.append(Step(partial(fetch, *statement), partial(figures.add_totals, sign)))
    await overlapped(ranking)
    # A route whose requests all fell in subtracted hours had none in the range.
    figures.routes = {k: f for k, f in figures.routes.items() if f.count}
    top = figures.ranked()[: ask.limit]
    if len(top) * len(buckets.starts) > cap:
        raise TooManyBuckets("limit", cap, "lower limit, shorten the range or use a larger bucket")
    wanted = set(top)
    for stamp, key, request in figures.logs:
        if key in wanted:
            figures.in_bucket(buckets.index(stamp), key).add(request)
    if whole is not None and top:
        series: list[tuple[Tier, list[Span]]] = [(ROUTE_DAYS, days), (ROUTE_HOURS, hours)]
        if not _days_whole(buckets):
            series = [(ROUTE_HOURS, [whole])]
        await overlapped(
            [
                Step(
                    partial(
                        fetch_folded,
                        fetch,
                        route_series_sql(ask, tier, spans, top),
                        ROUTE_KEY,
                        SERIES_VALUES,
                    ),
                    figures.add_series,
                )
                for tier, spans in series
                if spans
            ]
        )
    return figures.as_json(ask, top)


async def request_figures(
    reader: LogReader, ask: RequestsRequest, cap: int, now: datetime | None = None
) -> dict[str, Any]:
    """GET /v1/analytics/requests: totals, the top routes per bucket, the slowest and most
    failing routes and the top users, for the range and (compare) the one just before."""
    parts = []
    for buckets in periods(ask.series, cap, now):

        async def read(fetch: Fetch, buckets: Buckets = buckets) -> dict[str, Any]:
            return await _period(fetch, ask, buckets, cap)

        parts.append(await reader.snapshot(read))
    return series_answer(ask.series, parts)
