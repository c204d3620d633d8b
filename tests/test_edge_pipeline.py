"""The rules of issue 14 in `lms mon` itself: messages published straight to Pub/Sub (no HTTP
edge in front) with a name or id that PAD SPACE or a terminal would misread, a timestamp past
MAX_FUTURE_SKEW, or a key given twice land in rejected_messages with their reason, once; a
real `lms mon --drain` child, configured by its environment, against the real emulator and
MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import SettingsFactory, db_query, ensure_resources, make_log, publish
from tests.lms_process import lms_mon_fixture  # noqa: F401  (the `lms_mon` fixture)


async def test_lms_mon_rejects_untrimmed_names_escapes_the_future_and_duplicate_keys(
    settings: SettingsFactory, lms_mon: Any
) -> None:
    s = settings(flushinterval=0.2, max_future_skew=3600)
    await ensure_resources(s)
    now = datetime.now(UTC)
    rejected = {
        make_log("svc ", "info", "PAD SPACE twin of svc"): ("invalid_field", "whitespace"),
        make_log("svc\x1b[2J", "info", "clears a screen"): ("invalid_field", "U+001B"),
        make_log("svc", "info", "t", trace_id="t "): ("invalid_field", "trace_id"),
        make_log("svc", "info", "later", now + timedelta(hours=2)): (
            "invalid_field",
            "MAX_FUTURE_SKEW",
        ),
        make_log("svc", "info", "twice")[:-1] + b', "severity": "error"}': (
            "invalid_json",
            "'severity'",
        ),
    }
    # 30 minutes ahead: within MAX_FUTURE_SKEW=3600 (the default 600 would refuse it).
    stored = make_log("svc", "warn", "soon", now + timedelta(minutes=30))
    await publish(s, [*rejected, stored])
    monitor = lms_mon(s, args=("--drain", "1"))
    assert await monitor.wait(60) == 0
    rows = await db_query(s, "SELECT data, reason, detail FROM rejected_messages")
    assert len(rows) == len(rejected)
    for data, reason, detail in rows:
        expected_reason, words = rejected[bytes(data)]
        assert (reason, words in detail) == (expected_reason, True), detail
    logs = await db_query(s, "SELECT service_name, severity, payload FROM service_logs")
    assert logs == [("svc", "warn", "soon")]
