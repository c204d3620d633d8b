// Every call to lms api goes through here: the token (sessionStorage, Authorization:
// Bearer, never in a URL), and errors turned into words (422 naming the parameter, 503).

const TOKEN_KEY = "lms.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
  /** The endpoint does not exist on this server (an older lms api, or a part turned off). */
  get unavailable(): boolean {
    return this.status === 404;
  }
}

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

type Listener = () => void;
const tokenListeners = new Set<Listener>();
/** Called when the API answers 401: the app then asks for the token. */
export function onTokenNeeded(listener: Listener): () => void {
  tokenListeners.add(listener);
  return () => tokenListeners.delete(listener);
}

export type Params = Record<string, string | string[] | number | null | undefined>;

export function query(params: Params): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

interface Detail {
  loc?: (string | number)[];
  msg?: string;
}

/** The words of an error answer: FastAPI's 422 list names each parameter. */
export function describe(status: number, body: unknown): string {
  const detail = (body as { detail?: unknown } | null)?.detail;
  if (status === 422 && Array.isArray(detail)) {
    const parts = (detail as Detail[]).map((d) => {
      const loc = (d.loc ?? []).filter((p) => p !== "query" && p !== "path").join(".");
      return loc ? `${loc}: ${d.msg ?? "invalid"}` : (d.msg ?? "invalid");
    });
    return `The server refused the query (422) — ${parts.join("; ")}`;
  }
  const text = typeof detail === "string" ? detail : "";
  if (status === 503) return `The server cannot answer right now (503) — ${text || "unavailable"}`;
  if (status === 401) return "A token is needed (401): enter the API token.";
  if (status === 404) return `Not found (404)${text ? ` — ${text}` : ""}`;
  return `The server answered ${status}${text ? ` — ${text}` : ""}`;
}

export async function request(path: string, params: Params = {}, signal?: AbortSignal): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let response: Response;
  try {
    response = await fetch(path + query(params), { headers, signal, credentials: "omit" });
  } catch (exc) {
    if ((exc as Error).name === "AbortError") throw exc;
    throw new ApiError(0, "The server cannot be reached — is lms api running?");
  }
  if (response.ok) return response;
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) tokenListeners.forEach((l) => l());
  throw new ApiError(response.status, describe(response.status, body));
}

export async function getJson<T>(path: string, params: Params = {}, signal?: AbortSignal): Promise<T> {
  return (await request(path, params, signal)).json() as Promise<T>;
}

/** A download with the token: fetch then a blob, so the token never goes into a link. */
export async function download(path: string, params: Params, filename: string): Promise<void> {
  const response = await request(path, params);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// --- shapes of the answers ---

export const SEVERITIES = ["debug", "info", "warn", "error", "fatal"] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface Log {
  id: number;
  message_id: string;
  timestamp: string;
  service_name: string;
  severity: Severity;
  payload: string;
  resource_id: string | null;
  trace_id: string | null;
  span_id: string | null;
  commit: string | null;
  metadata: Record<string, unknown> | null;
}

export interface LogsPage {
  logs: Log[];
  next_cursor: string | null;
}

export interface VolumeBucket {
  start: string;
  total: number;
  counts: Record<Severity, number>;
}

export interface Volume {
  from: string;
  to: string;
  total: number;
  bucket: string;
  buckets: VolumeBucket[];
}

export interface Facets {
  facets: Record<string, { value: string; count: number }[]>;
  scanned: number;
  complete: boolean;
}
