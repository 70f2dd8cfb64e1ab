import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { TOUR_JOB_MS, TOUR_SCREENSHOTS, dashboardTour, launchBrowser } from '../support/dashboard-tour.ts';
import { ensureStandInImage, startServeHarness, type ServeHarness } from '../support/serve-host.ts';

/**
 * The dashboard in real headless Chromium against a real `hearth serve` (the tour in
 * test/support/dashboard-tour.ts). Its screenshots go to a temporary folder removed
 * afterwards; `npm run screenshots` writes the ones in docs/screenshots/.
 */
describe('the dashboard in headless Chromium', () => {
  let h: ServeHarness | undefined;
  let browser: Browser | undefined;
  let shots: string | undefined;

  before(async () => {
    shots = await mkdtemp(join(tmpdir(), 'hearth-dashboard-shots-'));
    browser = await launchBrowser();
    await ensureStandInImage();
    h = await startServeHarness({ jobDurationMs: TOUR_JOB_MS });
  });
  after(async () => {
    await browser?.close();
    await h?.close();
    if (shots) await rm(shots, { recursive: true, force: true });
  });

  test('log in, watch a job run, follow its log, open Insights and VMs & hosts, log out', async () => {
    const problems: string[] = [];
    await dashboardTour(browser!, h!, shots!, problems);
    assert.deepEqual(readdirSync(shots!).sort(), [...TOUR_SCREENSHOTS].sort());
    const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    for (const name of TOUR_SCREENSHOTS) assert.ok(readFileSync(join(shots!, name)).subarray(0, 8).equals(PNG), `${name} is a PNG`);
  });
});
