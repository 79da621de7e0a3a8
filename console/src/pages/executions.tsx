// Executions: newest first, filtered by function, status, error type and end time, paged
// by the API's cursor; the first page refreshes itself every two seconds while "live" is on
// (the API streams one execution's history, not the list, and a browser holds only six
// connections to a host, so the list polls and the execution page streams).
import { useEffect, useState } from 'preact/hooks';
import { api, type ExecFilter, type Execution, type WhoAmI } from '../api';
import { navigate } from '../router';
import { Err, message, Section, short, Status, time } from '../ui';
import { duration } from '../timeline';

const STATUSES = ['', 'running', 'suspended', 'succeeded', 'failed', 'timed_out', 'stopped'];
const PAGE = 50;

function toIso(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return isNaN(d.getTime()) ? undefined : d.toISOString();
}

export function Executions({ query }: { me: WhoAmI; query: URLSearchParams }) {
  const filter: ExecFilter = {
    function: query.get('function') ?? '', status: query.get('status') ?? '',
    error_type: query.get('error_type') ?? '', ended_after: query.get('ended_after') ?? '',
    ended_before: query.get('ended_before') ?? '',
  };
  const key = JSON.stringify(filter);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [page, setPage] = useState<{ executions: Execution[]; next_cursor: string | null } | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [live, setLive] = useState(true);
  const [fns, setFns] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  useEffect(() => { api.functions().then((f) => setFns(f.functions.map((x) => x.name))).catch(() => {}); }, []);
  useEffect(() => { setCursors([null]); }, [key]);
  useEffect(() => {
    let stop = false;
    const load = () => api.executions({
      ...filter, ended_after: toIso(filter.ended_after!), ended_before: toIso(filter.ended_before!),
      limit: PAGE, cursor,
    }).then((p) => { if (!stop) { setPage(p); setErr(null); } }).catch((e) => { if (!stop) setErr(message(e)); });
    load();
    const t = live && cursor === null ? setInterval(load, 2000) : undefined;
    return () => { stop = true; if (t) clearInterval(t); };
  }, [key, cursor, live]);
  const set = (k: keyof ExecFilter, v: string) => {
    const q = new URLSearchParams(query);
    if (v) q.set(k, v); else q.delete(k);
    const s = q.toString();
    navigate(`/executions${s ? `?${s}` : ''}`, true);
  };
  return (
    <Section title="Executions" actions={
      <label class="inline"><input type="checkbox" checked={live} data-testid="live"
        onChange={(e) => setLive((e.target as HTMLInputElement).checked)} /> live</label>}>
      <div class="filters" data-testid="filters">
        <select value={filter.function} data-testid="filter-function" onChange={(e) => set('function', (e.target as HTMLSelectElement).value)}>
          <option value="">all functions</option>
          {[...new Set([...fns, filter.function!])].filter(Boolean).map((f) => <option value={f}>{f}</option>)}
        </select>
        <select value={filter.status} data-testid="filter-status" onChange={(e) => set('status', (e.target as HTMLSelectElement).value)}>
          {STATUSES.map((s) => <option value={s}>{s || 'any status'}</option>)}
        </select>
        <input placeholder="error type" value={filter.error_type} data-testid="filter-error"
          onChange={(e) => set('error_type', (e.target as HTMLInputElement).value.trim())} />
        <label class="inline">ended after <input type="datetime-local" value={filter.ended_after}
          onChange={(e) => set('ended_after', (e.target as HTMLInputElement).value)} /></label>
        <label class="inline">before <input type="datetime-local" value={filter.ended_before}
          onChange={(e) => set('ended_before', (e.target as HTMLInputElement).value)} /></label>
      </div>
      <Err text={err} />
      <ExecTable rows={page?.executions ?? []} />
      <div class="pager">
        <button disabled={cursors.length < 2} onClick={() => setCursors(cursors.slice(0, -1))}>← Newer</button>
        <span class="muted">page {cursors.length}</span>
        <button disabled={!page?.next_cursor} data-testid="next-page"
          onClick={() => page?.next_cursor && setCursors([...cursors, page.next_cursor])}>Older →</button>
      </div>
    </Section>
  );
}

export function ExecTable({ rows, select }: { rows: Execution[]; select?: { on: Set<string>; toggle: (id: string) => void } }) {
  return (
    <table data-testid="executions">
      <thead><tr>{select && <th />}<th>Execution</th><th>Function</th><th>Status</th><th>Error</th><th>Created</th><th>Duration</th></tr></thead>
      <tbody>
        {rows.map((x) => {
          const end = x.ended_at ? Date.parse(x.ended_at) : Date.now();
          return (
            <tr data-testid={`exec-${x.execution_id}`} data-status={x.status}>
              {select && <td><input type="checkbox" checked={select.on.has(x.execution_id)} onChange={() => select.toggle(x.execution_id)} /></td>}
              <td class="mono"><a href={`/ui/executions/${x.execution_id}`} title={x.execution_id}>{short(x.execution_id)}</a></td>
              <td>{x.function} <span class="muted">v{x.version}</span></td>
              <td><Status s={x.status} /></td>
              <td class="err-type">{x.error?.error_type ?? ''}</td>
              <td>{time(x.created_at)}</td>
              <td>{duration(end - Date.parse(x.created_at))}</td>
            </tr>
          );
        })}
        {!rows.length && <tr><td colSpan={select ? 7 : 6} class="muted">No executions.</td></tr>}
      </tbody>
    </table>
  );
}
