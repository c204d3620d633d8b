"""The client's tests use the server's fixtures: a real Pub/Sub emulator (`pubsub_emulator`),
a throwaway MariaDB database (`mysql_database`), `settings` for both, and real `lms mon`
(`lms_mon`) and `lms api` (tests.lms_process.lms_api) processes. This directory is no
package (a `tests` package here would shadow the server's), so its modules have names unique
in the repository: test_client_*.py.

Re-exported, the session-scoped `pubsub_emulator` is a second definition of the fixture for
this directory; it finds the $PUBSUB_EMULATOR_HOST the first one set, so a worker that runs
tests of both directories still starts one emulator.
"""

from __future__ import annotations

from tests.conftest import mysql_database, pubsub_emulator, settings  # noqa: F401
from tests.lms_process import lms_mon_fixture  # noqa: F401  (the `lms_mon` fixture)
