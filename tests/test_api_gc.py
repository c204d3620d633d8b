"""`lms api`'s collector settings (lms.api.server.tune_gc): what the app holds for its whole
life is frozen out of collection and young collections are rarer, so a request's thousands of
objects no longer make the collector walk the heap (docs/performance.md, HTTP ingestion)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from lms.api.server import GC_YOUNG_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_what_exists_and_raises_the_young_threshold() -> None:
    older = gc.get_threshold()[1:]
    alive = [[] for _ in range(100)]  # containers the collector tracks
    tune_gc()
    assert gc.get_freeze_count() >= len(alive)
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *older)
    # Cyclic garbage made afterwards is still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
