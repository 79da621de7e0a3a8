// The operations of an execution, folded from its history events: one row per operation
// (step, wait, callback, child context, map/parallel and their branches, chained invoke,
// wait-for-condition), one per activation and per redrive, each with its start, end,
// status and (for steps) attempts with their errors and retry delays.
import type { ErrorObj, HistoryEvent } from './api';

export interface Attempt { n: number; start: number; end?: number; error?: ErrorObj; retryDelayMs?: number }

export interface Row {
  key: string;
  /** Step, Wait, Callback, ChainedInvoke, WaitForCondition, a context sub-type, Activation, Redrive. */
  kind: string;
  id: string | null;
  name: string | null;
  depth: number;
  status: 'running' | 'waiting' | 'retrying' | 'succeeded' | 'failed' | 'timed_out' | 'stopped' | 'pending';
  start: number;
  end?: number;
  attempts: Attempt[];
  callbackId?: string;
  scheduledEnd?: number;
  result?: unknown;
  error?: ErrorObj;
  /** The first event of this row (its place in the history). */
  seq: number;
  /** A chained invoke's callee execution. */
  callee?: string;
  /** The enclosing context's operation id. */
  parentId?: string | null;
}

export interface Model {
  rows: Row[];
  start: number;
  end?: number;
  activations: number;
  pendingCallbacks: Row[];
}

const ms = (t: string) => Date.parse(t);

export function build(events: HistoryEvent[]): Model {
  const ops = new Map<string, Row>();
  // Top-level rows in order (activations, redrives, root operations); every other operation
  // under its parent context, so that a context's operations follow it whatever activation
  // ran them.
  const top: Row[] = [];
  const children = new Map<string, Row[]>();
  let start = events.length ? ms(events[0].timestamp) : Date.now();
  let end: number | undefined;
  let activations = 0;
  // The row of the activation that is running (its first event seen, not its end yet).
  let current: Row | undefined;
  const depthOf = (parent: string | null): number => {
    let d = 0;
    for (let p = parent; p; p = ops.get(p)?.parentId ?? null) d++;
    return d;
  };
  const activation = (at: number, seq: number): Row => {
    if (!current) {
      activations++;
      current = {
        key: `a${seq}`, kind: 'Activation', id: null, name: `activation ${activations}`, depth: 0,
        status: 'running', start: at, attempts: [], seq,
      };
      top.push(current);
    }
    return current;
  };
  for (const e of events) {
    const at = ms(e.timestamp);
    const d = e.details ?? {};
    switch (e.event_type) {
      case 'ExecutionStarted':
        start = at;
        continue;
      case 'ExecutionSucceeded': case 'ExecutionFailed': case 'ExecutionTimedOut': case 'ExecutionStopped':
        end = at;
        continue;
      case 'InvocationCompleted': {
        const a = activation(at, e.event_id);
        a.start = ms(d.start); a.end = ms(d.end);
        a.status = d.error ? 'failed' : 'succeeded'; a.error = d.error;
        current = undefined;
        continue;
      }
      case 'ExecutionRedriven':
        end = undefined;
        top.push({
          key: `r${e.event_id}`, kind: 'Redrive', id: null, name: `redrive ${d.redrive_count ?? ''}`, depth: 0,
          status: 'succeeded', start: at, end: at, attempts: [], seq: e.event_id,
        });
        continue;
    }
    if (!e.id) continue;
    activation(at, e.event_id);
    let op = ops.get(e.id);
    if (!op) {
      const kind = kindOf(e);
      // A wait-for-callback's callback is unnamed: it goes by its context's name.
      const name = e.name ?? (kind === 'Callback' && e.parent_id ? ops.get(e.parent_id)?.name ?? null : null);
      op = {
        key: `o${e.id}`, kind, id: e.id, name, depth: depthOf(e.parent_id),
        status: 'running', start: at, attempts: [], seq: e.event_id, parentId: e.parent_id,
      };
      ops.set(e.id, op);
      const siblings = e.parent_id && ops.has(e.parent_id) ? children.get(e.parent_id) : top;
      if (siblings) siblings.push(op);
      else children.set(e.parent_id!, [op]);
    }
    apply(op, e, at, d);
  }
  // Depth first: each operation, then what ran inside it.
  const rows: Row[] = [];
  const stack = [...top].reverse();
  while (stack.length) {
    const r = stack.pop()!;
    rows.push(r);
    const kids = r.id ? children.get(r.id) : undefined;
    if (kids) for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]);
  }
  const pendingCallbacks = rows.filter((r) => r.kind === 'Callback' && r.status === 'pending' && r.callbackId);
  return { rows, start, end, activations, pendingCallbacks };
}

/** One event's effect on its operation's row. */
function apply(op: Row, e: HistoryEvent, at: number, d: Record<string, any>) {
  const last = op.attempts[op.attempts.length - 1];
  switch (e.event_type) {
    case 'StepStarted':
      op.status = 'running';
      op.attempts.push({ n: d.attempt ?? op.attempts.length + 1, start: at });
      break;
    case 'StepSucceeded':
      if (last && last.end === undefined) last.end = at;
      if (d.next_attempt_delay_ms !== undefined) {
        // A wait-for-condition check that is not done yet.
        if (last) last.retryDelayMs = d.next_attempt_delay_ms;
        op.status = 'retrying';
        op.result = d.result;
      } else {
        op.status = 'succeeded'; op.end = at; op.result = d.result;
      }
      break;
    case 'StepFailed':
      if (last && last.end === undefined) { last.end = at; last.error = d.error; }
      else op.attempts.push({ n: d.attempt ?? op.attempts.length + 1, start: at, end: at, error: d.error });
      if (d.next_attempt_delay_ms !== undefined) {
        op.attempts[op.attempts.length - 1].retryDelayMs = d.next_attempt_delay_ms;
        op.status = 'retrying';
      } else {
        op.status = 'failed'; op.end = at; op.error = d.error;
      }
      break;
    case 'WaitStarted':
      op.status = 'waiting';
      op.scheduledEnd = d.scheduled_end ? ms(d.scheduled_end) : undefined;
      break;
    case 'WaitSucceeded':
      op.status = 'succeeded'; op.end = at;
      break;
    case 'CallbackStarted':
      op.status = 'pending'; op.callbackId = d.callback_id;
      break;
    case 'CallbackSucceeded': case 'ContextSucceeded': case 'ChainedInvokeSucceeded':
      op.status = 'succeeded'; op.end = at; op.result = d.result;
      break;
    case 'CallbackFailed': case 'ContextFailed': case 'ChainedInvokeFailed':
      op.status = 'failed'; op.end = at; op.error = d.error;
      break;
    case 'CallbackTimedOut': case 'ChainedInvokeTimedOut':
      op.status = 'timed_out'; op.end = at; op.error = d.error;
      break;
    case 'ChainedInvokeStopped':
      op.status = 'stopped'; op.end = at; op.error = d.error;
      break;
    case 'ChainedInvokeStarted':
      op.status = 'running'; op.callee = d.durable_execution_id;
      break;
    case 'ContextStarted':
      op.status = 'running';
      break;
  }
}

function kindOf(e: HistoryEvent): string {
  if (e.sub_type) return e.sub_type;
  if (e.event_type.startsWith('Step')) return 'Step';
  if (e.event_type.startsWith('Wait')) return 'Wait';
  if (e.event_type.startsWith('Callback')) return 'Callback';
  if (e.event_type.startsWith('Context')) return 'Context';
  if (e.event_type.startsWith('ChainedInvoke')) return 'ChainedInvoke';
  return e.event_type;
}

export function duration(msecs: number | undefined): string {
  if (msecs === undefined || !isFinite(msecs)) return '';
  if (msecs < 1000) return `${Math.max(0, Math.round(msecs))} ms`;
  if (msecs < 60_000) return `${(msecs / 1000).toFixed(msecs < 10_000 ? 2 : 1)} s`;
  const s = Math.round(msecs / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}
