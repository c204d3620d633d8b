// The other pages: Services, Analytics and Health. Each reads its range from the URL too.

import { useState } from "preact/hooks";
import type { Log, LogsPage, Severity } from "./api";
import { SEVERITIES } from "./api";
import { Chart, SEVERITY_COLOURS, Sparkline, axisStyle, cssVar, uPlot } from "./Chart";
import { Show, useApi } from "./common";
import { LogList } from "./LogView";
import { linkClick, navigate, useLocation } from "./router";
import { parseState, stateUrl } from "./state";
import { PRESETS, ZONE, bucketFor, rfc3339, showTime, zoneLabel } from "./time";

interface ErrorBucket {
  start: string;
  total: number;
  errors: number;
  rate: number | null;
}
interface ServiceErrors {
  service: string;
  total: number;
  errors: number;
  rate: number | null;
  buckets: ErrorBucket[];
}
interface ErrorsAnswer {
  bucket: string;
  services: ServiceErrors[];
  other: { services: number; total: number; errors: number; rate: number | null };
}

const percent = (rate: number | null) => (rate === null ? "—" : `${(rate * 100).toFixed(rate < 0.01 && rate > 0 ? 2 : 1)}%`);

function explorerFor(filters: Record<string, string>, range = "24h"): string {
  return stateUrl({ ...parseState(new URLSearchParams()), range, filters });
}

/** Preset buttons for a page's ?range=, and the [from, to) they mean now. */
function usePageRange(fallback: string): [string, [number, number], (key: string) => void] {
  const loc = useLocation();
  const key = loc.params.get("range") ?? fallback;
  const preset = PRESETS.find((p) => p.key === key) ?? PRESETS.find((p) => p.key === fallback)!;
  const [now] = useState(Date.now());
  const set = (k: string) => {
    const params = new URLSearchParams(loc.params);
    params.set("range", k);
    navigate(`${loc.path}?${params.toString()}`);
  };
  return [preset.key, [now - preset.seconds * 1000, now], set];
}

function RangeButtons({ current, onPick }: { current: string; onPick: (key: string) => void }) {
  return (
    <div class="presets" role="group" aria-label="Time range">
      {PRESETS.map((p) => (
        <button type="button" class="chip" aria-pressed={current === p.key} onClick={() => onPick(p.key)}>
          {p.label}
        </button>
      ))}
      <span class="zone">Times in {zoneLabel()}</span>
    </div>
  );
}

// --- Services ---

interface ServicesAnswer {
  services: { service_name: string; total: number; severity: Record<Severity, number> }[];
}

export function ServicesPage() {
  const [key, range, setRange] = usePageRange("24h");
  const services = useApi<ServicesAnswer>("/v1/services", {}, "services");
  const bucket = bucketFor(range[0], range[1]);
  const errors = useApi<ErrorsAnswer>("/v1/analytics/errors", { from: rfc3339(range[0]), to: rfc3339(range[1]), bucket, tz: ZONE, top: 200 }, key);
  return (
    <div class="page">
      <h1>Services</h1>
      <RangeButtons current={key} onPick={setRange} />
      <Show loaded={services} what="services" endpoint="/v1/services">
        {(answer) =>
          answer.services.length === 0 ? (
            <p class="status empty">No services have logs yet.</p>
          ) : (
            <div class="table-wrap">
              <table class="services">
                <caption class="visually-hidden">Services: stored logs per severity (all time), volume and error rate over the range</caption>
                <thead>
                  <tr>
                    <th scope="col">Service</th>
                    {SEVERITIES.map((s) => (
                      <th scope="col" class="num">
                        {s}
                      </th>
                    ))}
                    <th scope="col" class="num">
                      total
                    </th>
                    <th scope="col">Volume ({key})</th>
                    <th scope="col" class="num">
                      Error rate ({key})
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {answer.services.map((svc) => {
                    const series = errors.state === "ok" ? errors.value.services.find((e) => e.service === svc.service_name) : undefined;
                    return (
                      <tr>
                        <th scope="row">
                          <a href={explorerFor({ service: svc.service_name }, key)} onClick={linkClick}>
                            {svc.service_name}
                          </a>
                        </th>
                        {SEVERITIES.map((s) => (
                          <td class="num">{(svc.severity[s] ?? 0).toLocaleString()}</td>
                        ))}
                        <td class="num">{svc.total.toLocaleString()}</td>
                        <td>
                          {series ? (
                            <Sparkline xs={series.buckets.map((b) => Date.parse(b.start) / 1000)} ys={series.buckets.map((b) => b.total)} label={`Volume of ${svc.service_name}`} />
                          ) : errors.state === "loading" ? (
                            "…"
                          ) : (
                            <span class="muted">no logs in range</span>
                          )}
                        </td>
                        <td class="num">{series ? percent(series.rate) : "—"}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )
        }
      </Show>
      {errors.state === "error" && <p class="status error">Volume and error rates: {errors.message}</p>}
    </div>
  );
}

// --- Analytics ---

interface VolumeAnswer {
  total: number;
  buckets: { start: string; total: number; counts: Record<Severity, number> }[];
}
interface PatternsAnswer {
  patterns: { pattern_id: string; template: string; count: number }[];
}
interface RouteRow {
  method: string;
  route: string;
  service: string;
  count: number;
  rate_4xx: number | null;
  rate_5xx: number | null;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}
interface RequestsAnswer {
  routes: RouteRow[];
}

const ms = (v: number | null) => (v === null || v === undefined ? "—" : `${v.toFixed(1)} ms`);

function BarsChart({ xs, ys, label, colour, percentAxis }: { xs: number[]; ys: number[]; label: string; colour: string; percentAxis?: boolean }) {
  const options = (width: number): uPlot.Options => ({
    width,
    height: 160,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [axisStyle(), { ...axisStyle(), size: percentAxis ? 72 : 56, values: percentAxis ? (_u, vals) => vals.map((v) => `${(v * 100).toFixed(1)}%`) : undefined }],
    series: [{}, { label, fill: cssVar(colour), stroke: cssVar(colour), width: 0, paths: uPlot.paths.bars!({ size: [0.8, 80] }), points: { show: false } }],
  });
  return <Chart options={options} optionsKey={label} data={[xs, ys]} label={label} />;
}

export function AnalyticsPage() {
  const loc = useLocation();
  const per = loc.params.get("per") === "week" ? "week" : "day";
  const now = useState(Date.now())[0];
  const from = now - (per === "week" ? 26 * 7 : 30) * 86_400_000;
  const params = { from: rfc3339(from), to: rfc3339(now), bucket: per, tz: ZONE };
  const volume = useApi<VolumeAnswer>("/v1/analytics/volume", params, per);
  const errors = useApi<ErrorsAnswer>("/v1/analytics/errors", { ...params, top: 1000 }, per);
  const patterns = useApi<PatternsAnswer>("/v1/analytics/patterns", { from: rfc3339(from), to: rfc3339(now), bucket: "day", limit: 20 }, per);
  const requests = useApi<RequestsAnswer>("/v1/analytics/requests", { from: rfc3339(from), to: rfc3339(now), tz: ZONE, limit: 20 }, per);
  const [userDraft, setUserDraft] = useState(loc.params.get("user") ?? "");
  const user = loc.params.get("user");
  const setPer = (p: string) => {
    const next = new URLSearchParams(loc.params);
    next.set("per", p);
    navigate(`/ui/analytics?${next.toString()}`);
  };
  return (
    <div class="page">
      <h1>Analytics</h1>
      <div class="presets" role="group" aria-label="Bucket">
        {(["day", "week"] as const).map((p) => (
          <button type="button" class="chip" aria-pressed={per === p} onClick={() => setPer(p)}>
            per {p} ({p === "day" ? "30 days" : "26 weeks"})
          </button>
        ))}
        <span class="zone">Times in {zoneLabel()}</span>
      </div>
      <section aria-labelledby="h-volume">
        <h2 id="h-volume">Volume per {per}</h2>
        <Show loaded={volume} what="volume" endpoint="/v1/analytics/volume">
          {(v) => (
            <>
              <p class="muted">{v.total.toLocaleString()} logs</p>
              <BarsChart xs={v.buckets.map((b) => Date.parse(b.start) / 1000)} ys={v.buckets.map((b) => b.total)} label={`Logs per ${per}`} colour="--accent" />
            </>
          )}
        </Show>
      </section>
      <section aria-labelledby="h-errors">
        <h2 id="h-errors">Error rate per {per}</h2>
        <Show loaded={errors} what="error rates" endpoint="/v1/analytics/errors">
          {(e) => {
            const starts = e.services[0]?.buckets.map((b) => b.start) ?? [];
            const rates = starts.map((_, i) => {
              const total = e.services.reduce((n, s) => n + (s.buckets[i]?.total ?? 0), 0);
              const errs = e.services.reduce((n, s) => n + (s.buckets[i]?.errors ?? 0), 0);
              return total ? errs / total : 0;
            });
            return starts.length === 0 ? (
              <p class="status empty">No logs in the range.</p>
            ) : (
              <BarsChart xs={starts.map((s) => Date.parse(s) / 1000)} ys={rates} label={`Error rate (error + fatal) per ${per}`} colour={SEVERITY_COLOURS.error} percentAxis />
            );
          }}
        </Show>
      </section>
      <section aria-labelledby="h-patterns">
        <h2 id="h-patterns">Top patterns</h2>
        <Show loaded={patterns} what="patterns" endpoint="/v1/analytics/patterns">
          {(p) =>
            p.patterns.length === 0 ? (
              <p class="status empty">No patterns in the range.</p>
            ) : (
              <ol class="patterns">
                {p.patterns.map((pat) => (
                  <li>
                    <a href={stateUrl({ ...parseState(new URLSearchParams()), range: per === "week" ? "7d" : "24h", filters: { pattern: pat.pattern_id } })} onClick={linkClick}>
                      <span class="count">{pat.count.toLocaleString()}</span> <code>{pat.template}</code>
                    </a>
                  </li>
                ))}
              </ol>
            )
          }
        </Show>
      </section>
      <section aria-labelledby="h-routes">
        <h2 id="h-routes">Request routes</h2>
        <Show loaded={requests} what="Request analytics" endpoint="/v1/analytics/requests">
          {(r) =>
            r.routes.length === 0 ? (
              <p class="status empty">No request logs in the range.</p>
            ) : (
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Route</th>
                      <th scope="col">Service</th>
                      <th scope="col" class="num">Count</th>
                      <th scope="col" class="num">4xx</th>
                      <th scope="col" class="num">5xx</th>
                      <th scope="col" class="num">p50</th>
                      <th scope="col" class="num">p95</th>
                      <th scope="col" class="num">p99</th>
                    </tr>
                  </thead>
                  <tbody>
                    {r.routes.map((row) => (
                      <tr>
                        <th scope="row">
                          {row.method} {row.route}
                        </th>
                        <td>{row.service}</td>
                        <td class="num">{row.count.toLocaleString()}</td>
                        <td class="num">{percent(row.rate_4xx)}</td>
                        <td class="num">{percent(row.rate_5xx)}</td>
                        <td class="num">{ms(row.p50_ms)}</td>
                        <td class="num">{ms(row.p95_ms)}</td>
                        <td class="num">{ms(row.p99_ms)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )
          }
        </Show>
      </section>
      <section aria-labelledby="h-user">
        <h2 id="h-user">One user's requests, in order</h2>
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            const next = new URLSearchParams(loc.params);
            if (userDraft.trim()) next.set("user", userDraft.trim());
            else next.delete("user");
            navigate(`/ui/analytics?${next.toString()}`);
          }}
        >
          <label>
            User id <input name="user" value={userDraft} onInput={(e) => setUserDraft((e.target as HTMLInputElement).value)} />
          </label>
          <button type="submit">Show</button>
        </form>
        {user && <UserRequests user={user} />}
      </section>
    </div>
  );
}

function UserRequests({ user }: { user: string }) {
  const loaded = useApi<{ requests: Log[]; next_cursor: string | null }>(`/v1/users/${encodeURIComponent(user)}/requests`, { limit: 200 }, user);
  const [open, setOpen] = useState<number | null>(null);
  return (
    <Show loaded={loaded} what="the user's requests" endpoint="/v1/users/{id}/requests">
      {(r) =>
        r.requests.length === 0 ? (
          <p class="status empty">No request logs of user {user}.</p>
        ) : (
          <LogList logs={r.requests} openId={open} onToggle={(id) => setOpen(open === id ? null : id)} onFilter={(k, v) => navigate(explorerFor({ [k]: v }, "7d"))} label={`Requests of user ${user}, oldest first`} />
        )
      }
    </Show>
  );
}

// --- Health ---

interface Consistency {
  consistent: boolean;
  pairs: { service_name: string; severity: string; logs: number; severity_total: number; agree: boolean }[];
}
interface Pipeline {
  state: "ok" | "unknown" | "down";
  source: string | null;
  last_commit: string | null;
  lag_seconds: number | null;
  outstanding: number | null;
  detail: string | null;
}

export function HealthPage() {
  const consistency = useApi<Consistency>("/v1/consistency", {}, "c");
  const pipeline = useApi<Pipeline>("/v1/pipeline", {}, "p");
  return (
    <div class="page">
      <h1>Health</h1>
      <section aria-labelledby="h-pipeline">
        <h2 id="h-pipeline">Pipeline (lms mon)</h2>
        {pipeline.state === "error" && pipeline.unavailable ? (
          <p class="status unavailable pipeline-state" data-state="unknown">
            State: unknown — this server cannot see lms mon's metrics (no <code>/v1/pipeline</code>).
          </p>
        ) : (
          <Show loaded={pipeline} what="pipeline state" endpoint="/v1/pipeline">
            {(p) => (
              <dl class="health">
                <dt>State</dt>
                <dd class={`pipeline-state state-${p.state}`} data-state={p.state}>
                  {p.state}
                  {p.detail ? ` — ${p.detail}` : ""}
                </dd>
                <dt>Last commit</dt>
                <dd>{p.last_commit ? showTime(p.last_commit) : "unknown"}</dd>
                <dt>Lag</dt>
                <dd>{p.lag_seconds === null ? "unknown" : `${p.lag_seconds.toFixed(1)} s`}</dd>
                <dt>Outstanding messages</dt>
                <dd>{p.outstanding === null ? "unknown" : p.outstanding.toLocaleString()}</dd>
                <dt>Metrics source</dt>
                <dd>{p.source ?? "none"}</dd>
              </dl>
            )}
          </Show>
        )}
      </section>
      <section aria-labelledby="h-consistency">
        <h2 id="h-consistency">Counters consistency</h2>
        <Show loaded={consistency} what="consistency" endpoint="/v1/consistency">
          {(c) => {
            const disagree = c.pairs.filter((p) => !p.agree);
            return (
              <>
                <p class={`status ${c.consistent ? "ok" : "error"}`} data-consistent={String(c.consistent)}>
                  {c.consistent
                    ? `Consistent: service_logs and service_severity agree on all ${c.pairs.length} (service, severity) pairs.`
                    : `Inconsistent: ${disagree.length} of ${c.pairs.length} (service, severity) pairs disagree.`}
                </p>
                {disagree.length > 0 && (
                  <div class="table-wrap">
                    <table>
                      <thead>
                        <tr>
                          <th scope="col">Service</th>
                          <th scope="col">Severity</th>
                          <th scope="col" class="num">service_logs</th>
                          <th scope="col" class="num">service_severity</th>
                        </tr>
                      </thead>
                      <tbody>
                        {disagree.map((p) => (
                          <tr>
                            <th scope="row">{p.service_name}</th>
                            <td>{p.severity}</td>
                            <td class="num">{p.logs.toLocaleString()}</td>
                            <td class="num">{p.severity_total.toLocaleString()}</td>
                          </tr>
                        ))}
                      </tbody>
                    </table>
                  </div>
                )}
              </>
            );
          }}
        </Show>
      </section>
    </div>
  );
}

export type { LogsPage };
