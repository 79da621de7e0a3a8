// One execution: its status and actions (stop, redrive, fork), input / output / error,
// pending callbacks with succeed / fail forms, the timeline of its operations (virtualised:
// a 10,000-event history renders only the rows in view), its raw events and its logs. The
// history is read page by page (1,000 events each), then followed live over SSE until the
// execution ends.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, follow, type Execution, type HistoryEvent, type LogLine, type WhoAmI } from '../api';
import { may } from '../roles';
import { navigate } from '../router';
import { build, duration, type Row } from '../timeline';
import { VirtualList } from '../virtual';
import { Act, Err, Json, message, parseJson, Section, Status, time } from '../ui';

const TERMINAL = new Set(['succeeded', 'failed', 'timed_out', 'stopped']);

export function ExecutionPage({ me, id }: { me: WhoAmI; id: string }) {
  const [x, setX] = useState<Execution | null>(null);
  const [events, setEvents] = useState<HistoryEvent[]>([]);
  const [complete, setComplete] = useState(false);
  const [err, setErr] = useState<string | null>(null);
  const [tab, setTab] = useState<'timeline' | 'events' | 'logs'>('timeline');
  const [generation, setGeneration] = useState(0);
  const [now, setNow] = useState(Date.now());

  // Read the history page by page, showing each as it comes; then follow it live.
  useEffect(() => {
    const ctl = new AbortController();
    let stopFollow: (() => void) | undefined;
    let all: HistoryEvent[] = [];
    (async () => {
      try {
        const first = await api.execution(id);
        setX(first);
        let cursor: string | null = null;
        do {
          const page = await api.history(id, cursor, ctl.signal);
          all = all.concat(page.events);
          setEvents(all);
          cursor = page.next_cursor;
        } while (cursor && !ctl.signal.aborted);
        setComplete(true);
        performance.mark('console:history-loaded');
        const last = all.length ? all[all.length - 1].event_id : 0;
        let pending: HistoryEvent[] = [];
        let timer: number | undefined;
        const flush = () => { timer = undefined; all = all.concat(pending); pending = []; setEvents(all); };
        stopFollow = follow(id, last, (e) => {
          pending.push(e);
          timer ??= window.setTimeout(flush, 100);
        }, (end) => { flush(); setX(end); });
        if (TERMINAL.has(first.status)) api.execution(id).then(setX).catch(() => {});
      } catch (e) {
        if (!ctl.signal.aborted) setErr(message(e));
      }
    })();
    return () => { ctl.abort(); stopFollow?.(); };
  }, [id, generation]);

  const running = x && !TERMINAL.has(x.status);
  useEffect(() => {
    if (!running) return;
    const t = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(t);
  }, [running]);
  // The status follows the events between SSE's end frames (suspended / running).
  useEffect(() => {
    if (!running || !events.length) return;
    api.execution(id).then(setX).catch(() => {});
  }, [events.length]);

  const model = useMemo(() => build(events), [events]);
  if (err) return <Err text={err} />;
  if (!x) return <div class="muted">…</div>;
  const control = may(me.role, 'control_executions');
  const terminal = TERMINAL.has(x.status);
  const end = model.end ?? (terminal && x.ended_at ? Date.parse(x.ended_at) : now);
  const reload = (nx: Execution) => {
    if (nx.execution_id !== id) navigate(`/executions/${nx.execution_id}`);
    else { setX(nx); setComplete(false); setEvents([]); setGeneration((g) => g + 1); }
  };
  return (
    <>
      <div class="exec-head">
        <h1 class="mono" data-testid="execution-id">{x.execution_id}</h1>
        <Status s={x.status} />
        <span class="muted">
          <a href={`/ui/functions/${encodeURIComponent(x.function)}`}>{x.function}</a> v{x.version}
          {' · '}created {time(x.created_at)}{x.ended_at && ` · ended ${time(x.ended_at)}`}
          {' · '}{duration(end - model.start)} · {model.activations} activation{model.activations === 1 ? '' : 's'}
          {x.redrive_count > 0 && ` · redriven ${x.redrive_count}×`}
          {x.forked_from && <> · forked from <a href={`/ui/executions/${x.forked_from}`}>{x.forked_from.slice(-8)}</a></>}
          {x.parent_execution_id && <> · invoked by <a href={`/ui/executions/${x.parent_execution_id}`}>{x.parent_execution_id.slice(-8)}</a></>}
        </span>
        <span class="spacer" />
        {control && (
          <span class="actions" data-testid="actions">
            {!terminal && <Act label="Stop" kind="danger" testId="stop" confirm="Stop this execution?" run={() => api.stop(id)} onDone={(r) => reload(r as Execution)} />}
            {(x.status === 'failed' || x.status === 'timed_out' || x.status === 'stopped') &&
              <Act label="Redrive" testId="redrive" run={() => api.redrive(id)} onDone={(r) => reload(r as Execution)} />}
            {terminal && <Fork id={id} />}
          </span>
        )}
      </div>
      <div class="cols">
        <Section title="Input"><Json value={x.input} testId="input" /></Section>
        {x.status === 'succeeded' && <Section title="Output"><Json value={x.output} testId="output" /></Section>}
        {x.error && <Section title="Error"><div class="error" data-testid="exec-error"><b>{x.error.error_type}</b>: {x.error.error_message}</div>{x.error.error_data !== undefined && <Json value={x.error.error_data} />}</Section>}
      </div>
      {model.pendingCallbacks.length > 0 && (
        <Section title={`Pending callbacks (${model.pendingCallbacks.length})`}>
          {model.pendingCallbacks.slice(0, 20).map((r) => <CallbackForm row={r} allowed={may(me.role, 'callbacks')} />)}
          {model.pendingCallbacks.length > 20 && <p class="muted">and {model.pendingCallbacks.length - 20} more (see the timeline)</p>}
        </Section>
      )}
      <div class="tabs">
        {(['timeline', 'events', 'logs'] as const).map((t) => (
          <button class={tab === t ? 'on' : ''} data-testid={`tab-${t}`} onClick={() => setTab(t)}>
            {t === 'timeline' ? `Timeline (${model.rows.length})` : t === 'events' ? `Events (${events.length})` : 'Logs'}
          </button>
        ))}
        {!complete && <span class="muted">loading history… {events.length}</span>}
      </div>
      {tab === 'timeline' && <Timeline rows={model.rows} t0={model.start} t1={Math.max(end, model.start + 1)} complete={complete} now={now} />}
      {tab === 'events' && <Events events={events} />}
      {tab === 'logs' && <Logs id={id} version={events.length} />}
    </>
  );
}

function Fork({ id }: { id: string }) {
  const [open, setOpen] = useState(false);
  const [from, setFrom] = useState('');
  const [input, setInput] = useState('');
  if (!open) return <button data-testid="fork" onClick={() => setOpen(true)}>Fork…</button>;
  return (
    <span class="fork">
      <input placeholder="from operation (default: the failed one)" value={from} onInput={(e) => setFrom((e.target as HTMLInputElement).value)} />
      <input placeholder="input JSON (default: the original)" value={input} onInput={(e) => setInput((e.target as HTMLInputElement).value)} />
      <Act label="Fork" testId="fork-submit" run={async () => {
        const body: { from_operation?: string; input?: unknown } = {};
        if (from.trim()) body.from_operation = from.trim();
        if (input.trim()) body.input = parseJson(input, 'input');
        return api.fork(id, body);
      }} onDone={(r) => navigate(`/executions/${(r as Execution).execution_id}`)} />
      <button onClick={() => setOpen(false)}>×</button>
    </span>
  );
}

function CallbackForm({ row, allowed }: { row: Row; allowed: boolean }) {
  const [result, setResult] = useState('{"approved": true}');
  const [etype, setEtype] = useState('Rejected');
  const [emsg, setEmsg] = useState('');
  const [done, setDone] = useState<string | null>(null);
  const id = row.callbackId!;
  return (
    <div class="callback" data-testid="callback" data-callback-id={id}>
      <div><b>{row.name ?? row.kind}</b> <span class="muted">op {row.id} · since {time(new Date(row.start).toISOString())}</span> <code class="mono small">{id}</code></div>
      {allowed && !done && (
        <div class="row">
          <textarea rows={1} value={result} data-testid="callback-result" onInput={(e) => setResult((e.target as HTMLTextAreaElement).value)} />
          <Act label="Succeed" kind="primary" testId="callback-succeed" run={async () => {
            await api.callbackSucceed(id, parseJson(result, 'result')); setDone('succeeded');
          }} />
          <input value={etype} placeholder="error type" data-testid="callback-error-type" onInput={(e) => setEtype((e.target as HTMLInputElement).value)} />
          <input value={emsg} placeholder="error message" onInput={(e) => setEmsg((e.target as HTMLInputElement).value)} />
          <Act label="Fail" kind="danger" testId="callback-fail" run={async () => {
            await api.callbackFail(id, { error_type: etype, error_message: emsg }); setDone('failed');
          }} />
        </div>
      )}
      {done && <div class="ok">Callback {done}.</div>}
    </div>
  );
}

const ROW = 28;

function Timeline({ rows, t0, t1, complete, now }: { rows: Row[]; t0: number; t1: number; complete: boolean; now: number }) {
  const [sel, setSel] = useState<Row | null>(null);
  const [find, setFind] = useState('');
  const [problems, setProblems] = useState(false);
  const shown = useMemo(() => {
    const f = find.trim().toLowerCase();
    if (!f && !problems) return rows;
    return rows.filter((r) => (!problems || r.attempts.length > 1 || r.error || r.status === 'failed' || r.status === 'timed_out')
      && (!f || `${r.kind} ${r.name ?? ''} ${r.id ?? ''} ${r.status}`.toLowerCase().includes(f)));
  }, [rows, find, problems]);
  const span = t1 - t0;
  // Bars stay inside the track: one that starts at the very end is drawn 2px wide there.
  const pct = (t: number) => `${Math.min(100, Math.max(0, ((t - t0) / span) * 100))}%`;
  const left = (t: number) => `min(${pct(t)}, calc(100% - 2px))`;
  const painted = useRef(false);
  useEffect(() => {
    if (!painted.current && rows.length) { painted.current = true; performance.mark('console:timeline-painted'); }
  }, [rows.length]);
  const selected = sel && rows.find((r) => r.key === sel.key);
  return (
    <div class="card timeline" data-testid="timeline" data-complete={complete ? 'true' : 'false'} data-rows={rows.length}>
      <div class="row">
        <input placeholder="find an operation (name, kind, id, status)" value={find} data-testid="timeline-find"
          onInput={(e) => setFind((e.target as HTMLInputElement).value)} />
        <label class="inline"><input type="checkbox" checked={problems} data-testid="timeline-problems"
          onChange={(e) => setProblems((e.target as HTMLInputElement).checked)} /> retried or failed only</label>
        {shown !== rows && <span class="muted">{shown.length} of {rows.length}</span>}
      </div>
      <div class="tl-head"><span>Operation</span><span>Status</span><span>Attempts</span><span>Duration</span><span class="tl-axis"><span>0</span><span>{duration(span)}</span></span></div>
      <VirtualList items={shown} rowHeight={ROW} height={Math.min(560, Math.max(ROW * 4, innerHeight - 380))} testId="timeline-rows" follow
        row={(r) => {
          const end = r.end ?? now;
          const kind = r.kind.toLowerCase();
          return (
            <div class={`tl-row k-${kind} ${selected?.key === r.key ? 'sel' : ''}`} data-testid="op" data-op-id={r.id ?? ''} data-kind={r.kind} data-status={r.status}
              data-name={r.name ?? ''} tabIndex={0} onClick={() => setSel(r)}
              onKeyDown={(e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); setSel(r); } }}>
              <span class="tl-name" style={{ paddingLeft: `${r.depth * 14 + 4}px` }} title={`${r.kind} ${r.id ?? ''}`}>
                <span class="kind">{r.kind}</span> {r.name ?? (r.id ? `#${r.id}` : '')}
              </span>
              <span><span class={`dot s-${r.status}`} />{r.status.replace('_', ' ')}</span>
              <span class="muted" title={attemptsText(r)}>{r.attempts.length > 1 || r.attempts.some((a) => a.error) ? attemptsText(r) : ''}</span>
              <span>{duration(end - r.start)}</span>
              <span class="tl-track">
                {r.attempts.length > 1
                  ? r.attempts.map((a, i) => {
                    const next = r.attempts[i + 1];
                    return <>
                      <span class={`bar ${a.error ? 'bar-err' : a.end !== undefined ? 'bar-ok' : 's-running'}`} title={`attempt ${a.n}`}
                        style={{ left: left(a.start), width: `max(2px, calc(${pct(a.end ?? now)} - ${pct(a.start)}))` }} />
                      {a.end !== undefined && a.retryDelayMs !== undefined && (
                        <span class="gap" title={`retry after ${duration(a.retryDelayMs)}`}
                          style={{ left: left(a.end), width: `calc(${pct(next?.start ?? a.end + a.retryDelayMs)} - ${pct(a.end)})` }} />
                      )}
                    </>;
                  })
                  : <span class={`bar s-${r.status}`} style={{ left: left(r.start), width: `max(2px, calc(${pct(end)} - ${pct(r.start)}))` }} />}
                {r.scheduledEnd && r.status === 'waiting' && <span class="tick" style={{ left: left(r.scheduledEnd) }} title="scheduled end" />}
              </span>
            </div>
          );
        }} />
      {selected && <RowDetail row={selected} />}
    </div>
  );
}

function attemptsText(r: Row): string {
  const delays = r.attempts.filter((a) => a.retryDelayMs !== undefined).map((a) => duration(a.retryDelayMs));
  return `${r.attempts.length} attempt${r.attempts.length === 1 ? '' : 's'}${delays.length ? `, retry after ${delays.join(', ')}` : ''}`;
}

function RowDetail({ row }: { row: Row }) {
  return (
    <div class="detail" data-testid="op-detail">
      <h3>{row.kind} {row.name ?? ''} <span class="muted">{row.id ? `op ${row.id}` : ''}</span></h3>
      <p class="muted">started {time(new Date(row.start).toISOString())}{row.end !== undefined && ` · ended ${time(new Date(row.end).toISOString())} · ${duration(row.end - row.start)}`}
        {row.callbackId && <> · callback <code>{row.callbackId}</code></>}
        {row.callee && <> · callee <a href={`/ui/executions/${row.callee}`}>{row.callee}</a></>}</p>
      {row.attempts.length > 0 && (
        <table class="small">
          <thead><tr><th>Attempt</th><th>Started</th><th>Duration</th><th>Error</th><th>Retry after</th></tr></thead>
          <tbody>{row.attempts.map((a) => (
            <tr><td>{a.n}</td><td>{time(new Date(a.start).toISOString())}</td><td>{a.end !== undefined ? duration(a.end - a.start) : 'running'}</td>
              <td>{a.error ? `${a.error.error_type}: ${a.error.error_message}` : ''}</td><td>{a.retryDelayMs !== undefined ? duration(a.retryDelayMs) : ''}</td></tr>
          ))}</tbody>
        </table>
      )}
      {row.result !== undefined && <><h4>Result</h4><Json value={row.result} /></>}
      {row.error && <div class="error"><b>{row.error.error_type}</b>: {row.error.error_message}</div>}
    </div>
  );
}

function Events({ events }: { events: HistoryEvent[] }) {
  const [sel, setSel] = useState<HistoryEvent | null>(null);
  return (
    <div class="card">
      <VirtualList items={events} rowHeight={ROW} height={480} testId="event-rows" follow row={(e) => (
        <div class="ev-row" onClick={() => setSel(e)}>
          <span class="muted">{e.event_id}</span><span>{e.event_type}</span><span class="mono">{e.id ?? ''}</span>
          <span>{e.name ?? ''}</span><span class="muted">{time(e.timestamp)}</span>
        </div>
      )} />
      {sel && <div class="detail"><h3>Event {sel.event_id}: {sel.event_type}</h3><Json value={sel} /></div>}
    </div>
  );
}

function Logs({ id, version }: { id: string; version: number }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => {
    api.logs(id).then((p) => { setLines(p.logs); setNext(p.next_cursor); }).catch((e) => setErr(message(e)));
  }, [id, version]);
  return (
    <div class="card" data-testid="logs">
      <Err text={err} />
      <VirtualList items={lines} rowHeight={22} height={420} row={(l) => (
        <div class={`log l-${l.level}`} title={l.message}><span class="muted">{time(l.timestamp)}</span> <b>{l.level}</b> <span class="muted">{l.stream}{l.operation_id ? ` op ${l.operation_id}` : ''}</span> {l.message}</div>
      )} />
      {!lines.length && <p class="muted">No log lines.</p>}
      {next && <button onClick={() => api.logs(id, next).then((p) => { setLines(lines.concat(p.logs)); setNext(p.next_cursor); })}>More</button>}
    </div>
  );
}
