"""The command line of the ingestion benchmark (bench/ingest.py): one emulator, then per
API_WORKERS value one `lms api` under wrk, with `lms pub` (the baseline) after the first."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.ingestion.bodies import Body, write_bodies
from bench.ingestion.report import print_rows, table_rows, write_docs
from bench.ingestion.server import ApiServer
from bench.ingestion.wrk import Load, WrkMissing, run_wrk, wrk_binary
from bench.pipeline.common import DOCS, Context, Meter, run_step, say
from bench.pipeline.main import terminate_cleanly
from bench.pipeline.pub import part_pub
from bench.pipeline.report import git_state, machine
from lms.devtools.emulator import Emulator, EmulatorError, start_emulator
from lms.devtools.resources import delete_resources, ensure_resources

BULK_CLIENTS = 8
SINGLE_CLIENTS = 64


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ingestion benchmark: lms api's POST /v1/logs against lms pub straight to"
        " Pub/Sub, and against a do-nothing route of the same server.",
        epilog="See the module docstring (bench/ingest.py) for what each part measures. Every"
        " option's default comes from the BENCH_INGEST_* variable named in its help.",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=env_number("BENCH_INGEST_SECONDS", 8),
        help="length of each wrk run (BENCH_INGEST_SECONDS, 8)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=env_number("BENCH_INGEST_WARMUP", 3),
        help="wrk run before measuring each server, not counted (BENCH_INGEST_WARMUP, 3; 0: none)",
    )
    parser.add_argument(
        "--pub-logs",
        type=int,
        default=int(env_number("BENCH_INGEST_PUB_LOGS", 100_000)),
        help="logs of the lms pub baseline (BENCH_INGEST_PUB_LOGS, 100000)",
    )
    parser.add_argument(
        "--workers",
        default=os.environ.get("BENCH_INGEST_WORKERS", "1,2"),
        help="API_WORKERS values, one server each (BENCH_INGEST_WORKERS, 1,2)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=int(env_number("BENCH_INGEST_BATCH", 1000)),
        help="logs per NDJSON body of (b) (BENCH_INGEST_BATCH, 1000)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(env_number("BENCH_INGEST_WRK_THREADS", os.cpu_count() or 2)),
        help="wrk threads (BENCH_INGEST_WRK_THREADS, the number of CPUs)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--emulator-host", help="use this running emulator instead of starting one")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the logs")
    args = parser.parse_args(argv)
    try:
        args.worker_list = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--workers: expected comma-separated numbers, got {args.workers!r}")
    if not args.worker_list or min(args.worker_list) < 1:
        parser.error("--workers: at least one value, each >= 1")
    if args.seconds < 1 or args.pub_logs < 1 or args.batch < 1 or args.threads < 1:
        parser.error("--seconds, --pub-logs, --batch and --threads must be at least 1")
    return args


def loads(url: str, bodies: dict[str, Body], token: str, args: argparse.Namespace) -> list[tuple]:
    """(key, what it counts, logs per good answer, Load) of every measured run of a server."""

    def post(body: Body, clients: int, status: int, expect: str) -> Load:
        return Load(
            url=f"{url}/v1/logs",
            connections=clients,
            seconds=args.seconds,
            threads=args.threads,
            method="POST",
            body=body.path,
            content_type=body.content_type,
            encoding=body.encoding,
            token=token,
            status=status,
            expect=expect,
        )

    def accepted(body: Body) -> str:
        return f'"accepted":{body.logs},"rejected":[]'

    ndjson, gz, single = bodies["ndjson"], bodies["gzip"], bodies["single"]
    return [
        ("bulk", ndjson.logs, post(ndjson, BULK_CLIENTS, 202, accepted(ndjson))),
        ("bulk_gzip", gz.logs, post(gz, BULK_CLIENTS, 202, accepted(gz))),
        ("single", 1, post(single, SINGLE_CLIENTS, 202, accepted(single))),
        (
            "noop",
            0,
            Load(
                url=f"{url}/healthz",
                connections=SINGLE_CLIENTS,
                seconds=args.seconds,
                threads=args.threads,
                token=token,
                expect='"status":"ok"',
            ),
        ),
        ("refused", 0, post(bodies["refused"], SINGLE_CLIENTS, 400, '"accepted":0,')),
    ]


def measured_wrk(ctx: Context, server: ApiServer, load: Load, binary: str) -> dict:
    """One wrk run, with the CPU of lms api, the emulator and wrk itself over it, and the
    peak RSS of lms api during it."""
    first_sample = len(server.samples)
    meter = Meter(ctx).start()
    api_cpu = server.cpu()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    figures = run_wrk(load, binary)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    figures.update(meter.stop())
    figures["api_cpu_util"] = (server.cpu() - api_cpu) / seconds
    figures["wrk_cpu_util"] = wrk_cpu / seconds
    figures["peak_rss_mb"] = max(server.peak_rss(first_sample), server.rss_now()) / 2**20
    figures["connections"] = load.connections
    if figures["bad"] or figures["errors"]:
        raise RuntimeError(
            f"{figures['bad']} unexpected answers (last: {figures['bad_status']}"
            f" {figures['bad_body']!r}) and {figures['errors']} socket errors or timeouts"
        )
    if not figures["good"]:
        raise RuntimeError(
            f"no answer within the {load.seconds:g} s of the run: requests slower than that"
            " (a longer --seconds, or a server that hangs?)"
        )
    return figures


async def part_server(
    ctx: Context, workers: int, bodies: dict[str, Body], binary: str, results: dict
) -> None:
    """One `lms api` (API_WORKERS=`workers`, ingestion only, a token) on a fresh topic with a
    subscription (as `lms mon` would have): warm-up, then every load of `loads`."""
    args = ctx.args
    settings = ctx.settings(f"ingest-w{workers}")
    ctx.databases.pop()  # API_QUERY=false: no database
    token = secrets.token_urlsafe(24)
    extra = {
        "API_WORKERS": str(workers),
        "API_QUERY": "false",
        "INGEST_TOKENS": token,
        "LOG_LEVEL": "warning",
    }
    await ensure_resources(settings)
    server = ApiServer(settings, extra, ctx.workdir / f"api-w{workers}")
    try:
        await asyncio.to_thread(server.start)
        say(f"   lms api (API_WORKERS={workers}) at {server.url}, pid {server.pid}")
        runs = loads(server.url, bodies, token, args)
        if args.warmup > 0:
            warm = dataclasses.replace(runs[0][2], seconds=args.warmup)
            await asyncio.to_thread(run_wrk, warm, binary)
        rss_start = server.rss_now()
        for key, logs_per_answer, load in runs:
            name = f"{key}_w{workers}"

            async def step(load: Load = load, logs: int = logs_per_answer) -> dict:
                figures = await asyncio.to_thread(measured_wrk, ctx, server, load, binary)
                figures["rate"] = figures["good_per_s"] * logs if logs else figures["good_per_s"]
                figures["logs_per_request"] = logs
                return figures

            result = await run_step(key, name, step, results)
            if result is not None:
                result["workers"] = workers
                results[name] = result
        code = await asyncio.to_thread(server.stop)
        results[f"server_w{workers}"] = {
            "workers": workers,
            "rss_after_warmup_mb": rss_start / 2**20,
            "peak_rss_mb": server.peak_rss() / 2**20,
            "samples": len(server.samples),
            "exit_code": code,
        }
        if code != 0:
            raise RuntimeError(f"lms api exited {code} on SIGTERM:\n{server.tail()}")
    finally:
        server.stop()
        await delete_resources(settings)


async def run_all(ctx: Context, bodies: dict[str, Body], binary: str, results: dict) -> None:
    args = ctx.args
    for position, workers in enumerate(args.worker_list):
        say(f"== lms api, API_WORKERS={workers}")
        try:
            await part_server(ctx, workers, bodies, binary, results)
        except Exception as exc:  # one server failing must not lose the other parts
            say(f"   FAILED: {exc!r}")
            results.setdefault("errors", {})[f"server_w{workers}"] = repr(exc)
        if position == 0:
            # The baseline between the servers: on an emulator as warm as theirs.
            result = await run_step(
                "a", "lms_pub", lambda: part_pub(ctx, args.pub_logs, True), results
            )
            if result is not None:
                results["lms_pub"] = result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        binary = wrk_binary()
    except WrkMissing as exc:
        say(f"bench: {exc}")
        return 2
    command = "python bench/ingest.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )
    workdir = Path(tempfile.mkdtemp(prefix="lms-bench-ingest-"))
    results: dict[str, Any] = {
        "command": command,
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "pub_logs": args.pub_logs,
        "batch": args.batch,
        "workers": args.worker_list,
        "wrk_threads": args.threads,
        "machine": machine(),
        "git": git_state(),
    }
    emulator: Emulator | None = None
    try:
        with terminate_cleanly():
            say(f"bench: load average {results['machine']['load_before']}, work dir {workdir}")
            bodies = write_bodies(workdir / "bodies", args.batch, args.seed)
            results["bodies"] = {name: body.size for name, body in bodies.items()}
            if args.emulator_host:
                host = args.emulator_host
            else:
                try:
                    emulator = start_emulator(workdir / "emulator.log", timeout=90)
                except EmulatorError as exc:
                    raise SystemExit(f"bench: {exc}") from None
                host = emulator.host
                say(f"bench: emulator at {host} (pid {emulator.pgid})")
            ctx = Context(args, workdir, host)
            ctx.emulator = emulator
            asyncio.run(run_all(ctx, bodies, binary, results))
    finally:
        if emulator is not None:
            emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    rows = table_rows(results)
    if rows:
        print_rows(rows)
    if not args.no_docs:
        write_docs(DOCS, results, rows)
    if results.get("errors"):
        say(f"bench: {len(results['errors'])} part(s) failed: {', '.join(results['errors'])}")
        return 1
    return 0
