// End-to-end test of the web console in real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core), against a running durable-host. tests/console.rs starts the
// server, deploys and prepares what the scenarios need, and runs this script with:
//   CONSOLE_URL      the server (http://127.0.0.1:port)
//   ADMIN_KEY        an admin key;  READER_KEY  a reader key of the same tenant
//   HELLO_WASM       the hello component to deploy by upload
//   BIG_EXECUTION    an execution of ~10,000 history events
//   MAP_EXECUTION    a map "greetings" over three items (a step each)
//   RETRIED_EXECUTION  step "flaky" that failed twice and succeeded on its third attempt
//   LONG_EXECUTION   a ten-minute wait, to stop and redrive
//   SCREENSHOTS      the directory screenshots go to
// Prints one line of JSON with the figures measured, and exits non-zero on the first
// failed check (with what it expected and a screenshot of the page).
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const URL = env('CONSOLE_URL');
const ADMIN = env('ADMIN_KEY');
const READER = env('READER_KEY');
const HELLO = env('HELLO_WASM');
const BIG = env('BIG_EXECUTION');
const MAP = env('MAP_EXECUTION');
const RETRIED = env('RETRIED_EXECUTION');
const LONG = env('LONG_EXECUTION');
const SHOTS = env('SCREENSHOTS');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
mkdirSync(SHOTS, { recursive: true });

// The whole run is bounded: a hung browser fails the test instead of holding it.
const watchdog = setTimeout(() => { console.error('console e2e: timed out after 240 s'); process.exit(3); }, 240_000);

const figures = {};
const log = (...a) => console.error('[e2e]', ...a);
function check(cond, what) { if (!cond) throw new Error(`check failed: ${what}`); }

const profile = mkdtempSync(join(tmpdir(), 'console-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
context.setDefaultTimeout(20_000);
// Loopback only: any request elsewhere fails the run.
const outside = [];
context.on('request', (r) => { if (!r.url().startsWith(URL) && !r.url().startsWith('data:')) outside.push(r.url()); });

let page = context.pages()[0] ?? await context.newPage();
const pageErrors = [];
const watchErrors = (p) => {
  p.on('pageerror', (e) => pageErrors.push(String(e)));
  // An API's 4xx is answered in the page (the checks below provoke some); others are not.
  p.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource: the server responded with a status of 4')) pageErrors.push(m.text());
  });
};
watchErrors(page);
const shot = (name, p = page) => p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const tid = (id) => `[data-testid="${id}"]`;

async function signIn(p, key) {
  await p.fill(tid('key'), key);
  await p.click(tid('signin-submit'));
  await p.waitForSelector(tid('whoami'));
}

try {
  // --- Sign in (and the console's load time: the sign-in form shown, cold).
  let t = Date.now();
  await page.goto(`${URL}/ui/`);
  await page.waitForSelector(tid('signin'));
  figures.console_load_ms = Date.now() - t;
  await shot('01-sign-in');
  await page.fill(tid('key'), 'dh_wrong_key');
  await page.click(tid('signin-submit'));
  await page.waitForSelector('[role="alert"]');
  await signIn(page, ADMIN);
  check(await page.textContent(tid('role')) === 'admin', 'the admin key signs in as admin');
  check(await page.evaluate(() => sessionStorage.getItem('durable.key')) === ADMIN, 'the key is in sessionStorage');
  check(await page.evaluate(() => localStorage.length) === 0, 'nothing in localStorage');
  log('signed in');

  // --- Deploy hello.wasm by file upload.
  await page.click(tid('nav-functions'));
  await page.setInputFiles(tid('deploy-file'), HELLO);
  await page.fill(tid('deploy-name'), 'hello');
  await page.click(tid('deploy-submit'));
  await page.waitForSelector(tid('deploy-done'), { timeout: 60_000 });
  await page.waitForSelector(tid('fn-hello'));
  await shot('02-functions');
  log('deployed hello');

  // --- Invoke it, and watch the timeline live through its one-second wait.
  await page.click(`${tid('fn-hello')} a`);
  await page.waitForSelector(tid('settings'));
  await shot('03-function');
  // The wait lasts one second: on a loaded machine the page may first paint after it, and
  // then it has shown no live update; such a run is invoked again (at most three runs).
  for (let run = 1; ; run++) {
    await page.evaluate(() => { window.__sameDocument = true; });
    await page.click(tid('invoke'));
    await page.waitForURL(/\/ui\/executions\/[0-9A-Z]{26}$/);
    const first = await page.waitForSelector(`${tid('op')}[data-kind="Wait"], ${tid('output')}`);
    if (await first.getAttribute('data-status') === 'waiting') break;
    check(run < 3, 'the timeline showed hello waiting in one of three runs');
    log(`run ${run} of hello ended before the page showed its wait: invoking again`);
    await page.goBack();
    await page.waitForSelector(tid('invoke'));
  }
  await shot('04-execution-waiting');
  await page.waitForSelector(`${tid('op')}[data-kind="Wait"][data-status="succeeded"]`, { timeout: 30_000 });
  await page.waitForSelector(tid('output'));
  const output = await page.textContent(tid('output'));
  check(output.includes('Hello from Durable Lambda!'), `hello's output (${output})`);
  check(await page.textContent(tid('status')) === 'succeeded', 'hello succeeded');
  check(await page.evaluate(() => window.__sameDocument === true), 'the page updated live, without a reload');
  const steps = await page.$$eval(`${tid('op')}[data-kind="Step"]`, (els) => els.map((e) => e.dataset.name));
  check(JSON.stringify(steps) === JSON.stringify(['Step #1', 'Step #2']), `hello's steps (${steps})`);
  check((await page.$$(`${tid('op')}[data-kind="Activation"]`)).length === 2, 'two activations (before and after the wait)');
  await shot('05-execution-succeeded');
  await page.click(tid('tab-logs'));
  await page.waitForSelector(`${tid('logs')} .log`);
  await shot('06-execution-logs');
  log('hello ran live');
  // Fork it: a new execution, forked from this one, that runs to the same output.
  const helloId = page.url().split('/').pop();
  await page.click(tid('fork'));
  await page.click(tid('fork-submit'));
  await page.waitForURL((u) => /\/ui\/executions\/[0-9A-Z]{26}$/.test(u.pathname) && !u.pathname.endsWith(helloId));
  await page.waitForSelector(`${tid('status')}:text("succeeded")`, { timeout: 30_000 });
  check((await page.textContent('.exec-head')).includes(`forked from ${helloId.slice(-8)}`), 'the fork names its original');

  // Stop the long wait, then redrive it: the buttons follow the status.
  await page.goto(`${URL}/ui/executions/${LONG}`);
  await page.waitForSelector(`${tid('op')}[data-kind="Wait"][data-status="waiting"]`);
  check(!(await page.$(tid('redrive'))), 'no redrive while it runs');
  page.once('dialog', (d) => d.accept());
  await page.click(tid('stop'));
  await page.waitForSelector(`${tid('status')}:text("stopped")`, { timeout: 30_000 });
  await page.waitForSelector(tid('exec-error'));
  check(!(await page.$(tid('stop'))), 'no stop once stopped');
  await page.click(tid('redrive'));
  await page.waitForSelector(`${tid('status')}:text("suspended")`, { timeout: 30_000 });
  await page.waitForSelector(`${tid('op')}[data-kind="Redrive"]`);
  log('fork, stop and redrive');

  // --- approval: complete its callback from the console.
  await page.goto(`${URL}/ui/functions/approval`);
  await page.fill(tid('invoke-input'), '{"request": {"amount": 42}}');
  await page.click(tid('invoke'));
  await page.waitForURL(/\/ui\/executions\/[0-9A-Z]{26}$/);
  const approvalId = page.url().split('/').pop();
  await page.waitForSelector(tid('callback-succeed'), { timeout: 30_000 });
  await page.fill(tid('callback-result'), '{"approved": true, "by": "console"}');
  await shot('07-callback-pending');
  await page.click(tid('callback-succeed'));
  await page.waitForSelector(`${tid('status')}:text("succeeded")`, { timeout: 30_000 });
  const approvalOut = JSON.parse(await page.textContent(tid('output')));
  check(approvalOut.approval?.by === 'console' && approvalOut.request?.amount === 42, `approval's output (${JSON.stringify(approvalOut)})`);
  await shot('08-callback-succeeded');
  log('approval completed from the console');

  // --- A map's branches nest under it; a retried step shows its attempts and delays.
  await page.goto(`${URL}/ui/executions/${MAP}`);
  await page.waitForSelector(`${tid('timeline')}[data-complete="true"]`);
  const nest = await page.$$eval(tid('op'), (els) => els.filter((e) => e.dataset.kind !== 'Activation')
    .map((e) => [e.dataset.kind, e.querySelector('.tl-name').style.paddingLeft]));
  check(nest[0][0] === 'Map' && nest.filter(([k]) => k === 'MapIteration').length === 3
    && nest.filter(([k]) => k === 'Step').length === 3, `the map's rows (${JSON.stringify(nest)})`);
  const indent = (k) => new Set(nest.filter(([kind]) => kind === k).map(([, p]) => parseInt(p)));
  check([...indent('Map')][0] < [...indent('MapIteration')][0] && [...indent('MapIteration')][0] < [...indent('Step')][0],
    `branches nest under the map, steps under the branches (${JSON.stringify(nest)})`);
  await shot('09-execution-map');
  await page.goto(`${URL}/ui/executions/${RETRIED}`);
  await page.waitForSelector(`${tid('op')}[data-name="flaky"]`);
  const attempts = await page.textContent(`${tid('op')}[data-name="flaky"]`);
  check(attempts.includes('3 attempts, retry after 200 ms, 200 ms'), `the step's attempts and delays (${attempts})`);
  await page.click(`${tid('op')}[data-name="flaky"]`);
  await page.waitForSelector(tid('op-detail'));
  const detail = await page.textContent(tid('op-detail'));
  check(detail.includes('TransientError: attempt 1 failed') && detail.includes('TransientError: attempt 2 failed'), `the attempts' errors (${detail})`);
  await shot('10-execution-retries');

  // --- The other pages.
  await page.goto(`${URL}/ui/executions`);
  await page.waitForSelector(`${tid('executions')} tr[data-status="succeeded"]`);
  await shot('11-executions');
  await page.selectOption(tid('filter-status'), 'failed');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="executions"] tr[data-status]')]
    .every((r) => r.dataset.status === 'failed') && document.querySelectorAll('[data-testid="executions"] tr[data-status]').length > 0);
  await shot('12-executions-failed');
  await page.goto(`${URL}/ui/dead-letters`);
  await page.waitForSelector(tid('dl-group'));
  check((await page.textContent(tid('dl-group'))).includes('UnknownScenario'), 'the dead letter is grouped by its error type');
  // Bulk redrive of the group (its confirmation accepted): a job that redrives the one.
  page.once('dialog', (d) => d.accept());
  await page.click(tid('bulk-redrive'));
  await page.waitForSelector(`${tid('job')}:text("job succeeded: 1/1 redriven")`);
  await shot('13-dead-letters');
  await page.goto(`${URL}/ui/schedules`);
  await page.waitForSelector(`${tid('schedules')} td.mono`);
  await shot('14-schedules');
  await page.goto(`${URL}/ui/webhooks`);
  await page.waitForSelector(`${tid('webhooks')} td.mono`);
  await shot('15-webhooks');
  await page.goto(`${URL}/ui/admin`);
  await page.waitForSelector(`${tid('keys')} td.mono`);
  await shot('16-tenants-keys');
  log('pages shown');

  // --- 10,000 events: the page opens (whole history read, timeline painted) in under 2 s,
  // with only the rows in view in the DOM.
  t = Date.now();
  await page.goto(`${URL}/ui/executions/${BIG}`);
  await page.waitForSelector(`${tid('timeline')}[data-complete="true"]`);
  figures.big_open_ms = Date.now() - t;
  figures.big_first_paint_ms = await page.evaluate(() => Math.round(performance.getEntriesByName('console:timeline-painted')[0]?.startTime ?? -1));
  figures.big_history_loaded_ms = await page.evaluate(() => Math.round(performance.getEntriesByName('console:history-loaded')[0]?.startTime ?? -1));
  const events = await page.$eval(tid('tab-events'), (b) => Number(b.textContent.match(/\d+/)[0]));
  const rows = await page.$eval(tid('timeline'), (e) => Number(e.dataset.rows));
  const dom = (await page.$$(tid('op'))).length;
  figures.big_events = events; figures.big_rows = rows; figures.big_dom_rows = dom;
  check(events >= 10_000, `the big execution has 10,000 events (${events})`);
  check(dom < 100, `only the rows in view are rendered (${dom} of ${rows})`);
  check(figures.big_open_ms < 2000, `the 10,000-event execution opens in under 2 s (${figures.big_open_ms} ms)`);
  // Scrolling to the end shows the last steps, still with a handful of DOM rows.
  t = Date.now();
  await page.$eval(`${tid('timeline-rows')}`, (e) => { e.scrollTop = e.scrollHeight; });
  await page.waitForSelector(`${tid('op')}[data-op-id="${rows - 1}"]`);
  figures.big_scroll_ms = Date.now() - t;
  check((await page.$$(tid('op'))).length < 100, 'still virtualised after scrolling');
  await shot('17-execution-10k-events');
  // Finding one operation among 5,000.
  t = Date.now();
  await page.fill(tid('timeline-find'), '4321');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="op"]').length === 1);
  figures.big_find_ms = Date.now() - t;
  check(await page.getAttribute(tid('op'), 'data-op-id') === '4321', 'the operation found is op 4321');
  await page.fill(tid('timeline-find'), '');
  await page.click(tid('tab-events'));
  await page.waitForSelector(`${tid('event-rows')} .ev-row`);
  log('big execution', figures);

  // --- A reader key: no action buttons, and an action called directly is refused.
  const reader = await context.newPage();
  watchErrors(reader);
  await reader.goto(`${URL}/ui/`);
  await signIn(reader, READER);
  check(await reader.textContent(tid('role')) === 'reader', 'the reader key signs in as reader');
  for (const nav of ['nav-schedules', 'nav-webhooks', 'nav-admin']) {
    check(!(await reader.$(tid(nav))), `a reader has no ${nav}`);
  }
  await reader.goto(`${URL}/ui/functions`);
  await reader.waitForSelector(tid('fn-hello'));
  check(!(await reader.$(tid('deploy'))), 'a reader sees no deploy form');
  await reader.goto(`${URL}/ui/functions/approval`);
  await reader.waitForSelector(tid('settings'));
  check(!(await reader.$(tid('invoke'))), 'a reader sees no invoke button');
  check(!(await reader.$(tid('settings-save'))), 'a reader cannot save settings');
  await reader.goto(`${URL}/ui/executions/${approvalId}`);
  await reader.waitForSelector(tid('timeline'));
  check(!(await reader.$(tid('actions'))), 'a reader sees no stop/redrive/fork');
  await shot('18-reader-execution', reader);
  const refused = await reader.evaluate(async (id) => {
    const key = sessionStorage.getItem('durable.key');
    const out = {};
    for (const [what, path] of [['redrive', `/v1/executions/${id}/redrive`], ['fork', `/v1/executions/${id}/fork`],
      ['stop', `/v1/executions/${id}/stop`], ['invoke', '/v1/functions/approval/invoke']]) {
      const r = await fetch(path, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{}' });
      out[what] = [r.status, (await r.json()).error?.code];
    }
    return out;
  }, approvalId);
  check(Object.values(refused).every(([status, code]) => status === 403 && code === 'forbidden'),
    `a reader's direct actions are refused (${JSON.stringify(refused)})`);
  log('reader refused', refused);

  // Its key revoked meanwhile: the reader's next call lands on the sign-in form, key gone.
  const readerId = READER.split('_')[1];
  const revoked = await page.evaluate(async (id) => (await fetch(`/v1/tenants/default/keys/${id}`,
    { method: 'DELETE', headers: { authorization: `Bearer ${sessionStorage.getItem('durable.key')}` } })).status, readerId);
  check(revoked === 204, `the admin revokes the reader's key (${revoked})`);
  await reader.click(tid('nav-executions'));
  await reader.waitForSelector(tid('signin'));
  check(await reader.evaluate(() => sessionStorage.getItem('durable.key')) === null, 'a revoked key is dropped from the tab');

  check(outside.length === 0, `no request left the host (${outside.join(', ')})`);
  check(pageErrors.length === 0, `no script errors (${pageErrors.join(' | ')})`);
  console.log(JSON.stringify(figures));
} catch (e) {
  console.error(`console e2e FAILED: ${e.stack ?? e}`);
  if (pageErrors.length) console.error('page errors:', pageErrors);
  try { await shot('failure'); console.error(`screenshot: ${join(SHOTS, 'failure.png')}`); } catch {}
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}
