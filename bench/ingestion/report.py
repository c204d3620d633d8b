"""The figures of an ingestion benchmark run as a table, with the ratios against the baselines
of the same run, and the "HTTP ingestion" section of docs/performance.md they refresh."""

from __future__ import annotations

from pathlib import Path

from bench.pipeline.common import say
from bench.pipeline.report import machine_line, markdown_table, print_table, replace_section

SECTION = "HTTP ingestion"
BULK_TARGET = 0.5
"""(b) logs/s over (a) logs/s."""
SINGLE_TARGET = 0.5
"""(c) requests/s over (d) requests/s."""

Row = tuple[str, str, str]


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing (a part failed) or the baseline is 0."""
    if value is None or not baseline:
        return None
    return value / baseline


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "no figure"
    return f"target >= {target}: {'met' if value >= target else 'BELOW'}"


def rate_of(results: dict, key: str) -> float | None:
    part = results.get(key)
    return float(part["rate"]) if part else None


def latency(part: dict) -> str:
    lat = part["latency_us"]
    return f"p50 {lat['p50'] / 1000:,.1f} ms, p99 {lat['p99'] / 1000:,.1f} ms"


def closed_loop_rate(part: dict) -> float:
    """Connections / mean latency (Little's law): the rate of the run counting the requests
    still in flight at its end, which wrk's count leaves out; for bodies that take seconds
    to be acknowledged, they are a good part of a short run."""
    mean_s = part["latency_us"]["mean"] / 1e6
    per_request = part["logs_per_request"] or 1
    return part["connections"] / mean_s * per_request if mean_s > 0 else 0.0


def cpu(part: dict) -> str:
    return (
        f"CPU: lms api {part['api_cpu_util']:.0%}, emulator {part['emulator_cpu_util']:.0%},"
        f" wrk {part['wrk_cpu_util']:.0%}, machine {part['machine_busy']:.0%} busy"
    )


def table_rows(results: dict) -> list[Row]:
    rows: list[Row] = []
    pub = results.get("lms_pub")
    baseline = rate_of(results, "lms_pub")
    if pub:
        rows.append(
            (
                f"(a) `lms pub {pub['messages']:,}` straight to Pub/Sub",
                f"{pub['rate']:,.0f} logs/s",
                "the baseline of (b): 8 Publish requests of 1,000 in flight",
            )
        )
    bodies = results.get("bodies", {})
    batch = results.get("batch", 1000)
    for workers in results.get("workers", []):
        suffix = f"API_WORKERS={workers}"
        for key, label, size in (
            ("bulk", "NDJSON", bodies.get("ndjson")),
            ("bulk_gzip", "NDJSON gzip", bodies.get("gzip")),
        ):
            part = results.get(f"{key}_w{workers}")
            if not part:
                continue
            share = ratio(part["rate"], baseline)
            rows.append(
                (
                    f"(b) POST /v1/logs, {label} of {batch:,}, 8 clients, {suffix}",
                    f"{part['rate']:,.0f} logs/s",
                    (f"b / a = {share:.2f} ({verdict(share, BULK_TARGET)}); " if share else "")
                    + (f"{size / 1000:,.0f} kB bodies; " if size else "")
                    + f"{latency(part)} (8 / mean latency: {closed_loop_rate(part):,.0f}"
                    f" logs/s); {cpu(part)}",
                )
            )
        noop = results.get(f"noop_w{workers}")
        single = results.get(f"single_w{workers}")
        if single:
            share = ratio(single["rate"], rate_of(results, f"noop_w{workers}"))
            rows.append(
                (
                    f"(c) POST /v1/logs, 1 log per request, 64 clients, {suffix}",
                    f"{single['rate']:,.0f} req/s",
                    (f"c / d = {share:.2f} ({verdict(share, SINGLE_TARGET)}); " if share else "")
                    + f"{latency(single)}; {cpu(single)}",
                )
            )
        if noop:
            rows.append(
                (
                    f"(d) GET /healthz, 64 clients, {suffix}",
                    f"{noop['rate']:,.0f} req/s",
                    f"the do-nothing baseline of (c); {latency(noop)}; {cpu(noop)}",
                )
            )
        refused = results.get(f"refused_w{workers}")
        if refused:
            rows.append(
                (
                    f"(d2) POST /v1/logs, 1 refused log (400), 64 clients, {suffix}",
                    f"{refused['rate']:,.0f} req/s",
                    f"(c) but for the publish; {latency(refused)}; {cpu(refused)}",
                )
            )
        server = results.get(f"server_w{workers}")
        if server:
            peaks = ", ".join(
                f"{key} {results[f'{key}_w{workers}']['peak_rss_mb']:,.0f}"
                for key in ("bulk", "bulk_gzip", "single", "noop", "refused")
                if f"{key}_w{workers}" in results
            )
            rows.append(
                (
                    f"peak RSS of lms api, {suffix}",
                    f"{server['peak_rss_mb']:,.0f} MB",
                    f"all its processes, sampled every 0.2 s: {server['rss_after_warmup_mb']:,.0f}"
                    f" MB after the warm-up; peak per part (MB): {peaks};"
                    f" exit code {server['exit_code']} on SIGTERM",
                )
            )
    return rows


def print_rows(rows: list[Row]) -> None:
    print_table(rows)


def complete(results: dict) -> bool:
    """Whether the run has every figure the section compares: a, and b, c, d of a server."""
    return "lms_pub" in results and any(
        all(f"{key}_w{w}" in results for key in ("bulk", "bulk_gzip", "single", "noop"))
        for w in results.get("workers", [])
    )


def section(results: dict, rows: list[Row]) -> str:
    lines = [
        f"## {SECTION}",
        "",
        f"`{results['command']}` (`make bench-ingest`, part of `make bench`), {results['date']}:"
        f" every wrk run {results['seconds']:g} s after a {results['warmup']:g} s warm-up of"
        " each server, one emulator, a fresh topic (with a subscription, as `lms mon` would"
        " have) per server and for `lms pub`.",
        machine_line(results),
        "",
        *markdown_table(rows),
        "",
        "How it is measured:",
        "",
        "- `lms api` runs as a real child process (`python -m lms.cli api`), configured by"
        " environment variables: `API_QUERY=false` (an ingest-only node: no database),"
        " `INGEST_TOKENS` set and every request sending its `Authorization: Bearer` token,"
        " the default `INGEST_LINGER`, `API_WORKERS` as in each row.",
        "- The load generator is `wrk` (Debian's package; `bench/ingestion/client.lua` sets"
        f" the request and checks every answer): {results.get('wrk_threads', 2)} threads,"
        " keep-alive connections, each sending its next request as soon as its answer"
        " arrived. Only answers with the expected status and body count (202 with"
        ' `"accepted":N,"rejected":[]`); any other answer or socket error fails the part.'
        " Its own CPU is in the notes, to show it is not the limit.",
        "- The logs are those `lms pub` publishes (realistic templated logs, request logs with"
        " their metadata), so (a)"
        " and (b) move the same messages; (a) is `lms pub`'s own rate (publishes confirmed,"
        " start-up excluded), run between the two servers.",
        "- (d) is `GET /healthz` with the same 64 connections and the same server: the cost of"
        " uvicorn, the access middleware (its Host check; /healthz needs no token, the one"
        " thing of it (c) pays more: a constant-time compare) and FastAPI's routing and"
        " response, which every request pays, so (c) / (d) is the share of the server's"
        " capacity left once a request also reads its body, validates its log and waits for the"
        " Pub/Sub confirmation. It is an existing route, answered without I/O; no route was"
        " added for the benchmark. (d2) sends a log the edge refuses (400): everything of (c)"
        " but the publish, which splits the gap between (c) and (d).",
        "- Rates count the answers wrk received within the run; requests still in flight"
        " at its end are left out, which for (b)'s bodies of 1,000 logs, acknowledged in"
        " seconds here, lowers the figure: the note gives connections / mean latency"
        " (Little's law) beside it. Latency is wrk's, per request; RSS is that of `lms api`"
        " and its workers.",
        "",
    ]
    return "\n".join(lines)


def write_docs(path: Path, results: dict, rows: list[Row]) -> None:
    """Refresh the section when the run is complete; the rest of the file is left alone."""
    if not complete(results):
        say(f"{path}: nothing to refresh (a partial run)")
        return
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    path.write_text(replace_section(text, SECTION, section(results, rows)), encoding="utf-8")
    say(f"wrote {path}")
