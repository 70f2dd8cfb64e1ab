// The dashboard tour in real headless Chromium against a real `hearth serve`: a simulated
// GitHub job runs in a QEMU VM with the runner stand-in while the page shows its stages and
// follows its log. test/web/dashboard.test.ts runs it (screenshots to a temporary folder it
// deletes); `npm run screenshots` (scripts/screenshots.ts) runs it to write docs/screenshots/.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WRONG_TOKEN_MESSAGE } from '../../src/server/dashboard.ts';
import { OWNED_LABELS, REPO, SECRETS, type ServeHarness } from './serve-host.ts';

const CHROMIUM = process.env.HEARTH_CHROMIUM ?? '/usr/bin/chromium';
/** Long enough to watch the job run and its log move before it ends: start the harness with `jobDurationMs: TOUR_JOB_MS`. */
export const TOUR_JOB_MS = 20_000;
/** The screenshots the tour writes, in the order it takes them. */
export const TOUR_SCREENSHOTS = ['jobs.png', 'hosts.png', 'job-detail.png', 'insights.png'];

/** Polls `probe(arg)` in the page until it is truthy; on timeout, says what the page showed. */
async function until(page: Page, what: string, probe: (arg: string) => unknown, arg: string, timeoutMs: number): Promise<void> {
  try {
    await page.waitForFunction(probe, arg, { timeout: timeoutMs, polling: 200 });
  } catch (error) {
    const state = await page
      .evaluate(
        () =>
          `page=${document.body.dataset.page} hash=${location.hash} banner=${document.getElementById('banner')?.textContent ?? ''}\n${document.getElementById('main')?.innerText.slice(0, 1500) ?? ''}`,
      )
      .catch((error: unknown) => `the page could not be read: ${(error as Error).message}`);
    throw new Error(`timed out waiting for ${what}: ${(error as Error).message.split('\n')[0]}\n${state}`, { cause: error });
  }
}

export function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    assert.fail(
      `Chromium is not installed at ${CHROMIUM}: the dashboard test drives Debian's chromium. Install it as root with \`apt-get install -y chromium\` (or run \`npm test\` as root: scripts/bootstrap.sh installs it), or point HEARTH_CHROMIUM at a Chromium binary.`,
    );
  }
  // As root, Chromium refuses to start with its sandbox on.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
}

/**
 * Logs in, watches a job run, follows its log, opens Insights and VMs & hosts, logs out,
 * asserting what each page shows and writing TOUR_SCREENSHOTS into `shots`. Script errors and
 * Content-Security-Policy violations seen on the way are pushed onto `problems`.
 */
export async function dashboardTour(browser: Browser, h: ServeHarness, shots: string, problems: string[]): Promise<void> {
  const watch = (page: Page): Page => {
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !/Failed to load resource/.test(message.text())) problems.push(`console: ${message.text()}`);
    });
    return page;
  };

  const context = await browser.newContext({ viewport: { width: 1360, height: 860 }, deviceScaleFactor: 1 });
  const page = watch(await context.newPage());
  const url = h.service.url;

  // The login form, and a wrong token turned away with a message.
  await page.goto(url);
  assert.equal(await page.evaluate(() => document.body.dataset.page), 'login');
  assert.ok(await page.isVisible('#token'), 'the token field is visible');
  await page.fill('#token', 'not-the-token');
  const refused = await Promise.all([page.waitForNavigation(), page.click('#login button[type=submit]')]);
  assert.equal(refused[0]?.status(), 401);
  assert.equal((await page.textContent('#login-error'))?.trim(), WRONG_TOKEN_MESSAGE);
  assert.ok(await page.isVisible('#login-error'));

  // The right token: the jobs view, empty for now.
  await page.fill('#token', SECRETS.apiToken);
  await Promise.all([page.waitForNavigation(), page.click('#login button[type=submit]')]);
  assert.equal(await page.evaluate(() => document.body.dataset.page), 'app');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'hearth_session');
  assert.ok(session?.httpOnly && session.sameSite === 'Strict', JSON.stringify(cookies));
  assert.ok(!session.value.includes(SECRETS.apiToken));
  await until(page, 'the empty jobs table', () => document.querySelector('#jobs-table .empty') !== null, '', 10_000);

  // A job arrives and its stage bar fills in as it goes.
  const job = await h.sim.queueGithubJob({ repo: REPO, labels: OWNED_LABELS });
  const id = `github:${job.id}`;
  const row = `#jobs-table tr[data-job="${id}"]`;
  await until(page, 'the job in the table', (selector) => document.querySelector(selector) !== null, row, 60_000);
  const doneSlots = () => page.$$eval(`${row} .slot-done`, (slots) => slots.length);
  const seen = new Set<number>([await doneSlots()]);
  const deadline = Date.now() + 150_000;
  while (Date.now() < deadline) {
    const state = await page.textContent(`${row} .chip`);
    seen.add(await doneSlots());
    if (state === 'running') break;
    await page.waitForTimeout(250);
  }
  assert.equal(await page.textContent(`${row} .chip`), 'running', 'the job reached running while watched');
  const reached = await doneSlots();
  assert.ok(reached >= 3, `placed, VM ready and registered are filled by the time it runs (${reached})`);
  assert.ok(seen.size >= 2, `the bar gained stages while watched: ${[...seen].join(' → ')}`);
  assert.equal(await page.$$eval(`${row} .slot-current`, (slots) => slots.length), 1, 'the running stage is under way');
  await page.screenshot({ path: `${shots}/jobs.png` });

  // Meanwhile, in a second tab: the VM running it, and the host's capacity in use.
  const hosts = watch(await context.newPage());
  await hosts.goto(`${url}/#/hosts`);
  await until(
    hosts,
    'the VM row of the running job',
    (jobId) => [...document.querySelectorAll('#vm-table a')].some((a) => a.textContent === jobId),
    id,
    30_000,
  );
  const used = await hosts.getAttribute('#host-summary [role=meter][aria-label=vCPUs]', 'aria-valuenow');
  assert.ok(Number(used) >= 1, `vCPUs in use: ${used}`);
  assert.equal(await hosts.getAttribute('#host-summary [role=meter][aria-label=vCPUs]', 'aria-valuemax'), '4');
  await hosts.screenshot({ path: `${shots}/hosts.png` });
  await hosts.close();

  // The job's page: the stage bar, and its log followed live while it runs.
  await page.click(`${row} .job-name a`);
  await page.waitForSelector('#job-stages .stagebar');
  await until(page, 'the log stream to be live', () => document.querySelector('#log-state')?.getAttribute('data-kind') === 'live', '', 30_000);
  await until(
    page,
    'the stand-in runner taking the job, in the log',
    () => [...document.querySelectorAll('#job-log .line .text')].some((l) => /run\.sh stand-in: took job/.test(l.textContent ?? '')),
    '',
    60_000,
  );
  const whileRunning = await h.api<{ state: string; releasedAt: string | null }>(`/jobs/${encodeURIComponent(id)}`);
  assert.equal(whileRunning.releasedAt, null, 'the log line arrived while the job was still live');
  assert.ok((await page.$$('#job-stages .stagebar .seg')).length >= 4, 'received → placed → VM ready → registered → started, and the run under way');
  assert.ok(await page.isVisible('#job-stages .seg-current'), 'the running segment grows');
  await page.screenshot({ path: `${shots}/job-detail.png`, fullPage: true });

  // The rest of the log, then the end of the stream once the VM is gone.
  await until(page, 'the end of the log stream', () => document.querySelector('#log-state')?.getAttribute('data-kind') === 'ended', '', TOUR_JOB_MS + 90_000);
  const text = await page.$$eval('#job-log .line .text', (lines) => lines.map((l) => l.textContent ?? ''));
  // The runner's last words race the teardown the forge's `completed` webhook starts; Hearth's own line closes the log.
  assert.match(text.at(-1) ?? '', /torn down/, text.join('\n'));
  assert.ok(await page.isVisible('#job-log .line-hearth'), "Hearth's own lines are told apart from the runner's");
  // The bar shows a current segment heading for released while teardown runs; wait for the stage itself.
  await page.waitForSelector('#job-stages .seg-released:not(.seg-current)', { timeout: 30_000 });
  assert.equal(await page.$$eval('#job-stages .seg-current', (s) => s.length), 0, 'nothing under way once released');
  assert.equal(await page.textContent('#job-facts .chip'), 'completed');

  // Insights: the repository and job name, with its run.
  await page.click('.nav a[data-route=insights]');
  const group = `#insights-groups tr[data-repository="${REPO}"][data-name="build"]`;
  await page.waitForSelector(group, { timeout: 30_000 });
  const cells = await page.$$eval(`${group} td`, (tds) => tds.map((td) => td.textContent ?? ''));
  assert.equal(cells[0], REPO);
  assert.equal(cells[1], 'build');
  assert.equal(cells[2], '1', `one run: ${cells.join(' | ')}`);
  assert.match(cells[3] ?? '', /0 %/);
  await page.screenshot({ path: `${shots}/insights.png` });

  // VMs & hosts, now idle.
  await page.click('.nav a[data-route=hosts]');
  await page.waitForSelector('#host-summary [role=meter][aria-label=Memory]');
  assert.equal(await page.getAttribute('#host-summary [role=meter][aria-label=Memory]', 'aria-valuemax'), '4096');

  // Log out: the login form again, and the API no longer answers this browser.
  await Promise.all([page.waitForNavigation(), page.click('.logout button')]);
  assert.equal(await page.evaluate(() => document.body.dataset.page), 'login');
  const status = await page.evaluate(async () => (await fetch('/api/v1/status')).status);
  assert.equal(status, 401);

  assert.deepEqual(problems, [], 'no script errors and no Content-Security-Policy violations');
  await context.close();
}
