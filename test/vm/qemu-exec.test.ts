import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isHearthError } from '../../src/errors.ts';
import type { Vm } from '../../src/vm/driver.ts';
import { processStartTime } from '../../src/vm/registry.ts';
import { captureOutput, createTestHost, processListContains, type TestHost } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';

const SPEC = { image: 'minimal', cpus: 1, memoryMib: 256, network: false };

async function runIn(host: TestHost, vm: Vm, script: string, env: Record<string, string> = {}) {
  const out = captureOutput();
  const result = await host.driver.exec(vm.id, { argv: ['sh', '-c', script], env }, out.sink);
  return { ...result, ...out.text(), raw: out };
}

describe('a cold-booted VM runs commands in turn', () => {
  let host: TestHost;
  let vm: Vm;
  let qemuPid: number;

  before(async () => {
    host = await createTestHost();
    vm = await host.driver.boot(SPEC);
    qemuPid = (await host.driver.list())[0]?.pid ?? 0;
  });
  after(async () => {
    await host.cleanup();
  });

  it('reports exit codes 0, 1 and 137 for a SIGKILLed command', async () => {
    assert.equal((await runIn(host, vm, 'true')).exitCode, 0);
    assert.equal((await runIn(host, vm, 'exit 1')).exitCode, 1);
    const killed = await runIn(host, vm, 'kill -9 $$');
    assert.equal(killed.exitCode, 137);
    assert.equal(killed.signal, 9);
  });

  it('keeps stderr apart from stdout, each in order, with rising timestamps', async () => {
    const offsets: bigint[] = [];
    const stdout: string[] = [];
    const stderr: string[] = [];
    await host.driver.exec(
      vm.id,
      { argv: ['sh', '-c', 'for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done'] },
      { stdout: (b, t) => (stdout.push(b.toString()), offsets.push(t)), stderr: (b, t) => (stderr.push(b.toString()), offsets.push(t)) },
    );
    assert.equal(stdout.join(''), 'out1\nout2\nout3\n');
    assert.equal(stderr.join(''), 'err1\nerr2\nerr3\n');
    const sorted = [...offsets].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    assert.deepEqual(offsets, sorted);
  });

  it('streams 4 MiB of random binary output intact', async () => {
    const made = await runIn(host, vm, 'head -c 4194304 /dev/urandom > /tmp/blob && sha256sum /tmp/blob');
    const guestHash = made.stdout.split(' ')[0];
    const cat = await runIn(host, vm, 'cat /tmp/blob');
    const bytes = Buffer.concat(cat.raw.stdout);
    assert.equal(bytes.length, 4194304);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), guestHash);
  });

  it('passes env and working directory, and reports a missing program as 127', async () => {
    const out = captureOutput();
    const result = await host.driver.exec(
      vm.id,
      { argv: ['sh', '-c', 'echo "$GREETING from $(pwd)"'], env: { GREETING: 'hello world' }, cwd: '/tmp' },
      out.sink,
    );
    assert.equal(result.exitCode, 0);
    assert.equal(out.text().stdout, 'hello world from /tmp\n');
    const missing = captureOutput();
    assert.equal((await host.driver.exec(vm.id, { argv: ['no-such-program'] }, missing.sink)).exitCode, 127);
    assert.match(missing.text().stderr, /cannot run no-such-program/);
  });

  it('cannot see host files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hearth-host-only-'));
    try {
      await writeFile(join(dir, 'marker'), 'host secret');
      const probe = await runIn(host, vm, `test -e ${dir}/marker; echo $?; cat /proc/mounts`);
      assert.equal(probe.stdout.split('\n')[0], '1');
      assert.doesNotMatch(probe.stdout, /9p|virtiofs|nfs|fuse/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('has no network by default: only the loopback interface, and the host is unreachable', async () => {
    const server = createServer((_req, res) => res.end('reached'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const probe = await runIn(host, vm, `ls /sys/class/net; timeout 3 wget -q -O - http://10.0.2.2:${port}/ && echo REACHED || echo unreachable`);
      assert.equal(probe.stdout, 'lo\nunreachable\n');
    } finally {
      server.close();
    }
  });

  it('keeps secrets passed as env off the kernel command line, the host process list, the console and the logs', async () => {
    const secret = `s3cret-${randomBytes(8).toString('hex')}`;
    const output = captureOutput();
    const exec = host.driver.exec(
      vm.id,
      { argv: ['sh', '-c', 'test "$TOKEN" = "$EXPECTED" && cat /proc/cmdline && sleep 2'], env: { TOKEN: secret, EXPECTED: secret } },
      output.sink,
    );
    // Look at the host's processes while the command runs with the secret in its environment: once the guest printed
    // its command line, the secret has crossed from host to guest and the command is sleeping.
    let ended = false;
    const settle = (): void => {
      ended = true;
    };
    exec.then(settle, settle); // its outcome is asserted below
    await waitFor(() => output.text().stdout.length > 0 || ended, {
      what: 'the command to run in the guest with the secret in its environment',
      timeout: 60_000,
    });
    assert.ok(output.text().stdout.length > 0, `the command printed nothing before it ended: ${output.text().stderr}`);
    assert.equal(await processListContains(secret), false, 'secret visible in the host process list');
    const result = await exec;
    assert.equal(result.exitCode, 0, 'the guest did not receive the secret');
    const record = (await host.driver.list())[0];
    assert.ok(record);
    for (const file of await readdir(record.runtimeDir)) {
      if (file.endsWith('.sock')) continue;
      assert.doesNotMatch(await readFile(join(record.runtimeDir, file), 'utf8'), new RegExp(secret), `secret found in ${file}`);
    }
    const guestCmdline = await runIn(host, vm, 'cat /proc/cmdline');
    assert.doesNotMatch(guestCmdline.stdout, new RegExp(secret));
    assert.ok(host.logLines.length > 0, 'the driver logged nothing: the log check would prove nothing');
    assert.ok(!host.logLines.some((line) => line.includes(secret)), 'secret found in a log line');
  });

  it('is gone after destroy: no QEMU process and no runtime directory', async () => {
    assert.ok(qemuPid > 0 && processStartTime(qemuPid) !== undefined, 'QEMU should be running before destroy');
    await host.driver.destroy(vm.id);
    await host.driver.destroy(vm.id); // idempotent
    assert.equal(processStartTime(qemuPid), undefined);
    assert.deepEqual(await readdir(host.driver.registry.vmsDir), []);
    assert.equal(vm.state, 'destroyed');
    await assert.rejects(host.driver.exec(vm.id, { argv: ['true'] }), (e) => isHearthError(e, 'HEARTH_ERR_VM_GONE'));
  });
});

describe('timeouts and opt-in network', () => {
  let host: TestHost;
  before(async () => {
    host = await createTestHost();
  });
  after(async () => {
    await host.cleanup();
  });

  it('destroys the VM when a command outlives its timeout', async () => {
    const vm = await host.driver.boot(SPEC);
    const pid = (await host.driver.list())[0]?.pid ?? 0;
    const started = Date.now();
    await assert.rejects(host.driver.exec(vm.id, { argv: ['sleep', '60'], timeoutSeconds: 1 }), (e) => isHearthError(e, 'HEARTH_ERR_EXEC_TIMEOUT'));
    assert.ok(Date.now() - started < 30_000, 'the timeout did not fire');
    assert.equal(vm.state, 'destroyed');
    assert.equal(processStartTime(pid), undefined, 'QEMU survived the timeout');
    assert.deepEqual(await readdir(host.driver.registry.vmsDir), []);
  });

  it('reaches the host through user-mode networking when asked to', async () => {
    const server = createServer((_req, res) => res.end('reached'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const vm = await host.driver.boot({ ...SPEC, network: true });
      const probe = await runIn(host, vm, `timeout 10 wget -q -O - http://10.0.2.2:${port}/`);
      assert.equal(probe.stdout, 'reached');
      await host.driver.destroy(vm.id);
    } finally {
      server.close();
    }
  });

  it('refuses a command while another runs, naming the state', async () => {
    const vm = await host.driver.boot(SPEC);
    const first = host.driver.exec(vm.id, { argv: ['sleep', '1'] });
    await assert.rejects(host.driver.exec(vm.id, { argv: ['true'] }), (e) => isHearthError(e, 'HEARTH_ERR_VM_STATE') && /while running/.test(e.message));
    assert.equal((await first).exitCode, 0);
    await host.driver.destroy(vm.id);
  });

  it('rejects a bad shape before starting anything', async () => {
    await assert.rejects(host.driver.boot({ ...SPEC, cpus: 0 }), (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /--cpus/.test(e.message));
    await assert.rejects(host.driver.boot({ ...SPEC, image: 'Not An Image' }), (e) => isHearthError(e, 'HEARTH_ERR_IMAGE_UNKNOWN'));
    await assert.rejects(host.driver.boot({ ...SPEC, image: 'never-built' }), (e) => isHearthError(e, 'HEARTH_ERR_IMAGE_NOT_BUILT'));
  });
});
