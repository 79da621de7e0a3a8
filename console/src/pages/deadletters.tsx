// Dead letters: failed and timed-out executions grouped by function, status and error
// type, each group with a bulk redrive (a job of the API, POST /v1/executions/redrive)
// whose progress is shown until it is done.
import { useState } from 'preact/hooks';
import { api, type Execution, type WhoAmI } from '../api';
import { may } from '../roles';
import { Act, Err, Section, useLoad } from '../ui';
import { ExecTable } from './executions';

interface Group { function: string; status: string; error_type: string; items: Execution[] }

async function load(): Promise<Group[]> {
  const groups = new Map<string, Group>();
  for (const status of ['failed', 'timed_out']) {
    let cursor: string | null = null;
    let pages = 0;
    do {
      const p = await api.executions({ status, limit: 1000, cursor });
      for (const x of p.executions) {
        const et = x.error?.error_type ?? '';
        const k = `${x.function}\u0000${status}\u0000${et}`;
        let g = groups.get(k);
        if (!g) groups.set(k, (g = { function: x.function, status, error_type: et, items: [] }));
        g.items.push(x);
      }
      cursor = p.next_cursor;
    } while (cursor && ++pages < 10);
  }
  return [...groups.values()].sort((a, b) => b.items.length - a.items.length);
}

export function DeadLetters({ me }: { me: WhoAmI }) {
  const groups = useLoad(load, []);
  const [open, setOpen] = useState<string | null>(null);
  const [jobs, setJobs] = useState<Record<string, any>>({});
  const control = may(me.role, 'control_executions');
  const watch = (k: string, job: any) => {
    setJobs((j) => ({ ...j, [k]: job }));
    if (job.status === 'running') setTimeout(() => api.job(job.job_id).then((n) => watch(k, n)).catch(() => {}), 500);
    else groups.reload();
  };
  return (
    <Section title="Dead letters" actions={<button onClick={groups.reload}>Refresh</button>}>
      <Err text={groups.error} />
      <table data-testid="dead-letters">
        <thead><tr><th>Function</th><th>Status</th><th>Error type</th><th>Count</th><th /></tr></thead>
        <tbody>
          {groups.data?.map((g) => {
            const k = `${g.function}/${g.status}/${g.error_type}`;
            const job = jobs[k];
            return (
              <>
                <tr data-testid="dl-group">
                  <td>{g.function}</td><td>{g.status}</td><td class="err-type">{g.error_type || '—'}</td><td>{g.items.length}</td>
                  <td>
                    <button onClick={() => setOpen(open === k ? null : k)}>{open === k ? 'Hide' : 'Show'}</button>
                    {control && <Act label={`Redrive ${g.items.length}`} testId="bulk-redrive"
                      confirm={`Redrive every ${g.status} execution of ${g.function}${g.error_type ? ` with ${g.error_type}` : ''}?`}
                      run={() => api.bulkRedrive({ function: g.function, status: g.status, ...(g.error_type ? { error_type: g.error_type } : {}) })}
                      onDone={(j) => watch(k, j)} />}
                    {job && <span class="muted" data-testid="job">job {job.status}: {job.done}/{job.matched} redriven{job.failed ? `, ${job.failed} failed` : ''}</span>}
                  </td>
                </tr>
                {open === k && <tr><td colSpan={5}><ExecTable rows={g.items.slice(0, 200)} /></td></tr>}
              </>
            );
          })}
          {groups.data && !groups.data.length && <tr><td colSpan={5} class="muted">No failed or timed-out executions.</td></tr>}
        </tbody>
      </table>
    </Section>
  );
}
