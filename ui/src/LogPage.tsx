// A permalink to one log (/ui/logs/<id>, its primary key): the log expanded, and its context
// one click away: the same service a few minutes either side (unfiltered), the rest of its
// trace, and the same user's other requests. The tab is in the URL (?view=).

import { useState } from "preact/hooks";
import type { Log, LogsPage } from "./api";
import { Show, useApi } from "./common";
import { LogDetail, LogList, permalink, userOf } from "./LogView";
import type { OnFilter } from "./LogView";
import { linkClick, navigate, useLocation } from "./router";
import { parseState, stateUrl } from "./state";
import { rfc3339 } from "./time";

const AROUND_MS = 5 * 60_000;
const VIEWS = [
  { key: "around", label: "Around it (same service, ±5 min)" },
  { key: "trace", label: "Its trace" },
  { key: "user", label: "The user's requests" },
] as const;

export function LogPage({ id }: { id: number }) {
  const loc = useLocation();
  const view = loc.params.get("view") ?? "around";
  const loaded = useApi<Log>(`/v1/logs/${id}`, {}, String(id));
  const onFilter: OnFilter = (key, value) => {
    const state = parseState(new URLSearchParams());
    navigate(stateUrl({ ...state, filters: { [key]: value } }));
  };
  return (
    <div class="log-page">
      <h1>Log {id}</h1>
      <Show loaded={loaded} what="the log" endpoint={`/v1/logs/${id}`}>
        {(log) => (
          <>
            <section class="log open" aria-label="The log">
              <LogDetail log={log} onFilter={onFilter} />
            </section>
            <nav class="tabs" aria-label="Context">
              {VIEWS.map((v) => (
                <a href={permalink(log, v.key === "around" ? undefined : v.key)} onClick={linkClick} aria-current={view === v.key ? "page" : undefined} class="tab">
                  {v.label}
                </a>
              ))}
            </nav>
            <Context log={log} view={view} onFilter={onFilter} />
          </>
        )}
      </Show>
    </div>
  );
}

function Context({ log, view, onFilter }: { log: Log; view: string; onFilter: OnFilter }) {
  const at = Date.parse(log.timestamp);
  const user = userOf(log);
  let path: string | null = "/v1/logs";
  let params: Record<string, string | number> = {};
  let empty = "";
  if (view === "trace") {
    if (log.trace_id) params = { trace_id: log.trace_id, limit: 500 };
    else [path, empty] = [null, "This log has no trace id."];
  } else if (view === "user") {
    if (user) [path, params] = [`/v1/users/${encodeURIComponent(user)}/requests`, { limit: 500 }];
    else [path, empty] = [null, "This log has no user id."];
  } else {
    params = { service: log.service_name, from: rfc3339(at - AROUND_MS), to: rfc3339(at + AROUND_MS), limit: 500 };
  }
  const loaded = useApi<LogsPage & { requests?: Log[] }>(path, params, `${log.id}|${view}`);
  const [open, setOpen] = useState<number | null>(null);
  if (path === null) return <p class="status empty">{empty}</p>;
  return (
    <section class="context" aria-label="Context">
      <Show loaded={loaded} what="the context" endpoint={path}>
        {(page) => {
          const logs = page.requests ?? page.logs;
          if (logs.length === 0) return <p class="status empty">No logs.</p>;
          return (
            <>
              <p class="muted">
                {logs.length} logs{page.next_cursor ? " (the first 500)" : ""}; this one is marked.{" "}
                <a href={explorerLink(log, view, at)} onClick={linkClick}>
                  Open in the explorer
                </a>
              </p>
              <LogList logs={logs} openId={open ?? log.id} onToggle={(i) => setOpen(open === i ? -1 : i)} onFilter={onFilter} label="Logs in context" />
            </>
          );
        }}
      </Show>
    </section>
  );
}

function explorerLink(log: Log, view: string, at: number): string {
  const base = parseState(new URLSearchParams());
  if (view === "trace" && log.trace_id)
    return stateUrl({ ...base, range: "", from: rfc3339(at - 86_400_000), to: rfc3339(at + 86_400_000), filters: { trace_id: log.trace_id }, open: log.id });
  if (view === "user") return stateUrl({ ...base, range: "7d", filters: { user_id: userOf(log) ?? "" }, open: log.id });
  return stateUrl({ ...base, range: "", from: rfc3339(at - AROUND_MS), to: rfc3339(at + AROUND_MS), filters: { service: log.service_name }, open: log.id });
}
