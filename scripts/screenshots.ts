// `npm run screenshots`: writes the dashboard screenshots in docs/screenshots/ by running the
// dashboard tour (test/support/dashboard-tour.ts) against an in-process `hearth serve` with a
// simulated forge and one job in a real VM. Needs what the dashboard test needs: Chromium and
// the guest image (`npm test` sets both up).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TOUR_JOB_MS, TOUR_SCREENSHOTS, dashboardTour, launchBrowser } from '../test/support/dashboard-tour.ts';
import { ensureStandInImage, startServeHarness } from '../test/support/serve-host.ts';

const SHOTS = join(import.meta.dirname, '..', 'docs', 'screenshots');

await mkdir(SHOTS, { recursive: true });
const browser = await launchBrowser();
let harness: Awaited<ReturnType<typeof startServeHarness>> | undefined;
try {
  await ensureStandInImage();
  harness = await startServeHarness({ jobDurationMs: TOUR_JOB_MS });
  const problems: string[] = [];
  await dashboardTour(browser, harness, SHOTS, problems);
  process.stdout.write(`screenshots: wrote ${TOUR_SCREENSHOTS.map((name) => join('docs', 'screenshots', name)).join(', ')}\n`);
} finally {
  await browser.close();
  await harness?.close();
}
