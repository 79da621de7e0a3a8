// Webhooks: the list (enable, disable, test, delete), a form for a new one (its secret is
// shown once), and one webhook's deliveries with retry.
import { useState } from 'preact/hooks';
import { api, type WhoAmI } from '../api';
import { Act, Err, message, Section, time, useLoad } from '../ui';

const EVENTS = ['execution.succeeded', 'execution.failed', 'execution.timed_out', 'execution.stopped', 'execution.redriven'];

export function Webhooks(_: { me: WhoAmI }) {
  const list = useLoad(() => api.webhooks(), []);
  const [open, setOpen] = useState<string | null>(null);
  return (
    <>
      <NewWebhook onDone={list.reload} />
      <Section title="Webhooks">
        <Err text={list.error} />
        <table data-testid="webhooks">
          <thead><tr><th>URL</th><th>Events</th><th>Functions</th><th>Format</th><th>State</th><th /></tr></thead>
          <tbody>
            {list.data?.webhooks.map((w) => (
              <>
                <tr>
                  <td class="mono"><a href="#" onClick={(e) => { e.preventDefault(); setOpen(open === w.id ? null : w.id); }}>{w.url}</a></td>
                  <td>{w.events.join(', ')}</td><td>{w.functions?.join(', ') ?? 'all'}</td><td>{w.format}</td>
                  <td>{w.enabled ? 'enabled' : `disabled${w.disabled_reason ? `: ${w.disabled_reason}` : ''}`}</td>
                  <td>
                    <Act label={w.enabled ? 'Disable' : 'Enable'} run={() => api.patchWebhook(w.id, { enabled: !w.enabled })} onDone={list.reload} />
                    <Act label="Test" run={() => api.testWebhook(w.id)} onDone={() => setOpen(w.id)} />
                    <Act label="Delete" kind="danger" confirm="Delete this webhook?" run={() => api.deleteWebhook(w.id)} onDone={list.reload} />
                  </td>
                </tr>
                {open === w.id && <tr><td colSpan={6}><Deliveries id={w.id} /></td></tr>}
              </>
            ))}
            {list.data && !list.data.webhooks.length && <tr><td colSpan={6} class="muted">No webhooks.</td></tr>}
          </tbody>
        </table>
      </Section>
    </>
  );
}

function Deliveries({ id }: { id: string }) {
  const d = useLoad(() => api.deliveries(id), [id]);
  return (
    <div>
      <Err text={d.error} />
      <button onClick={d.reload}>Refresh</button>
      <table class="small" data-testid="deliveries">
        <thead><tr><th>Event</th><th>Execution</th><th>Status</th><th>Attempts</th><th>Last answer</th><th>Next attempt</th><th>Delivered</th><th /></tr></thead>
        <tbody>{d.data?.deliveries.map((x) => (
          <tr>
            <td>{x.event}</td><td>{x.execution_id && <a href={`/ui/executions/${x.execution_id}`}>{x.execution_id.slice(-8)}</a>}</td>
            <td>{x.status}</td><td>{x.attempts}</td><td>{x.last_status_code ?? ''} {x.last_error ?? ''}</td>
            <td>{time(x.next_attempt_at)}</td><td>{time(x.delivered_at)}</td>
            <td><Act label="Retry" run={() => api.retryDelivery(id, x.id)} onDone={d.reload} /></td>
          </tr>
        ))}</tbody>
      </table>
    </div>
  );
}

function NewWebhook({ onDone }: { onDone: () => void }) {
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState<string[]>(['execution.failed']);
  const [fns, setFns] = useState('');
  const [format, setFormat] = useState('standard');
  const [secret, setSecret] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  return (
    <Section title="New webhook">
      <form class="row" onSubmit={async (e) => {
        e.preventDefault(); setErr(null); setSecret(null);
        try {
          const body: Record<string, unknown> = { url, events, format };
          if (fns.trim()) body.functions = fns.split(',').map((s) => s.trim()).filter(Boolean);
          const r = await api.createWebhook(body);
          setSecret(r.secret); onDone();
        } catch (x) { setErr(message(x)); }
      }}>
        <input placeholder="https://…" value={url} onInput={(e) => setUrl((e.target as HTMLInputElement).value)} />
        {EVENTS.map((ev) => (
          <label class="inline"><input type="checkbox" checked={events.includes(ev)}
            onChange={(e) => setEvents((e.target as HTMLInputElement).checked ? [...events, ev] : events.filter((x) => x !== ev))} />{ev.replace('execution.', '')}</label>
        ))}
        <input placeholder="functions (comma-separated; all)" value={fns} onInput={(e) => setFns((e.target as HTMLInputElement).value)} />
        <select value={format} onChange={(e) => setFormat((e.target as HTMLSelectElement).value)}>
          <option value="standard">standard</option><option value="slack">slack</option>
        </select>
        <button class="primary">Create</button>
      </form>
      <Err text={err} />
      {secret && <div class="ok">Signing secret (shown once): <code class="mono">{secret}</code></div>}
    </Section>
  );
}
