// Time ranges: presets relative to now, absolute ones, the bucket size a range gets, and
// how times are shown (the browser's zone, which the page names).

export const PRESETS = [
  { key: "15m", label: "Last 15 min", seconds: 15 * 60 },
  { key: "1h", label: "Last 1 h", seconds: 3600 },
  { key: "6h", label: "Last 6 h", seconds: 6 * 3600 },
  { key: "24h", label: "Last 24 h", seconds: 86400 },
  { key: "7d", label: "Last 7 d", seconds: 7 * 86400 },
] as const;

export type Bucket = "minute" | "hour" | "day" | "week";

export const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

export function zoneLabel(): string {
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  const offset = `UTC${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
  return `${ZONE} (${offset})`;
}

/** A bucket that gives the histogram between ~15 and ~400 bars (the API caps buckets). */
export function bucketFor(fromMs: number, toMs: number): Bucket {
  const hours = (toMs - fromMs) / 3_600_000;
  if (hours <= 6) return "minute";
  if (hours <= 24 * 14) return "hour";
  if (hours <= 24 * 366) return "day";
  return "week";
}

export function rfc3339(ms: number): string {
  return new Date(ms).toISOString();
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** Local time with milliseconds: what log explorers show. */
export function showTime(iso: string): string {
  const d = new Date(iso);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

/** The value of an <input type="datetime-local"> for `ms`, in the browser's zone. */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fromLocalInput(value: string): number | null {
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? ms : null;
}
