import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { RunnerController, type ControllerSettings } from '../../src/controller/controller.ts';
import { admitJob } from '../../src/controller/ingest.ts';
import type { Forge, ForgeKind } from '../../src/forge/forge.ts';
import { LeaderElection } from '../../src/ledger/leader.ts';
import { Ledger, type Job } from '../../src/ledger/ledger.ts';
import { createLogger } from '../../src/log.ts';
import type { VmSpec, Vm } from '../../src/vm/driver.ts';
import { FakeDriver } from '../support/fake-driver.ts';
import { ForgeSimulator } from '../support/forge-sim/index.ts';
import { OWNED_LABELS, REPO, SECRETS, simGithubForge } from '../support/serve-host.ts';

const logger = createLogger({ level: 'silent' });
const HOST = 'h1';
const RULES = {
  limits: { maxCpus: 8, maxMemoryMib: 16_384, images: ['hearth-stand-ins'] },
  defaultShape: { cpus: 1, memoryMib: 512, image: 'hearth-stand-ins' },
};

let root: string;
let sim: ForgeSimulator;
let forges: Map<ForgeKind, Forge>;
let opened = 0;
const running: { controller: RunnerController; ledger: Ledger; driver: FakeDriver }[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'hearth-controller-'));
  sim = await ForgeSimulator.start({ ...SECRETS, jobDurationMs: 100, seed: 5 });
  const github = simGithubForge(sim, logger);
  forges = new Map<ForgeKind, Forge>([['github', github]]);
});
afterEach(async () => {
  for (const { controller, ledger, driver } of running.splice(0)) {
    await controller.stop('test done');
    await driver.destroyAll();
    await ledger.close();
  }
});
after(async () => {
  await sim.close();
  await rm(root, { recursive: true, force: true });
});

/** Polls `check` until it gives a value: a wait for a ledger state, never a fixed sleep. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function newDriver(dir: string): FakeDriver {
  return new FakeDriver({ runtimeDir: dir, rewriteUrl: (url) => url.replace(sim.guestUrl, sim.url), pollIntervalMs: 50 });
}

/** A fresh ledger, or `path` again (a controller restarting on the same store). */
async function world(options: { driver?: FakeDriver; ledgerPath?: string; maxAttempts?: number; start?: boolean } = {}) {
  const ledgerPath = options.ledgerPath ?? join(root, `ledger-${opened++}.sqlite`);
  const ledger = await Ledger.openSqlite(ledgerPath);
  const driver = options.driver ?? newDriver(join(root, `run-${opened}`));
  const leader = new LeaderElection(null);
  const settings: ControllerSettings = {
    ...RULES,
    capacity: { cpus: 8, memoryMib: 8192 },
    maxConcurrent: 0,
    network: true,
    jobTimeoutMinutes: 5,
    intervalSeconds: 0.2,
    stuckAfterSeconds: 600,
    maxAttempts: options.maxAttempts ?? 3,
    cluster: {
      role: 'all',
      hostId: HOST,
      placement: 'binpack',
      heartbeatSeconds: 1,
      hostTimeoutSeconds: 30,
      leader,
      describeHost: async () => ({ id: HOST, cpus: 8, memoryMib: 8192, diskGib: 10, drivers: ['fake'], images: ['hearth-stand-ins'], labels: [] }),
    },
  };
  const controller = new RunnerController(ledger, driver, forges, settings, logger);
  running.push({ controller, ledger, driver });
  if (options.start !== false) {
    leader.start();
    controller.start();
  }
  return { ledger, driver, controller, ledgerPath, leader };
}

async function enqueue(ledger: Ledger): Promise<{ id: string; forgeJobId: number }> {
  const queued = await sim.queueGithubJob({ repo: REPO, labels: OWNED_LABELS });
  const admission = admitJob(RULES, OWNED_LABELS);
  assert.ok('shape' in admission);
  const { id } = await ledger.enqueue(
    { forge: 'github', forgeJobId: String(queued.id), repository: REPO, labels: OWNED_LABELS, shape: admission.shape },
    'test: queued',
  );
  return { id, forgeJobId: queued.id };
}

const released = (ledger: Ledger, id: string) => async (): Promise<Job | undefined> => {
  const job = await ledger.job(id);
  return job?.released_at ? job : undefined;
};

test('a queued job is placed with its stored shape, launched, and its VM and registration are cleaned up when it ends', async () => {
  const { ledger, driver } = await world();
  const { id, forgeJobId } = await enqueue(ledger);
  const done = await waitFor(`${id} to end and be released`, released(ledger, id));
  assert.equal(done.state, 'completed');
  assert.equal(done.host, HOST);
  assert.deepEqual([done.cpus, done.memory_mib], [1, 512], 'placed with the shape ingest stored');
  const stages = (await ledger.timeline(id)).map((e) => e.reason).join('\n');
  assert.match(stages, /placed on host h1: 1 vCPU, 512 MiB/);
  // No webhook here: the runner exits first, its VM and registration go, then the forge's verdict settles the job.
  assert.match(stages, /runner exited with code 0\nVM and registration removed before a retry\nforge reports it finished: success\ntorn down/);
  assert.equal(sim.github.runners.size, 0, 'no registration left');
  assert.equal(sim.github.jobs.get(forgeJobId)?.conclusion, 'success');
  assert.deepEqual(await ledger.finalizers([id]), [], 'every cleanup duty was carried out');
  assert.deepEqual(await driver.list(), [], 'no VM left');
});

test('a failed boot is retried, then failed once the attempts are spent, with nothing left behind', async () => {
  class BrokenBoot extends FakeDriver {
    boots = 0;
    override async boot(_spec: VmSpec): Promise<Vm> {
      this.boots++;
      throw new Error('the fake VMM would not start');
    }
  }
  const driver = new BrokenBoot({ runtimeDir: join(root, 'broken') });
  const { ledger } = await world({ driver, maxAttempts: 2 });
  const { id } = await enqueue(ledger);
  const done = await waitFor(`${id} to fail and be released`, released(ledger, id));
  assert.equal(done.state, 'failed');
  assert.equal(done.attempts, 2);
  assert.equal(driver.boots, 2);
  assert.match(done.last_error ?? '', /the fake VMM would not start/);
  const reasons = (await ledger.timeline(id)).map((e) => e.reason).join('\n');
  assert.match(reasons, /retrying: the fake VMM would not start/);
  assert.equal([...sim.github.runners.values()].length, 0, 'the registrations of both attempts were removed');
});

test('cleanup duties left by a controller that died are carried out by the next one', async () => {
  // The first controller never runs: its "launch" is done by hand, as if it died right after.
  const first = await world({ start: false });
  const { id, forgeJobId } = await enqueue(first.ledger);
  const vm = await first.driver.boot({ image: 'hearth-stand-ins', cpus: 1, memoryMib: 512, network: true });
  const forge = forges.get('github')!;
  const registration = await forge.registerRunner({ id, repository: REPO, forgeJobId: String(forgeJobId), labels: OWNED_LABELS });
  await first.ledger.transition(id, 'claimed', 'placed on h1', { placement: { host: HOST, cpus: 1, memoryMib: 512 } });
  await first.ledger.transition(id, 'provisioning', 'booting');
  await first.ledger.hold(id, { kind: 'vm', ref: vm.id, host: HOST }, `VM ${vm.id} ready`, { vm_id: vm.id });
  await first.ledger.hold(id, { kind: 'runner', ref: registration.runnerId, host: null }, 'runner registered', {
    runner_id: registration.runnerId,
    runner_name: registration.runnerName,
  });
  await first.ledger.transition(id, 'cancelled', 'cancelled at the forge');
  assert.equal(first.driver.isAlive(vm.id), true);
  assert.equal(sim.github.runners.has(Number(registration.runnerId)), true);

  // A new controller on the same store and host: it finds the duties, not any memory of the launch.
  const second = await world({ ledgerPath: first.ledgerPath, driver: first.driver });
  const done = await waitFor(`${id} to be released`, released(second.ledger, id));
  assert.equal(done.state, 'cancelled');
  assert.equal(first.driver.isAlive(vm.id), false, 'the VM was destroyed');
  assert.equal(sim.github.runners.has(Number(registration.runnerId)), false, 'the registration was removed');
  assert.deepEqual(await second.ledger.finalizers([id]), []);
});

test('a job the forge cancels while its runner waits is aborted: VM destroyed, registration removed, released', async () => {
  const slow = await ForgeSimulator.start({ ...SECRETS, jobDurationMs: 60_000, seed: 6 });
  try {
    const github = simGithubForge(slow, logger);
    forges.set('github', github);
    const driver = new FakeDriver({ runtimeDir: join(root, 'slow'), rewriteUrl: (url) => url.replace(slow.guestUrl, slow.url), pollIntervalMs: 50 });
    const { ledger } = await world({ driver });
    const queued = await slow.queueGithubJob({ repo: REPO, labels: OWNED_LABELS });
    const admission = admitJob(RULES, OWNED_LABELS);
    assert.ok('shape' in admission);
    const { id } = await ledger.enqueue(
      { forge: 'github', forgeJobId: String(queued.id), repository: REPO, labels: OWNED_LABELS, shape: admission.shape },
      'test: queued',
    );
    const vmId = await waitFor(`${id} to hold a VM`, async () => (await ledger.finalizers([id])).find((d) => d.kind === 'vm')?.ref);
    await slow.cancelGithubJob(queued.id);
    // What the webhook would record: the job cancelled at the forge.
    await waitFor(`${id} to be recorded cancelled`, async () =>
      (await ledger.transition(id, 'cancelled', 'forge: cancelled')) || (await ledger.job(id))?.state === 'cancelled' ? true : undefined,
    );
    const done = await waitFor(`${id} to be released`, released(ledger, id));
    assert.equal(done.state, 'cancelled');
    assert.equal(driver.isAlive(vmId), false);
    assert.equal(slow.github.runners.size, 0);
    assert.deepEqual(await ledger.finalizers([id]), []);
  } finally {
    forges.set('github', simGithubForge(sim, logger));
    for (const { controller, ledger, driver } of running.splice(0)) {
      await controller.stop('test done');
      await driver.destroyAll();
      await ledger.close();
    }
    await slow.close();
  }
});
