"""End-to-end run of LMS: `lms mon` and `lms sim` side by side against the real emulator and DB.

    PUBSUB_EMULATOR_HOST=127.0.0.1:8085 python e2e/run_e2e.py      (or simply: make e2e)

1. Makes its own topic, subscription and database (lms_e2e_<hex>) and runs `lms migrate`.
2. Starts `lms mon` (BATCHSIZE=200, FLUSHINTERVAL=2, no DURATION), waits until it subscribes,
   then runs `lms sim --report FILE` for E2E_DURATION seconds (default 60).
3. Waits until `service_logs` holds every confirmed publish, then SIGTERMs `lms mon`, which
   must exit 0.
4. Proves, per (service, severity): published == COUNT(*) of service_logs == SUM(count) of
   service_severity; no message id stored twice; nothing rejected; the subscription is drained.
   Logs the message count and the batch sizes taken from `lms mon`'s JSON log lines.
5. Drops the database and deletes the topic and subscription (E2E_KEEP=1 keeps them).

Exits 0 when every check holds, 1 with a clear message otherwise.

Environment: PUBSUB_EMULATOR_HOST (required), MYSQL_* as for `lms`, E2E_DURATION (60),
E2E_BATCHSIZE (200), E2E_FLUSHINTERVAL (2), E2E_DRAIN_TIMEOUT (120), E2E_KEEP (unset).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pymysql
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from lms.settings import load_settings

Key = tuple[str, str]
STARTED = time.monotonic()


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


def lms_command() -> list[str]:
    """The `lms` console script of this interpreter's environment, else `python -m lms.cli.main`."""
    script = Path(sys.executable).with_name("lms")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lms.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        self.topic = f"lms-e2e-{suffix}"
        self.subscription = f"lms-e2e-{suffix}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"lms-e2e-{suffix}-"))
        self.report_path = self.workdir / "sim-report.json"
        self.mon_log = self.workdir / "mon.log"
        self.mon_err = self.workdir / "mon.err"
        self.env = {
            **os.environ,
            "PUBSUB_TOPIC": self.topic,
            "PUBSUB_SUBSCRIPTION": self.subscription,
            "MYSQL_DATABASE": self.database,
            "LOG_FORMAT": "json",
            # Its own metrics port, so it never collides with another `lms mon` here.
            "METRICS_PORT": str(free_port()),
        }
        self.env.pop("DURATION", None)
        self.settings = load_settings(
            pubsub_topic=self.topic,
            pubsub_subscription=self.subscription,
            mysql_database=self.database,
        )
        self.mon: subprocess.Popen[bytes] | None = None
        self.mon_files: list = []

    # -- processes --------------------------------------------------------------------------

    def lms(self, *args: str, timeout: float, **extra_env: str) -> subprocess.CompletedProcess:
        command = [*lms_command(), *args]
        result = subprocess.run(
            command,
            env={**self.env, **extra_env},
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
        out = self.mon_log.open("wb")
        err = self.mon_err.open("wb")
        self.mon_files = [out, err]
        self.mon = subprocess.Popen(
            [*lms_command(), "mon"],
            env={
                **self.env,
                "BATCHSIZE": os.environ.get("E2E_BATCHSIZE", "200"),
                "FLUSHINTERVAL": os.environ.get("E2E_FLUSHINTERVAL", "2"),
            },
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        wait_for(self.mon_started, 90, "`lms mon` to log 'monitor started'")
        say(f"lms mon is subscribed (pid {self.mon.pid})")

    def mon_started(self) -> bool:
        assert self.mon is not None
        if self.mon.poll() is not None:
            raise E2EFailure(f"`lms mon` exited {self.mon.returncode} at start-up")
        return any(event.get("event") == "monitor started" for event in self.mon_events())

    def mon_events(self) -> list[dict]:
        events = []
        for line in self.mon_log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return events

    def stop_mon(self) -> None:
        assert self.mon is not None
        say("sending SIGTERM to lms mon")
        self.mon.send_signal(signal.SIGTERM)
        try:
            code = self.mon.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise E2EFailure("`lms mon` did not exit within 90s of SIGTERM") from None
        if code != 0:
            raise E2EFailure(f"`lms mon` exited {code} after SIGTERM, expected 0")
        say("lms mon exited 0")

    # -- database ---------------------------------------------------------------------------

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        s = self.settings
        return pymysql.connect(
            host=s.mysql_host,
            port=s.mysql_port,
            user=s.mysql_user,
            password=s.mysql_password,
            database=database,
            autocommit=True,
            connect_timeout=10,
        )

    def query(self, sql: str) -> list[tuple]:
        with self.connect(self.database) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def stored(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM service_logs")[0][0])

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> None:
        say(
            f"database {self.database}, topic {self.topic}, emulator "
            f"{os.environ['PUBSUB_EMULATOR_HOST']}, sim for {self.duration:g}s, "
            f"work dir {self.workdir}"
        )
        self.lms("migrate", timeout=120)
        say("schema migrated")
        self.start_mon()

        say(f"running lms sim for {self.duration:g}s")
        sim = subprocess.Popen(
            [*lms_command(), "sim", "--report", str(self.report_path)],
            env={**self.env, "DURATION": f"{self.duration:g}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            sim_out, _ = sim.communicate(timeout=self.duration + 180)
        except subprocess.TimeoutExpired:
            sim.kill()
            raise E2EFailure("`lms sim` did not finish in time") from None
        if sim.returncode != 0:
            raise E2EFailure(f"`lms sim` exited {sim.returncode}:\n{sim_out[-3000:]}")
        published, expected = self.read_report()
        say(f"lms sim confirmed {published} publishes over {len(expected)} (service, severity)")

        def all_stored() -> bool:
            assert self.mon is not None
            if self.mon.poll() is not None:
                raise E2EFailure(f"`lms mon` exited {self.mon.returncode} while draining")
            count = self.stored()
            if count > published:
                raise E2EFailure(f"service_logs holds {count} rows, more than {published}")
            return count == published

        wait_for(all_stored, self.drain_timeout, f"service_logs to reach {published} rows")
        say(f"service_logs holds all {published} messages")
        self.stop_mon()
        self.check_tables(published, expected)
        self.check_drained()
        self.report_batches(published)

    def read_report(self) -> tuple[int, Counter[Key]]:
        try:
            report = json.loads(self.report_path.read_text(encoding="utf-8"))
            expected: Counter[Key] = Counter()
            for row in report["totals"]:
                expected[(row["service"], row["severity"])] += int(row["count"])
            published = int(report["published"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise E2EFailure(f"unreadable sim report {self.report_path}: {exc!r}") from None
        if published != sum(expected.values()):
            raise E2EFailure(
                f"sim report says published={published} but its totals add up to "
                f"{sum(expected.values())}"
            )
        if published == 0:
            raise E2EFailure("lms sim published nothing")
        return published, expected

    def check_tables(self, published: int, expected: Counter[Key]) -> None:
        logs = Counter(
            {
                (service, severity): int(count)
                for service, severity, count in self.query(
                    "SELECT service_name, severity, COUNT(*) FROM service_logs "
                    "GROUP BY service_name, severity"
                )
            }
        )
        severity = Counter(
            {
                (service, sev): int(total)
                for service, sev, total in self.query(
                    "SELECT service_name, severity, SUM(`count`) FROM service_severity "
                    "GROUP BY service_name, severity"
                )
            }
        )
        problems = []
        for key in sorted(set(expected) | set(logs) | set(severity)):
            want, got_logs, got_sum = expected[key], logs[key], severity[key]
            if not want == got_logs == got_sum:
                problems.append(
                    f"  {key[0]}/{key[1]}: published {want}, service_logs {got_logs}, "
                    f"service_severity SUM(count) {got_sum}"
                )
        if problems:
            raise E2EFailure("per (service, severity) totals disagree:\n" + "\n".join(problems))
        say(
            f"per (service, severity), {len(expected)} pairs: published == COUNT(*) "
            f"service_logs == SUM(count) service_severity (total {published})"
        )
        duplicates = self.query(
            "SELECT message_id, COUNT(*) FROM service_logs GROUP BY message_id HAVING COUNT(*) > 1"
        )
        if duplicates:
            raise E2EFailure(f"{len(duplicates)} message ids stored twice, e.g. {duplicates[:5]}")
        distinct = int(self.query("SELECT COUNT(DISTINCT message_id) FROM service_logs")[0][0])
        if distinct != published:
            raise E2EFailure(f"{distinct} distinct message ids for {published} messages")
        say(f"no duplicate message ids ({distinct} distinct)")
        rejected = int(self.query("SELECT COUNT(*) FROM rejected_messages")[0][0])
        if rejected:
            raise E2EFailure(f"{rejected} of the simulator's valid messages were rejected")

    def check_drained(self, seconds: float = 5.0) -> None:
        subscriber = pubsub_v1.SubscriberClient()
        path = subscriber.subscription_path(self.settings.pubsub_project, self.subscription)
        arrived = 0
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                try:
                    response = subscriber.pull(
                        request={"subscription": path, "max_messages": 100}, timeout=2
                    )
                except (gexc.DeadlineExceeded, gexc.RetryError):
                    continue
                arrived += len(response.received_messages)
                if not response.received_messages:
                    time.sleep(0.2)
        finally:
            subscriber.close()
        if arrived:
            raise E2EFailure(f"subscription not drained: {arrived} messages were still pending")
        say(f"subscription drained: nothing delivered in {seconds:g}s of pulling")

    def report_batches(self, published: int) -> None:
        batches = [e for e in self.mon_events() if e.get("event") == "batch committed"]
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
        if self.mon is not None and self.mon.poll() is None:
            self.mon.kill()
            self.mon.wait()
        for handle in self.mon_files:
            handle.close()
        if self.keep:
            say(f"E2E_KEEP set: kept database {self.database} and work dir {self.workdir}")
            return
        try:
            with self.connect() as conn, conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        except pymysql.err.MySQLError as exc:
            say(f"warning: could not drop database {self.database}: {exc}")
        self.delete_pubsub()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def delete_pubsub(self) -> None:
        project = self.settings.pubsub_project
        subscriber = pubsub_v1.SubscriberClient()
        publisher = pubsub_v1.PublisherClient()
        try:
            for delete in (
                lambda: subscriber.delete_subscription(
                    subscription=subscriber.subscription_path(project, self.subscription),
                    timeout=10,
                ),
                lambda: publisher.delete_topic(
                    topic=publisher.topic_path(project, self.topic), timeout=10
                ),
            ):
                try:
                    delete()
                except gexc.NotFound:
                    pass
                except gexc.GoogleAPICallError as exc:
                    say(f"warning: could not delete the e2e topic/subscription: {exc}")
        finally:
            subscriber.close()

    def show_mon_output(self) -> None:
        for path in (self.mon_log, self.mon_err):
            if path.exists():
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                if lines:
                    print(f"--- last lines of {path.name} ---", file=sys.stderr)
                    print("\n".join(lines[-25:]), file=sys.stderr)


def main() -> int:
    run = Run()
    try:
        run.run()
    except E2EFailure as exc:
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
