"""Tiny runs of the pipeline benchmark (bench/run.py) and bench/write_cost.py, so they keep
working.

Only the shape of its JSON report is checked, never the figures: they depend on the machine.
The run starts (and must stop) its own Pub/Sub emulator, like `make bench` does.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pymysql
import pytest

from tests.conftest import mysql_config

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration

RATE_KEYS = (
    "pubsub_drain",
    "pubsub_drain_hold",
    "database",
    "database_no_fulltext",
    "database_write_batch",
    "mon_defaults",
    "mon_env",
    "latency",
    "lms_pub",
    "lms_pub_no_sub",
)


def run_bench(
    script: str, *args: str, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_no_database_left(prefix: str) -> None:
    """A benchmark drops the databases it made (their names start with `prefix`)."""
    conn = pymysql.connect(**mysql_config())
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (prefix + "%",))
            assert cur.fetchall() == ()
    finally:
        conn.close()


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    done = run_bench(
        "run.py",
        "--messages=2000",
        "--warmup=0",
        "--rounds=2",
        "--skip-profile",
        "--latency-seconds=4",
        "--latency-rate=500",
        "--pub-messages=2000",
        "--no-docs",
        f"--json={report_path}",
        cwd=tmp_path,
        timeout=600,  # two rounds of the core parts on a loaded 2-core machine
    )
    output = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, output

    # Its emulator (a process group of its own) is gone.
    started = re.search(r"emulator at \S+ \(pid (\d+)\)", done.stdout)
    assert started, output
    emulator = int(started.group(1))
    assert not psutil.pid_exists(emulator) or psutil.Process(emulator).status() == "zombie"

    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["messages"] == 2000
    assert "errors" not in report, report.get("errors")
    for key in RATE_KEYS:
        assert report[key]["rate"] > 0, key
    assert report["ceiling"] > 0
    for key in ("mon_defaults", "mon_env"):
        run = report[key]
        assert run["stored"] == 2000
        assert run["backlog_after"] == 0
        assert run["exit_code"] == 0
        assert run["ratio"] > 0
        assert run["peak_rss_mb"] > 0
        assert run["cpu_s_per_1k"] > 0
        assert run["emulator_cpu_s_per_1k"] > 0
        # two alternating rounds: the headline is one of them, the ratio their median
        stats = report["stats"][key]
        assert stats["rate"]["n"] == 2
        assert stats["rate"]["min"] <= run["rate"] <= stats["rate"]["max"]
        ratio = report["ratios"][key]
        assert ratio["min"] <= run["ratio"] == ratio["median"] <= ratio["max"]
    assert [sorted(done) for done in report["rounds"]] == [sorted(RATE_KEYS[:7])] * 2
    assert report["pubsub_drain"]["backlog_after"] == 0
    latency = report["latency"]
    assert latency["published"] > 0
    assert 0 < latency["insert_p50_ms"] <= latency["insert_p99_ms"]
    assert 0 < latency["commit_p50_ms"] <= latency["commit_p99_ms"]
    assert report["cpu_budget"]["bound"] > 0
    assert "msg/s" in done.stdout  # the printed table


def test_write_cost_smoke_run() -> None:
    prefix = f"lms_test_{secrets.token_hex(6)}"
    done = run_bench(
        "write_cost.py", "--rows=2000", "--batch=500", "--runs=1", f"--prefix={prefix}", timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"version 3: [\d,]+-[\d,]+ rows/s", done.stdout), done.stdout
    assert re.search(r"version 4: [\d,]+-[\d,]+ rows/s", done.stdout), done.stdout
    assert_no_database_left(prefix)


def test_patterns_cost_smoke_run() -> None:
    prefix = f"lms_test_{secrets.token_hex(6)}"
    done = run_bench(
        "patterns.py", "--rows=1000", "--batch=500", "--runs=1", "--owned", f"--prefix={prefix}",
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"masking: [\d.]+-[\d.]+ CPU us per payload", done.stdout), done.stdout
    assert re.search(r"ratio: [\d.]+", done.stdout), done.stdout
    assert_no_database_left(prefix)


@pytest.mark.parametrize(
    ("option", "printed"),
    [("--all-requests", "(100% requests,"), ("--rollup=commits", "with commit_rollup:")],
)
def test_request_cost_smoke_run(option: str, printed: str) -> None:
    prefix = f"lms_test_{secrets.token_hex(6)}"
    done = run_bench(
        "request_cost.py", "--rows=1000", "--batch=500", "--runs=1", option,
        f"--prefix={prefix}", timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert printed in done.stdout and re.search(r"ratio: [\d.]+", done.stdout)
    assert_no_database_left(prefix)


def test_query_benchmark_smoke_run(tmp_path: Path) -> None:
    """A few thousand rows through bench/query.py's logs part: the report gets its table and
    the machine-independent verdict (each kind's p95 over the unfiltered page's)."""
    database = f"lms_bench_smoke_{secrets.token_hex(4)}"
    report = tmp_path / "performance.md"
    done = run_bench(
        "query.py",
        "--rows=3000",
        f"--database={database}",
        "--runs=2",
        "--part=logs",
        "--only=^(no filter|service|q word \\(rare\\))$",
        f"--report={report}",
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^  service +[\d.]+x", done.stdout, re.MULTILINE), done.stdout
    text = report.read_text()
    assert "| query | p50 ms | p95 ms | max ms | rows | p95 / no filter |" in text
    assert re.search(r"^\| no filter \|.* 1\.0 \|$", text, re.MULTILINE), text
    assert "every kind's p95 at most 4x no filter's of the same run" in text
    assert_no_database_left(database)
