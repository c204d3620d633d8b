"""The figures of several rounds: each part's median run as its headline, the spread of each
figure, and c / min(a, b) computed within each round before taking the median, so that a
round whose a was slowed by a neighbour does not pair with another round's c."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

SPREAD_FIGURES = (
    "rate",
    "cpu_s_per_1k",
    "emulator_cpu_s_per_1k",
    "mysqld_cpu_s_per_1k",
    "peak_rss_mb",
)
MON_KEYS = ("mon_defaults", "mon_env")
BASELINE = "mon_baseline_"


def baseline_key(directory: Path) -> str:
    """The results key of (c) run with lms imported from `directory` (--baseline)."""
    return BASELINE + directory.name


def spread(values: list[float]) -> dict[str, Any]:
    """Median, smallest and largest of `values` (at least one)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def summarize_rounds(results: dict) -> None:
    """Fill results[key] (the median run of each part), results["stats"][key][figure] and
    results["ratios"][key] from results["rounds"] (a list of {key: result} per round)."""
    rounds: list[dict[str, dict]] = results.get("rounds", [])
    keys = {key for done in rounds for key in done}
    stats: dict[str, dict[str, dict[str, Any]]] = {}
    for key in sorted(keys):
        runs = [done[key] for done in rounds if key in done]
        by_rate = sorted(runs, key=lambda run: run["rate"])
        results[key] = by_rate[(len(by_rate) - 1) // 2]  # the median run (the lower of two)
        stats[key] = {
            figure: spread([float(run[figure]) for run in runs])
            for figure in SPREAD_FIGURES
            if all(figure in run for run in runs)
        }
    results["stats"] = stats
    ratios: dict[str, dict[str, Any]] = {}
    for key in (*MON_KEYS, *(key for key in sorted(keys) if key.startswith(BASELINE))):
        values = [
            done[key]["rate"] / min(done["pubsub_drain"]["rate"], done["database"]["rate"])
            for done in rounds
            if key in done and "pubsub_drain" in done and "database" in done
        ]
        if values:
            ratios[key] = spread(values)
            results[key]["ratio"] = ratios[key]["median"]
    results["ratios"] = ratios
    versus: dict[str, dict[str, dict[str, Any]]] = {}
    for key in sorted(k for k in keys if k.startswith(BASELINE)):
        pairs = [done for done in rounds if "mon_env" in done and key in done]
        if pairs:
            # this version against the baseline, within each round (both emulator.env)
            versus[key] = {
                figure: spread([done["mon_env"][figure] / done[key][figure] for done in pairs])
                for figure in ("cpu_s_per_1k", "rate")
            }
    results["versus_baseline"] = versus


def figure_spread(results: dict, key: str, figure: str, fmt: str) -> str:
    """ "median (min-max, N rounds)" of one figure, or the figure alone after one round."""
    stat = results.get("stats", {}).get(key, {}).get(figure)
    if stat is None:
        return format(results[key][figure], fmt)
    if stat["n"] == 1:
        return format(stat["median"], fmt)
    return (
        f"{format(stat['median'], fmt)} ({format(stat['min'], fmt)}-{format(stat['max'], fmt)},"
        f" {stat['n']} rounds)"
    )
