// Functions: the list, deploying a .wasm by file upload, one function's versions and
// settings (edit), and invoking it.
import { useState } from 'preact/hooks';
import { api, type FunctionView, type WhoAmI } from '../api';
import { may } from '../roles';
import { navigate } from '../router';
import { Act, bytes, Err, message, parseJson, Section, time, useLoad } from '../ui';

export function Functions({ me }: { me: WhoAmI }) {
  const list = useLoad(() => api.functions(), []);
  return (
    <>
      {may(me.role, 'write_functions') && <Deploy onDone={list.reload} />}
      <Section title="Functions">
        <Err text={list.error} />
        <table data-testid="functions">
          <thead><tr><th>Name</th><th>Latest</th><th>Versions</th><th>Memory</th><th>Timeout</th><th>Created</th></tr></thead>
          <tbody>
            {list.data?.functions.map((f) => (
              <tr data-testid={`fn-${f.name}`}>
                <td><a href={`/ui/functions/${encodeURIComponent(f.name)}`}>{f.name}</a></td>
                <td>v{f.latest_version}</td><td>{f.versions.length}</td>
                <td>{f.settings.memory_limit_mb} MiB</td><td>{f.settings.execution_timeout_secs} s</td>
                <td>{time(f.created_at)}</td>
              </tr>
            ))}
            {list.data && !list.data.functions.length && <tr><td colSpan={6} class="muted">No functions yet.</td></tr>}
          </tbody>
        </table>
      </Section>
    </>
  );
}

function Deploy({ onDone }: { onDone: () => void }) {
  const [name, setName] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  return (
    <Section title="Deploy a component">
      <form class="row" data-testid="deploy" onSubmit={async (e) => {
        e.preventDefault();
        if (!file) return;
        const n = name || file.name.replace(/\.wasm$/, '').replace(/_/g, '-');
        setBusy(true); setErr(null); setDone(null);
        try {
          const v = await api.deploy(n, await file.arrayBuffer());
          setDone(`${n} v${v.version} ${v.created === false ? '(same bytes as the latest)' : 'deployed'}`);
          onDone();
        } catch (x) { setErr(message(x)); }
        setBusy(false);
      }}>
        <input type="file" accept=".wasm,application/wasm" data-testid="deploy-file"
          onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0] ?? null)} />
        <input placeholder="name (default: from the file)" value={name} data-testid="deploy-name"
          onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <button class="primary" disabled={!file || busy} data-testid="deploy-submit">{busy ? 'Uploading…' : 'Deploy'}</button>
      </form>
      <Err text={err} />
      {done && <div class="ok" data-testid="deploy-done">{done}</div>}
    </Section>
  );
}

const FIELDS: [keyof FunctionView['settings'], string][] = [
  ['memory_limit_mb', 'Memory limit (MiB)'],
  ['activation_timeout_secs', 'Activation timeout (s)'],
  ['execution_timeout_secs', 'Execution timeout (s)'],
  ['retention_secs', 'Retention (s)'],
  ['max_concurrency', 'Max concurrency'],
  ['max_queued', 'Max queued'],
];

export function FunctionPage({ me, name }: { me: WhoAmI; name: string }) {
  const f = useLoad(() => api.fn(name), [name]);
  const [input, setInput] = useState('{}');
  const canWrite = may(me.role, 'write_functions');
  if (f.error) return <Err text={f.error} />;
  if (!f.data) return <div class="muted">…</div>;
  const fn = f.data;
  return (
    <>
      <h1>{fn.name} <span class="muted">v{fn.latest_version}</span></h1>
      {may(me.role, 'invoke') && (
        <Section title="Invoke">
          <textarea rows={3} value={input} data-testid="invoke-input" onInput={(e) => setInput((e.target as HTMLTextAreaElement).value)} />
          <Act label="Invoke" kind="primary" testId="invoke" run={async () => {
            const x = await api.invoke(fn.name, parseJson(input, 'input'));
            navigate(`/executions/${x.execution_id}`);
          }} />
          <p><a href={`/ui/executions?function=${encodeURIComponent(fn.name)}`}>Executions of {fn.name}</a></p>
        </Section>
      )}
      <SettingsForm fn={fn} canWrite={canWrite} onSaved={(v) => f.setData(v)} />
      <Section title="Versions">
        <table data-testid="versions">
          <thead><tr><th>Version</th><th>SHA-256</th><th>Size</th><th>Created</th></tr></thead>
          <tbody>{[...fn.versions].reverse().map((v) => (
            <tr><td>v{v.version}</td><td class="mono">{v.sha256.slice(0, 16)}…</td><td>{bytes(v.size_bytes)}</td><td>{time(v.created_at)}</td></tr>
          ))}</tbody>
        </table>
      </Section>
      {canWrite && (
        <Section title="Danger zone">
          <Act label="Delete function" kind="danger" confirm={`Delete ${fn.name} and its versions?`}
            run={() => api.deleteFn(fn.name)} onDone={() => navigate('/functions')} />
        </Section>
      )}
    </>
  );
}

function SettingsForm({ fn, canWrite, onSaved }: { fn: FunctionView; canWrite: boolean; onSaved: (f: FunctionView) => void }) {
  const init = () => Object.fromEntries(FIELDS.map(([k]) => [k, fn.settings[k] == null ? '' : String(fn.settings[k])]));
  const [vals, setVals] = useState<Record<string, string>>(init);
  const [err, setErr] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  return (
    <Section title="Settings">
      <form class="grid" data-testid="settings" onSubmit={async (e) => {
        e.preventDefault();
        setErr(null); setSaved(false);
        const patch: Record<string, unknown> = {};
        for (const [k] of FIELDS) {
          const before = fn.settings[k] == null ? '' : String(fn.settings[k]);
          if (vals[k] === before) continue;
          patch[k] = vals[k] === '' ? null : Number(vals[k]);
        }
        try { onSaved(await api.patchFn(fn.name, patch)); setSaved(true); } catch (x) { setErr(message(x)); }
      }}>
        {FIELDS.map(([k, label]) => (
          <label>{label}
            <input value={vals[k]} disabled={!canWrite} data-testid={`setting-${k}`} placeholder="none"
              onInput={(e) => setVals({ ...vals, [k]: (e.target as HTMLInputElement).value })} />
          </label>
        ))}
        {canWrite && <button class="primary" data-testid="settings-save">Save</button>}
      </form>
      <Err text={err} />
      {saved && <div class="ok" data-testid="settings-saved">Saved.</div>}
    </Section>
  );
}
