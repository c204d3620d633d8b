// One log: its summary line, and expanded, every field, the metadata as formatted JSON, copy
// buttons, click-to-filter on its ids and the ways into its context. Everything is rendered
// as text (Preact sets textContent): a payload holding markup shows that markup.

import type { Log } from "./api";
import { CopyButton } from "./common";
import { linkClick } from "./router";
import type { FilterKey } from "./state";
import { showTime } from "./time";

export type OnFilter = (key: FilterKey, value: string) => void;

export function userOf(log: Log): string | null {
  const user = log.metadata?.user_id;
  return typeof user === "string" || typeof user === "number" ? String(user) : null;
}

export function permalink(log: Log, view?: string): string {
  return `/ui/logs/${log.id}${view ? `?view=${view}` : ""}`;
}

function FilterValue({ field, value, onFilter }: { field: FilterKey; value: string | null; onFilter: OnFilter }) {
  if (value === null) return <span class="muted">—</span>;
  return (
    <button type="button" class="filter-link" title={`Filter by this ${field}`} data-filter={field} onClick={() => onFilter(field, value)}>
      {value}
    </button>
  );
}

export function LogSummary({ log, open, onToggle }: { log: Log; open: boolean; onToggle: () => void }) {
  return (
    <button type="button" class="log-summary" aria-expanded={open} onClick={onToggle}>
      <time dateTime={log.timestamp}>{showTime(log.timestamp)}</time>
      <span class={`sev sev-${log.severity}`}>{log.severity}</span>
      <span class="service">{log.service_name}</span>
      <span class="payload">{log.payload}</span>
    </button>
  );
}

export function LogDetail({ log, onFilter }: { log: Log; onFilter: OnFilter }) {
  const user = userOf(log);
  const json = JSON.stringify(log, null, 2);
  const metadata = log.metadata === null ? null : JSON.stringify(log.metadata, null, 2);
  const link = new URL(permalink(log), location.href).href;
  return (
    <div class="log-detail" data-log-id={log.id}>
      <dl>
        <dt>id</dt>
        <dd>{log.id}</dd>
        <dt>timestamp</dt>
        <dd>
          {showTime(log.timestamp)} <span class="muted">({log.timestamp})</span>
        </dd>
        <dt>service</dt>
        <dd>
          <FilterValue field="service" value={log.service_name} onFilter={onFilter} />
        </dd>
        <dt>severity</dt>
        <dd>
          <span class={`sev sev-${log.severity}`}>{log.severity}</span>
        </dd>
        <dt>payload</dt>
        <dd class="payload-full">{log.payload}</dd>
        <dt>resource_id</dt>
        <dd>
          <FilterValue field="resource_id" value={log.resource_id} onFilter={onFilter} />
        </dd>
        <dt>trace_id</dt>
        <dd>
          <FilterValue field="trace_id" value={log.trace_id} onFilter={onFilter} />
        </dd>
        <dt>span_id</dt>
        <dd>
          <FilterValue field="span_id" value={log.span_id} onFilter={onFilter} />
        </dd>
        <dt>commit</dt>
        <dd>
          <FilterValue field="commit" value={log.commit} onFilter={onFilter} />
        </dd>
        <dt>user_id</dt>
        <dd>
          <FilterValue field="user_id" value={user} onFilter={onFilter} />
        </dd>
        <dt>message_id</dt>
        <dd>{log.message_id}</dd>
      </dl>
      <h4>metadata</h4>
      {metadata === null ? <p class="muted">none</p> : <pre class="metadata">{metadata}</pre>}
      <div class="actions">
        <CopyButton text={log.payload} label="Copy payload" />
        <CopyButton text={json} label="Copy JSON" />
        <CopyButton text={link} label="Copy permalink" />
        <a class="button small" href={permalink(log)} onClick={linkClick}>
          View in context
        </a>
        {log.trace_id && (
          <a class="button small" href={permalink(log, "trace")} onClick={linkClick}>
            Its trace
          </a>
        )}
        {user && (
          <a class="button small" href={permalink(log, "user")} onClick={linkClick}>
            The user's requests
          </a>
        )}
      </div>
    </div>
  );
}

export function LogList({
  logs,
  openId,
  onToggle,
  onFilter,
  label,
}: {
  logs: Log[];
  openId: number | null;
  onToggle: (id: number) => void;
  onFilter: OnFilter;
  label: string;
}) {
  return (
    <ol class="logs" aria-label={label}>
      {logs.map((log) => (
        <li key={log.id} class={`log sev-row-${log.severity}${openId === log.id ? " open" : ""}`} data-id={log.id}>
          <LogSummary log={log} open={openId === log.id} onToggle={() => onToggle(log.id)} />
          {openId === log.id && <LogDetail log={log} onFilter={onFilter} />}
        </li>
      ))}
    </ol>
  );
}
