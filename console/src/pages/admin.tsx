// Tenants, keys and quota usage. An admin key sees every tenant (create one, open one);
// an owner key sees its own tenant's quotas, usage and keys.
import { useState } from 'preact/hooks';
import { api, type WhoAmI } from '../api';
import { Act, Err, message, Section, time, useLoad } from '../ui';

const ROLES = ['owner', 'developer', 'invoker', 'callback', 'reader'];

export function Admin({ me }: { me: WhoAmI }) {
  const admin = me.role === 'admin';
  const [open, setOpen] = useState<string>(me.tenant);
  const tenants = useLoad(() => (admin ? api.tenants() : api.tenant(me.tenant).then((t) => ({ tenants: [t] }))), [admin]);
  return (
    <>
      {admin && <NewTenant onDone={tenants.reload} />}
      <Section title={admin ? 'Tenants' : 'Tenant'}>
        <Err text={tenants.error} />
        <table data-testid="tenants">
          <thead><tr><th>Tenant</th><th>Created</th><th>Functions</th><th>Stored</th><th>Active executions</th><th>Activations now</th></tr></thead>
          <tbody>{tenants.data?.tenants.map((t) => (
            <tr class={open === t.name ? 'sel' : ''}>
              <td><a href="#" onClick={(e) => { e.preventDefault(); setOpen(t.name); }}>{t.name}</a></td>
              <td>{time(t.created_at)}</td>
              <td>{use(t.usage.max_functions, t.quotas.max_functions)}</td>
              <td>{use(t.usage.max_stored_bytes, t.quotas.max_stored_bytes, true)}</td>
              <td>{use(t.usage.max_active_executions, t.quotas.max_active_executions)}</td>
              <td>{use(t.usage.max_concurrent_activations, t.quotas.max_concurrent_activations)}</td>
            </tr>
          ))}</tbody>
        </table>
        {tenants.data?.tenants.filter((t) => t.name === open).map((t) => (
          <details><summary>Quotas of {t.name}</summary><pre class="json">{JSON.stringify(t.quotas, null, 2)}</pre></details>
        ))}
      </Section>
      <Keys tenant={open} />
    </>
  );
}

function use(n: number, max: number | null | undefined, bytes = false) {
  const f = (v: number) => (bytes ? `${(v / 1024 / 1024).toFixed(1)} MiB` : String(v));
  const pct = max ? Math.min(100, (n / max) * 100) : 0;
  return (
    <span class="usage" title={max ? `${pct.toFixed(0)}%` : 'no limit'}>
      {f(n)}{max != null && ` / ${f(max)}`}
      {max ? <span class="meter"><span style={{ width: `${pct}%` }} /></span> : null}
    </span>
  );
}

function Keys({ tenant }: { tenant: string }) {
  const keys = useLoad(() => api.keys(tenant), [tenant]);
  const [role, setRole] = useState('reader');
  const [name, setName] = useState('');
  const [made, setMade] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  return (
    <Section title={`Keys of ${tenant}`}>
      <form class="row" onSubmit={async (e) => {
        e.preventDefault(); setErr(null); setMade(null);
        try { const k = await api.createKey(tenant, { role, name: name || `${role} key` }); setMade(k.key); keys.reload(); }
        catch (x) { setErr(message(x)); }
      }}>
        <select value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value)}>{ROLES.map((r) => <option value={r}>{r}</option>)}</select>
        <input placeholder="name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <button class="primary">Create key</button>
      </form>
      <Err text={err} />
      {made && <div class="ok">New key (shown once): <code class="mono" data-testid="new-key">{made}</code></div>}
      <Err text={keys.error} />
      <table data-testid="keys">
        <thead><tr><th>Key id</th><th>Role</th><th>Name</th><th>Created</th><th>Expires</th><th /></tr></thead>
        <tbody>{keys.data?.keys.map((k) => (
          <tr><td class="mono">{k.key_id}</td><td>{k.role}</td><td>{k.name}</td><td>{time(k.created_at)}</td><td>{time(k.expires_at) || 'never'}</td>
            <td><Act label="Revoke" kind="danger" confirm={`Revoke key ${k.key_id}?`} run={() => api.revokeKey(tenant, k.key_id)} onDone={keys.reload} /></td></tr>
        ))}</tbody>
      </table>
    </Section>
  );
}

function NewTenant({ onDone }: { onDone: () => void }) {
  const [name, setName] = useState('');
  const [err, setErr] = useState<string | null>(null);
  return (
    <Section title="New tenant">
      <form class="row" onSubmit={async (e) => {
        e.preventDefault(); setErr(null);
        try { await api.createTenant({ name }); setName(''); onDone(); } catch (x) { setErr(message(x)); }
      }}>
        <input placeholder="name (a-z, 0-9, -)" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <button class="primary">Create</button>
      </form>
      <Err text={err} />
    </Section>
  );
}
