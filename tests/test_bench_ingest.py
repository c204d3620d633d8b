"""The ingestion benchmark (bench/ingest.py): the pure parts of its report, its refusal to run
without wrk, and (with wrk installed) a tiny real run, so that it keeps working.

Figures are never checked, only the shape of the report: they depend on the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench.ingestion.report import closed_loop_rate, complete, ratio, verdict
from bench.ingestion.wrk import parse_output

ROOT = Path(__file__).resolve().parent.parent

WRK_LINE = (
    'LMS_WRK {"duration_us":2000000,"requests":10,"good":9,"bad":1,"bad_status":503,'
    '"bad_body":"{\\u0022detail\\u0022:1}","connect_errors":1,"read_errors":0,'
    '"write_errors":0,"timeouts":2,"latency_us":{"mean":5.0,"max":9,"p50":4,"p90":8,"p99":9}}'
)


def test_parse_output_reads_the_lua_line_among_wrk_output() -> None:
    figures = parse_output(f"Running 2s test @ http://x\n{WRK_LINE}\nRequests/sec: 5.00\n")
    assert figures["seconds"] == 2.0
    assert figures["good_per_s"] == 4.5
    assert figures["errors"] == 3  # socket errors and timeouts, not the bad answer
    assert figures["bad_body"] == '{"detail":1}'
    assert figures["latency_us"]["p99"] == 9


def test_parse_output_without_the_line_says_so() -> None:
    with pytest.raises(RuntimeError, match="no LMS_WRK line"):
        parse_output("Running 2s test\nunable to connect\n")


def test_ratio_and_verdict() -> None:
    assert ratio(30.0, 60.0) == 0.5
    assert ratio(None, 60.0) is None
    assert ratio(30.0, 0.0) is None
    assert verdict(0.5, 0.5) == "target >= 0.5: met"
    assert verdict(0.49, 0.5) == "target >= 0.5: BELOW"
    assert verdict(None, 0.5) == "no figure"


def test_closed_loop_rate_counts_what_is_still_in_flight() -> None:
    part = {"connections": 8, "logs_per_request": 1000, "latency_us": {"mean": 2_000_000.0}}
    assert closed_loop_rate(part) == 4000.0  # 8 requests of 1,000 logs every 2 s
    assert closed_loop_rate({**part, "logs_per_request": 0}) == 4.0  # requests/s


def test_complete_needs_the_baseline_and_every_load_of_one_server() -> None:
    parts = {f"{key}_w2": {"rate": 1.0} for key in ("bulk", "bulk_gzip", "single", "noop")}
    assert complete({"workers": [1, 2], "lms_pub": {"rate": 1.0}, **parts})
    assert not complete({"workers": [1, 2], **parts})
    del parts["noop_w2"]
    assert not complete({"workers": [1, 2], "lms_pub": {"rate": 1.0}, **parts})


def run_bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ingest.py"), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
    )


def test_without_wrk_it_fails_saying_how_to_install_it(tmp_path: Path) -> None:
    done = run_bench("--no-docs", env={"BENCH_INGEST_WRK": str(tmp_path / "no-wrk")})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "apt-get install -y wrk" in done.stdout


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("wrk") is None, reason="no wrk (apt-get install -y wrk)")
def test_ingest_benchmark_smoke_run(tmp_path: Path) -> None:
    report_path = tmp_path / "ingest.json"
    done = run_bench(
        "--seconds=1",
        "--warmup=0",
        "--workers=1",
        "--pub-logs=2000",
        "--batch=20",
        "--no-docs",
        f"--json={report_path}",
    )
    output = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, output
    started = re.search(r"emulator at \S+ \(pid (\d+)\)", done.stdout)
    assert started, output
    emulator = int(started.group(1))
    assert not psutil.pid_exists(emulator) or psutil.Process(emulator).status() == "zombie"

    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert "errors" not in report, report["errors"]
    assert complete(report)
    for key in ("bulk_w1", "bulk_gzip_w1", "single_w1", "noop_w1", "refused_w1"):
        assert report[key]["good"] > 0, key
        assert report[key]["bad"] == 0, key
        assert report[key]["latency_us"]["p50"] <= report[key]["latency_us"]["p99"], key
    assert report["bulk_w1"]["rate"] == report["bulk_w1"]["good_per_s"] * 20
    server = report["server_w1"]
    assert server["exit_code"] == 0
    assert server["peak_rss_mb"] >= server["rss_after_warmup_mb"] > 0
    assert "b / a = " in done.stdout and "c / d = " in done.stdout
