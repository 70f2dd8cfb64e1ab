import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isHearthError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { captureOutput } from './env.ts';
import { FakeDriver, FakeDriverUnsupportedError, listFakeVms } from './fake-driver.ts';
import { ForgeSimulator } from './forge-sim/index.ts';
import { PROJECT, REPO, SECRETS, simGithubForge, simGitlabForge } from './serve-host.ts';
import { waitFor } from './wait.ts';

const SPEC = { image: 'hearth-stand-ins', cpus: 1, memoryMib: 512, network: true };
const logger = createLogger({ level: 'silent' });

let root: string;
let sim: ForgeSimulator;
let driver: FakeDriver;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'hearth-fake-driver-'));
  sim = await ForgeSimulator.start({ ...SECRETS, jobDurationMs: 100, seed: 3 });
  driver = new FakeDriver({ runtimeDir: root, rewriteUrl: (url) => url.replace(sim.guestUrl, sim.url), pollIntervalMs: 50 });
});
after(async () => {
  await driver.destroyAll();
  await sim.close();
  await rm(root, { recursive: true, force: true });
});

test('a queued GitHub job runs to completion through a fake VM', async () => {
  const github = simGithubForge(sim, logger);
  const job = await sim.queueGithubJob({ repo: REPO, labels: ['self-hosted', 'hearth'] });
  const registration = await github.registerRunner({ id: `github:${job.id}`, repository: REPO, forgeJobId: String(job.id), labels: job.labels });
  const vm = await driver.boot(SPEC);
  assert.equal(vm.accel, 'tcg');
  assert.deepEqual(vm.origin, { kind: 'cold' });
  assert.equal(vm.state, 'ready');
  assert.equal(driver.isAlive(vm.id), true);

  const output = captureOutput();
  const result = await driver.exec(vm.id, { argv: registration.argv, timeoutSeconds: 60 }, output.sink);
  const { stdout, stderr } = output.text();
  assert.equal(result.exitCode, 0, stderr);
  assert.match(stdout, /run\.sh stand-in: runner hearth-github-\S+ connecting to http:\/\/10\.0\.2\.2:\d+\/_sim\/github\/runner/);
  assert.match(stdout, /took job \{"jobId":\d+/);
  assert.match(stdout, /job finished: .*"conclusion":"success"/);
  // The credential never reaches the output.
  assert.ok(!stdout.includes(registration.argv[2]!));
  const simJob = sim.github.jobs.get(job.id)!;
  assert.equal(simJob.status, 'completed');
  assert.equal(simJob.conclusion, 'success');
  assert.equal(simJob.runnerName, registration.runnerName);
  assert.equal(sim.github.runners.has(Number(registration.runnerId)), false, 'GitHub removes a JIT runner after its job');
  await driver.destroy(vm.id);
});

test('a GitLab job runs through a fake VM with run-single', async () => {
  const gitlab = simGitlabForge(sim, logger);
  const job = await sim.queueGitlabJob({ projectId: PROJECT, tags: ['hearth'] });
  const registration = await gitlab.registerRunner({ id: `gitlab:${job.id}`, repository: String(PROJECT), forgeJobId: String(job.id), labels: job.tags });
  const vm = await driver.boot(SPEC);
  const output = captureOutput();
  const result = await driver.exec(vm.id, { argv: registration.argv }, output.sink);
  assert.equal(result.exitCode, 0, output.text().stderr);
  assert.match(output.text().stdout, new RegExp(`running job ${job.id}\\b[\\s\\S]*job ${job.id} finished: \\{"status":"success"\\}`));
  assert.equal(sim.gitlab.jobs.get(job.id)!.status, 'success');
  await driver.destroy(vm.id);
});

test('the stand-ins fail as the scripts do: bad usage, unknown config, no job in time', async () => {
  const vm = await driver.boot(SPEC);
  const usage = captureOutput();
  assert.equal((await driver.exec(vm.id, { argv: ['/opt/actions-runner/run.sh', '--bogus'] }, usage.sink)).exitCode, 2);
  assert.match(usage.text().stderr, /unknown option --bogus/);

  const forged = Buffer.from(JSON.stringify({ runnerId: 1, name: 'x', callbackUrl: `${sim.guestUrl}/_sim/github/runner`, secret: 'nope' })).toString('base64');
  const refused = captureOutput();
  assert.equal((await driver.exec(vm.id, { argv: ['run.sh', '--jitconfig', forged] }, refused.sink)).exitCode, 1);
  assert.match(refused.text().stderr, /the forge refused the runner/);

  const gitlab = simGitlabForge(sim, logger, { waitTimeoutSeconds: 2 });
  const idle = await gitlab.registerRunner({ id: 'gitlab:none', repository: String(PROJECT), forgeJobId: '999999', labels: ['never-queued'] });
  const waited = captureOutput();
  assert.equal((await driver.exec(vm.id, { argv: idle.argv }, waited.sink)).exitCode, 0);
  assert.match(waited.text().stdout, /no job within the wait timeout/);

  const missing = captureOutput();
  assert.equal((await driver.exec(vm.id, { argv: ['uname', '-a'] }, missing.sink)).exitCode, 127);
  await driver.destroy(vm.id);
});

test('destroy ends a running exec at once; a timeout destroys the VM', async () => {
  const vm = await driver.boot(SPEC);
  const running = driver.exec(vm.id, { argv: ['sleep', '30'] });
  await waitFor(() => vm.state === 'running', { what: 'the command to start', timeout: 5_000, interval: 5 });
  const started = Date.now();
  const rejected = assert.rejects(running, (error) => isHearthError(error, 'HEARTH_ERR_VM_GONE'));
  await driver.destroy(vm.id);
  await rejected;
  assert.ok(Date.now() - started < 500);
  assert.equal(vm.state, 'destroyed');
  await driver.destroy(vm.id); // idempotent
  await assert.rejects(driver.exec(vm.id, { argv: ['true'] }), (error) => isHearthError(error, 'HEARTH_ERR_VM_GONE'));

  const slow = await driver.boot(SPEC);
  await assert.rejects(driver.exec(slow.id, { argv: ['sleep', '30'], timeoutSeconds: 1 }), (error) => isHearthError(error, 'HEARTH_ERR_EXEC_TIMEOUT'));
  assert.equal(slow.state, 'destroyed');
  assert.equal(
    (await driver.list()).some((r) => r.id === slow.id),
    false,
  );
});

test('snapshot and restore say the fake does not do them', async () => {
  const vm = await driver.boot(SPEC);
  await assert.rejects(driver.snapshot(vm.id, 'warm'), FakeDriverUnsupportedError);
  await assert.rejects(driver.restore('warm'), /not supported by the fake driver/);
  await driver.destroy(vm.id);
});

test('list: a killed process leaves its VMs behind as leaked; destroy removes them', async () => {
  const runtimeDir = join(root, 'killed');
  const module = join(import.meta.dirname, 'fake-driver.ts');
  const script = `const { FakeDriver } = await import(${JSON.stringify(module)}); const d = new FakeDriver({ runtimeDir: ${JSON.stringify(runtimeDir)} }); await d.boot({ image: 'x', cpus: 1, memoryMib: 256, network: false }); await d.boot({ image: 'x', cpus: 1, memoryMib: 256, network: false }); console.log('booted'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => b.toString().includes('booted') && resolve());
    child.once('exit', (code) => reject(new Error(`the child exited with ${code}`)));
  });
  const whileAlive = await listFakeVms(runtimeDir);
  assert.equal(whileAlive.length, 2);
  assert.ok(whileAlive.every((r) => r.alive && !r.leaked && r.ownerPid === child.pid && r.driver === 'fake'));

  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  const afterKill = await listFakeVms(runtimeDir);
  assert.equal(afterKill.length, 2);
  assert.ok(afterKill.every((r) => !r.alive && r.leaked));

  const reaper = new FakeDriver({ runtimeDir });
  for (const record of afterKill) await reaper.destroy(record.id);
  assert.deepEqual(await reaper.list(), []);
});
