"""`--tune`: part c once per BATCHSIZE:MAX_OUTSTANDING[:PULLERS[:PULL_MODE]] combination, to
choose bench/emulator.env."""

from __future__ import annotations

from bench.pipeline.common import Context, run_step
from bench.pipeline.mon import part_mon, read_env_file


async def run_tune(ctx: Context, results: dict) -> None:
    base = read_env_file(ctx.args.env_file)
    results["emulator_env"] = base
    results["tune"] = []
    combos = ctx.args.tune.split(",") * ctx.args.rounds  # rounds, so load changes spread out
    for combo in combos:
        fields = combo.split(":")
        extra = {**base, "BATCHSIZE": fields[0], "MAX_OUTSTANDING": fields[1]}
        if len(fields) > 2:
            extra["PULLERS"] = fields[2]
        if len(fields) > 3:
            extra["PULL_MODE"] = fields[3]
        result = await run_step(
            "tune",
            combo,
            lambda extra=extra: part_mon(ctx, "tune", extra, ctx.args.messages),
            results,
        )
        if result is not None:
            result["combo"] = combo
            results["tune"].append(result)
