/**
 * npm run bench: `hearth serve` figures, each against a reference measured in
 * the same run.
 *
 * - Durable webhook ingestion over HTTP (events/s): signed workflow_job
 *   deliveries posted by a load generator on its own thread, each answered only
 *   after its row is committed, ÷ a raw in-process loop of verify + parse +
 *   insert on the same ledger code. Goal: >= 5,000 events/s.
 *   A second reference is fastify answering the same requests with a no-op
 *   handler: the most any Node HTTP server does on this machine.
 * - Webhook to runner command executing in the guest (p50/p95): from the forge
 *   simulator sending `queued` to the runner stand-in in the VM calling back
 *   with its JIT config. Cold ÷ a bare QEMU of the same image running a
 *   command; the booted and snapshot pools (an idle VM waiting) ÷ cold.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import Fastify from 'fastify';
import { defaultServeConfig } from '../src/config/serve-config.ts';
import { resolvePaths } from '../src/config/paths.ts';
import { ingestDelivery } from '../src/controller/ingest.ts';
import { parseGithubDelivery } from '../src/forge/github/webhook.ts';
import { verifyGithubSignature } from '../src/forge/github/verify.ts';
import { loadImage } from '../src/image/store.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { createLogger } from '../src/log.ts';
import { buildServer } from '../src/server/app.ts';
import { HearthMetrics, idleHost } from '../src/server/metrics.ts';
import { DEFAULT_SHAPE } from '../src/scheduler/labels.ts';
import { QemuDriver } from '../src/vm/qemu/driver.ts';
import { OWNED_LABELS, REPO, STAND_IN_IMAGE, ensureStandInImage, startServeHarness } from '../test/support/serve-host.ts';
import { bareLaunch, median, percentile } from './bare-qemu.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const ONLY_INGEST = process.env.BENCH_ONLY_INGEST === '1';
const EVENTS = Number(process.env.BENCH_EVENTS ?? 5000);
const CONCURRENCY = 32;
const SECRET = 'bench-secret';
const LIMITS = { maxCpus: 8, maxMemoryMib: 16384, images: ['debian', 'minimal'] };

const examplesPath = createRequire(import.meta.url).resolve('@octokit/webhooks-examples/api.github.com/index.json');
const examples = JSON.parse(await readFile(examplesPath, 'utf8')) as { name: string; examples: { action: string; workflow_job: Record<string, unknown> }[] }[];
const queuedExample = examples.find((e) => e.name === 'workflow_job')!.examples.find((e) => e.action === 'queued')!;

interface Delivery {
  body: Buffer;
  headers: Record<string, string>;
}

/** Deliveries signed up front: signing is the forge's cost, not Hearth's. */
function deliveries(count: number, offset: number): Delivery[] {
  return Array.from({ length: count }, (_, i) => {
    const payload = structuredClone(queuedExample);
    Object.assign(payload.workflow_job, { id: offset + i, labels: OWNED_LABELS });
    const body = Buffer.from(JSON.stringify(payload));
    return {
      body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'workflow_job',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
      },
    };
  });
}

const root = await mkdtemp(join(tmpdir(), 'hearth-bench-serve-'));
const paths = { cache: resolvePaths().cache, data: join(root, 'data'), runtime: join(root, 'run') };
const silent = createLogger({ level: 'silent' });

async function rawIngest(run: number): Promise<number> {
  const ledger = await Ledger.openSqlite(join(root, `raw-${run}.db`));
  const batch = deliveries(EVENTS, 1_000_000 * (run + 1));
  const started = performance.now();
  for (const d of batch) {
    if (!verifyGithubSignature(d.body, d.headers['x-hub-signature-256'], [SECRET]).ok) throw new Error('signature');
    const delivery = parseGithubDelivery(d.headers, d.body);
    await ingestDelivery({ ledger, limits: LIMITS, defaultShape: DEFAULT_SHAPE, logger: silent, onChange: () => {} }, delivery);
  }
  const seconds = (performance.now() - started) / 1000;
  await ledger.close();
  return EVENTS / seconds;
}

// The load generator runs on its own thread with undici's pipelining client, the
// cheapest HTTP client Node has, so the figure is the server's and not the client's.
const LOAD_GENERATOR = `
const { workerData, parentPort } = require('node:worker_threads');
const { Pool } = require(workerData.undici);
const pool = new Pool('http://127.0.0.1:' + workerData.port, { connections: 8, pipelining: 8 });
const items = workerData.items;
let next = 0, failed = 0;
const started = performance.now();
async function one() {
  while (next < items.length) {
    const item = items[next++];
    try {
      const res = await pool.request({ path: '/webhooks/github', method: 'POST', headers: item.headers, body: Buffer.from(item.body) });
      if (res.statusCode !== 200) failed++;
      await res.body.dump();
    } catch { failed++; }
  }
}
Promise.all(Array.from({ length: workerData.concurrency }, one)).then(async () => {
  parentPort.postMessage({ seconds: (performance.now() - started) / 1000, failed });
  await pool.close();
});
`;

async function loadGenerator(port: number, items: Delivery[]): Promise<{ seconds: number; failed: number }> {
  const worker = new Worker(LOAD_GENERATOR, {
    eval: true,
    workerData: { port, items, concurrency: CONCURRENCY, undici: createRequire(import.meta.url).resolve('undici') },
  });
  try {
    return await new Promise<{ seconds: number; failed: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  } finally {
    await worker.terminate();
  }
}

/** The HTTP floor of this machine: fastify parsing the same JSON bodies and answering, storing nothing. */
async function bareHttp(run: number): Promise<number> {
  const app = Fastify({ bodyLimit: 26_214_400 });
  app.post('/webhooks/github', async () => ({ ok: true }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const result = await loadGenerator((app.server.address() as { port: number }).port, deliveries(EVENTS, 1_000_000 * (run + 1)));
  await app.close();
  if (result.failed > 0) throw new Error(`bare HTTP: ${result.failed} requests failed`);
  return EVENTS / result.seconds;
}

async function httpIngest(run: number): Promise<number> {
  const ledger = await Ledger.openSqlite(join(root, `http-${run}.db`));
  const config = defaultServeConfig(paths);
  config.github.webhookSecret = [SECRET];
  config.server.rateLimitPerMinute = 0;
  const app = await buildServer({
    config,
    logger: silent,
    metrics: new HearthMetrics(ledger, idleHost()),
    ledger,
    driver: new QemuDriver({ paths, logger: silent }),
    limits: LIMITS,
    defaultShape: DEFAULT_SHAPE,
    gitlab: undefined,
    onChange: () => {},
    secrets: { github: [SECRET], gitlabTokens: [], gitlabSigning: [] },
    ready: async () => ({ ok: true, checks: {} }),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  const result = await loadGenerator(port, deliveries(EVENTS, 1_000_000 * (run + 1)));
  const stored = (await ledger.countByState()).queued ?? 0;
  await app.close();
  await ledger.close();
  if (result.failed > 0 || stored !== EVENTS) throw new Error(`ingestion lost events: ${result.failed} failed, ${stored} of ${EVENTS} stored`);
  return EVENTS / result.seconds;
}

type LaunchMode = 'cold' | 'booted' | 'snapshot';

/** Webhook to the runner stand-in in the guest calling back, one job at a time; pools are refilled (a hit) before each job. */
async function webhookToRunner(mode: LaunchMode): Promise<number[]> {
  const harness = await startServeHarness({
    jobDurationMs: 100,
    change: (c) => {
      if (mode !== 'cold')
        c.pools = [
          {
            name: 'bench',
            labels: ['hearth-bench'],
            cpus: 1,
            memoryMib: 512,
            image: STAND_IN_IMAGE,
            mode,
            minIdle: 1,
            maxSize: 2,
            maxIdleAgeSeconds: 3600,
            templateMaxAgeSeconds: 86_400,
            autoscale: false,
            maxIdle: 1,
            demandWindowSeconds: 3600,
          },
        ];
      c.reconcile.intervalSeconds = 1;
    },
  });
  const times: number[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      if (mode !== 'cold') await harness.sim.waitFor(() => (harness.service.controller.poolStatus()[0]?.idle ?? 0) >= 1, 120_000, 'an idle pool VM');
      const seen = harness.sim.apiLog.length;
      const started = Date.now();
      const job = await harness.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, 'hearth-bench'] });
      const callback = () => harness.sim.apiLog.slice(seen).find((e) => e.forge === 'runner' && e.path.endsWith('/start') && e.status === 200);
      await harness.sim.waitFor(() => callback() !== undefined, 120_000, 'the runner in the VM to call back');
      times.push(callback()!.at - started);
      await harness.sim.waitFor(() => harness.sim.github.jobs.get(job.id)?.status === 'completed', 60_000, 'the job to complete');
      await harness.service.controller.settle();
      process.stderr.write(`  ${mode} run ${i + 1}: webhook to runner ${times.at(-1)} ms\n`);
    }
  } finally {
    await harness.close();
  }
  return times;
}

const line = (name: string, value: string, reference: string, ratio: number, goal: string): void =>
  void process.stdout.write(`${name.padEnd(39)} ${value.padEnd(14)} ${reference.padEnd(25)} ${ratio.toFixed(3).padEnd(6)} ${goal}\n`);

try {
  process.stderr.write(`bench serve: ${EVENTS} events per ingestion run, ${RUNS} jobs per launch mode, ${cpus().length} CPUs\n`);
  const raw: number[] = [];
  const bareHttpRates: number[] = [];
  const http: number[] = [];
  for (let i = 0; i < 5; i++) {
    raw.push(await rawIngest(i));
    bareHttpRates.push(await bareHttp(i));
    http.push(await httpIngest(i));
    process.stderr.write(
      `  ingestion run ${i + 1}: raw loop ${raw.at(-1)!.toFixed(0)}/s, bare HTTP ${bareHttpRates.at(-1)!.toFixed(0)}/s, hearth ${http.at(-1)!.toFixed(0)}/s\n`,
    );
  }
  if (ONLY_INGEST) {
    process.stdout.write(`\nHearth serve benchmark (${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPUs)\n`);
    line('durable webhook ingestion (HTTP)', `${median(http).toFixed(0)}/s`, `raw loop ${median(raw).toFixed(0)}/s`, median(http) / median(raw), '>= 5,000/s');
    process.exit(0);
  }
  await ensureStandInImage(paths.cache);
  const image = await loadImage(paths.cache, STAND_IN_IMAGE);
  const { accel } = await new QemuDriver({ paths, logger: silent, accel: process.env.HEARTH_ACCEL }).accel();
  const bare: number[] = [];
  for (let i = 0; i < RUNS; i++)
    bare.push(await bareLaunch({ image, accel, cpus: 1, memoryMib: 512, network: true, workDir: root, command: ['echo', 'ready'], marker: 'ready\n' }));
  const cold = await webhookToRunner('cold');
  const booted = await webhookToRunner('booted');
  const snapshot = await webhookToRunner('snapshot');
  process.stdout.write(
    `\nHearth serve benchmark (${new Date().toISOString().slice(0, 10)}, ${accel.toUpperCase()}, ${cpus().length} CPUs, ${RUNS} jobs per mode)\n`,
  );
  process.stdout.write('figure                                  hearth         reference                 ratio  goal\n');
  line('durable webhook ingestion (HTTP)', `${median(http).toFixed(0)}/s`, `raw loop ${median(raw).toFixed(0)}/s`, median(http) / median(raw), '>= 5,000/s');
  line(
    '  the same, against bare HTTP',
    `${median(http).toFixed(0)}/s`,
    `fastify, no-op ${median(bareHttpRates).toFixed(0)}/s`,
    median(http) / median(bareHttpRates),
    '',
  );
  for (const [name, times] of [
    ['cold', cold],
    ['booted pool', booted],
    ['snapshot pool', snapshot],
  ] as const) {
    line(
      `webhook to runner, ${name}, p50`,
      `${median(times).toFixed(0)} ms`,
      name === 'cold' ? `bare QEMU ${median(bare).toFixed(0)} ms` : `cold ${median(cold).toFixed(0)} ms`,
      median(times) / (name === 'cold' ? median(bare) : median(cold)),
      name === 'snapshot pool' ? '<= 600 ms, <= 0.20' : '',
    );
    line(
      `webhook to runner, ${name}, p95`,
      `${percentile(times, 95).toFixed(0)} ms`,
      name === 'cold' ? `bare QEMU ${median(bare).toFixed(0)} ms` : `cold p95 ${percentile(cold, 95).toFixed(0)} ms`,
      percentile(times, 95) / (name === 'cold' ? median(bare) : percentile(cold, 95)),
      '',
    );
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
