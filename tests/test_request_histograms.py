"""The sparse forms of the latency histogram that the request answers read (a route's hour
holds a few of the 70 bins) give exactly what the dense one gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lms.domain.requests import BINS, Request, percentiles, sparse_percentiles
from lms.query.requests import BucketSums, _text_percentiles, figures_json
from lms.store.request_rollup import RouteFigures

histograms = st.lists(st.one_of(st.just(0), st.integers(0, 10**12)), min_size=BINS, max_size=BINS)


def _text(histogram: list[int]) -> str:
    """What the series read sends for a row: `i:count` of its non-zero bins, ascending."""
    return " ".join(f"{i}:{n}" for i, n in enumerate(histogram) if n)


@given(histograms)
def test_sparse_percentiles_are_the_dense_ones(histogram: list[int]) -> None:
    dense = percentiles(histogram)
    assert sparse_percentiles({i: n for i, n in enumerate(histogram) if n}) == dense
    assert sparse_percentiles(dict(enumerate(histogram))) == dense  # zeros held too
    if any(histogram):
        assert _text_percentiles(_text(histogram)) == dense


def _entry(histogram: list[int], ms: float = 12.5) -> list[str]:
    """A series row of this histogram, a third of its requests 4xx and a quarter 5xx."""
    n = sum(histogram)
    return ["2024-05-01 10:00:00", str(ms), str(n), str(n // 3), str(n // 4), _text(histogram)]


@given(st.lists(histograms, min_size=1, max_size=4), st.lists(st.floats(0, 70000), max_size=5))
def test_a_bucket_of_rows_and_logs_is_their_dense_sum(
    rows: list[list[int]], durations: list[float]
) -> None:
    """One row (kept as its text), several (spread into bins), then logs added after them:
    the bucket's figures are those of the dense sum, in whatever mix."""
    sums, dense = BucketSums(), RouteFigures()
    for histogram in rows:
        sums.add_entry(_entry(histogram))
        dense.count += sum(histogram)
        dense.count_4xx += sum(histogram) // 3
        dense.count_5xx += sum(histogram) // 4
        dense.sum_ms += 12.5
        dense.bins = [a + b for a, b in zip(dense.bins, histogram, strict=True)]
    for duration in durations:
        request = Request("GET", "/r", 503, duration, None)
        sums.add(request)
        dense.add(request)
    got = sums.as_json("start")
    want = figures_json(dense)
    assert got == {"start": "start", **want}


def test_an_empty_bucket_and_an_empty_row() -> None:
    empty = figures_json(RouteFigures())
    assert BucketSums().as_json("s") == {"start": "s", **empty}
    sums = BucketSums()
    sums.add_entry(["u", "0", "0", "0", "0", ""])  # a row of no requests has no bins
    assert sums.as_json("s") == {"start": "s", **empty}
    sums.add_entry(_entry([0] * 30 + [4] + [0] * (BINS - 31), ms=8.0))
    assert sums.as_json("s")["p95_ms"] == percentiles([0] * 30 + [4] + [0] * (BINS - 31))[1]
