// Unit tests of the timeline fold (src/timeline.ts) on synthetic histories, table-driven:
// each case is a history and the rows it must give (kind, id, depth, status, attempts).
// Run by `npm test` and by tests/console.rs; TypeScript is transpiled in memory with the
// compiler the build uses, so the test runs the same source as the console.
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ts from 'typescript';

const src = readFileSync(new URL('../src/timeline.ts', import.meta.url), 'utf8');
const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
const { build, duration } = await import(`data:text/javascript,${encodeURIComponent(js)}`);

let seq = 0;
const t = (ms) => new Date(Date.UTC(2026, 0, 1) + ms).toISOString();
/** An event at `ms` milliseconds: [type, id?, parent?, name?, details?, sub_type?]. */
const ev = (ms, event_type, id = null, parent_id = null, name = null, details = {}, sub_type = null) =>
  ({ event_id: ++seq, event_type, id, parent_id, name, details, sub_type, timestamp: t(ms) });
const act = (from, to, error) => ev(to, 'InvocationCompleted', null, null, null, { start: t(from), end: t(to), ...(error ? { error } : {}) });
const err = (n) => ({ error_type: 'E', error_message: `attempt ${n}` });
const shape = (rows) => rows.map((r) => [r.kind, r.id, r.depth, r.status, r.attempts.length]);

const CASES = [
  {
    name: 'a step, a wait across two activations, a step: each activation before what it ran',
    events: () => [
      ev(0, 'ExecutionStarted'), ev(1, 'StepStarted', '1', null, 'a', { attempt: 1 }, 'Step'),
      ev(2, 'StepSucceeded', '1', null, 'a', { attempt: 1, result: 1 }, 'Step'),
      ev(3, 'WaitStarted', '2', null, null, { duration_ms: 1000, scheduled_end: t(1003) }, 'Wait'), act(0, 4),
      ev(1003, 'WaitSucceeded', '2', null, null, { duration_ms: 1000 }, 'Wait'),
      ev(1004, 'StepStarted', '3', null, 'b', { attempt: 1 }, 'Step'),
      ev(1005, 'StepSucceeded', '3', null, 'b', { attempt: 1, result: 2 }, 'Step'), act(1002, 1006),
      ev(1006, 'ExecutionSucceeded', null, null, null, { result: 2 }),
    ],
    rows: [['Activation', null, 0, 'succeeded', 0], ['Step', '1', 0, 'succeeded', 1], ['Wait', '2', 0, 'succeeded', 0],
      ['Activation', null, 0, 'succeeded', 0], ['Step', '3', 0, 'succeeded', 1]],
    check: (m) => { assert.equal(m.activations, 2); assert.equal(m.end - m.start, 1006); assert.equal(m.rows[2].end - m.rows[2].start, 1000); },
  },
  {
    name: 'retries: each attempt with its error and the delay before the next',
    events: () => [
      ev(0, 'ExecutionStarted'), ev(1, 'StepStarted', '1', null, 'flaky', { attempt: 1 }, 'Step'),
      ev(2, 'StepFailed', '1', null, 'flaky', { attempt: 1, error: err(1), next_attempt_delay_ms: 100 }, 'Step'), act(0, 3),
      ev(103, 'StepStarted', '1', null, 'flaky', { attempt: 2 }, 'Step'),
      ev(104, 'StepFailed', '1', null, 'flaky', { attempt: 2, error: err(2) }, 'Step'), act(102, 105),
      ev(105, 'ExecutionFailed', null, null, null, { error: err(2) }),
    ],
    rows: [['Activation', null, 0, 'succeeded', 0], ['Step', '1', 0, 'failed', 2], ['Activation', null, 0, 'succeeded', 0]],
    check: (m) => {
      const a = m.rows[1].attempts;
      assert.deepEqual(a.map((x) => [x.n, x.error?.error_message, x.retryDelayMs]), [[1, 'attempt 1', 100], [2, 'attempt 2', undefined]]);
      assert.equal(m.rows[1].error.error_message, 'attempt 2');
    },
  },
  {
    name: 'a wait-for-callback: its callback and submitter under it, the callback pending until answered',
    events: () => [
      ev(0, 'ExecutionStarted'), ev(1, 'ContextStarted', '1', null, 'approval', {}, 'WaitForCallback'),
      ev(2, 'CallbackStarted', '1.1', '1', null, { callback_id: 'cb_1' }, 'Callback'),
      ev(3, 'StepStarted', '1.2', '1', 'submitter', { attempt: 1 }, 'Step'),
      ev(4, 'StepSucceeded', '1.2', '1', 'submitter', { attempt: 1, result: null }, 'Step'), act(0, 5),
    ],
    rows: [['Activation', null, 0, 'succeeded', 0], ['WaitForCallback', '1', 0, 'running', 0],
      ['Callback', '1.1', 1, 'pending', 0], ['Step', '1.2', 1, 'succeeded', 1]],
    check: (m) => assert.deepEqual(m.pendingCallbacks.map((r) => [r.callbackId, r.name]), [['cb_1', 'approval']]),
  },
  {
    name: 'a child context resumed in a later activation keeps its operations under it',
    events: () => [
      ev(0, 'ExecutionStarted'), ev(1, 'ContextStarted', '1', null, null, {}, 'RunInChildContext'),
      ev(2, 'WaitStarted', '1.1', '1', null, { duration_ms: 10, scheduled_end: t(12) }, 'Wait'), act(0, 3),
      ev(12, 'WaitSucceeded', '1.1', '1', null, { duration_ms: 10 }, 'Wait'),
      ev(13, 'StepStarted', '1.2', '1', 'inner', { attempt: 1 }, 'Step'),
      ev(14, 'StepSucceeded', '1.2', '1', 'inner', { attempt: 1, result: 1 }, 'Step'),
      ev(15, 'ContextSucceeded', '1', null, null, { result: 1 }, 'RunInChildContext'),
      ev(16, 'StepStarted', '2', null, 'after', { attempt: 1 }, 'Step'), act(11, 17),
    ],
    rows: [['Activation', null, 0, 'succeeded', 0], ['RunInChildContext', '1', 0, 'succeeded', 0],
      ['Wait', '1.1', 1, 'succeeded', 0], ['Step', '1.2', 1, 'succeeded', 1],
      ['Activation', null, 0, 'succeeded', 0], ['Step', '2', 0, 'running', 1]],
  },
  {
    name: 'a running activation, a chained invoke with its callee, a wait-for-condition still polling',
    events: () => [
      ev(0, 'ExecutionStarted'), ev(1, 'ChainedInvokeStarted', '1', null, 'pay', { function_name: 'payment', durable_execution_id: 'X1' }, 'ChainedInvoke'),
      ev(2, 'ChainedInvokeSucceeded', '1', null, 'pay', { result: 'ok' }, 'ChainedInvoke'),
      ev(3, 'StepStarted', '2', null, 'poll', { attempt: 1 }, 'WaitForCondition'),
      ev(4, 'StepSucceeded', '2', null, 'poll', { attempt: 1, result: 0, next_attempt_delay_ms: 50 }, 'WaitForCondition'),
    ],
    rows: [['Activation', null, 0, 'running', 0], ['ChainedInvoke', '1', 0, 'succeeded', 0], ['WaitForCondition', '2', 0, 'retrying', 1]],
    check: (m) => { assert.equal(m.rows[1].callee, 'X1'); assert.equal(m.rows[2].attempts[0].retryDelayMs, 50); },
  },
  {
    name: 'a redrive: its row, then the activations after it',
    events: () => [
      ev(0, 'ExecutionStarted'), ev(1, 'StepStarted', '1', null, null, { attempt: 1 }, 'Step'),
      ev(2, 'StepFailed', '1', null, null, { attempt: 1, error: err(1) }, 'Step'), act(0, 3, err(1)),
      ev(3, 'ExecutionFailed', null, null, null, { error: err(1) }),
      ev(50, 'ExecutionRedriven', null, null, null, { redrive_count: 1 }),
      ev(51, 'StepStarted', '1', null, null, { attempt: 1 }, 'Step'), act(50, 52),
    ],
    rows: [['Activation', null, 0, 'failed', 0], ['Step', '1', 0, 'running', 2], ['Redrive', null, 0, 'succeeded', 0], ['Activation', null, 0, 'succeeded', 0]],
    check: (m) => assert.equal(m.end, undefined),
  },
];

for (const c of CASES) {
  test(c.name, () => {
    const m = build(c.events());
    assert.deepEqual(shape(m.rows), c.rows);
    c.check?.(m);
  });
}

test('10,000 events fold in well under a frame budget per thousand', () => {
  const events = [ev(0, 'ExecutionStarted')];
  for (let i = 1; i <= 5000; i++) {
    events.push(ev(i, 'StepStarted', String(i), null, null, { attempt: 1 }, 'Step'));
    events.push(ev(i, 'StepSucceeded', String(i), null, null, { attempt: 1, result: i }, 'Step'));
  }
  const started = performance.now();
  const m = build(events);
  const took = performance.now() - started;
  assert.equal(m.rows.length, 5001);
  assert.ok(took < 200, `${took} ms`);
});

test('durations read at a glance', () => {
  const cases = [[0, '0 ms'], [999, '999 ms'], [1000, '1.00 s'], [12_345, '12.3 s'], [61_000, '1m 1s'], [3_723_000, '1h 2m'], [undefined, '']];
  for (const [ms, text] of cases) assert.equal(duration(ms), text, String(ms));
});
