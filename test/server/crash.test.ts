import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HEARTH_BIN, processListContains } from '../support/env.ts';
import { ForgeSimulator } from '../support/forge-sim/index.ts';
import { OWNED_LABELS, REPO, SECRETS, STAND_IN_IMAGE, ensureStandInImage } from '../support/serve-host.ts';
import { waitFor } from '../support/wait.ts';
import { freePort } from '../support/net.ts';

/** Starts `hearth serve` as its own process and waits until it answers /healthz; its output goes to `output`. */
async function startServe(env: NodeJS.ProcessEnv, url: string, output: string[]): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [HEARTH_BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout?.on('data', (b: Buffer) => output.push(b.toString()));
  proc.stderr?.on('data', (b: Buffer) => output.push(b.toString()));
  // Refused connections are expected until the server listens.
  await waitFor(
    () =>
      fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      ),
    { what: 'hearth serve to answer /healthz', timeout: 30_000, interval: 100, detail: () => output.join('') },
  );
  return proc;
}

/** The VM directories under `dir`; none before the first VM has made the folder. */
async function vmDirs(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

let root: string;
let sim: ForgeSimulator;
let child: ChildProcess | undefined;
before(async () => {
  await ensureStandInImage();
  root = await mkdtemp(join(tmpdir(), 'hearth-crash-'));
  sim = await ForgeSimulator.start({ ...SECRETS, jobDurationMs: 500 });
});
after(async () => {
  child?.kill('SIGKILL');
  await sim.close();
  await rm(root, { recursive: true, force: true });
});

test('kill -9 of hearth serve while it provisions, then a restart: nothing leaked, nothing lost', async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    HEARTH_DATA_DIR: join(root, 'data'),
    HEARTH_RUNTIME_DIR: join(root, 'run'),
    HEARTH_SERVER_HOST: '127.0.0.1',
    HEARTH_SERVER_PORT: String(port),
    HEARTH_API_TOKEN: SECRETS.apiToken,
    HEARTH_GITHUB_API_URL: sim.githubApiUrl,
    HEARTH_GITHUB_TOKEN: SECRETS.githubToken,
    HEARTH_GITHUB_WEBHOOK_SECRET: SECRETS.githubWebhookSecret,
    HEARTH_GITHUB_REPOS: REPO,
    HEARTH_RUNNERS_IMAGE: STAND_IN_IMAGE,
    HEARTH_RECONCILE_INTERVAL_SECONDS: '2',
    HEARTH_LOG_LEVEL: 'info',
  };
  const output: string[] = [];
  const start = (): Promise<ChildProcess> => startServe(env, url, output);
  const job = async (
    id: string,
  ): Promise<{ state: string; vmId: string | null; releasedAt: string | null; timeline: { to: string; reason: string }[] } | undefined> => {
    const response = await fetch(`${url}/api/v1/jobs/${encodeURIComponent(id)}`, { headers: { authorization: `Bearer ${SECRETS.apiToken}` } });
    return response.ok ? ((await response.json()) as never) : undefined;
  };

  child = await start();
  sim.setWebhookTargets({ github: `${url}/webhooks/github` });
  const queued = await sim.queueGithubJob({ repo: REPO, labels: OWNED_LABELS });
  const id = `github:${queued.id}`;
  const firstVm = await waitFor(
    async () => {
      const dirs = await vmDirs(join(root, 'run', 'vms'));
      return (await job(id))?.state === 'provisioning' && dirs.length > 0 ? dirs[0] : undefined;
    },
    { what: 'the job to reach provisioning with a VM booting', timeout: 60_000, detail: () => output.join('') },
  );
  child.kill('SIGKILL');
  await new Promise((r) => child!.once('exit', r));
  assert.equal(await processListContains(firstVm), true, 'the VM outlived the killed process (it is what recovery must clean up)');

  child = await start();
  let last: Awaited<ReturnType<typeof job>>;
  const final = await waitFor(
    async () => {
      last = await job(id);
      return last?.releasedAt ? last : undefined;
    },
    {
      what: `${id} to be released after the restart`,
      timeout: 120_000,
      interval: 200,
      detail: () => `${JSON.stringify(last?.timeline)}\n${output.join('').slice(-3000)}`,
    },
  );
  assert.equal(final.state, 'completed', `${JSON.stringify(final.timeline)}\n${output.join('').slice(-3000)}`);
  assert.equal(sim.github.jobs.get(queued.id)?.conclusion, 'success');
  assert.equal(await processListContains(firstVm), false, `the VM of the killed process is gone\n${output.join('').slice(-6000)}`);
  assert.equal(sim.github.runners.size, 0, 'no registration left at the forge');
  assert.match(final.timeline.map((e) => e.reason).join('\n'), /retrying: its VM was lost/);
  child.kill('SIGTERM');
  await new Promise((r) => child!.once('exit', r));
  child = undefined;
  assert.deepEqual(await vmDirs(join(root, 'run', 'vms')), [], 'no VM directory left');
});

test('kill -9 of hearth serve while a pool refills, then a restart: the old pool VMs are destroyed, the pool refills, nothing leaks', async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dir = join(root, 'pool');
  const env = {
    ...process.env,
    HEARTH_DATA_DIR: join(dir, 'data'),
    HEARTH_RUNTIME_DIR: join(dir, 'run'),
    HEARTH_SERVER_HOST: '127.0.0.1',
    HEARTH_SERVER_PORT: String(port),
    HEARTH_API_TOKEN: SECRETS.apiToken,
    HEARTH_RUNNERS_IMAGE: STAND_IN_IMAGE,
    HEARTH_RECONCILE_INTERVAL_SECONDS: '1',
    HEARTH_POOLS: JSON.stringify({ warm: { mode: 'booted', minIdle: 2, maxSize: 2, cpus: 1, memoryMib: 256, image: 'minimal' } }),
  };
  const output: string[] = [];
  const start = (): Promise<ChildProcess> => startServe(env, url, output);
  const poolVmDirs = () => vmDirs(join(dir, 'run', 'vms'));
  const poolStatus = async () =>
    (
      (await (await fetch(`${url}/api/v1/pools`, { headers: { authorization: `Bearer ${SECRETS.apiToken}` } })).json()) as {
        pools: { idle: number; starting: number }[];
      }
    ).pools[0]!;

  child = await start();
  const before = await waitFor(
    async () => {
      const dirs = await poolVmDirs();
      return dirs.length > 0 ? dirs : undefined;
    },
    { what: 'the pool to start refilling (a VM directory)', timeout: 12_000, interval: 20, detail: () => output.join('').slice(-2000) },
  );
  child.kill('SIGKILL');
  await new Promise((r) => child!.once('exit', r));

  child = await start();
  await waitFor(async () => (await poolStatus()).idle === 2, {
    what: 'the restarted pool to have 2 idle VMs',
    timeout: 60_000,
    interval: 100,
    detail: () => output.join('').slice(-2000),
  });
  for (const vm of before) assert.equal(await processListContains(vm), false, `${vm} from the killed process is gone`);
  const after = await poolVmDirs();
  assert.equal(after.length, 2, `only the new pool's VMs remain: ${after.join(', ')}`);
  assert.ok(after.every((vm) => !before.includes(vm)));
  child.kill('SIGTERM');
  await new Promise((r) => child!.once('exit', r));
  child = undefined;
  assert.deepEqual(await poolVmDirs(), [], 'a clean stop destroys the idle pool VMs');
});
