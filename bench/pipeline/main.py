"""The command line of the pipeline benchmark (bench/run.py): which parts run, in which order,
on one emulator and one event loop, and what is written at the end."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pymysql

from bench.pipeline.common import (
    DOCS,
    ENV_FILE,
    HOLD,
    POOL,
    RSS_LIMIT_MB,
    RSS_MESSAGES,
    Context,
    make_pool,
    run_step,
    say,
)
from bench.pipeline.database import parse_pool, part_database, part_write_batch
from bench.pipeline.drain import part_drain, warm_up
from bench.pipeline.latency import part_latency
from bench.pipeline.mon import part_mon, read_env_file
from bench.pipeline.profile import summarize_profile
from bench.pipeline.pub import part_pub
from bench.pipeline.report import (
    cpu_budget,
    git_state,
    machine,
    print_table,
    table_rows,
    write_docs,
)
from bench.pipeline.rounds import baseline_key, summarize_rounds
from bench.pipeline.tune import run_tune
from lms.devtools.database import drop_databases
from lms.devtools.emulator import Emulator, EmulatorError, start_emulator
from lms.settings import load_settings

ALL_PARTS = ("a", "a2", "b", "b0", "b2", "c", "profile", "latency", "pub", "rss")
DEFAULT_PARTS = ("a", "a2", "b", "b0", "b2", "c", "profile", "latency", "pub")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pipeline benchmark: lms mon against bare Pub/Sub and bare MySQL.",
        epilog="See the module docstring (bench/run.py) for what each part measures.",
    )
    parser.add_argument("--messages", type=int, default=200_000, help="backlog size (200,000)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--parts",
        default=",".join(DEFAULT_PARTS),
        help=f"comma-separated parts to run, of {','.join(ALL_PARTS)}"
        f" (default {','.join(DEFAULT_PARTS)})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds of the core parts, alternating (a, b, c, a, b, c, ...), each on fresh"
        " names; figures are the median with the spread (default 3; 1 with --tune)",
    )
    parser.add_argument(
        "--single", action="store_true", help="one round (--rounds 1): a quick look, no spread"
    )
    parser.add_argument("--skip-latency", action="store_true", help="leave out the latency run")
    parser.add_argument("--skip-profile", action="store_true", help="leave out the py-spy run")
    parser.add_argument("--skip-pub", action="store_true", help="leave out lms pub")
    parser.add_argument(
        "--rss-check", action="store_true", help="also drain a 1,000,000 backlog (long)"
    )
    parser.add_argument("--rss-messages", type=int, default=RSS_MESSAGES, help=argparse.SUPPRESS)
    parser.add_argument("--pub-messages", type=int, default=200_000, help="for lms pub")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="steady run (20 s)")
    parser.add_argument(
        "--latency-rate", type=float, help="msg/s for the latency run (default: half of c)"
    )
    parser.add_argument("--env-file", type=Path, default=ENV_FILE, help="settings of the tuned run")
    parser.add_argument(
        "--tune",
        metavar="B:M,...",
        help="only run (c) once per BATCHSIZE:MAX_OUTSTANDING[:PULLERS[:PULL_MODE]] combination"
        " (other settings from --env-file) and print a table",
    )
    parser.add_argument("--emulator-host", help="use this running emulator instead of starting one")
    parser.add_argument(
        "--warmup",
        type=int,
        help="messages published and drained first, to warm the emulator's JIT (default:"
        " the backlog size, at least 100,000; 0 to skip)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also run (c) with emulator.env in every round with lms imported from DIR (e.g."
        " `git archive COMMIT lms | tar -x -C DIR`): versions compared within one run;"
        " repeatable, named by DIR's last part",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--keep", action="store_true", help="keep databases and the work dir")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the messages")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(ALL_PARTS))
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)}")
    if args.skip_latency and "latency" in parts:
        parts.remove("latency")
    if args.skip_profile and "profile" in parts:
        parts.remove("profile")
    if args.skip_pub and "pub" in parts:
        parts.remove("pub")
    if args.rss_check and "rss" not in parts:
        parts.append("rss")
    args.part_list = parts
    if args.single:
        args.rounds = 1
    if args.rounds is None:
        args.rounds = 1 if args.tune else 3
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    if args.warmup is None:
        args.warmup = max(args.messages, 100_000)
    if args.messages < 1:
        parser.error("--messages must be positive")
    return args


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """SIGTERM runs the finally blocks (the emulator is stopped) like Ctrl-C does."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def run_parts(ctx: Context, results: dict) -> None:
    args = ctx.args
    parts = args.part_list
    env = read_env_file(args.env_file)
    results["emulator_env"] = env
    core: list[tuple[str, str, Callable[[], Any]]] = []
    if "a" in parts:
        core.append(("a", "pubsub_drain", lambda: part_drain(ctx, hold=0)))
    if "a2" in parts:
        core.append(("a2", "pubsub_drain_hold", lambda: part_drain(ctx, hold=HOLD)))
    if "b" in parts:
        core.append(("b", "database", lambda: part_database(ctx)))
    if "b0" in parts:
        core.append(("b0", "database_no_fulltext", lambda: part_database(ctx, fulltext=False)))
    if "b2" in parts:
        core.append(("b2", "database_write_batch", lambda: part_write_batch(ctx)))
    if "c" in parts:
        core.append(("c", "mon_defaults", lambda: part_mon(ctx, "c", {}, args.messages)))
        core.append(("c", "mon_env", lambda: part_mon(ctx, "cenv", env, args.messages)))
        for directory in args.baseline:
            baseline = {**env, "PYTHONPATH": str(directory.resolve())}
            core.append(
                (
                    "c",
                    baseline_key(directory),
                    lambda baseline=baseline: part_mon(ctx, "cbase", baseline, args.messages),
                )
            )
    # Rounds in turn (a, b, c, a, b, c, ...), each part on fresh names, so that an order
    # effect or a noisy neighbour shows up as spread rather than as a different verdict; the
    # headline of each part is its median run (rounds.py).
    for number in range(args.rounds):
        if args.rounds > 1:
            say(f"-- round {number + 1} of {args.rounds}")
        done: dict[str, dict] = {}
        for part, key, step in core:
            result = await run_step(part, key, step, results)
            if result is not None:
                done[key] = result
        results.setdefault("rounds", []).append(done)
    summarize_rounds(results)

    def latency_rate() -> float:
        if args.latency_rate:
            return float(args.latency_rate)
        c = results.get("mon_env") or results.get("mon_defaults")
        return c["rate"] / 2 if c else 5000.0

    steps: list[tuple[str, str, Callable[[], Any]]] = []
    if "profile" in parts:
        steps.append(
            ("profile", "mon_profiled", lambda: part_mon(ctx, "profile", env, args.messages))
        )
    if "latency" in parts:
        steps.append(("latency", "latency", lambda: part_latency(ctx, env, latency_rate())))
    if "pub" in parts:
        steps.append(("pub", "lms_pub", lambda: part_pub(ctx, args.pub_messages, True)))
        steps.append(("pub", "lms_pub_no_sub", lambda: part_pub(ctx, args.pub_messages, False)))
    for part, key, step in steps:
        result = await run_step(part, key, step, results)
        if result is not None:
            results[key] = result
    if "rss" in parts:
        # emulator.env only: the emulator hands out a 1,000,000 backlog at ~500-1,000 msg/s, so
        # a drain takes ~20 min, and the defaults bound the held messages the same way.
        results["rss_check"] = []
        result = await run_step(
            "rss",
            f"{args.rss_messages:,} backlog, emulator.env",
            lambda: part_mon(ctx, "rss", env, args.rss_messages),
            results,
        )
        if result is not None:
            result["label"] = "emulator.env"
            result["within_limit"] = result["peak_rss_mb"] <= RSS_LIMIT_MB
            results["rss_check"].append(result)
    if "profile" in parts and results.get("mon_profiled", {}).get("profile_raw"):
        raw = Path(results["mon_profiled"]["profile_raw"])
        results["profile"] = await asyncio.to_thread(summarize_profile, raw)
        if args.keep or args.json:
            keep = (args.json.parent if args.json else ctx.workdir) / "lms-mon-profile.raw"
            with contextlib.suppress(OSError):
                if raw != keep:
                    shutil.copyfile(raw, keep)
                results["profile"]["raw"] = str(keep)


async def run_all(ctx: Context, results: dict) -> None:
    """Everything on one event loop (gRPC's asyncio support wants one loop per process)."""
    await warm_up(ctx)
    if ctx.args.tune:
        await run_tune(ctx, results)
    else:
        await run_parts(ctx, results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python bench/run.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )
    workdir = Path(tempfile.mkdtemp(prefix="lms-bench-"))
    results: dict[str, Any] = {
        "command": command,
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "messages": args.messages,
        "parts": args.part_list,
        "warmup": args.warmup,
        "machine": machine(),
        "git": git_state(),
    }
    emulator: Emulator | None = None
    ctx: Context | None = None
    try:
        with terminate_cleanly():
            say(f"bench: load average {results['machine']['load_before']}, work dir {workdir}")
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
            largest = max(args.messages, args.rss_messages if "rss" in args.part_list else 0)
            ctx.pool = make_pool(min(POOL, largest), args.seed)
            ctx.records = parse_pool(ctx.pool) if {"b", "b0", "b2"} & set(args.part_list) else []
            results["mean_bytes"] = sum(len(d) for d, _ in ctx.pool) / len(ctx.pool)
            asyncio.run(run_all(ctx, results))
    finally:
        if emulator is not None:
            emulator.stop()
        if ctx is not None and ctx.databases and not args.keep:
            try:
                drop_databases(load_settings(_env_file=None), ctx.databases)
            except pymysql.err.MySQLError as exc:
                say(f"bench: could not drop the benchmark databases: {exc}")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    a, b = results.get("pubsub_drain"), results.get("database")
    if a and b:
        results["ceiling"] = min(a["rate"], b["rate"])
    results["cpu_budget"] = cpu_budget(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    rows = table_rows(results)
    if rows:
        print_table(rows)
    if not args.no_docs:
        write_docs(DOCS, results, rows)
    if results.get("errors"):
        say(f"bench: {len(results['errors'])} part(s) failed: {', '.join(results['errors'])}")
        return 1
    return 0
