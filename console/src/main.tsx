// The console's shell: sign-in, navigation, and the page for the current path.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { api, session, type WhoAmI } from './api';
import { may } from './roles';
import { navigate, onLinkClick, useLocation } from './router';
import { message } from './ui';
import { Functions, FunctionPage } from './pages/functions';
import { Executions } from './pages/executions';
import { ExecutionPage } from './pages/execution';
import { DeadLetters } from './pages/deadletters';
import { Schedules } from './pages/schedules';
import { Webhooks } from './pages/webhooks';
import { Admin } from './pages/admin';

function SignIn({ onIn }: { onIn: (me: WhoAmI) => void }) {
  const [key, setKey] = useState('');
  const [err, setErr] = useState<string | null>(null);
  return (
    <form class="signin card" data-testid="signin" onSubmit={async (e) => {
      e.preventDefault();
      setErr(null);
      try {
        const me = await api.whoami(key.trim());
        session.signIn(key.trim());
        onIn(me);
      } catch (x) { setErr(message(x)); }
    }}>
      <h1>durable-host</h1>
      <p class="muted">Sign in with an API key. It is kept in this tab only (sessionStorage) and sent to this server only.</p>
      <input type="password" name="key" placeholder="dh_…" autocomplete="off" value={key}
        data-testid="key" onInput={(e) => setKey((e.target as HTMLInputElement).value)} />
      <button class="primary" type="submit" data-testid="signin-submit">Sign in</button>
      {err && <div class="error" role="alert">{err}</div>}
    </form>
  );
}

function App() {
  const [me, setMe] = useState<WhoAmI | null>(null);
  const [checking, setChecking] = useState(!!session.key());
  const loc = useLocation();
  useEffect(() => {
    const out = () => setMe(null);
    addEventListener('durable:signed-out', out);
    return () => removeEventListener('durable:signed-out', out);
  }, []);
  useEffect(() => {
    if (!session.key()) return;
    api.whoami().then(setMe).catch(() => session.signOut()).finally(() => setChecking(false));
  }, []);
  if (checking) return <div class="muted pad">…</div>;
  if (!me) return <SignIn onIn={(m) => { setMe(m); }} />;
  const role = me.role;
  const nav: [string, string, boolean][] = [
    ['/executions', 'Executions', may(role, 'read_executions')],
    ['/functions', 'Functions', may(role, 'read_functions')],
    ['/dead-letters', 'Dead letters', may(role, 'read_executions')],
    ['/schedules', 'Schedules', may(role, 'manage_schedules')],
    ['/webhooks', 'Webhooks', may(role, 'manage_webhooks')],
    ['/admin', role === 'admin' ? 'Tenants & keys' : 'Keys', may(role, 'manage_keys')],
  ];
  const p = loc.path;
  const seg = p.split('/').filter(Boolean).map(decodeURIComponent);
  let page;
  if (seg[0] === 'functions' && seg[1]) page = <FunctionPage me={me} name={seg[1]} />;
  else if (seg[0] === 'functions') page = <Functions me={me} />;
  else if (seg[0] === 'executions' && seg[1]) page = <ExecutionPage me={me} id={seg[1]} key={seg[1]} />;
  else if (seg[0] === 'dead-letters') page = <DeadLetters me={me} />;
  else if (seg[0] === 'schedules') page = <Schedules me={me} />;
  else if (seg[0] === 'webhooks') page = <Webhooks me={me} />;
  else if (seg[0] === 'admin') page = <Admin me={me} />;
  else if (seg[0] === 'executions' || !seg[0]) page = <Executions me={me} query={loc.query} />;
  else page = <div class="card">No such page. <a href="/ui/executions">Executions</a></div>;
  return (
    <div class="shell" onClick={onLinkClick as any}>
      <nav>
        <a class="brand" href="/ui/executions">durable-host</a>
        {nav.filter(([, , ok]) => ok).map(([href, label]) => (
          <a href={`/ui${href}`} class={p.startsWith(href) || (href === '/executions' && p === '/') ? 'on' : ''}
            data-testid={`nav-${href.slice(1)}`}>{label}</a>
        ))}
        <span class="spacer" />
        {role === 'admin' && <TenantPicker me={me} />}
        <span class="who" data-testid="whoami">{me.tenant} · <b data-testid="role">{role}</b></span>
        <button data-testid="signout" onClick={() => { session.signOut(); setMe(null); navigate('/', true); }}>Sign out</button>
      </nav>
      <main>{page}</main>
    </div>
  );
}

/** An admin key acts in any tenant (the Durable-Tenant header). */
function TenantPicker({ me }: { me: WhoAmI }) {
  const [tenants, setTenants] = useState<string[]>([]);
  useEffect(() => { api.tenants().then((t) => setTenants(t.tenants.map((x) => x.name))).catch(() => {}); }, []);
  const current = session.tenant() ?? me.tenant;
  return (
    <select data-testid="tenant-picker" value={current} title="Tenant to act in"
      onChange={(e) => {
        const t = (e.target as HTMLSelectElement).value;
        session.act(t === me.tenant ? null : t);
        location.reload();
      }}>
      {[...new Set([me.tenant, ...tenants, current])].map((t) => <option value={t}>{t}</option>)}
    </select>
  );
}

render(<App />, document.getElementById('app')!);
