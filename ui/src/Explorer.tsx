// The explorer (the home page): search, filters, time range, the histogram, results with
// cursor paging, facets, live tail and downloads, all of it in the URL (state.ts).

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Facets, Log, LogsPage, Severity, Volume } from "./api";
import { SEVERITIES, download, getJson } from "./api";
import { ErrorBox, Loading, Show, errorState, useApi } from "./common";
import type { Loaded } from "./common";
import { Histogram } from "./Histogram";
import { LogDetail, LogList } from "./LogView";
import type { OnFilter } from "./LogView";
import { navigate, useLocation } from "./router";
import { TEXT_FILTERS, apiFilters, bounds, parseState, stateUrl } from "./state";
import type { ExplorerState, FilterKey } from "./state";
import { PRESETS, ZONE, bucketFor, fromLocalInput, rfc3339, toLocalInput, zoneLabel } from "./time";

const PAGE = 100;
const LIVE_INTERVAL_MS = 1000;
const LIVE_OVERLAP_MS = 60_000;
const LIVE_MAX_ROWS = 2000;
const FACET_FIELDS = "service_name,severity,resource_id,trace_id,commit,user_id";
const FACET_FILTER: Record<string, FilterKey | "severity"> = {
  service_name: "service",
  severity: "severity",
  resource_id: "resource_id",
  trace_id: "trace_id",
  commit: "commit",
  user_id: "user_id",
};

function newestFirst(a: Log, b: Log): number {
  return a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : b.id - a.id;
}

export function Explorer() {
  const loc = useLocation();
  const state = useMemo(() => parseState(loc.params), [loc.key]);
  const queryKey = stateUrl({ ...state, open: null, live: false });
  // A preset is evaluated once per query (and per refresh), not at every render.
  const range = useMemo(() => bounds(state), [queryKey]);
  const filters = useMemo(() => apiFilters(state, range), [queryKey, range]);

  const go = (change: Partial<ExplorerState>, replace = false) => navigate(stateUrl({ ...state, ...change }), replace);
  const setFilter: OnFilter = (key, value) => go({ filters: { ...state.filters, [key]: value }, open: null });
  const toggleSeverity = (s: Severity) =>
    go({ severity: state.severity.includes(s) ? state.severity.filter((x) => x !== s) : [...state.severity, s], open: null });

  // --- the histogram ---
  const bucket = bucketFor(range[0], range[1]);
  const volume = useApi<Volume>("/v1/analytics/volume", { ...filters, to: rfc3339(range[1]), bucket, tz: ZONE }, `${queryKey}|${range[1]}`);

  // --- results, with cursor paging ---
  const [rows, setRows] = useState<Log[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [results, setResults] = useState<Loaded<true>>({ state: "loading" });
  const [more, setMore] = useState<Loaded<true> | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    setResults({ state: "loading" });
    setRows([]);
    setCursor(null);
    setMore(null);
    getJson<LogsPage>("/v1/logs", { ...filters, limit: PAGE }, abort.signal).then(
      (page) => {
        setRows(page.logs);
        setCursor(page.next_cursor);
        setResults({ state: "ok", value: true });
      },
      (exc: unknown) => {
        if (!abort.signal.aborted) setResults(errorState(exc));
      },
    );
    return () => abort.abort();
  }, [queryKey, range]);

  // One page at a time, whether the button or the scroll asked (a ref: both may ask before
  // the next render).
  const pageLoading = useRef(false);
  const loadMore = async () => {
    if (!cursor || pageLoading.current) return;
    pageLoading.current = true;
    setMore({ state: "loading" });
    try {
      const page = await getJson<LogsPage>("/v1/logs", { ...filters, limit: PAGE, cursor });
      setRows((old) => {
        const known = new Set(old.map((l) => l.id));
        return [...old, ...page.logs.filter((l) => !known.has(l.id))];
      });
      setCursor(page.next_cursor);
      setMore(null);
    } catch (exc) {
      setMore(errorState(exc));
    } finally {
      pageLoading.current = false;
    }
  };
  const sentinel = useRef<HTMLDivElement>(null);
  const loadMoreRef = useRef(loadMore);
  loadMoreRef.current = loadMore;
  useEffect(() => {
    const el = sentinel.current;
    if (!el) return;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) void loadMoreRef.current();
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, [cursor, results.state]);

  // --- live tail: the cursor API polled at most once a second, paused while reading ---
  const [paused, setPaused] = useState<string | null>(null);
  const rowsRef = useRef(rows);
  rowsRef.current = rows;
  useEffect(() => {
    if (!state.live || results.state !== "ok") return;
    let busy = false;
    const tick = async () => {
      // New rows at the top would move what the user is reading: wait while they select
      // text or have scrolled the newest rows out of view.
      const selecting = (document.getSelection()?.toString() ?? "") !== "";
      const top = document.querySelector("ol.logs > li")?.getBoundingClientRect().top ?? 0;
      const reason = selecting ? "selecting text" : top < 0 ? "scrolled down" : document.hidden ? "tab hidden" : null;
      setPaused(reason);
      if (reason || busy) return;
      busy = true;
      try {
        const newest = rowsRef.current[0];
        const since = newest ? Math.max(range[0], Date.parse(newest.timestamp) - LIVE_OVERLAP_MS) : range[0];
        const page = await getJson<LogsPage>("/v1/logs", { ...filters, from: rfc3339(since), to: null, limit: PAGE });
        setRows((old) => {
          const known = new Set(old.map((l) => l.id));
          const added = page.logs.filter((l) => !known.has(l.id));
          return added.length ? [...added, ...old].sort(newestFirst).slice(0, LIVE_MAX_ROWS) : old;
        });
      } catch {
        // the next tick retries; a lasting error shows in the next query
      } finally {
        busy = false;
      }
    };
    const timer = setInterval(() => void tick(), LIVE_INTERVAL_MS);
    return () => clearInterval(timer);
  }, [state.live, queryKey, results.state]);

  // --- keyboard: / focuses the search, Esc clears it ---
  const search = useRef<HTMLInputElement>(null);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      const typing = target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT";
      if (e.key === "/" && !typing) {
        e.preventDefault();
        search.current?.focus();
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);

  // --- the form's drafts, reset from the URL whenever it changes ---
  const [draftQ, setDraftQ] = useState(state.q);
  const [draftFilters, setDraftFilters] = useState(state.filters);
  const [draftFrom, setDraftFrom] = useState("");
  const [draftTo, setDraftTo] = useState("");
  useEffect(() => {
    setDraftQ(state.q);
    setDraftFilters(state.filters);
    setDraftFrom(toLocalInput(range[0]));
    setDraftTo(toLocalInput(range[1]));
  }, [loc.key]);

  const submit = (e: Event) => {
    e.preventDefault();
    const cleaned: Partial<Record<FilterKey, string>> = {};
    for (const [k, v] of Object.entries(draftFilters)) if (v && v.trim()) cleaned[k as FilterKey] = v.trim();
    go({ q: draftQ.trim(), filters: cleaned, open: null });
  };
  const applyAbsolute = (e: Event) => {
    e.preventDefault();
    const from = fromLocalInput(draftFrom);
    const to = fromLocalInput(draftTo);
    if (from !== null && to !== null) go({ range: "", from: rfc3339(from), to: rfc3339(to), open: null });
  };

  const [downloading, setDownloading] = useState<string | null>(null);
  const exportAs = async (format: "ndjson" | "csv") => {
    setDownloading(null);
    try {
      await download("/v1/logs/export", { ...filters, format }, `lms-logs.${format}`);
    } catch (exc) {
      const failed = errorState(exc);
      setDownloading(failed.state === "error" ? failed.message : String(exc));
    }
  };

  const facets = useApi<Facets>("/v1/logs/facets", { ...filters, fields: FACET_FIELDS, limit: 10 }, queryKey);
  const openRow = state.open !== null ? rows.find((r) => r.id === state.open) : undefined;
  const activeFilters = TEXT_FILTERS.filter(({ key }) => state.filters[key]);

  return (
    <div class="explorer">
      <form class="search" role="search" onSubmit={submit}>
        <label class="visually-hidden" for="q">
          Search the payloads
        </label>
        <input
          id="q"
          ref={search}
          type="search"
          placeholder='Search payloads: words, "a phrase"   (press / to focus, Esc to clear)'
          value={draftQ}
          onInput={(e) => setDraftQ((e.target as HTMLInputElement).value)}
          onKeyDown={(e) => {
            if (e.key === "Escape") {
              e.preventDefault();
              setDraftQ("");
              if (state.q) go({ q: "", open: null });
            }
          }}
        />
        <button type="submit">Search</button>
        <details class="filters">
          <summary>Filters{activeFilters.length ? ` (${activeFilters.length})` : ""}</summary>
          <div class="filter-grid">
            {TEXT_FILTERS.map(({ key, label }) => (
              <label>
                {label}
                <input
                  name={key}
                  value={draftFilters[key] ?? ""}
                  onInput={(e) => setDraftFilters({ ...draftFilters, [key]: (e.target as HTMLInputElement).value })}
                />
              </label>
            ))}
          </div>
          <button type="submit">Apply filters</button>
        </details>
      </form>

      <div class="toolbar">
        <div class="chips" role="group" aria-label="Severity">
          {SEVERITIES.map((s) => (
            <button type="button" class={`chip sev-${s}`} aria-pressed={state.severity.includes(s)} onClick={() => toggleSeverity(s)}>
              {s}
            </button>
          ))}
        </div>
        <div class="presets" role="group" aria-label="Time range">
          {PRESETS.map((p) => (
            <button type="button" class="chip" aria-pressed={state.range === p.key} onClick={() => go({ range: p.key, from: "", to: "", open: null })}>
              {p.label}
            </button>
          ))}
        </div>
        <form class="absolute" onSubmit={applyAbsolute}>
          <label>
            From <input type="datetime-local" step="1" name="from" value={draftFrom} onInput={(e) => setDraftFrom((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            To <input type="datetime-local" step="1" name="to" value={draftTo} onInput={(e) => setDraftTo((e.target as HTMLInputElement).value)} />
          </label>
          <button type="submit">Apply range</button>
          <span class="zone">Times in {zoneLabel()}</span>
        </form>
      </div>

      {activeFilters.length > 0 && (
        <ul class="active-filters" aria-label="Active filters">
          {activeFilters.map(({ key, label }) => (
            <li>
              <button
                type="button"
                class="chip removable"
                onClick={() => {
                  const next = { ...state.filters };
                  delete next[key];
                  go({ filters: next, open: null });
                }}
              >
                {label}: {state.filters[key]} <span aria-hidden="true">×</span>
                <span class="visually-hidden"> (remove)</span>
              </button>
            </li>
          ))}
        </ul>
      )}

      {volume.state === "error" ? (
        <ErrorBox message={`Histogram: ${volume.message}`} />
      ) : (
        <Histogram volume={volume.state === "ok" ? volume.value : null} selected={state.severity} onToggle={toggleSeverity} onZoom={(from, to) => go({ range: "", from: rfc3339(from), to: rfc3339(to), open: null })} />
      )}

      <div class="columns">
        <section class="results" aria-label="Results">
          <div class="results-bar">
            <label class="live">
              <input type="checkbox" checked={state.live} onChange={() => go({ live: !state.live }, true)} /> Live tail
            </label>
            {state.live && (
              <span class="live-state" role="status">
                {paused ? `Live tail paused (${paused})` : "Live: new logs appear at the top"}
              </span>
            )}
            <span class="spacer" />
            <button type="button" class="small" onClick={() => void exportAs("ndjson")}>
              Download NDJSON
            </button>
            <button type="button" class="small" onClick={() => void exportAs("csv")}>
              Download CSV
            </button>
          </div>
          {downloading && <ErrorBox message={`Download: ${downloading}`} />}
          {state.open !== null && !openRow && results.state === "ok" && <OpenedLog id={state.open} onFilter={setFilter} />}
          {results.state === "loading" && <Loading what="logs" />}
          {results.state === "error" && <ErrorBox message={results.message} />}
          {results.state === "ok" && rows.length === 0 && (
            <p class="status empty" role="status">
              No logs match this query in this time range.
            </p>
          )}
          {results.state === "ok" && rows.length > 0 && (
            <>
              <p class="count" role="status">
                {rows.length.toLocaleString()} logs shown{cursor ? ", more below" : ""}
              </p>
              <LogList logs={rows} openId={state.open} onToggle={(id) => go({ open: state.open === id ? null : id })} onFilter={setFilter} label="Logs, newest first" />
              {more?.state === "error" && <ErrorBox message={more.message} />}
              {cursor && (
                <div ref={sentinel} class="more">
                  <button type="button" onClick={() => void loadMore()} disabled={more?.state === "loading"}>
                    {more?.state === "loading" ? "Loading…" : "Load more"}
                  </button>
                </div>
              )}
            </>
          )}
        </section>
        <aside class="facets" aria-label="Facets">
          <h2>Top values</h2>
          <Show loaded={facets} what="Facets" endpoint="/v1/logs/facets">
            {(value) => (
              <>
                {Object.entries(value.facets).map(([field, items]) => (
                  <div class="facet" data-field={field}>
                    <h3>{field}</h3>
                    {items.length === 0 ? (
                      <p class="muted">none</p>
                    ) : (
                      <ul>
                        {items.map((item) => (
                          <li>
                            <button
                              type="button"
                              class="facet-value"
                              onClick={() => {
                                const target = FACET_FILTER[field];
                                if (target === "severity") {
                                  if (!state.severity.includes(item.value)) go({ severity: [...state.severity, item.value], open: null });
                                } else if (target) setFilter(target, item.value);
                              }}
                            >
                              <span class="value">{item.value}</span> <span class="count">{item.count.toLocaleString()}</span>
                            </button>
                          </li>
                        ))}
                      </ul>
                    )}
                  </div>
                ))}
                <p class="muted">{value.complete ? `${value.scanned.toLocaleString()} logs counted` : `from the newest ${value.scanned.toLocaleString()} logs`}</p>
              </>
            )}
          </Show>
        </aside>
      </div>
    </div>
  );
}

/** The log of `open` when it is not among the loaded rows (a link from elsewhere). */
function OpenedLog({ id, onFilter }: { id: number; onFilter: OnFilter }) {
  const loaded = useApi<Log>(`/v1/logs/${id}`, {}, String(id));
  return (
    <section class="opened" aria-label="Opened log">
      <Show loaded={loaded} what="the log" endpoint={`/v1/logs/${id}`}>
        {(log) => <LogDetail log={log} onFilter={onFilter} />}
      </Show>
    </section>
  );
}
