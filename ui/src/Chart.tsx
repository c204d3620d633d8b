// Charts through uPlot (a maintained, small canvas library; docs/ui.md): one component that
// owns a uPlot instance, remade when its options change, fed new data otherwise.

import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export const SEVERITY_COLOURS: Record<string, string> = {
  debug: "--sev-debug",
  info: "--sev-info",
  warn: "--sev-warn",
  error: "--sev-error",
  fatal: "--sev-fatal",
};

interface ChartProps {
  /** Builds the options for `width`; called again when `optionsKey` changes. */
  options: (width: number) => uPlot.Options;
  optionsKey: string;
  data: uPlot.AlignedData;
  label: string;
  className?: string;
}

export function Chart({ options, optionsKey, data, label, className }: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const dataRef = useRef(data);
  dataRef.current = data;

  useEffect(() => {
    const el = box.current!;
    const made = new uPlot(options(el.clientWidth || 300), dataRef.current, el);
    plot.current = made;
    const resize = new ResizeObserver(() => {
      if (el.clientWidth > 0) made.setSize({ width: el.clientWidth, height: made.height });
    });
    resize.observe(el);
    const scheme = matchMedia("(prefers-color-scheme: dark)");
    const recolour = () => {
      made.destroy();
      plot.current = new uPlot(options(el.clientWidth || 300), dataRef.current, el);
    };
    scheme.addEventListener("change", recolour);
    return () => {
      resize.disconnect();
      scheme.removeEventListener("change", recolour);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [optionsKey]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return <div ref={box} class={className ?? "chart"} role="img" aria-label={label} />;
}

export function axisStyle(): Partial<uPlot.Axis> {
  const stroke = cssVar("--muted");
  const grid = cssVar("--grid");
  return { stroke, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
}

/** A small line of one series, no axes: the services' sparklines. */
export function Sparkline({ xs, ys, label }: { xs: number[]; ys: number[]; label: string }) {
  const options = (width: number): uPlot.Options => ({
    width: Math.min(width, 240),
    height: 36,
    legend: { show: false },
    cursor: { show: false },
    select: { show: false, left: 0, top: 0, width: 0, height: 0 },
    axes: [{ show: false }, { show: false }],
    scales: { x: { time: true } },
    series: [{}, { stroke: cssVar("--accent"), fill: cssVar("--accent-soft"), width: 1.5, points: { show: false } }],
  });
  return <Chart options={options} optionsKey="spark" data={[xs, ys]} label={label} className="spark" />;
}

export { uPlot };
