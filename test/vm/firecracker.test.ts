import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isHearthError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { FirecrackerDriver } from '../../src/vm/firecracker/driver.ts';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { captureOutput, createTestHost, HEARTH_BIN, type TestHost } from '../support/env.ts';
import { validateRequest } from '../support/firecracker-fake/spec.ts';

// With a real firecracker and usable KVM, HEARTH_TEST_FIRECRACKER=1 runs the same tests against it.
const REAL = process.env.HEARTH_TEST_FIRECRACKER === '1';
const FAKE_BINARY = join(import.meta.dirname, '..', 'support', 'firecracker-fake', 'bin', 'firecracker');

describe(`Firecracker driver against ${REAL ? 'the real firecracker' : 'the API fake (validated against the official OpenAPI spec)'}`, () => {
  let host: TestHost;
  let driver: FirecrackerDriver;
  let logPath: string;
  before(async () => {
    host = await createTestHost();
    await mkdir(host.paths.data, { recursive: true });
    logPath = join(host.paths.data, 'firecracker-requests.jsonl');
    process.env.FAKE_FIRECRACKER_LOG = logPath;
    driver = new FirecrackerDriver({ paths: host.paths, logger: createLogger({ level: 'silent' }), binary: REAL ? (process.env.HEARTH_FIRECRACKER ?? 'firecracker') : FAKE_BINARY, bootTimeoutMs: 30_000 });
  });
  after(async () => {
    await driver.destroyAll();
    await host.cleanup();
    delete process.env.FAKE_FIRECRACKER_LOG;
  });

  const requests = async (): Promise<{ method: string; path: string; body: unknown; status: number }[]> =>
    (await readFile(logPath, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { method: string; path: string; body: unknown; status: number });

  test('boots over the REST API (every request valid by the spec), runs a command through the vsock agent, and is gone after destroy', async () => {
    const vm = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: false });
    const out = captureOutput();
    const result = await driver.exec(vm.id, { argv: ['echo', 'hello', 'firecracker'] }, out.sink);
    assert.equal(result.exitCode, 0);
    assert.equal(out.text().stdout, 'hello firecracker\n');
    if (!REAL) {
      const log = await requests();
      assert.deepEqual(log.map((r) => `${r.method} ${r.path}`), ['PUT /boot-source', 'PUT /machine-config', 'PUT /vsock', 'PUT /actions']);
      for (const r of log) assert.equal(validateRequest(r.method, r.path, r.body).ok, true, `${r.method} ${r.path} is valid by the spec`);
      const boot = log[0]!.body as { kernel_image_path: string; boot_args: string };
      assert.match(boot.kernel_image_path, /vmlinux$/, 'Firecracker boots the ELF vmlinux');
      assert.match(boot.boot_args, /hearth\.vsock=1024/);
      assert.doesNotMatch(boot.boot_args, /token|secret/i);
    }
    await driver.destroy(vm.id);
    assert.deepEqual(await driver.list(), []);
  });

  test('snapshot: pause, /snapshot/create, resume; a clone loads into a fresh process with its own vsock socket', async () => {
    const vm = await driver.boot({ image: 'minimal', cpus: 2, memoryMib: 256, network: false });
    await driver.snapshot(vm.id, 'fc-snap');
    const clone = await driver.restore('fc-snap');
    assert.equal(clone.origin.kind, 'snapshot');
    const out = captureOutput();
    assert.equal((await driver.exec(clone.id, { argv: ['echo', 'restored'] }, out.sink)).exitCode, 0);
    assert.equal(out.text().stdout, 'restored\n');
    if (!REAL) {
      const paths = (await requests()).map((r) => `${r.method} ${r.path}`);
      assert.ok(paths.includes('PATCH /vm') && paths.includes('PUT /snapshot/create') && paths.includes('PUT /snapshot/load'), paths.join(', '));
      const load = (await requests()).find((r) => r.path === '/snapshot/load')!.body as { vsock_override?: { uds_path: string }; mem_backend: { backend_type: string } };
      assert.equal(load.mem_backend.backend_type, 'File');
      assert.match(load.vsock_override?.uds_path ?? '', new RegExp(`${clone.id}/vsock\\.sock$`));
    }
    await driver.destroy(clone.id);
    await driver.destroy(vm.id);
  });

  test('the CLI runs a command on it with --driver firecracker', { skip: REAL && 'covered by the driver tests' }, async () => {
    const result = spawnSync(process.execPath, [HEARTH_BIN, '--driver', 'firecracker', 'vm', 'run', '--', 'echo', 'via', 'cli'], { env: { ...host.env, HEARTH_FIRECRACKER: FAKE_BINARY }, encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, 'via cli\n');
    const bad = spawnSync(process.execPath, [HEARTH_BIN, '--driver', 'xen', 'vm', 'run', '--', 'true'], { env: host.env, encoding: 'utf8' });
    assert.equal(bad.status, 125);
    assert.match(bad.stderr, /use one of qemu, firecracker/);
  });

  test('a networked VM gets its own TAP device, named in PUT /network-interfaces, and loses it on destroy', { skip: (process.getuid?.() !== 0 || !existsSync('/dev/net/tun')) && 'TAP devices need root' }, async () => {
    const vm = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: true });
    const log = REAL ? [] : await requests();
    const iface = log.find((r) => r.path === '/network-interfaces/eth0');
    const boot = log.filter((r) => r.path === '/boot-source').at(-1)?.body as { boot_args: string } | undefined;
    if (!REAL) {
      assert.ok(iface, 'PUT /network-interfaces/eth0 was sent');
      assert.equal(validateRequest(iface.method, iface.path, iface.body).ok, true);
      const device = (iface.body as { host_dev_name: string }).host_dev_name;
      assert.doesNotThrow(() => execFileSync('ip', ['link', 'show', device], { stdio: 'ignore' }));
      assert.match(boot?.boot_args ?? '', /hearth\.ip=172\.30\.\d+\.\d+\/30 hearth\.gw=172\.30\./);
      await driver.destroy(vm.id);
      assert.throws(() => execFileSync('ip', ['link', 'show', device], { stdio: 'ignore' }));
    } else {
      await driver.destroy(vm.id);
    }
  });

  test('refuses what Firecracker cannot do, with the fix', async () => {
    await assert.rejects(driver.boot({ image: 'minimal', cpus: 3, memoryMib: 256, network: false }), (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /1 or an even number/.test(e.message));
    const missing = new FirecrackerDriver({ paths: host.paths, logger: createLogger({ level: 'silent' }), binary: '/nonexistent/firecracker' });
    await assert.rejects(missing.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: false }), (e) => isHearthError(e, 'HEARTH_ERR_VMM_MISSING') && /releases/.test(e.fix));
  });
});
