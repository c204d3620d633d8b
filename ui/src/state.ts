// The explorer's state and its URL: the API's own parameter names (q, service, severity, from,
// to, trace_id, ...), plus `range` (a preset, relative to now), `open` (the expanded log) and
// `live` (the tail).

import type { Params } from "./api";
import { PRESETS, rfc3339 } from "./time";

export const TEXT_FILTERS = [
  { key: "service", label: "Service" },
  { key: "resource_id", label: "Resource id" },
  { key: "trace_id", label: "Trace id" },
  { key: "span_id", label: "Span id" },
  { key: "commit", label: "Commit" },
  { key: "parent_resource_id", label: "Parent resource" },
  { key: "user_id", label: "User id" },
  { key: "pattern", label: "Pattern id" },
] as const;

export type FilterKey = (typeof TEXT_FILTERS)[number]["key"];

export interface ExplorerState {
  q: string;
  filters: Partial<Record<FilterKey, string>>;
  severity: string[];
  range: string; // a preset key, or "" with from/to
  from: string;
  to: string;
  open: number | null;
  live: boolean;
}

export const DEFAULT_RANGE = "1h";

export function parseState(params: URLSearchParams): ExplorerState {
  const filters: Partial<Record<FilterKey, string>> = {};
  for (const { key } of TEXT_FILTERS) {
    const value = params.get(key);
    if (value) filters[key] = value;
  }
  const from = params.get("from") ?? "";
  const to = params.get("to") ?? "";
  let range = params.get("range") ?? "";
  if (!range && !from && !to) range = DEFAULT_RANGE;
  const open = Number(params.get("open"));
  return {
    q: params.get("q") ?? "",
    filters,
    severity: params.getAll("severity"),
    range,
    from: range ? "" : from,
    to: range ? "" : to,
    open: Number.isInteger(open) && open > 0 ? open : null,
    live: params.get("live") === "1",
  };
}

export function stateUrl(state: ExplorerState): string {
  const params = new URLSearchParams();
  if (state.q) params.set("q", state.q);
  for (const { key } of TEXT_FILTERS) {
    const value = state.filters[key];
    if (value) params.set(key, value);
  }
  state.severity.forEach((s) => params.append("severity", s));
  if (state.range) params.set("range", state.range);
  else {
    if (state.from) params.set("from", state.from);
    if (state.to) params.set("to", state.to);
  }
  if (state.open !== null) params.set("open", String(state.open));
  if (state.live) params.set("live", "1");
  const text = params.toString();
  return `/${text ? `?${text}` : ""}`;
}

/** [from, to) in ms for the state's range, at `now` for a preset. */
export function bounds(state: ExplorerState, now = Date.now()): [number, number] {
  const preset = PRESETS.find((p) => p.key === state.range);
  if (preset) return [now - preset.seconds * 1000, now];
  const from = state.from ? Date.parse(state.from) : NaN;
  const to = state.to ? Date.parse(state.to) : NaN;
  const end = Number.isFinite(to) ? to : now;
  return [Number.isFinite(from) ? from : end - 3_600_000, end];
}

/** The query API's filter parameters of the state (GET /v1/logs, export, analytics, facets). */
export function apiFilters(state: ExplorerState, range: [number, number]): Params {
  const params: Params = { ...state.filters, severity: state.severity, from: rfc3339(range[0]) };
  if (state.q) params.q = state.q;
  // A preset runs up to now: no `to`, so logs that arrive while one looks are included.
  if (!state.range) params.to = rfc3339(range[1]);
  return params;
}
