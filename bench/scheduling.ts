/**
 * npm run bench: scale-out figures, on SQLite and on PostgreSQL.
 *
 * - Scheduling throughput (jobs/s from queued to running): N queued jobs go
 *   through Hearth's reconcile loop (placement onto the host, provisioning, a
 *   fake VM boot, runner registration at an in-process forge, hand-over) and
 *   the forge's in_progress webhook, recorded through the same ingest path as
 *   over HTTP. The reference, measured in the same run, moves the same number
 *   of jobs through the same states with bare ledger transitions in a loop:
 *   the store's own floor. Goal: >= 2,000 jobs/s.
 * - Controller RSS per live VM, at 200 live fake VMs (the runner in each
 *   keeps running): what one more VM costs the controlling process.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { RunnerController } from '../src/controller/controller.ts';
import { ingestDelivery } from '../src/controller/ingest.ts';
import type { Forge, ForgeJob, RunnerRegistration } from '../src/forge/forge.ts';
import { LeaderElection } from '../src/ledger/leader.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { createLogger } from '../src/log.ts';
import { FakeDriver } from '../test/support/fake-driver.ts';
import { startPostgres } from '../test/support/postgres.ts';
import { median } from './bare-qemu.ts';

const JOBS = Number(process.env.BENCH_JOBS ?? 2000);
const RUNS = Math.max(3, Number(process.env.BENCH_SCHED_RUNS ?? 3));
const LIVE_VMS = 200;
const LABELS = ['self-hosted', 'hearth', 'hearth-1cpu-512mb'];
const LIMITS = { maxCpus: 8, maxMemoryMib: 16384, images: ['minimal'] };
const SHAPE = { cpus: 1, memoryMib: 512, image: 'minimal' };
/** What ingest stores for LABELS with SHAPE as the default. */
const BENCH_SHAPE = { ...SHAPE, pool: null, requires: [] };
const silent = createLogger({ level: 'silent' });

/** A forge that answers at once: registration hands the VM a runner that keeps running. */
function instantForge(): Forge {
  let next = 1;
  return {
    kind: 'github',
    listQueuedJobs: async (): Promise<ForgeJob[]> => [],
    jobStatus: async () => ({ status: 'running', runnerName: null }),
    registerRunner: async (job): Promise<RunnerRegistration> => ({
      runnerId: String(next++),
      runnerName: `hearth-${job.id.replace(':', '-')}-bench`,
      argv: ['sleep', '3600'],
    }),
    removeRunner: async () => 'removed',
    listRunners: async () => [],
  } as Forge;
}

async function enqueue(ledger: Ledger, offset: number, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const { id } = await ledger.enqueue(
      { forge: 'github', forgeJobId: String(offset + i), repository: 'octo/bench', labels: LABELS, name: 'bench', shape: BENCH_SHAPE },
      'bench: queued',
    );
    ids.push(id);
  }
  return ids;
}

/** Bare reference: the same state changes, one job after another, straight on the ledger. */
async function bareTransitions(ledger: Ledger, offset: number): Promise<number> {
  const ids = await enqueue(ledger, offset, JOBS);
  const started = performance.now();
  for (const id of ids) {
    await ledger.transition(id, 'claimed', 'bare', { placement: { host: 'bench', cpus: 1, memoryMib: 512 } });
    await ledger.transition(id, 'provisioning', 'bare');
    await ledger.note(id, 'bare vm ready', { vm_id: `vm-${id}` }, 'vm_ready');
    await ledger.note(id, 'bare registered', { runner_id: id, runner_name: id });
    await ledger.transition(id, 'runner_registered', 'bare');
    await ledger.transition(id, 'running', 'bare');
  }
  return JOBS / ((performance.now() - started) / 1000);
}

/** Hearth: the reconcile loop schedules, the forge's in_progress webhooks arrive as the runners start. */
async function hearthScheduling(
  ledger: Ledger,
  url: string | null,
  offset: number,
  count: number,
  runtimeDir: string,
): Promise<{ perSecond: number; controller: RunnerController; driver: FakeDriver; leader: LeaderElection }> {
  const driver = new FakeDriver({ runtimeDir, bootDelayMs: 0 });
  const leader = new LeaderElection(url);
  leader.start();
  while (!leader.isLeader) await new Promise((r) => setTimeout(r, 20));
  const forge = instantForge();
  const controller = new RunnerController(
    ledger,
    driver,
    new Map([['github', forge]]),
    {
      limits: LIMITS,
      defaultShape: SHAPE,
      capacity: { cpus: 1_000_000, memoryMib: 1_000_000_000 },
      maxConcurrent: 0,
      network: false,
      jobTimeoutMinutes: 60,
      intervalSeconds: 3600,
      stuckAfterSeconds: 3600,
      maxAttempts: 3,
      cluster: {
        role: 'all',
        hostId: 'bench-host',
        placement: 'binpack',
        heartbeatSeconds: 60,
        hostTimeoutSeconds: 600,
        leader,
        describeHost: async () => ({
          id: 'bench-host',
          cpus: 1_000_000,
          memoryMib: 1_000_000_000,
          diskGib: 100,
          drivers: ['fake'],
          images: ['minimal'],
          labels: ['arch=x86_64', 'kvm=false'],
        }),
      },
    },
    silent,
  );
  const ids = await enqueue(ledger, offset, count);
  const ingest = { ledger, limits: LIMITS, defaultShape: SHAPE, logger: silent, onChange: () => {} };
  const started = performance.now();
  controller.start();
  // The forge's side: each job handed to its runner is reported in_progress by webhook.
  const pending = new Set(ids);
  let delivery = 0;
  while (pending.size > 0) {
    const handed = await ledger.inStates(['runner_registered']);
    await Promise.all(
      handed
        .filter((j) => pending.has(j.id))
        .map(async (job) => {
          pending.delete(job.id);
          await ingestDelivery(ingest, {
            forge: 'github',
            deliveryId: `bench-${offset}-${delivery++}`,
            event: 'workflow_job',
            payload: {
              kind: 'job',
              job: { forge: 'github', forgeJobId: job.forge_job_id, repository: job.repository, labels: LABELS },
              phase: 'running',
              detail: 'in_progress',
              runnerName: job.runner_name,
              labelsKnown: true,
            },
          });
        }),
    );
    if (pending.size > 0) await new Promise((r) => setTimeout(r, 5));
  }
  const running = (await ledger.countByState()).running ?? 0;
  if (running < count) {
    const odd = (await ledger.jobs(10_000)).filter((j) => j.state !== 'running').slice(0, 3);
    const timelines = await Promise.all(
      odd.map(async (j) => `${j.id} ${j.state}: ${(await ledger.timeline(j.id)).map((e) => `${e.to} (${e.reason})`).join(' -> ')}`),
    );
    throw new Error(`only ${running} of ${count} jobs reached running:\n${timelines.join('\n')}`);
  }
  return { perSecond: count / ((performance.now() - started) / 1000), controller, driver, leader };
}

async function stopAll(parts: { controller: RunnerController; driver: FakeDriver; leader: LeaderElection }): Promise<void> {
  await parts.controller.stop('bench done');
  await parts.driver.destroyAll();
  await parts.leader.stop();
}

async function measure(store: 'SQLite' | 'PostgreSQL', open: (name: string) => Promise<{ ledger: Ledger; url: string | null }>, root: string): Promise<void> {
  const hearth: number[] = [];
  const bare: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const a = await open(`bare${run}`);
    bare.push(await bareTransitions(a.ledger, 1_000_000 * (run + 1)));
    await a.ledger.close();
    const b = await open(`hearth${run}`);
    const parts = await hearthScheduling(b.ledger, b.url, 1_000_000 * (run + 1), JOBS, join(root, `rt-${store}-${run}`));
    hearth.push(parts.perSecond);
    await stopAll(parts);
    await b.ledger.close();
  }
  const h = median(hearth);
  const r = median(bare);
  console.log(
    `${store}: scheduling queued -> running: ${h.toFixed(0)} jobs/s (median of ${RUNS} runs of ${JOBS}); bare ledger transitions ${r.toFixed(0)} jobs/s; ratio ${(h / r).toFixed(2)}; goal >= 2,000 jobs/s ${h >= 2000 ? 'met' : 'NOT met'}`,
  );
}

const root = await mkdtemp(join(tmpdir(), 'hearth-bench-sched-'));
const postgres = await startPostgres();
try {
  // RSS per live VM first, in a process not yet grown by the throughput runs: 200 runners keep
  // running in fake VMs, and the growth over the idle state (after a warm-up of 20) is divided by them.
  {
    const ledger = await Ledger.openSqlite(join(root, 'rss.db'));
    const warm = await hearthScheduling(ledger, null, 8_000_000, 20, join(root, 'rt-warm'));
    await stopAll(warm);
    global.gc?.();
    const before = process.memoryUsage();
    const parts = await hearthScheduling(ledger, null, 9_000_000, LIVE_VMS, join(root, 'rt-rss'));
    global.gc?.();
    const after = process.memoryUsage();
    const live = (await parts.driver.list()).filter((vm) => vm.alive).length;
    const per = (bytes: number): string => `${(bytes / Math.max(1, live) / 1024).toFixed(1)} KiB`;
    console.log(
      `controller memory with ${live} live fake VMs: RSS ${(before.rss / 2 ** 20).toFixed(1)} -> ${(after.rss / 2 ** 20).toFixed(1)} MiB (${per(after.rss - before.rss)} per live VM), JS heap ${per(after.heapUsed - before.heapUsed)} per live VM`,
    );
    await stopAll(parts);
    await ledger.close();
  }
  await measure('SQLite', async (name) => ({ ledger: await Ledger.openSqlite(join(root, `${name}.db`)), url: null }), root);
  if (process.env.BENCH_ONLY_SQLITE === '1') process.exit(0);
  await measure(
    'PostgreSQL',
    async (name) => {
      const url = await postgres.createDatabase(name);
      return { ledger: await Ledger.openPostgres(url), url };
    },
    root,
  );
} finally {
  await postgres.stop();
  await rm(root, { recursive: true, force: true });
}
