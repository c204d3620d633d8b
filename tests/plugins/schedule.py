"""Long tests first, so that a parallel run (`make test`, pytest-xdist) is not ended by one
long test that happened to start last.

xdist hands tests to its workers in collection order. This plugin moves the tests known to be
long to the front, longest first; the rest keep their order (so the tests of a module with a
module-scoped fixture still run together on each worker). With `--maxschedchunk 1` (see the
Makefile) every worker holds at most one test ahead, so this is longest-first scheduling:
each long test starts on whichever worker is free, while the short ones fill in beside them.

How long a test is: what it took last time (pytest's cache, `lms/durations`, written at the
end of every run that ran it), or, on a fresh clone (CI), the estimates in `KNOWN_LONG`. The
order only changes how fast the run ends, never what it checks. Every xdist worker collects
the same order: they read the same cache, which only the controller writes, at the end.
"""

from __future__ import annotations

import pytest

CACHE_KEY = "lms/durations"
LONG = 5.0
"""Seconds (of its call, fixtures aside) from which a test is moved ahead of the others. High
enough that no test leaves a module whose module-scoped fixture (a seeded database) it would
then set up a second time."""

KNOWN_LONG: dict[str, float] = {
    # node id, or a prefix of node ids: seconds it takes on this project's 2-core machine
    "tests/test_bench_smoke.py::test_benchmark_smoke_run": 90,
    "tests/test_faults.py::test_two_replicas_with_lease_extension_and_redeliveries": 66,
    "tests/test_faults.py::test_slow_database_big_backlog_bounded": 47,
    "tests/test_faults.py::test_pubsub_cut_and_blackholed[fast-streaming]": 80,
    "tests/test_faults.py::test_pubsub_cut_and_blackholed": 46,
    "tests/test_faults.py::test_sigkill_at_random_moments": 40,
    "tests/test_faults.py::test_database_cut_and_blackholed": 39,
    "tests/test_faults.py::": 20,  # the other fault scenarios
    "tests/test_pipeline.py::test_nothing_is_acked_before_commit": 10,
    "tests/test_observability.py::test_readyz_follows_the_database": 8,
    "clients/python/tests/test_client_package.py::test_the_client_benchmark_runs": 19,
    "clients/python/tests/test_client_transports.py::test_lms_down_at_start_then_back": 14,
    "clients/python/tests/test_client_transports.py::test_the_spool_survives": 11,
}


def _estimate(nodeid: str, measured: dict[str, float]) -> float:
    if nodeid in measured:
        return measured[nodeid]
    prefixes = [p for p in KNOWN_LONG if nodeid.startswith(p)]
    return KNOWN_LONG[max(prefixes, key=len)] if prefixes else 0.0


def _measured(config: pytest.Config) -> dict[str, float]:
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    return dict(cache.get(CACHE_KEY, {})) if cache is not None else {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    measured = _measured(config)
    estimates = {item.nodeid: _estimate(item.nodeid, measured) for item in items}
    long = sorted(
        (item for item in items if estimates[item.nodeid] >= LONG),
        key=lambda item: -estimates[item.nodeid],
    )
    ahead = {id(item) for item in long}
    items[:] = long + [item for item in items if id(item) not in ahead]


class _Recorder:
    """Notes how long each test's call took; saves it to the cache at the end.

    The call alone: a module-scoped fixture's set-up is charged to whichever test of the
    module ran first, which says nothing about that test."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.durations[report.nodeid] = report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        cache = getattr(session.config, "cache", None)
        if cache is None or not self.durations:
            return
        merged = _measured(session.config)
        merged.update({nodeid: round(seconds, 2) for nodeid, seconds in self.durations.items()})
        cache.set(CACHE_KEY, merged)


def pytest_configure(config: pytest.Config) -> None:
    # An xdist worker only collects and runs: its controller sees every report and writes.
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder(), "lms-schedule-recorder")
