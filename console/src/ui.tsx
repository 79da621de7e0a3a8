// Small shared pieces: loading data, status badges, JSON, errors, times.
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError } from './api';

export function useLoad<T>(load: () => Promise<T>, deps: unknown[]) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    load().then((d) => { if (live) { setData(d); setError(null); } })
      .catch((e) => { if (live) setError(message(e)); });
    return () => { live = false; };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload, setData };
}

export function message(e: unknown): string {
  if (e instanceof ApiError) return `${e.status} ${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

/** JSON text typed into a form (empty is null); an Error naming `what` if it is not JSON. */
export function parseJson(text: string, what: string): unknown {
  if (!text.trim()) return null;
  try { return JSON.parse(text); } catch (e) { throw new Error(`the ${what} is not JSON: ${message(e)}`); }
}

export function Status({ s }: { s: string }) {
  return <span class={`badge s-${s}`} data-testid="status">{s.replace('_', ' ')}</span>;
}

export function Json({ value, testId }: { value: unknown; testId?: string }) {
  if (value === undefined) return <span class="muted">—</span>;
  return <pre class="json" data-testid={testId}>{JSON.stringify(value, null, 2)}</pre>;
}

export function Err({ text }: { text: string | null | undefined }) {
  return text ? <div class="error" role="alert">{text}</div> : null;
}

export function Section(props: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card">
      <header><h2>{props.title}</h2><div class="actions">{props.actions}</div></header>
      {props.children}
    </section>
  );
}

/** A button that runs an action, shows it is busy, and reports its error. */
export function Act(props: {
  label: string; run: () => Promise<unknown>; testId?: string; kind?: 'danger' | 'primary';
  confirm?: string; onDone?: (r: unknown) => void; disabled?: boolean;
}) {
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<string | null>(null);
  return (
    <span class="act">
      <button class={props.kind ?? ''} data-testid={props.testId} disabled={busy || props.disabled}
        onClick={async () => {
          if (props.confirm && !confirm(props.confirm)) return;
          setBusy(true); setErr(null);
          try { const r = await props.run(); props.onDone?.(r); } catch (e) { setErr(message(e)); }
          setBusy(false);
        }}>{busy ? '…' : props.label}</button>
      {err && <span class="error inline" role="alert">{err}</span>}
    </span>
  );
}

export function time(t: string | null | undefined): string {
  if (!t) return '';
  const d = new Date(t);
  return d.toLocaleString(undefined, { hour12: false }) + `.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

export function short(id: string) { return id.length > 12 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id; }

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
