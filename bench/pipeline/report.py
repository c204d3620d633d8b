"""The figures of a run as a table, and the sections of docs/performance.md they refresh."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pymysql

from bench.pipeline.common import (
    CPU_TARGET,
    PAYLOAD_CHARS,
    PUB_TARGET,
    RATIO_TARGET,
    ROOT,
    RSS_LIMIT_MB,
    say,
)
from bench.pipeline.rounds import BASELINE
from lms.devtools.database import connect_blocking
from lms.settings import load_settings


def git_state() -> dict:
    """The commit measured, and which files of lms/ differed from it (work in progress)."""
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        state["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--short", "lms", "sql"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        state["modified"] = [line[3:] for line in status.splitlines() if line.strip()]
    return state


def machine() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    version = ""
    with contextlib.suppress(pymysql.err.MySQLError):
        conn = connect_blocking(load_settings(_env_file=None))
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            (version,) = cur.fetchone()
        conn.close()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "mysql": version,
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def fmt_rate(value: float | None) -> str:
    return f"{value:,.0f}" if value else "-"


def rounds_note(results: dict, key: str, figure: str = "rate", fmt: str = ",.0f") -> str:
    """ "; 3 rounds: 5,100-6,020" when the part ran more than once, else ""."""
    stat = results.get("stats", {}).get(key, {}).get(figure)
    if not stat or stat["n"] < 2:
        return ""
    return f"; {stat['n']} rounds: {format(stat['min'], fmt)}-{format(stat['max'], fmt)}"


def median_of(results: dict, key: str, figure: str) -> float:
    """The median of a figure over the rounds (the one run's figure after one round)."""
    stat = results.get("stats", {}).get(key, {}).get(figure)
    return float(stat["median"]) if stat else float(results[key][figure])


def cpu_budget(results: dict) -> dict:
    """CPU seconds per 1,000 messages of each component, as measured alone (a, b) and in c,
    and the rate the machine's cores could carry if CPU were the only limit."""
    a, b = results.get("pubsub_drain"), results.get("database")
    c = results.get("mon_env") or results.get("mon_defaults")
    if not (a and b and c):
        return {}
    emulator = a["emulator_cpu_util"] * a["seconds"] / a["messages"] * 1000
    mysqld = b["mysqld_cpu_util"] * b["seconds"] / b["rows"] * 1000
    lms = median_of(results, "mon_env" if "mon_env" in results else "mon_defaults", "cpu_s_per_1k")
    cores = os.cpu_count() or 1
    return {
        "emulator_cpu_s_per_1k": emulator,
        "mysqld_cpu_s_per_1k": mysqld,
        "lms_mon_cpu_s_per_1k": lms,
        "cores": cores,
        "bound": cores * 1000 / (emulator + mysqld + lms),
    }


def cpu_note(result: dict, mon: bool = False) -> str:
    """Who used the CPUs during a part (100% = one core)."""
    parts = []
    if mon:
        parts.append(f"lms mon {result['cpu_util']:.0%}")
    parts.append(f"emulator {result['emulator_cpu_util']:.0%}")
    parts.append(f"mysqld {result['mysqld_cpu_util']:.0%}")
    parts.append(f"machine {result['machine_busy']:.0%} busy")
    return "CPU: " + ", ".join(parts)


def table_rows(results: dict) -> list[tuple[str, str, str]]:
    """(what, figure, note) rows of the summary table."""
    rows: list[tuple[str, str, str]] = []
    a, a2 = results.get("pubsub_drain"), results.get("pubsub_drain_hold")
    if a:
        rows.append(
            (
                "(a) bare Pub/Sub drain",
                f"{fmt_rate(a['rate'])} msg/s",
                f"{a['per_pull']:.0f} msg/pull (max {a['largest_pull']}); {cpu_note(a)}"
                + rounds_note(results, "pubsub_drain"),
            )
        )
    if a2:
        rows.append(
            (
                f"(a2) drain, acks held per {a2['hold']:,}",
                f"{fmt_rate(a2['rate'])} msg/s",
                f"{a2['per_pull']:.0f} msg/pull: the hold-until-commit ceiling; {cpu_note(a2)}"
                + rounds_note(results, "pubsub_drain_hold"),
            )
        )
    for key, label, note in (
        ("database", "(b) bare database", "multi-row INSERTs, 5,000-row txns"),
        ("database_no_fulltext", "(b0) bare database, no FULLTEXT", "same, FULLTEXT dropped"),
        ("database_write_batch", "(b2) Storage.write_batch", "our transaction"),
    ):
        b = results.get(key)
        if b:
            rows.append(
                (
                    label,
                    f"{fmt_rate(b['rate'])} rows/s",
                    f"{note}; {cpu_note(b)}" + rounds_note(results, key),
                )
            )
    ceiling = results.get("ceiling")
    mon_keys = [("mon_defaults", "defaults"), ("mon_env", "emulator.env")]
    for key in sorted(k for k in results if k.startswith(BASELINE)):
        mon_keys.append((key, f"emulator.env, baseline {key.removeprefix(BASELINE)}"))
    for key, label in mon_keys:
        c = results.get(key)
        if not c:
            continue
        cfg = ", ".join(f"{k.upper()}={v}" for k, v in c["settings"].items())
        rows.append(
            (
                f"(c) lms mon, {label}",
                f"{fmt_rate(c['rate'])} msg/s",
                cfg + rounds_note(results, key),
            )
        )
        ratio = results.get("ratios", {}).get(key)
        if ratio:
            spread = (
                f"median of the {ratio['n']} rounds' ratios, each within its round;"
                f" {ratio['min']:.2f}-{ratio['max']:.2f}; "
                if ratio["n"] > 1
                else ""
            )
            rows.append(
                (
                    f"c / min(a, b), {label}",
                    f"{ratio['median']:.2f}",
                    f"{spread}target >= {RATIO_TARGET}"
                    + (f"; c / a2 = {c['rate'] / a2['rate']:.2f}" if a2 else ""),
                )
            )
        elif ceiling:
            rows.append(
                (
                    f"c / min(a, b), {label}",
                    f"{c['rate'] / ceiling:.2f}",
                    f"target >= {RATIO_TARGET}",
                )
            )
        rows.append(
            (
                f"peak RSS, {label}",
                f"{c['peak_rss_mb']:.0f} MB",
                f"{c['batches']} batches of {c['mean_batch']:,.0f} on average, each written in"
                f" {c['mean_commit_s']:.2f} s: the flusher wrote {c['commit_busy']:.0%} of the"
                " time",
            )
        )
        rows.append(
            (
                f"lms mon CPU s / 1,000 msg, {label}",
                f"{median_of(results, key, 'cpu_s_per_1k'):.3f}",
                f"user+sys of the process; target <= {CPU_TARGET}; {cpu_note(c, mon=True)}"
                + rounds_note(results, key, "cpu_s_per_1k", ".3f"),
            )
        )
        if "emulator_cpu_s_per_1k" in c:
            rows.append(
                (
                    f"emulator / mysqld CPU s / 1,000 msg during (c), {label}",
                    f"{median_of(results, key, 'emulator_cpu_s_per_1k'):.3f} /"
                    f" {median_of(results, key, 'mysqld_cpu_s_per_1k'):.3f}",
                    "emulator: its whole process group; mysqld: the server's PID (other"
                    " clients of the shared server included)"
                    + rounds_note(results, key, "emulator_cpu_s_per_1k", ".3f").replace(
                        "rounds:", "rounds, emulator:"
                    )
                    + rounds_note(results, key, "mysqld_cpu_s_per_1k", ".3f").replace(
                        "rounds:", "rounds, mysqld:"
                    ),
                )
            )
    for key, versus in results.get("versus_baseline", {}).items():
        cpu, rate = versus["cpu_s_per_1k"], versus["rate"]
        rows.append(
            (
                f"this / baseline {key.removeprefix(BASELINE)}, emulator.env",
                f"CPU {cpu['median']:.2f}, rate {rate['median']:.2f}",
                f"lms mon CPU per message and msg/s, each ratio within its round, median of"
                f" {cpu['n']}; CPU {cpu['min']:.2f}-{cpu['max']:.2f}, rate"
                f" {rate['min']:.2f}-{rate['max']:.2f}",
            )
        )
    budget = results.get("cpu_budget")
    if budget:
        rows.append(
            (
                f"CPU bound of {budget['cores']} cores",
                f"{fmt_rate(budget['bound'])} msg/s",
                f"CPU s per 1,000: emulator {budget['emulator_cpu_s_per_1k']:.3f} (a),"
                f" mysqld {budget['mysqld_cpu_s_per_1k']:.3f} (b),"
                f" lms mon {budget['lms_mon_cpu_s_per_1k']:.3f} (c)",
            )
        )
    p = results.get("mon_profiled")
    if p:
        rows.append(
            ("(c) emulator.env under py-spy", f"{fmt_rate(p['rate'])} msg/s", cpu_note(p, True))
        )
    lat = results.get("latency")
    if lat:
        figure = (
            f"{lat['commit_p50_ms']:,.0f} / {lat['commit_p99_ms']:,.0f} ms"
            if "commit_p50_ms" in lat
            else "-"
        )
        rows.append(
            (
                "latency publish->commit p50 / p99",
                figure,
                f"steady {fmt_rate(lat['rate'])} msg/s for {lat['seconds']:.0f} s,"
                f" FLUSHINTERVAL=1, {lat['batches']} batches",
            )
        )
        rows.append(
            (
                "latency publish->insert p50 / p99",
                f"{lat['insert_p50_ms']:,.0f} / {lat['insert_p99_ms']:,.0f} ms",
                "created_at - timestamp, from the database",
            )
        )
        if "metrics_p50_ms" in lat:
            rows.append(
                (
                    "latency from /metrics p50 / p99",
                    f"{lat['metrics_p50_ms']:,.0f} / {lat.get('metrics_p99_ms', 0):,.0f} ms",
                    "lms_publish_to_commit_seconds buckets (coarse)",
                )
            )
    for key, label in (("lms_pub", "with a subscription"), ("lms_pub_no_sub", "topic only")):
        pub = results.get(key)
        if pub:
            rows.append(
                (
                    f"lms pub {pub['messages']:,}, {label}",
                    f"{fmt_rate(pub['rate'])} msg/s",
                    f"target >= {PUB_TARGET:,}",
                )
            )
    for run in results.get("tune", []):
        rows.append(
            (
                f"tune {run['combo']}",
                f"{fmt_rate(run['rate'])} msg/s",
                f"RSS {run['peak_rss_mb']:.0f} MB, {run['cpu_s_per_1k']:.3f} CPU s / 1,000,"
                f" writing {run['commit_busy']:.0%} of the time; {cpu_note(run, mon=True)}",
            )
        )
    for rss in results.get("rss_check", []):
        rows.append(
            (
                f"peak RSS, {rss['messages']:,} backlog, {rss['label']}",
                f"{rss['peak_rss_mb']:.0f} MB",
                f"limit {RSS_LIMIT_MB} MB: {'ok' if rss['within_limit'] else 'EXCEEDED'};"
                f" drained at {fmt_rate(rss['rate'])} msg/s",
            )
        )
    return rows


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    fig = max(len(r[1]) for r in rows)
    say("")
    for what, figure, note in rows:
        say(f"{what:<{width}}  {figure:>{fig}}  {note}")
    say("")


def replace_section(text: str, title: str, section: str) -> str:
    pattern = re.compile(rf"## {re.escape(title)}\n.*?(?=\n## |\Z)", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _m: section.rstrip("\n") + "\n", text)
    return text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"


def machine_line(results: dict) -> str:
    m = results["machine"]
    return (
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB, Python {m['python']},"
        f" MariaDB {m['mysql']}; load average {m['load_before'][0]:.2f} before,"
        f" {m['load_after'][0]:.2f} after (1 min)."
    )


def markdown_table(rows: list[tuple[str, str, str]]) -> list[str]:
    return [
        "| measure | figure | notes |",
        "|---|---:|---|",
        *(f"| {what.strip()} | {figure} | {note} |" for what, figure, note in rows),
    ]


def write_docs(path: Path, results: dict, rows: list[tuple[str, str, str]]) -> None:
    """Refresh the sections this run has figures for; other sections are left alone.

    "Pipeline benchmark" needs a, b and c; "Pipeline profile" the py-spy run; "Pipeline
    memory" the 1,000,000 backlog; "Pipeline tuning" a --tune run.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    before = text
    main_rows = [row for row in rows if not row[0].startswith("peak RSS, 1")]
    core = ("pubsub_drain", "database", "mon_defaults", "mon_env")
    if all(key in results for key in core):
        text = replace_section(text, "Pipeline benchmark", benchmark_section(results, main_rows))
    profile = results.get("profile")
    if profile and profile.get("samples"):
        text = replace_section(text, "Pipeline profile", profile_section(results))
    if results.get("rss_check"):
        text = replace_section(text, "Pipeline memory", memory_section(results))
    if results.get("tune"):
        text = replace_section(text, "Pipeline tuning", tuning_section(results))
    if text == before:
        say(f"{path}: nothing to refresh (a partial run)")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    say(f"wrote {path}")


def benchmark_section(results: dict, rows: list[tuple[str, str, str]]) -> str:
    lines = [
        "## Pipeline benchmark",
        "",
        f"`{results['command']}` ({results['date']}), {results['messages']:,} messages"
        f" (payloads {PAYLOAD_CHARS[0]}-{PAYLOAD_CHARS[1]} chars, {results['mean_bytes']:,.0f}"
        " bytes on average), one emulator (warmed up first with"
        f" {results.get('warmup', 0):,} messages), a fresh topic, subscription and database per"
        " part.",
        machine_line(results),
        "",
        *markdown_table(rows),
        "",
    ]
    stats = results.get("stats", {})
    if any(figures["rate"]["n"] > 1 for figures in stats.values() if "rate" in figures):
        lines.append(
            f"{len(results.get('rounds', []))} rounds, alternating (a, b, c, a, b, c, ...), each"
            " part on fresh names; each row is the part's median run, c / min(a, b) the median"
            " of the ratios within each round. All rounds (msg/s or rows/s): "
            + "; ".join(
                f"{key} {', '.join(f'{v:,.0f}' for v in figures['rate']['values'])}"
                for key, figures in stats.items()
                if "rate" in figures
            )
            + "."
        )
    env = results.get("emulator_env")
    if env is not None:
        lines.append(
            "`bench/emulator.env`: "
            + (", ".join(f"`{k}={v}`" for k, v in env.items()) or "(empty)")
            + "."
        )
    lines += [
        "",
        "(a) is one task pulling 1,000 at a time and acking every response at once; (a2) is the"
        " same holding the acks until 5,000 are held, as a consumer that acks only after its"
        ' commit must. (c) is timed from the "monitor started" line of `lms mon` to its last'
        ' "batch committed" line (logged after the ack); start-up (imports, migrations) is'
        " not included. CPU is that of each process over the same span (100% = one core);"
        " machine = all cores, other users' load included. The CPU bound adds up the CPU each"
        " component needs per message (emulator from a, mysqld from b, lms mon from c) and"
        " divides the cores by it.",
        'Latency: commit = the time of the batch\'s "batch committed" line (after COMMIT and'
        " the ack) minus the `timestamp` the publisher put in the message (first 2 s skipped);"
        " insert = `created_at` (set by the INSERT) minus the same.",
        "",
    ]
    return "\n".join(lines)


def memory_section(results: dict) -> str:
    rows = [row for row in table_rows(results) if row[0].startswith("peak RSS, 1")]
    lines = [
        "## Pipeline memory",
        "",
        f"`{results['command']}` ({results['date']}): peak RSS (VmHWM) of `lms mon` draining a"
        f" backlog of {results['rss_check'][0]['messages']:,} messages, which flow control must"
        f" keep bounded (limit {RSS_LIMIT_MB} MB).",
        machine_line(results),
        "",
        *markdown_table(rows),
        "",
    ]
    return "\n".join(lines)


def tuning_section(results: dict) -> str:
    lines = [
        "## Pipeline tuning",
        "",
        f"`{results['command']}` ({results['date']}): `lms mon` draining"
        f" {results['messages']:,} messages once per combination (other settings from"
        " `bench/emulator.env`); each row is BATCHSIZE:MAX_OUTSTANDING[:PULLERS[:PULL_MODE]].",
        machine_line(results),
        "",
        *markdown_table([row for row in table_rows(results) if row[0].startswith("tune ")]),
        "",
    ]
    by_combo: dict[str, list[float]] = {}
    for run in results["tune"]:
        by_combo.setdefault(run["combo"], []).append(run["rate"])
    if any(len(rates) > 1 for rates in by_combo.values()):
        lines += [
            "Median per combination: "
            + "; ".join(
                f"{combo} {statistics.median(rates):,.0f} msg/s"
                for combo, rates in by_combo.items()
            )
            + ".",
            "",
        ]
    return "\n".join(lines)


def profile_section(results: dict) -> str:
    profile = results["profile"]
    run = results.get("mon_profiled", {})
    lines = [
        "## Pipeline profile",
        "",
        f"py-spy (100 Hz, `py-spy record --format raw`, idle time excluded) attached to"
        f" `lms mon` (emulator.env settings) for its whole drain of {results['messages']:,}"
        f" messages ({results['date']}): {profile['samples']:,} samples"
        + (
            f", {fmt_rate(run.get('rate'))} msg/s under the profiler,"
            f" lms mon at {run.get('cpu_util', 0):.0%} of one core."
            if run
            else "."
        ),
        "",
        "Own time per area (the function running when sampled; C extensions count as the Python"
        " function that called them):",
        "",
        "| area | % of samples |",
        "|---|---:|",
        *(f"| {name} | {share} |" for name, share in profile["areas"]),
        "",
        "Top functions by own time:",
        "",
        "| function | % |",
        "|---|---:|",
        *(f"| `{name}` | {share} |" for name, share in profile["top_own"]),
        "",
        "Top functions by total time (itself and what it calls; the event loop and the"
        " command line left out):",
        "",
        "| function | % |",
        "|---|---:|",
        *(f"| `{name}` | {share} |" for name, share in profile["top_total"]),
        "",
    ]
    return "\n".join(lines)
