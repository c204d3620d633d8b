"""End-to-end run of LMS: `lms mon` and `lms sim` side by side against the real emulator and DB.

    PUBSUB_EMULATOR_HOST=127.0.0.1:8085 python e2e/run_e2e.py      (or simply: make e2e)

1. Makes its own topic, subscription and database (lms_e2e_<hex>) and runs `lms migrate`.
2. Starts `lms mon` (BATCHSIZE=200, FLUSHINTERVAL=2, no DURATION), waits until it subscribes,
   and `lms api` on a free port with an ingestion token.
3. Runs, side by side for E2E_DURATION seconds (default 60), `lms sim --report FILE`
   publishing straight to Pub/Sub and `lms sim --http URL --report FILE` sending the same kind
   of traffic through `lms api`'s POST /v1/logs (E2E_VIA=pubsub or http runs only one).
4. Waits until `service_logs` holds every confirmed publish, then SIGTERMs `lms mon` and
   `lms api`, which must both exit 0.
5. Proves, per (service, severity): accepted (by Pub/Sub, or by `lms api` with a 202) ==
   COUNT(*) of service_logs == SUM(count) of service_severity; no message id stored twice;
   nothing rejected; the subscription is drained. Logs the message count and the batch
   sizes taken from `lms mon`'s JSON log lines.
6. Drops the database and deletes the topic and subscription (E2E_KEEP=1 keeps them).

The harness of `lms mon`, the totals check and the drained check are lms.devtools' (the ones
the tests use); this script only strings them together and says what it sees.

Exits 0 when every check holds, 1 with a clear message otherwise.

Environment: PUBSUB_EMULATOR_HOST (required), MYSQL_* as for `lms`, E2E_DURATION (60),
E2E_VIA (both), E2E_BATCHSIZE (200), E2E_FLUSHINTERVAL (2), E2E_DRAIN_TIMEOUT (120),
E2E_KEEP (unset).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from lms.devtools.backlog import subscription_backlog
from lms.devtools.database import drop_databases
from lms.devtools.monitor_process import (
    MonitorError,
    MonitorProcess,
    child_environment,
    lms_command,
)
from lms.devtools.ports import free_port
from lms.devtools.resources import delete_resources
from lms.devtools.verify import Key, SimReport, check_consistency
from lms.settings import load_settings

STARTED = time.monotonic()
VIAS = {"both": ("pubsub", "http"), "pubsub": ("pubsub",), "http": ("http",)}


class E2EFailure(Exception):
    """A check did not hold; the message says which and how."""


def say(message: str) -> None:
    print(f"[e2e {time.monotonic() - STARTED:7.1f}s] {message}", flush=True)


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"e2e: {name}={raw!r} is not a number") from None


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise E2EFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Run:
    def __init__(self) -> None:
        if not os.environ.get("PUBSUB_EMULATOR_HOST"):
            raise SystemExit("e2e: PUBSUB_EMULATOR_HOST is not set (run it with `make e2e`)")
        suffix = uuid.uuid4().hex[:12]
        self.duration = env_number("E2E_DURATION", 60.0)
        self.drain_timeout = env_number("E2E_DRAIN_TIMEOUT", 120.0)
        self.keep = bool(os.environ.get("E2E_KEEP"))
        self.database = f"lms_e2e_{suffix}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"lms-e2e-{suffix}-"))
        via = os.environ.get("E2E_VIA", "both")
        if via not in VIAS:
            raise SystemExit(f"e2e: E2E_VIA={via!r} is not one of {', '.join(VIAS)}")
        self.vias = VIAS[via]
        self.api_port = free_port()
        self.api: subprocess.Popen[bytes] | None = None
        self.via_http = 0
        self.settings = load_settings(
            pubsub_topic=f"lms-e2e-{suffix}",
            pubsub_subscription=f"lms-e2e-{suffix}",
            mysql_database=self.database,
            batchsize=int(env_number("E2E_BATCHSIZE", 200)),
            flushinterval=env_number("E2E_FLUSHINTERVAL", 2.0),
            duration=None,  # lms mon runs until SIGTERM; lms sim gets its own DURATION
            # Its own metrics port, so it never collides with another `lms mon` here.
            metrics_port=free_port(),
            ingest_tokens=secrets.token_urlsafe(16),
        )
        self.mon = MonitorProcess(self.settings, self.workdir, "mon")

    # -- processes --------------------------------------------------------------------------

    def lms(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*lms_command(), *args],
            env=child_environment(self.settings),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise E2EFailure(
                f"`lms {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def start_mon(self) -> None:
        self.mon.start()
        self.mon.wait_started_blocking(timeout=90)
        say(f"lms mon is subscribed (pid {self.mon.pid})")

    def stop_mon(self) -> None:
        say("sending SIGTERM to lms mon")
        code = self.mon.stop_blocking(timeout=90)
        if code != 0:
            raise E2EFailure(f"`lms mon` exited {code} after SIGTERM, expected 0")
        say("lms mon exited 0")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_api(self) -> None:
        log = (self.workdir / "api.log").open("wb")
        self.api = subprocess.Popen(
            [*lms_command(), "api", "--port", str(self.api_port)],
            env=child_environment(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

        def serving() -> bool:
            if self.api is None or self.api.poll() is not None:
                raise E2EFailure(f"`lms api` exited at start:\n{self.api_log()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/healthz", timeout=2) as reply:
                    return bool(reply.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_for(serving, 60, "lms api to serve /healthz", every=0.2)
        say(f"lms api serves {self.api_url} (pid {self.api.pid})")

    def stop_api(self) -> None:
        if self.api is None:
            return
        self.api.send_signal(signal.SIGTERM)
        code = self.api.wait(timeout=60)
        if code != 0:
            raise E2EFailure(f"`lms api` exited {code} after SIGTERM:\n{self.api_log()}")
        say("lms api exited 0")

    def api_log(self) -> str:
        return (self.workdir / "api.log").read_text(errors="replace")[-3000:]

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> None:
        say(
            f"database {self.database}, topic {self.settings.pubsub_topic}, emulator "
            f"{self.settings.pubsub_emulator_host}, sim for {self.duration:g}s, "
            f"work dir {self.workdir}"
        )
        self.lms("migrate", timeout=120)
        say("schema migrated")
        self.start_mon()

        if "http" in self.vias:
            self.start_api()
        published, expected = self.run_sims()
        say(f"lms sim confirmed {published} logs over {len(expected)} (service, severity)")

        def all_stored() -> bool:
            if not self.mon.alive:
                raise E2EFailure(f"`lms mon` exited {self.mon.returncode} while draining")
            count = asyncio.run(check_consistency(self.settings, expected)).total_stored
            if count > published:
                raise E2EFailure(f"service_logs holds {count} rows, more than {published}")
            return count == published

        wait_for(all_stored, self.drain_timeout, f"service_logs to reach {published} rows")
        say(f"service_logs holds all {published} messages")
        self.stop_api()
        self.stop_mon()
        self.check_tables(published, expected)
        self.check_drained()
        self.report_batches(published)

    def run_sims(self) -> tuple[int, dict[Key, int]]:
        """One `lms sim` per way in, side by side; what they confirmed, added up."""
        sims: dict[str, tuple[subprocess.Popen[str], Path]] = {}
        for via in self.vias:
            report = self.workdir / f"sim-{via}.json"
            http = ["--http", self.api_url] if via == "http" else []
            say(f"running lms sim {' '.join(http) or 'to Pub/Sub'} for {self.duration:g}s")
            sims[via] = (
                subprocess.Popen(
                    [*lms_command(), "sim", "--report", str(report), *http],
                    env=child_environment(self.settings, {"DURATION": f"{self.duration:g}"}),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                ),
                report,
            )
        published, expected = 0, Counter[Key]()
        self.via_http = 0
        for via, (sim, report) in sims.items():
            try:
                output, _ = sim.communicate(timeout=self.duration + 180)
            except subprocess.TimeoutExpired:
                sim.kill()
                raise E2EFailure(f"`lms sim` ({via}) did not finish in time") from None
            if sim.returncode != 0:
                raise E2EFailure(f"`lms sim` ({via}) exited {sim.returncode}:\n{output[-3000:]}")
            count, totals = self.read_report(report)
            say(f"lms sim ({via}) confirmed {count} logs")
            if via == "http":
                self.via_http = count
            published += count
            expected.update(totals)
        return published, dict(expected)

    def read_report(self, path: Path) -> tuple[int, dict[Key, int]]:
        try:
            report = SimReport.load(path)
        except ValueError as exc:
            raise E2EFailure(str(exc)) from None
        if report.published == 0:
            raise E2EFailure(f"lms sim published nothing ({path.name})")
        return report.published, report.totals

    def check_tables(self, published: int, expected: dict[Key, int]) -> None:
        result = asyncio.run(check_consistency(self.settings, expected))
        if result.mismatches:
            problems = [
                f"  {m.key[0]}/{m.key[1]}: published {m.published}, service_logs {m.stored}, "
                f"service_severity SUM(count) {m.counted}"
                for m in result.mismatches
            ]
            raise E2EFailure("per (service, severity) totals disagree:\n" + "\n".join(problems))
        say(
            f"per (service, severity), {len(expected)} pairs: accepted == COUNT(*) "
            f"service_logs == SUM(count) service_severity (total {published})"
        )
        if result.duplicate_ids:
            sample = sorted(result.duplicate_ids.items())[:5]
            raise E2EFailure(f"{len(result.duplicate_ids)} message ids stored twice, e.g. {sample}")
        distinct = result.total_stored - result.duplicate_rows
        if distinct != published:
            raise E2EFailure(f"{distinct} distinct message ids for {published} messages")
        say(f"no duplicate message ids ({distinct} distinct)")
        if result.rejected:
            raise E2EFailure(f"{result.rejected} of the simulator's valid messages were rejected")
        if result.client_keyed != self.via_http:
            raise E2EFailure(
                f"{result.client_keyed} rows carry a client's id, but {self.via_http} logs came"
                " through lms api"
            )
        say(f"{self.via_http} of them came through lms api, each stored under its client id")

    def check_drained(self) -> None:
        pending = asyncio.run(subscription_backlog(self.settings))
        if pending:
            raise E2EFailure(f"subscription not drained: {pending} messages were still pending")
        say("subscription drained: nothing left to deliver")

    def report_batches(self, published: int) -> None:
        batches = self.mon.batches
        if not batches:
            raise E2EFailure("`lms mon` logged no 'batch committed' line")
        sizes = [int(b["size"]) for b in batches]
        triggers = Counter(str(b.get("trigger")) for b in batches)
        new = sum(int(b.get("new", 0)) for b in batches)
        duplicates = sum(int(b.get("duplicates", 0)) for b in batches)
        say(
            f"messages: {published}; batches: {len(batches)} "
            f"(triggers {dict(sorted(triggers.items()))}); sizes min {min(sizes)}, "
            f"max {max(sizes)}, mean {sum(sizes) / len(sizes):.1f}; new {new}, "
            f"duplicates {duplicates}"
        )
        say(f"batch sizes in order: {sizes}")
        if new != published:
            raise E2EFailure(f"batches report {new} new rows, expected {published}")

    def cleanup(self) -> None:
        if self.mon.alive:
            self.mon.kill_blocking()
        if self.api is not None and self.api.poll() is None:
            self.api.kill()
            self.api.wait()
        if self.keep:
            say(f"E2E_KEEP set: kept database {self.database} and work dir {self.workdir}")
            return
        try:
            drop_databases(self.settings, [self.database])
        except Exception as exc:  # cleanup must not hide the run's own outcome
            say(f"warning: could not drop database {self.database}: {exc}")
        try:
            asyncio.run(delete_resources(self.settings))
        except Exception as exc:
            say(f"warning: could not delete the e2e topic/subscription: {exc}")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def show_mon_output(self) -> None:
        print(self.mon.tail(25), file=sys.stderr)


def main() -> int:
    run = Run()
    try:
        run.run()
    except (E2EFailure, MonitorError) as exc:
        run.show_mon_output()
        print(f"e2e FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("e2e interrupted", file=sys.stderr)
        return 130
    except Exception:
        run.show_mon_output()
        raise
    finally:
        run.cleanup()
    say("e2e PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
