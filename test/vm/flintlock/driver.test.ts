// The Flintlock driver end to end against the fake flintlockd, whose guests
// run their cloud-init user-data for real: the compiled hearth-agent starts
// in connect mode and dials the driver's agent listener back (as a host
// process in the first suite, as PID 1 of a QEMU microvm in the second).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { resolvePaths, type HearthPaths } from '../../../src/config/paths.ts';
import { isHearthError } from '../../../src/errors.ts';
import { buildGuestAgent } from '../../../src/image/agent.ts';
import { driverSettings, loadHostConfig } from '../../../src/config/host-config.ts';
import { loadImage } from '../../../src/image/store.ts';
import { createLogger } from '../../../src/log.ts';
import { FlintlockClient } from '../../../src/vm/flintlock/client.ts';
import { FlintlockDriver, FLINTLOCK_LABELS, type FlintlockDriverOptions } from '../../../src/vm/flintlock/driver.ts';
import type { CreateMicroVmRequest } from '../../../src/vm/flintlock/proto.ts';
import { reconcileLeakedVms } from '../../../src/vm/gc.ts';
import { QemuDriver } from '../../../src/vm/qemu/driver.ts';
import { createHostDriver } from '../../../src/vm/host-driver.ts';
import { captureOutput } from '../../support/env.ts';
import { ProcessGuests, QemuGuests } from '../../support/flintlock-fake/guest.ts';
import { FakeFlintlock } from '../../support/flintlock-fake/server.ts';
import { waitFor } from '../../support/wait.ts';

const SPEC = { image: 'runner', cpus: 2, memoryMib: 512, network: false } as const;

/** The Flintlock settings the HEARTH_FLINTLOCK_* variables give, as the CLI and serve resolve them. */
const flintlockFromEnv = (env: NodeJS.ProcessEnv) => driverSettings(loadHostConfig({ env })).flintlock;

describe('Flintlock driver against the fake flintlockd with cloud-init guests', () => {
  let root: string;
  let paths: HearthPaths;
  let guests: ProcessGuests;
  let fake: FakeFlintlock;
  let driver: FlintlockDriver;
  const logLines: string[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        callback();
      },
    }),
  });
  const tokens: string[] = [];

  const options = (overrides: Partial<FlintlockDriverOptions> = {}): FlintlockDriverOptions => ({
    paths,
    logger,
    endpoint: fake.endpoint,
    namespace: 'hearth-test',
    owner: 'test-host',
    agentListen: '127.0.0.1:0',
    // Filled in once the listener is bound (port 0 above).
    agentUrl: 'tcp://127.0.0.1:1',
    kernelImage: 'ghcr.io/liquidmetal-dev/flintlock-kernel:5.10.77',
    kernelFilename: 'boot/vmlinux',
    rootImages: { runner: 'ghcr.io/acme/hearth-runner:24.04' },
    bootTimeoutMs: 20_000,
    deleteTimeoutMs: 5_000,
    pollIntervalMs: 50,
    ...overrides,
  });

  /** A driver whose advertised URL is its own listener's real address. */
  async function startDriver(overrides: Partial<FlintlockDriverOptions> = {}): Promise<FlintlockDriver> {
    const probe = new FlintlockDriver(options(overrides));
    const listener = await probe.listener();
    const port = listener.port;
    await probe.destroyAll();
    return new FlintlockDriver(options({ agentListen: `127.0.0.1:${port}`, agentUrl: `tcp://127.0.0.1:${port}`, ...overrides }));
  }

  const creates = (): CreateMicroVmRequest[] => fake.requests.filter((r) => r.method === 'CreateMicroVM').map((r) => r.request as CreateMicroVmRequest);
  const userData = (request: CreateMicroVmRequest): string => Buffer.from(request.microvm?.metadata?.['user-data'] ?? '', 'base64').toString('utf8');

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'hearth-flintlock-'));
    paths = { cache: resolvePaths().cache, data: join(root, 'data'), runtime: join(root, 'run') };
    guests = new ProcessGuests({ agentBinary: (await buildGuestAgent(paths.cache)).path, dir: join(root, 'guests') });
    fake = await FakeFlintlock.start({ createDelayMs: 200, deleteDelayMs: 200, guests });
    driver = await startDriver();
  });
  after(async () => {
    await driver.destroyAll();
    await fake.close();
    await guests.close();
    await rm(root, { recursive: true, force: true });
  });

  it('boots through CreateMicroVM and cloud-init, runs commands over the connect-back agent, and leaves nothing after destroy', async () => {
    const vm = await driver.boot(SPEC);
    assert.equal(vm.state, 'ready');
    assert.ok(driver.isAlive(vm.id));

    const request = creates().at(-1)!;
    const spec = request.microvm!;
    assert.equal(spec.id, vm.id);
    assert.equal(spec.namespace, 'hearth-test');
    assert.equal(spec.vcpu, 2);
    assert.equal(spec.memory_in_mb, 512);
    assert.equal(spec.kernel?.image, 'ghcr.io/liquidmetal-dev/flintlock-kernel:5.10.77');
    assert.equal(spec.kernel?.filename, 'boot/vmlinux');
    assert.equal(spec.kernel?.add_network_config, true);
    assert.equal(spec.root_volume?.source?.container_source, 'ghcr.io/acme/hearth-runner:24.04');
    assert.equal(spec.interfaces?.length, 1, 'a NIC, so the guest can dial back');
    assert.deepEqual(spec.labels, {
      [FLINTLOCK_LABELS.managedBy]: 'hearth',
      [FLINTLOCK_LABELS.owner]: 'test-host',
      [FLINTLOCK_LABELS.vmId]: vm.id,
      [FLINTLOCK_LABELS.image]: 'runner',
    });
    assert.match(userData(request), new RegExp(`HEARTH_AGENT_URL='${driver.agentUrl}'`));
    const token = /HEARTH_AGENT_TOKEN='([^']+)'/.exec(userData(request))?.[1];
    assert.ok(token && token.length >= 40, 'a random per-VM token');
    tokens.push(token);

    const out = captureOutput();
    const result = await driver.exec(vm.id, { argv: ['sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 7'], cwd: '/' }, out.sink);
    assert.equal(result.exitCode, 7);
    assert.deepEqual(out.text(), { stdout: 'to-stdout\n', stderr: 'to-stderr\n' });
    const env = captureOutput();
    assert.equal(
      (await driver.exec(vm.id, { argv: ['sh', '-c', 'env; tr "\\0" "\\n" < /proc/$PPID/environ'], env: { STEP: 'two' }, cwd: '/' }, env.sink)).exitCode,
      0,
    );
    assert.match(env.text().stdout, /^STEP=two$/m);
    assert.ok(!env.text().stdout.includes(token), "the token is not in the guest commands' environment, nor the agent's");

    const uid = [...fake.microvms.values()].find((m) => m.spec?.id === vm.id)?.spec?.uid;
    assert.ok(uid);
    assert.deepEqual(guests.running, [uid]);
    const console = await guests.console(uid);
    assert.match(console, /connected to tcp:\/\/127\.0\.0\.1:\d+/);
    await driver.destroy(vm.id);
    await driver.destroy(vm.id); // idempotent
    assert.equal(fake.microvms.has(uid), false, 'deleted at flintlockd, and the delete carried out');
    assert.deepEqual(guests.running, []);
    assert.deepEqual(await driver.list(), []);
    assert.equal(driver.isAlive(vm.id), false);
    await assert.rejects(driver.exec(vm.id, { argv: ['true'] }), (error) => isHearthError(error, 'HEARTH_ERR_VM_GONE'));
    assert.ok(!console.includes(token), 'the guest console (cloud-init output, agent log) never shows the token');
  });

  it('refuses a connection with a token it did not issue, and keeps waiting for the right one', async () => {
    const listener = await driver.listener();
    const socket = connect(listener.port, '127.0.0.1');
    socket.write('HEARTH-CONNECT 1 forged-token-0000000000000000000000000000\n');
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    await new Promise((resolve) => socket.once('close', resolve));
    assert.equal(answer, 'DENIED unknown-token\n');
    assert.ok(logLines.some((line) => line.includes('agent connection refused: unknown token')));
    assert.ok(!logLines.some((line) => line.includes('forged-token')));
    // A boot right after still gets its own agent.
    const vm = await driver.boot(SPEC);
    tokens.push(/HEARTH_AGENT_TOKEN='([^']+)'/.exec(userData(creates().at(-1)!))![1]!);
    await driver.destroy(vm.id);
  });

  it('fails the boot when the agent never connects, naming the VM, the URL and what to check, and deletes the microVM', async () => {
    // Advertise a port nobody listens on: the guest dials it in vain, as a guest without a route would.
    const lost = await startDriver({ agentUrl: 'tcp://127.0.0.1:9', bootTimeoutMs: 2_500 });
    try {
      const before = fake.microvms.size;
      const started = Date.now();
      await assert.rejects(lost.boot(SPEC), (error) => {
        assert.ok(isHearthError(error, 'HEARTH_ERR_AGENT_NO_CONNECT'), String(error));
        assert.match(error.message, /^the agent of VM vm-[0-9a-f]{12} did not connect back to tcp:\/\/127\.0\.0\.1:9 within 2\.5s$/);
        assert.match(error.fix, /guest can reach tcp:\/\/127\.0\.0\.1:9/);
        assert.match(error.fix, /cloud-init/);
        return true;
      });
      assert.ok(Date.now() - started < 10_000);
      const uid = [...fake.microvms.values()].at(-1)?.spec?.uid;
      assert.equal(fake.microvms.size, before, `the failed VM was deleted (${uid ?? 'none'} left)`);
      assert.deepEqual(await lost.list(), []);
    } finally {
      await lost.destroyAll();
    }
  });

  it("fails the boot with flintlockd's verdict when the microVM goes FAILED", async () => {
    const slow = await FakeFlintlock.start({ createDelayMs: 60_000, deleteDelayMs: 50 });
    const failing = await startDriver({ endpoint: slow.endpoint });
    try {
      const booting = failing.boot(SPEC);
      const uid = await waitFor(() => [...slow.microvms.keys()][0], { what: 'the boot to create its microVM', timeout: 10_000, interval: 20 });
      slow.fail(uid, 4);
      await assert.rejects(booting, (error) => {
        assert.ok(isHearthError(error, 'HEARTH_ERR_FLINTLOCK'), String(error));
        assert.match(error.message, /state FAILED after 4 reconcile attempt/);
        assert.match(error.fix, /flintlockd's log/);
        return true;
      });
    } finally {
      await failing.destroyAll();
      await slow.close();
    }
  });

  it('lists its own VMs by namespace and owner label, reports one flintlockd has but the registry lost as leaked, and gc collects only that', async () => {
    const vm = await driver.boot(SPEC);
    const client = FlintlockClient.connect(fake.endpoint);
    try {
      const base = { vcpu: 1, memoryInMb: 256, kernel: { image: 'k' }, rootVolume: { id: 'root', source: { containerSource: 'r' } } };
      const ours = { [FLINTLOCK_LABELS.managedBy]: 'hearth', [FLINTLOCK_LABELS.owner]: 'test-host' };
      await client.createMicroVm({ ...base, id: 'vm-0rphan000000', namespace: 'hearth-test', labels: { ...ours, [FLINTLOCK_LABELS.image]: 'runner' } });
      await client.createMicroVm({ ...base, id: 'vm-otherhost000', namespace: 'hearth-test', labels: { ...ours, [FLINTLOCK_LABELS.owner]: 'other-host' } });
      await client.createMicroVm({ ...base, id: 'vm-elsewhere000', namespace: 'not-hearth', labels: ours });
      await client.createMicroVm({ ...base, id: 'unlabelled', namespace: 'hearth-test' });

      const records = await driver.list();
      assert.deepEqual(records.map((r) => r.id).sort(), [vm.id, 'vm-0rphan000000'].sort());
      const mine = records.find((r) => r.id === vm.id)!;
      assert.equal(mine.driver, 'flintlock');
      assert.equal(mine.ownerPid, process.pid);
      assert.equal(mine.leaked, false);
      assert.equal(mine.alive, true);
      assert.equal(records.find((r) => r.id === 'vm-0rphan000000')?.leaked, true);

      const collected = await reconcileLeakedVms(driver, { all: false });
      assert.deepEqual(
        collected.map((r) => r.id),
        ['vm-0rphan000000'],
      );
      assert.deepEqual(
        (await driver.list()).map((r) => r.id),
        [vm.id],
      );
      const left = [...fake.microvms.values()].map((m) => m.spec?.id).sort();
      assert.deepEqual(left, [vm.id, 'unlabelled', 'vm-elsewhere000', 'vm-otherhost000'].sort(), 'other owners, namespaces and unlabelled VMs untouched');
    } finally {
      client.close();
      await driver.destroy(vm.id);
    }
  });

  it('refuses snapshots, restores and host directories, saying what to use instead', async () => {
    await assert.rejects(driver.snapshot('vm-000000000000', 'snap'), (error) => {
      assert.ok(isHearthError(error, 'HEARTH_ERR_DRIVER_UNSUPPORTED'), String(error));
      assert.match(error.message, /^the flintlock driver cannot snapshot VM vm-000000000000 as "snap": Flintlock has no snapshot API/);
      assert.match(error.fix, /booted pool/);
      assert.match(error.fix, /firecracker driver/);
      return true;
    });
    await assert.rejects(driver.restore('snap'), (error) => isHearthError(error, 'HEARTH_ERR_DRIVER_UNSUPPORTED') && /firecracker/.test(error.fix));
    await assert.rejects(
      driver.boot({ ...SPEC, source: root }),
      (error) => isHearthError(error, 'HEARTH_ERR_DRIVER_UNSUPPORTED') && /checkout/.test(error.fix),
    );
    await assert.rejects(
      driver.boot({ ...SPEC, image: 'unmapped' }),
      (error) => isHearthError(error, 'HEARTH_ERR_BAD_OPTION') && /root images/.test(error.fix),
    );
  });

  it('never puts a token into a log line, a label, the kernel cmdline or meta-data', () => {
    assert.ok(tokens.length >= 2);
    assert.notEqual(tokens[0], tokens[1], 'a fresh token per VM');
    const logs = logLines.join('\n');
    for (const request of creates()) {
      const { metadata, ...rest } = request.microvm!;
      const { 'user-data': _userData, ...otherDocuments } = metadata ?? {};
      const visible =
        JSON.stringify({ ...rest, otherDocuments, requestMetadata: request.metadata }) +
        Buffer.from(otherDocuments['meta-data'] ?? '', 'base64').toString('utf8');
      for (const token of tokens) assert.ok(!visible.includes(token), 'a token outside user-data');
    }
    for (const token of tokens) assert.ok(!logs.includes(token), 'a token in the log');
  });

  it('is wired into createHostDriver, with the settings it needs asked for by name', () => {
    assert.throws(
      () => createHostDriver('flintlock', { paths, logger }),
      (error) => isHearthError(error, 'HEARTH_ERR_BAD_OPTION') && /HEARTH_FLINTLOCK_AGENT_URL/.test(error.fix),
    );
    const wired = createHostDriver('flintlock', {
      paths,
      logger,
      flintlock: { endpoint: fake.endpoint, agentListen: '0.0.0.0:7071', agentUrl: 'tcp://10.0.0.1:7071', kernelImage: 'k' },
    });
    assert.equal(wired.name, 'flintlock');
    assert.throws(
      () =>
        createHostDriver('flintlock', {
          paths,
          logger,
          flintlock: { endpoint: fake.endpoint, agentListen: '0.0.0.0:7071', agentUrl: 'tcp://hearth.local:7071', kernelImage: 'k' },
        }),
      (error) => isHearthError(error, 'HEARTH_ERR_BAD_OPTION') && /IP address/.test(error.fix),
    );
    assert.equal(flintlockFromEnv({}), undefined);
    assert.deepEqual(
      flintlockFromEnv({
        HEARTH_FLINTLOCK_ENDPOINT: '10.0.0.2:9090',
        HEARTH_FLINTLOCK_AGENT_URL: 'tcp://10.0.0.1:7071',
        HEARTH_FLINTLOCK_KERNEL_IMAGE: 'k',
        HEARTH_FLINTLOCK_ROOT_IMAGES: 'debian=ghcr.io/a/d:12,runner=ghcr.io/a/r:1',
      }),
      {
        endpoint: '10.0.0.2:9090',
        agentListen: '0.0.0.0:7071',
        agentUrl: 'tcp://10.0.0.1:7071',
        kernelImage: 'k',
        rootImages: { debian: 'ghcr.io/a/d:12', runner: 'ghcr.io/a/r:1' },
      },
    );
  });
});

// The stronger proof: the microVM is a real QEMU microvm of the minimal image, the
// agent its PID 1, finding cloud-init's /etc/hearth/agent.env and dialing back over
// the guest's NIC (QEMU user-mode networking reaches the host's loopback as 10.0.2.2).
describe('Flintlock driver with real QEMU guests (minimal image, agent as PID 1)', () => {
  let root: string;
  let guests: QemuGuests | undefined;
  let fake: FakeFlintlock;
  let driver: FlintlockDriver;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'hearth-flintlock-qemu-'));
    const paths = { cache: resolvePaths().cache, data: join(root, 'data'), runtime: join(root, 'run') };
    // npm test builds the image first; without it this fails naming the build command.
    const image = await loadImage(paths.cache, 'minimal');
    // The same KVM decision as every other VM here: /dev/kvm can exist and still hang guests.
    const { accel } = await new QemuDriver({ paths, logger: createLogger({ level: 'silent' }) }).accel();
    guests = new QemuGuests({
      kernel: image.kernelPath,
      initrd: image.initrdPath,
      agentBinary: (await buildGuestAgent(paths.cache)).path,
      dir: join(root, 'guests'),
      accel,
    });
    fake = await FakeFlintlock.start({ createDelayMs: 100, deleteDelayMs: 100, guests });
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const address = probe.address();
        probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    driver = new FlintlockDriver({
      paths,
      logger: createLogger({ level: 'silent' }),
      endpoint: fake.endpoint,
      namespace: 'hearth-qemu',
      owner: 'test-host',
      agentListen: `127.0.0.1:${port}`,
      agentUrl: `tcp://10.0.2.2:${port}`,
      kernelImage: 'ghcr.io/liquidmetal-dev/flintlock-kernel:6.1',
      rootImages: { minimal: 'ghcr.io/acme/hearth-minimal:1' },
      bootTimeoutMs: 120_000,
      pollIntervalMs: 100,
    });
  });
  after(async () => {
    await driver?.destroyAll();
    await fake?.close();
    await guests?.close();
    await rm(root, { recursive: true, force: true });
  });

  it('boots, finds agent.env, connects back over the NIC, runs commands, and is gone after destroy', async () => {
    const vm = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: false });
    const uid = [...fake.microvms.values()].find((m) => m.spec?.id === vm.id)?.spec?.uid;
    assert.ok(uid);
    const token = /HEARTH_AGENT_TOKEN='([^']+)'/.exec(Buffer.from(fake.microvms.get(uid)?.spec?.metadata?.['user-data'] ?? '', 'base64').toString('utf8'))?.[1];
    assert.ok(token);

    const out = captureOutput();
    const result = await driver.exec(vm.id, { argv: ['sh', '-c', 'echo pid1=$(cat /proc/1/comm); ls -l /etc/hearth/agent.env >&2; exit 5'] }, out.sink);
    assert.equal(result.exitCode, 5);
    assert.match(out.text().stdout, /^pid1=init$/m);
    assert.match(out.text().stderr, /^-rw------- .*\/etc\/hearth\/agent\.env$/m, "written with cloud-init's permissions");
    const env = captureOutput();
    await driver.exec(vm.id, { argv: ['sh', '-c', 'tr "\\0" "\\n" < /proc/1/environ; cat /proc/cmdline'] }, env.sink);
    assert.ok(!env.text().stdout.includes(token), "not in PID 1's environment nor on the kernel command line");

    const console = await guests!.console(uid);
    assert.match(console, /connected to tcp:\/\/10\.0\.2\.2:\d+/);
    assert.ok(!console.includes(token), 'the console never shows the token');
    await driver.destroy(vm.id);
    assert.equal(fake.microvms.has(uid), false);
    assert.deepEqual(guests!.running, [], 'the QEMU process is gone');
  });
});
