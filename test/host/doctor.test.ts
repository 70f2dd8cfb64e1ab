import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, it } from 'node:test';
import { createTestHost, HEARTH_BIN, type TestHost } from '../support/env.ts';

let host: TestHost;
before(async () => {
  host = await createTestHost();
});
after(async () => {
  await host.cleanup();
});

function doctor(env: NodeJS.ProcessEnv, ...args: string[]) {
  return spawnSync(process.execPath, [HEARTH_BIN, 'doctor', ...args], { env: { ...host.env, ...env }, encoding: 'utf8', timeout: 60_000 });
}

it('reports a ready host with exit 0, including the accelerator verdict and the image', () => {
  const run = doctor({}, '--json');
  assert.equal(run.status, 0, run.stdout + run.stderr);
  const report = JSON.parse(run.stdout) as { canRunVms: boolean; checks: { name: string; status: string; detail: string }[] };
  assert.equal(report.canRunVms, true);
  const names = report.checks.map((c) => c.name);
  for (const name of ['qemu', 'firecracker', 'disk', 'memory', 'image minimal', 'accelerator']) assert.ok(names.includes(name), `no ${name} check`);
  assert.match(report.checks.find((c) => c.name === 'accelerator')?.detail ?? '', /^(KVM|TCG): /);
});

it('fails with exit 1 and the apt command when QEMU is missing', () => {
  const run = doctor({ HEARTH_QEMU: '/nonexistent/qemu-system-x86_64' });
  assert.equal(run.status, 1);
  assert.match(run.stdout, /FAIL\s+qemu\s+\/nonexistent\/qemu-system-x86_64 not found\n\s+fix: apt-get install -y --no-install-recommends qemu-system-x86/);
  assert.match(run.stdout, /cannot run VMs/);
});

it('fails when the image is not built, naming the build command', () => {
  const run = doctor({ HEARTH_CACHE_DIR: `${host.paths.data}/empty-cache` });
  assert.equal(run.status, 1);
  assert.match(run.stdout, /FAIL\s+image minimal\s+image "minimal" is not built\n\s+fix: hearth image build minimal/);
});
