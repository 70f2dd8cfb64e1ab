import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isHearthError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { FirecrackerApi } from '../../src/vm/firecracker/api.ts';
import { FirecrackerDriver, type JailerOptions } from '../../src/vm/firecracker/driver.ts';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { captureOutput, createTestHost, HEARTH_BIN, processListContains, type TestHost } from '../support/env.ts';
import { validateRequest } from '../support/firecracker-fake/spec.ts';
import type { TapNetwork } from '../../src/vm/network/tap.ts';

// With a real firecracker and usable KVM, HEARTH_TEST_FIRECRACKER=1 runs the same tests against it.
const REAL = process.env.HEARTH_TEST_FIRECRACKER === '1';
const FAKE_BINARY = join(import.meta.dirname, '..', 'support', 'firecracker-fake', 'bin', 'firecracker');
const FAKE_JAILER = join(import.meta.dirname, '..', 'support', 'firecracker-fake', 'bin', 'jailer');
const AS_ROOT = process.getuid?.() === 0;
// The unprivileged user the jailed VMM runs as (nobody:nogroup on Debian).
const JAIL_UID = 65534;
const canTap =
  AS_ROOT &&
  existsSync('/dev/net/tun') &&
  (() => {
    try {
      execFileSync('nft', ['list', 'tables'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

describe(`Firecracker driver against ${REAL ? 'the real firecracker' : 'the API fake (validated against the official OpenAPI spec)'}`, () => {
  let host: TestHost;
  let driver: FirecrackerDriver;
  let logPath: string;
  let agentLogPath: string;
  before(async () => {
    host = await createTestHost();
    await mkdir(host.paths.data, { recursive: true });
    logPath = join(host.paths.data, 'firecracker-requests.jsonl');
    agentLogPath = join(host.paths.data, 'firecracker-agent.jsonl');
    process.env.FAKE_FIRECRACKER_LOG = logPath;
    process.env.FAKE_FIRECRACKER_AGENT_LOG = agentLogPath;
    driver = new FirecrackerDriver({
      paths: host.paths,
      logger: createLogger({ level: 'silent' }),
      binary: REAL ? (process.env.HEARTH_FIRECRACKER ?? 'firecracker') : FAKE_BINARY,
      bootTimeoutMs: 30_000,
    });
  });
  after(async () => {
    await driver.destroyAll();
    await host.cleanup();
    delete process.env.FAKE_FIRECRACKER_LOG;
    delete process.env.FAKE_FIRECRACKER_AGENT_LOG;
  });

  const binary = (): string => (REAL ? (process.env.HEARTH_FIRECRACKER ?? 'firecracker') : FAKE_BINARY);
  const requests = async (): Promise<{ method: string; path: string; body: unknown; status: number }[]> =>
    (await readFile(logPath, 'utf8').catch(() => ''))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { method: string; path: string; body: unknown; status: number });

  test('boots over the REST API (every request valid by the spec), runs a command through the vsock agent, and is gone after destroy', async () => {
    const vm = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: false });
    const out = captureOutput();
    const result = await driver.exec(vm.id, { argv: ['echo', 'hello', 'firecracker'] }, out.sink);
    assert.equal(result.exitCode, 0);
    assert.equal(out.text().stdout, 'hello firecracker\n');
    if (!REAL) {
      const log = await requests();
      assert.deepEqual(
        log.map((r) => `${r.method} ${r.path}`),
        ['PUT /boot-source', 'PUT /machine-config', 'PUT /vsock', 'PUT /actions'],
      );
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
      const load = (await requests()).find((r) => r.path === '/snapshot/load')!.body as {
        vsock_override?: { uds_path: string };
        mem_backend: { backend_type: string };
      };
      assert.equal(load.mem_backend.backend_type, 'File');
      assert.match(load.vsock_override?.uds_path ?? '', new RegExp(`${clone.id}/vsock\\.sock$`));
    }
    await driver.destroy(clone.id);
    await driver.destroy(vm.id);
  });

  test('the CLI runs a command on it with --driver firecracker', { skip: REAL && 'covered by the driver tests' }, async () => {
    const result = spawnSync(process.execPath, [HEARTH_BIN, '--driver', 'firecracker', 'vm', 'run', '--', 'echo', 'via', 'cli'], {
      env: { ...host.env, HEARTH_FIRECRACKER: FAKE_BINARY },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, 'via cli\n');
    const bad = spawnSync(process.execPath, [HEARTH_BIN, '--driver', 'xen', 'vm', 'run', '--', 'true'], { env: host.env, encoding: 'utf8' });
    assert.equal(bad.status, 125);
    assert.match(bad.stderr, /use one of qemu, firecracker/);
  });

  test(
    'a networked VM gets its own TAP device, named in PUT /network-interfaces, and loses it on destroy',
    { skip: (process.getuid?.() !== 0 || !existsSync('/dev/net/tun')) && 'TAP devices need root' },
    async () => {
      const metadata = { repository: 'octo/hello', workflow: 'ci.yml', job_id: '42' };
      const vm = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: true, metadata });
      // MMDS holds the job metadata as the guest will read it (V2: behind a session token).
      const mmds = await new FirecrackerApi(join(host.paths.runtime, 'vms', vm.id, 'api.sock')).call('GET', '/mmds');
      assert.deepEqual(mmds, { hearth: { vm_id: vm.id, job: metadata } });
      const log = REAL ? [] : await requests();
      const iface = log.find((r) => r.path === '/network-interfaces/eth0');
      const boot = log.filter((r) => r.path === '/boot-source').at(-1)?.body as { boot_args: string } | undefined;
      if (!REAL) {
        assert.ok(iface, 'PUT /network-interfaces/eth0 was sent');
        assert.equal(validateRequest(iface.method, iface.path, iface.body).ok, true);
        const device = (iface.body as { host_dev_name: string }).host_dev_name;
        assert.doesNotThrow(() => execFileSync('ip', ['link', 'show', device], { stdio: 'ignore' }));
        assert.match(boot?.boot_args ?? '', /hearth\.ip=172\.30\.\d+\.\d+\/30 hearth\.gw=172\.30\./);
        const order = log.map((r) => `${r.method} ${r.path}`);
        const mmdsConfig = log.filter((r) => r.path === '/mmds/config').at(-1);
        assert.deepEqual(mmdsConfig?.body, { version: 'V2', network_interfaces: ['eth0'] });
        assert.ok(
          order.lastIndexOf('PUT /mmds/config') > order.lastIndexOf('PUT /network-interfaces/eth0') &&
            order.lastIndexOf('PUT /mmds') < order.lastIndexOf('PUT /actions'),
          order.join(', '),
        );
        for (const r of log.filter((e) => e.path.startsWith('/mmds')))
          assert.equal(validateRequest(r.method, r.path, r.body).ok, true, `${r.method} ${r.path} is valid by the spec`);
        await driver.destroy(vm.id);
        assert.throws(() => execFileSync('ip', ['link', 'show', device], { stdio: 'ignore' }));
      } else {
        await driver.destroy(vm.id);
      }
    },
  );

  test(
    'a networked snapshot restores into clones with a TAP device, /30 and MMDS store each; IDENTITY moves each guest onto its own address',
    { skip: (!canTap && 'TAP devices need root, /dev/net/tun and nft') || (REAL && 'the fake records the identity frames') },
    async () => {
      const seen = (await requests()).length;
      const vm = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: true, metadata: { job_id: '1' } });
      await driver.snapshot(vm.id, 'fc-net-snap');
      const clones = [await driver.restore('fc-net-snap'), await driver.restore('fc-net-snap', { metadata: { job_id: '2' } })];
      const nets = await Promise.all(
        [vm, ...clones].map(async (v) => JSON.parse(await readFile(join(host.paths.runtime, 'vms', v.id, 'net.json'), 'utf8')) as TapNetwork),
      );
      assert.equal(new Set(nets.map((n) => n.device)).size, 3, 'a TAP device each');
      assert.equal(new Set(nets.map((n) => n.guestIp)).size, 3, 'a /30 each');
      const log = (await requests()).slice(seen);
      for (const r of log) assert.equal(validateRequest(r.method, r.path, r.body).ok, true, `${r.method} ${r.path} is valid by the spec`);
      const loads = log
        .filter((r) => r.path === '/snapshot/load')
        .map((r) => r.body as { network_overrides?: { iface_id: string; host_dev_name: string }[]; vsock_override?: { uds_path: string } });
      assert.equal(loads.length, 2);
      for (const [i, clone] of clones.entries()) {
        const net = nets[i + 1]!;
        assert.deepEqual(loads[i]!.network_overrides, [{ iface_id: 'eth0', host_dev_name: net.device }], `clone ${i + 1}'s load names its own TAP device`);
        assert.match(loads[i]!.vsock_override?.uds_path ?? '', new RegExp(`${clone.id}/vsock\\.sock$`));
        assert.doesNotThrow(() => execFileSync('ip', ['link', 'show', net.device], { stdio: 'ignore' }), 'the TAP device exists while the clone lives');
        assert.doesNotThrow(
          () => execFileSync('nft', ['list', 'table', 'inet', `hearth_${net.device}`], { stdio: 'ignore' }),
          'and so does its firewall table',
        );
        // The MMDS store is not part of a snapshot: each clone's names the clone (config V2 on eth0 came with the snapshot).
        const mmds = await new FirecrackerApi(join(host.paths.runtime, 'vms', clone.id, 'api.sock')).call('GET', '/mmds');
        assert.deepEqual(mmds, { hearth: { vm_id: clone.id, job: i === 0 ? {} : { job_id: '2' } } });
      }
      assert.equal(log.filter((r) => r.path === '/mmds/config').length, 1, '/mmds/config is pre-boot only: sent for the cold boot alone');
      // The emulated agent recorded each IDENTITY: the clones were told their own address, gateway and DNS.
      const identities = (await readFile(agentLogPath, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { vmm: string; hostname: string; network?: { address: string; gateway: string; dns: string } });
      for (const [i, clone] of clones.entries()) {
        const net = nets[i + 1]!;
        const identity = identities.find((e) => e.vmm === clone.id);
        assert.deepEqual(identity?.network, { address: `${net.guestIp}/30`, gateway: net.hostIp, dns: '1.1.1.1' });
        assert.equal(identity?.hostname, `hearth-${clone.id.slice(3)}`);
      }
      assert.equal(identities.find((e) => e.vmm === vm.id)?.network, undefined, 'a cold boot takes its address from the kernel command line');
      const out = captureOutput();
      assert.equal((await driver.exec(clones[1]!.id, { argv: ['echo', 'networked clone'] }, out.sink)).exitCode, 0);
      assert.equal(out.text().stdout, 'networked clone\n');
      for (const [i, v] of [vm, ...clones].entries()) {
        await driver.destroy(v.id);
        const net = nets[i]!;
        assert.throws(() => execFileSync('ip', ['link', 'show', net.device], { stdio: 'ignore' }), `${net.device} is gone`);
        assert.throws(() => execFileSync('nft', ['list', 'table', 'inet', `hearth_${net.device}`], { stdio: 'ignore' }), `its nftables table is gone`);
        assert.equal(existsSync(join(host.paths.runtime, 'net', String(net.index))), false, 'its /30 is free again');
      }
      // An agent from before the network extension would leave the clone on the snapshot's address: refused, nothing left behind.
      process.env.FAKE_FIRECRACKER_AGENT_FLAGS = '0';
      try {
        await assert.rejects(
          driver.restore('fc-net-snap'),
          (e) => isHearthError(e, 'HEARTH_ERR_SNAPSHOT_STALE') && /cannot change the clone's network address/.test(e.message),
        );
      } finally {
        delete process.env.FAKE_FIRECRACKER_AGENT_FLAGS;
      }
      assert.deepEqual(await driver.list(), []);
      assert.deepEqual(await readdir(join(host.paths.runtime, 'net')), [], "the refused clone's TAP device was torn down and its /30 freed");
      // A snapshot without a network interface cannot grow one on restore.
      const plain = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: false });
      await driver.snapshot(plain.id, 'fc-plain-snap');
      await driver.destroy(plain.id);
      await assert.rejects(
        driver.restore('fc-plain-snap', { network: true }),
        (e) => isHearthError(e, 'HEARTH_ERR_SNAPSHOT_STALE') && /network interface/.test(e.message),
      );
      assert.deepEqual(await driver.list(), []);
    },
  );

  test('job metadata that looks like a secret never reaches MMDS: the boot is refused before anything starts', async () => {
    const before = (await requests()).length;
    const refused: Record<string, string>[] = [{ GITHUB_TOKEN: 'abc' }, { runner: 'ghp_0123456789abcdefghijklmnopqrstuvwxyz' }, { db_password: 'x' }];
    for (const metadata of refused) {
      await assert.rejects(driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: true, metadata }), (e) =>
        isHearthError(e, 'HEARTH_ERR_MMDS_SECRET'),
      );
    }
    assert.equal((await requests()).length, before, 'no VMM was asked anything');
    assert.deepEqual(await driver.list(), []);
  });

  test('a VMM whose pid was never recorded is still found (by its --id) and killed on destroy', async () => {
    const vm = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: false });
    // As if Hearth died between spawning firecracker and writing its pid: another process destroys it.
    const entryPath = join(host.paths.runtime, 'vms', vm.id, 'vm.json');
    const entry = JSON.parse(await readFile(entryPath, 'utf8')) as Record<string, unknown>;
    await writeFile(entryPath, JSON.stringify({ ...entry, pid: 0, pidStart: '' }));
    assert.equal(await processListContains(vm.id), true);
    const other = new FirecrackerDriver({ paths: host.paths, logger: createLogger({ level: 'silent' }), binary: binary() });
    await other.destroy(vm.id);
    assert.equal(await processListContains(vm.id), false, 'the VMM is gone');
    assert.deepEqual(await driver.list(), []);
    await driver.destroy(vm.id);
  });

  test(
    'through the jailer: a chroot per VM with the files linked in, cgroup v2 limits from the shape, in-chroot API paths; all gone after destroy',
    { skip: !AS_ROOT && 'the jailer needs root' },
    async () => {
      const base = join(host.paths.data, 'jail');
      const cgroupRoot = join(host.paths.data, 'cgroup');
      const jailerLog = join(host.paths.data, 'jailer.jsonl');
      await mkdir(cgroupRoot, { recursive: true });
      process.env.FAKE_JAILER_LOG = jailerLog;
      process.env.FAKE_JAILER_CGROUP_ROOT = cgroupRoot;
      const jailer: JailerOptions = REAL
        ? { binary: process.env.HEARTH_JAILER ?? 'jailer', uid: JAIL_UID, gid: JAIL_UID, chrootBaseDir: base }
        : { binary: FAKE_JAILER, uid: JAIL_UID, gid: JAIL_UID, chrootBaseDir: base, cgroupMount: cgroupRoot };
      const jailed = new FirecrackerDriver({ paths: host.paths, logger: createLogger({ level: 'silent' }), binary: binary(), bootTimeoutMs: 30_000, jailer });
      try {
        const seen = (await requests()).length;
        const vm = await jailed.boot({ image: 'minimal', cpus: 2, memoryMib: 256, network: false });
        const out = captureOutput();
        assert.equal((await jailed.exec(vm.id, { argv: ['echo', 'jailed'] }, out.sink)).exitCode, 0);
        assert.equal(out.text().stdout, 'jailed\n');
        const jailDir = join(base, 'firecracker', vm.id);
        assert.equal((await stat(join(jailDir, 'root'))).uid, JAIL_UID, 'the chroot belongs to the jailed user');
        if (!REAL) {
          const argv = (await readFile(jailerLog, 'utf8'))
            .trim()
            .split('\n')
            .map((l) => (JSON.parse(l) as { argv: string[] }).argv)
            .find((a) => a.includes(vm.id))!;
          const pairs = (flag: string): string[] => argv.flatMap((a, i) => (a === flag ? [argv[i + 1] as string] : []));
          assert.deepEqual(pairs('--exec-file'), [FAKE_BINARY]);
          assert.deepEqual(
            [pairs('--uid'), pairs('--gid'), pairs('--chroot-base-dir'), pairs('--cgroup-version')],
            [[String(JAIL_UID)], [String(JAIL_UID)], [base], ['2']],
          );
          assert.deepEqual(pairs('--cgroup'), ['cpu.max=200000 100000', `memory.max=${(256 + 64) * 1024 * 1024}`]);
          assert.deepEqual(
            argv.slice(argv.indexOf('--')),
            ['--', '--api-sock', '/api.sock'],
            'firecracker gets its socket inside the chroot, and its --id from the jailer',
          );
          const log = (await requests()).slice(seen);
          for (const r of log) assert.equal(validateRequest(r.method, r.path, r.body).ok, true, `${r.method} ${r.path} is valid by the spec`);
          const boot = log.find((r) => r.path === '/boot-source')!.body as { kernel_image_path: string; initrd_path: string };
          assert.deepEqual([boot.kernel_image_path, boot.initrd_path], ['/vmlinux', '/initrd.img']);
          assert.equal((log.find((r) => r.path === '/vsock')!.body as { uds_path: string }).uds_path, '/vsock.sock');
          for (const name of ['firecracker', 'firecracker.pid', 'vmlinux', 'initrd.img', 'api.sock', 'vsock.sock'])
            assert.ok(existsSync(join(jailDir, 'root', name)), `${name} is in the chroot`);
          assert.ok(existsSync(join(cgroupRoot, 'firecracker', vm.id)), 'the VM has its cgroup');
        }
        // Snapshots are written inside the jail and moved out; a clone gets a jail of its own.
        await jailed.snapshot(vm.id, 'fc-jail-snap');
        const clone = await jailed.restore('fc-jail-snap');
        const cloneOut = captureOutput();
        assert.equal((await jailed.exec(clone.id, { argv: ['echo', 'clone'] }, cloneOut.sink)).exitCode, 0);
        assert.equal(cloneOut.text().stdout, 'clone\n');
        if (!REAL) {
          const load = (await requests()).slice(seen).find((r) => r.path === '/snapshot/load')!.body as {
            snapshot_path: string;
            mem_backend: { backend_path: string };
          };
          assert.deepEqual([load.snapshot_path, load.mem_backend.backend_path], ['/restore.vmstate', '/restore.memory']);
        }
        for (const id of [clone.id, vm.id]) {
          await jailed.destroy(id);
          assert.equal(existsSync(join(base, 'firecracker', id)), false, `the jail of ${id} is removed`);
          assert.equal(existsSync(join(cgroupRoot, 'firecracker', id)), false, `the cgroup of ${id} is removed`);
        }
        assert.deepEqual(await jailed.list(), []);
      } finally {
        await jailed.destroyAll();
        delete process.env.FAKE_JAILER_LOG;
        delete process.env.FAKE_JAILER_CGROUP_ROOT;
      }
    },
  );

  test('refuses jailer settings that would defeat it or cannot work, naming the setting', async () => {
    const make = (jailer: JailerOptions): FirecrackerDriver =>
      new FirecrackerDriver({ paths: host.paths, logger: createLogger({ level: 'silent' }), binary: binary(), jailer });
    const base = { binary: FAKE_JAILER, uid: JAIL_UID, gid: JAIL_UID, chrootBaseDir: join(host.paths.data, 'jail') };
    const spec = { image: 'minimal', cpus: 1, memoryMib: 256, network: false };
    await assert.rejects(make({ ...base, uid: 0 }).boot(spec), (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /jailer\.uid/.test(e.message));
    await assert.rejects(
      make({ ...base, chrootBaseDir: 'srv/jailer' }).boot(spec),
      (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /chrootBaseDir/.test(e.message),
    );
    await assert.rejects(
      make({ ...base, binary: '/nonexistent/jailer' }).boot(spec),
      (e) => isHearthError(e, 'HEARTH_ERR_VMM_MISSING') && /jailer/.test(e.message),
    );
    if (AS_ROOT)
      await assert.rejects(
        make({ ...base, netns: '/var/run/netns/hearth' }).boot({ ...spec, network: true }),
        (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /netns/.test(e.message),
      );
    assert.deepEqual(await driver.list(), []);
  });

  test('refuses what Firecracker cannot do, with the fix', async () => {
    await assert.rejects(
      driver.boot({ image: 'minimal', cpus: 3, memoryMib: 256, network: false }),
      (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION') && /1 or an even number/.test(e.message),
    );
    const missing = new FirecrackerDriver({ paths: host.paths, logger: createLogger({ level: 'silent' }), binary: '/nonexistent/firecracker' });
    await assert.rejects(
      missing.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: false }),
      (e) => isHearthError(e, 'HEARTH_ERR_VMM_MISSING') && /releases/.test(e.fix),
    );
  });
});
