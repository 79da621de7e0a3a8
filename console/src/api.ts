// A hand-written client for the host's JSON API (see /v1/openapi.json): fetch with the
// signed-in key, errors as ApiError from the {"error": {"code", "message"}} envelope, and
// the live history stream (SSE) read through fetch, since EventSource cannot send the
// Authorization header.

export type Role = 'admin' | 'owner' | 'developer' | 'invoker' | 'callback' | 'reader';

export interface WhoAmI { tenant: string; role: Role; key_id: string | null }

export interface ErrorObj { error_type: string; error_message: string; error_data?: unknown }

export interface Settings {
  memory_limit_mb: number;
  activation_timeout_secs: number;
  execution_timeout_secs: number;
  retention_secs: number;
  max_concurrency: number | null;
  concurrency_key: string | null;
  throttle: { per_second: number; burst: number } | null;
  max_queued: number | null;
  redrive_policy: { max_redrives: number; delay_secs: number } | null;
}

export interface Version {
  name: string; version: number; sha256: string; size_bytes: number; created_at: string;
  created?: boolean;
}

export interface FunctionView {
  name: string; latest_version: number; created_at: string; settings: Settings; versions: Version[];
}

export type Status = 'running' | 'suspended' | 'succeeded' | 'failed' | 'timed_out' | 'stopped';

export interface Execution {
  execution_id: string; function: string; version: number; status: Status;
  input: unknown; output: unknown; error: ErrorObj | null;
  created_at: string; updated_at: string; ended_at: string | null;
  redrive_count: number; forked_from: string | null; parent_execution_id: string | null;
  trace_id: string;
}

export interface HistoryEvent {
  event_id: number; event_type: string; sub_type: string | null;
  id: string | null; parent_id: string | null; name: string | null;
  timestamp: string; details: Record<string, any>;
}

export interface LogLine {
  timestamp: string; level: string; stream: string; message: string; operation_id: string | null;
}

export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}

const KEY = 'durable.key';
const TENANT = 'durable.tenant';

/** The key lives in sessionStorage only: it goes with the tab. */
export const session = {
  key: (): string | null => sessionStorage.getItem(KEY),
  tenant: (): string | null => sessionStorage.getItem(TENANT),
  signIn(key: string) { sessionStorage.setItem(KEY, key); },
  act(tenant: string | null) {
    if (tenant) sessionStorage.setItem(TENANT, tenant); else sessionStorage.removeItem(TENANT);
  },
  signOut() { sessionStorage.removeItem(KEY); sessionStorage.removeItem(TENANT); },
};

function headers(extra?: Record<string, string>, key = session.key()): Record<string, string> {
  const h: Record<string, string> = { ...extra };
  if (key) h.authorization = `Bearer ${key}`;
  const t = session.tenant();
  if (t) h['durable-tenant'] = t;
  return h;
}

export async function request<T>(method: string, path: string, body?: unknown,
  opts: { raw?: BodyInit; contentType?: string; key?: string; signal?: AbortSignal } = {}): Promise<T> {
  const init: RequestInit = { method, headers: headers({}, opts.key ?? session.key()), signal: opts.signal };
  if (opts.raw !== undefined) {
    init.body = opts.raw;
    (init.headers as Record<string, string>)['content-type'] = opts.contentType ?? 'application/octet-stream';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data: any = null;
  if (text) { try { data = JSON.parse(text); } catch { data = text; } }
  if (r.status === 401 && !opts.key && session.key()) {
    // The key was revoked or expired meanwhile: back to the sign-in form.
    session.signOut();
    dispatchEvent(new Event('durable:signed-out'));
  }
  if (!r.ok) {
    const e = data?.error;
    throw new ApiError(r.status, e?.code ?? String(r.status), e?.message ?? (text || r.statusText));
  }
  return data as T;
}

const q = (params: Record<string, string | number | undefined | null>) => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') s.set(k, String(v));
  const t = s.toString();
  return t ? `?${t}` : '';
};
const enc = encodeURIComponent;

export interface ExecFilter {
  function?: string; status?: string; error_type?: string; ended_after?: string; ended_before?: string;
}

export const api = {
  whoami: (key?: string) => request<WhoAmI>('GET', '/v1/whoami', undefined, { key }),
  functions: () => request<{ functions: FunctionView[] }>('GET', '/v1/functions'),
  fn: (name: string) => request<FunctionView>('GET', `/v1/functions/${enc(name)}`),
  deploy: (name: string, bytes: ArrayBuffer) =>
    request<Version>('PUT', `/v1/functions/${enc(name)}`, undefined, { raw: bytes, contentType: 'application/wasm' }),
  patchFn: (name: string, patch: Record<string, unknown>) => request<FunctionView>('PATCH', `/v1/functions/${enc(name)}`, patch),
  deleteFn: (name: string) => request<void>('DELETE', `/v1/functions/${enc(name)}`),
  invoke: (name: string, input: unknown) =>
    request<Execution>('POST', `/v1/functions/${enc(name)}/invoke`, input),
  executions: (f: ExecFilter & { limit?: number; cursor?: string | null }) =>
    request<{ executions: Execution[]; next_cursor: string | null }>('GET', `/v1/executions${q({ ...f })}`),
  execution: (id: string) => request<Execution>('GET', `/v1/executions/${enc(id)}`),
  history: (id: string, cursor?: string | null, signal?: AbortSignal) =>
    request<{ events: HistoryEvent[]; next_cursor: string | null }>('GET', `/v1/executions/${enc(id)}/history${q({ cursor, limit: 1000 })}`, undefined, { signal }),
  logs: (id: string, cursor?: string | null) =>
    request<{ logs: LogLine[]; next_cursor: string | null }>('GET', `/v1/executions/${enc(id)}/logs${q({ cursor })}`),
  stop: (id: string) => request<Execution>('POST', `/v1/executions/${enc(id)}/stop`, {}),
  redrive: (id: string, version?: string | number) =>
    request<Execution>('POST', `/v1/executions/${enc(id)}/redrive`, version === undefined ? {} : { version }),
  fork: (id: string, body: { from_operation?: string; input?: unknown }) =>
    request<Execution>('POST', `/v1/executions/${enc(id)}/fork`, body),
  bulkRedrive: (body: { function: string; status: string; error_type?: string }) =>
    request<any>('POST', '/v1/executions/redrive', body),
  job: (id: string) => request<any>('GET', `/v1/jobs/${enc(id)}`),
  callbackSucceed: (id: string, result: unknown) => request<any>('POST', `/v1/callbacks/${enc(id)}/succeed`, result),
  callbackFail: (id: string, err: { error_type?: string; error_message?: string }) =>
    request<any>('POST', `/v1/callbacks/${enc(id)}/fail`, err),
  schedules: () => request<{ schedules: any[] }>('GET', '/v1/schedules'),
  schedule: (name: string) => request<any>('GET', `/v1/schedules/${enc(name)}`),
  putSchedule: (name: string, body: unknown) => request<any>('PUT', `/v1/schedules/${enc(name)}`, body),
  patchSchedule: (name: string, body: unknown) => request<any>('PATCH', `/v1/schedules/${enc(name)}`, body),
  triggerSchedule: (name: string) => request<any>('POST', `/v1/schedules/${enc(name)}/trigger`, {}),
  deleteSchedule: (name: string) => request<void>('DELETE', `/v1/schedules/${enc(name)}`),
  webhooks: () => request<{ webhooks: any[] }>('GET', '/v1/webhooks'),
  createWebhook: (body: unknown) => request<any>('POST', '/v1/webhooks', body),
  patchWebhook: (id: string, body: unknown) => request<any>('PATCH', `/v1/webhooks/${enc(id)}`, body),
  deleteWebhook: (id: string) => request<void>('DELETE', `/v1/webhooks/${enc(id)}`),
  deliveries: (id: string) => request<{ deliveries: any[] }>('GET', `/v1/webhooks/${enc(id)}/deliveries`),
  retryDelivery: (id: string, d: string) => request<any>('POST', `/v1/webhooks/${enc(id)}/deliveries/${enc(d)}/retry`, {}),
  testWebhook: (id: string) => request<any>('POST', `/v1/webhooks/${enc(id)}/test`, {}),
  tenants: () => request<{ tenants: any[] }>('GET', '/v1/tenants'),
  tenant: (name: string) => request<any>('GET', `/v1/tenants/${enc(name)}`),
  createTenant: (body: unknown) => request<any>('POST', '/v1/tenants', body),
  keys: (tenant: string) => request<{ keys: any[] }>('GET', `/v1/tenants/${enc(tenant)}/keys`),
  createKey: (tenant: string, body: unknown) => request<any>('POST', `/v1/tenants/${enc(tenant)}/keys`, body),
  revokeKey: (tenant: string, id: string) => request<void>('DELETE', `/v1/tenants/${enc(tenant)}/keys/${enc(id)}`),
};

/**
 * Follow an execution's history live (`GET /v1/executions/{id}/events`, Server-Sent Events)
 * from after `after`: `onEvent` gets each history event, `onEnd` the final execution. The
 * stream is read through fetch (it carries the key); on a dropped connection it reconnects
 * after a second from the last event seen. Returns a function that stops it.
 */
export function follow(id: string, after: number, onEvent: (e: HistoryEvent) => void,
  onEnd: (x: Execution) => void): () => void {
  const ctl = new AbortController();
  let last = after;
  let ended = false;
  const run = async () => {
    while (!ctl.signal.aborted && !ended) {
      try {
        const r = await fetch(`/v1/executions/${enc(id)}/events?after=${last}`,
          { headers: headers({ accept: 'text/event-stream' }), signal: ctl.signal });
        // A 4xx will not change by asking again (deleted, or the key revoked).
        if (r.status >= 400 && r.status < 500) return;
        if (!r.ok || !r.body) throw new Error(`events: ${r.status}`);
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let type = 'message';
            const data: string[] = [];
            for (const line of frame.split('\n')) {
              if (line.startsWith('event:')) type = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (!data.length) continue;
            const payload = JSON.parse(data.join('\n'));
            if (type === 'history') { last = payload.event_id; onEvent(payload); }
            else if (type === 'end') { ended = true; onEnd(payload); }
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      if (!ended && !ctl.signal.aborted) await new Promise((r) => setTimeout(r, 1000));
    }
  };
  void run();
  return () => ctl.abort();
}
