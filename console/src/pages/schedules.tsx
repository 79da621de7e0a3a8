// Schedules: the list (pause, resume, trigger, delete), a form for a new one, and one
// schedule's next fire times and recent firings.
import { useState } from 'preact/hooks';
import { api, type WhoAmI } from '../api';
import { Act, Err, Json, message, parseJson, Section, time, useLoad } from '../ui';

export function Schedules(_: { me: WhoAmI }) {
  const list = useLoad(() => api.schedules(), []);
  const [open, setOpen] = useState<string | null>(null);
  return (
    <>
      <NewSchedule onDone={list.reload} />
      <Section title="Schedules">
        <Err text={list.error} />
        <table data-testid="schedules">
          <thead><tr><th>Name</th><th>Function</th><th>Cron</th><th>Time zone</th><th>Next</th><th>State</th><th /></tr></thead>
          <tbody>
            {list.data?.schedules.map((s) => (
              <>
                <tr>
                  <td><a href="#" onClick={(e) => { e.preventDefault(); setOpen(open === s.name ? null : s.name); }}>{s.name}</a></td>
                  <td>{s.function}</td><td class="mono">{s.cron}</td><td>{s.timezone}</td><td>{time(s.next_fire_at)}</td>
                  <td>{s.paused ? 'paused' : 'active'}{s.last_error && <span class="error inline">{s.last_error}</span>}</td>
                  <td>
                    <Act label={s.paused ? 'Resume' : 'Pause'} run={() => api.patchSchedule(s.name, { paused: !s.paused })} onDone={list.reload} />
                    <Act label="Trigger" run={() => api.triggerSchedule(s.name)} onDone={list.reload} />
                    <Act label="Delete" kind="danger" confirm={`Delete schedule ${s.name}?`} run={() => api.deleteSchedule(s.name)} onDone={list.reload} />
                  </td>
                </tr>
                {open === s.name && <tr><td colSpan={7}><ScheduleDetail name={s.name} /></td></tr>}
              </>
            ))}
            {list.data && !list.data.schedules.length && <tr><td colSpan={7} class="muted">No schedules.</td></tr>}
          </tbody>
        </table>
      </Section>
    </>
  );
}

function ScheduleDetail({ name }: { name: string }) {
  const d = useLoad(() => api.schedule(name), [name]);
  if (d.error) return <Err text={d.error} />;
  if (!d.data) return <span class="muted">…</span>;
  return (
    <div class="cols">
      <div><h4>Next fire times</h4><ul>{d.data.next_fire_times.map((t: string) => <li>{time(t)}</li>)}</ul><h4>Input</h4><Json value={d.data.schedule.input} /></div>
      <div><h4>Recent firings</h4>
        <table class="small"><tbody>{d.data.firings.map((f: any) => (
          <tr><td>{time(f.fire_time)}</td><td>{f.result}</td><td>{f.execution_id && <a href={`/ui/executions/${f.execution_id}`}>{f.execution_id.slice(-8)}</a>}</td><td>{f.manual ? 'manual' : ''}{f.missed ? 'missed' : ''}</td><td class="muted">{f.note ?? ''}</td></tr>
        ))}</tbody></table>
      </div>
    </div>
  );
}

function NewSchedule({ onDone }: { onDone: () => void }) {
  const [v, setV] = useState({ name: '', function: '', cron: '0 * * * *', timezone: 'UTC', input: '{}', overlap: 'skip', catch_up: 'latest' });
  const [err, setErr] = useState<string | null>(null);
  const f = (k: keyof typeof v) => (e: Event) => setV({ ...v, [k]: (e.target as HTMLInputElement).value });
  return (
    <Section title="New schedule">
      <form class="row" onSubmit={async (e) => {
        e.preventDefault(); setErr(null);
        try {
          await api.putSchedule(v.name, { function: v.function, cron: v.cron, timezone: v.timezone, input: parseJson(v.input, 'input'), overlap: v.overlap, catch_up: v.catch_up });
          onDone();
        } catch (x) { setErr(message(x)); }
      }}>
        <input placeholder="name" value={v.name} onInput={f('name')} />
        <input placeholder="function" value={v.function} onInput={f('function')} />
        <input placeholder="cron" value={v.cron} onInput={f('cron')} class="mono" />
        <input placeholder="time zone" value={v.timezone} onInput={f('timezone')} />
        <input placeholder="input JSON" value={v.input} onInput={f('input')} />
        <select value={v.overlap} onChange={f('overlap')} title="overlap">
          {['skip', 'allow', 'buffer_one'].map((o) => <option value={o}>overlap: {o}</option>)}
        </select>
        <select value={v.catch_up} onChange={f('catch_up')} title="catch up">
          {['none', 'latest', 'all'].map((o) => <option value={o}>catch up: {o}</option>)}
        </select>
        <button class="primary">Create</button>
      </form>
      <Err text={err} />
    </Section>
  );
}
