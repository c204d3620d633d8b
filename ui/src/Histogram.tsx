// The volume histogram: counts per bucket stacked by severity (GET /v1/analytics/volume),
// drag across it to zoom the time range, click a severity in its legend to toggle that filter.

import { useMemo, useRef } from "preact/hooks";
import type { Severity, Volume } from "./api";
import { SEVERITIES } from "./api";
import { Chart, SEVERITY_COLOURS, axisStyle, cssVar, uPlot } from "./Chart";

/** Bottom to top of a bar: the severities people look for first sit on the axis. */
const STACK: Severity[] = ["fatal", "error", "warn", "info", "debug"];

interface Props {
  volume: Volume | null;
  selected: string[];
  onZoom: (fromMs: number, toMs: number) => void;
  onToggle: (severity: Severity) => void;
}

export function Histogram({ volume, selected, onZoom, onToggle }: Props) {
  const zoom = useRef(onZoom); // the chart outlives renders: always the latest callback
  zoom.current = onZoom;
  const data = useMemo<uPlot.AlignedData>(() => {
    const buckets = volume?.buckets ?? [];
    const xs = buckets.map((b) => Date.parse(b.start) / 1000);
    // uPlot draws series in order, so the tallest (the sum of all) first and each smaller
    // partial sum over it: together they look stacked.
    const sums = STACK.map((_, i) => buckets.map((b) => STACK.slice(0, i + 1).reduce((n, s) => n + (b.counts[s] ?? 0), 0)));
    return [xs, ...sums.reverse()];
  }, [volume]);

  const stepSeconds = useMemo(() => {
    const b = volume?.buckets ?? [];
    return b.length > 1 ? (Date.parse(b[1].start) - Date.parse(b[0].start)) / 1000 : 60;
  }, [volume]);

  const options = (width: number): uPlot.Options => ({
    width,
    height: 140,
    legend: { show: false },
    padding: [8, 8, 0, 0],
    cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
    scales: { x: { time: true, range: (_u, min, max) => [min, max + stepSeconds] } },
    axes: [axisStyle(), { ...axisStyle(), size: 48 }],
    series: [
      {},
      ...[...STACK].reverse().map((s) => ({
        label: s,
        fill: cssVar(SEVERITY_COLOURS[s]),
        stroke: cssVar(SEVERITY_COLOURS[s]),
        width: 0,
        paths: uPlot.paths.bars!({ size: [0.9, 60], align: 1 }),
        points: { show: false },
      })),
    ],
    hooks: {
      setSelect: [
        (u: uPlot) => {
          if (u.select.width < 3) return;
          const from = u.posToVal(u.select.left, "x") * 1000;
          const to = u.posToVal(u.select.left + u.select.width, "x") * 1000;
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          zoom.current(Math.floor(from), Math.ceil(to));
        },
      ],
    },
  });

  const totals = useMemo(() => {
    const t: Record<string, number> = {};
    for (const s of SEVERITIES) t[s] = (volume?.buckets ?? []).reduce((n, b) => n + (b.counts[s] ?? 0), 0);
    return t;
  }, [volume]);

  return (
    <section class="histogram" aria-label="Volume histogram">
      <div class="legend" role="group" aria-label="Severities (click to filter)">
        {SEVERITIES.map((s) => (
          <button
            type="button"
            class={`legend-item sev-${s}`}
            aria-pressed={selected.includes(s)}
            onClick={() => onToggle(s)}
            title={`Show only ${s} (toggle)`}
          >
            <span class="swatch" aria-hidden="true" />
            {s} <span class="count">{totals[s].toLocaleString()}</span>
          </button>
        ))}
        <span class="hint">{volume ? `${volume.total.toLocaleString()} logs · per ${volume.bucket} · drag to zoom` : ""}</span>
      </div>
      <Chart options={options} optionsKey={`hist-${stepSeconds}`} data={data} label="Logs per time bucket, stacked by severity" />
    </section>
  );
}
