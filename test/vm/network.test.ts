import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AgentChannel } from '../../src/guest/channel.ts';
import { createLogger } from '../../src/log.ts';
import { freshIdentity } from '../../src/vm/agent-vm.ts';
import { HELLO_FLAG_IDENTITY_NETWORK } from '../../src/guest/protocol.ts';
import type { TapNetwork } from '../../src/vm/network/tap.ts';
import { QemuDriver } from '../../src/vm/qemu/driver.ts';
import { captureOutput, createTestHost, type TestHost } from '../support/env.ts';

const canTap =
  process.getuid?.() === 0 &&
  existsSync('/dev/net/tun') &&
  (() => {
    try {
      execFileSync('nft', ['list', 'tables'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

function listen(body: string): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer((_req, res) => res.end(body)).listen(0, '0.0.0.0', () =>
      resolve({ server, port: (server.address() as { port: number }).port }),
    );
  });
}

describe(
  'TAP networking with an nftables egress policy (QEMU, real VMs)',
  { skip: !canTap && 'needs root, /dev/net/tun and nft (bootstrap installs nftables as root)' },
  () => {
    let host: TestHost;
    let driver: QemuDriver;
    let allowed: { server: Server; port: number };
    let blocked: { server: Server; port: number };
    before(async () => {
      host = await createTestHost();
      allowed = await listen('allowed\n');
      blocked = await listen('blocked\n');
      driver = new QemuDriver({
        paths: host.paths,
        logger: createLogger({ level: 'silent' }),
        accel: process.env.HEARTH_ACCEL,
        egress: { allow: ['192.0.2.0/24:443'], hostPorts: [allowed.port], dns: '192.0.2.53' },
      });
    });
    after(async () => {
      await driver.destroyAll();
      allowed.server.close();
      blocked.server.close();
      await host.cleanup();
    });

    const run = async (vmId: string, script: string): Promise<{ code: number; out: string }> => {
      const out = captureOutput();
      const result = await driver.exec(vmId, { argv: ['sh', '-c', script] }, out.sink);
      return { code: result.exitCode, out: out.text().stdout + out.text().stderr };
    };

    test('a guest reaches only the host ports and destinations allowed, never another guest, and the device is gone after destroy', async () => {
      const a = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: true });
      const b = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: true });
      const netA = JSON.parse(await readFile(join(host.paths.runtime, 'vms', a.id, 'net.json'), 'utf8')) as TapNetwork;
      const netB = JSON.parse(await readFile(join(host.paths.runtime, 'vms', b.id, 'net.json'), 'utf8')) as TapNetwork;
      assert.notEqual(netA.guestIp, netB.guestIp);
      assert.match((await run(a.id, 'cat /etc/resolv.conf')).out, /nameserver 192\.0\.2\.53/);
      assert.equal((await run(a.id, `wget -q -O - http://${netA.hostIp}:${allowed.port}/`)).out.trim(), 'allowed', 'an allowed host port answers');
      const denied = await run(a.id, `timeout 3 wget -q -O - http://${netA.hostIp}:${blocked.port}/ || echo denied`);
      assert.match(denied.out, /denied/, 'any other host port is dropped');
      await run(b.id, 'mkdir -p /tmp/www && echo from-b > /tmp/www/index.html && httpd -p 8000 -h /tmp/www');
      assert.equal((await run(b.id, `wget -q -O - http://127.0.0.1:8000/`)).out.trim(), 'from-b', 'the guest server works locally');
      assert.match((await run(a.id, `timeout 3 wget -q -O - http://${netB.guestIp}:8000/ || echo isolated`)).out, /isolated/, 'guests cannot reach each other');
      assert.match(
        (await run(a.id, 'timeout 3 wget -q -O - http://198.51.100.1/ || echo no-egress')).out,
        /no-egress/,
        'egress outside the allowlist is dropped',
      );
      await driver.destroy(a.id);
      await driver.destroy(b.id);
      assert.throws(() => execFileSync('ip', ['link', 'show', netA.device], { stdio: 'ignore' }), 'the TAP device is gone');
      assert.throws(() => execFileSync('nft', ['list', 'table', 'inet', `hearth_${netA.device}`], { stdio: 'ignore' }), 'its firewall table is gone');
      assert.equal(existsSync(join(host.paths.runtime, 'net', String(netA.index))), false, 'its /30 is free again');
    });

    test('the agent moves eth0 to the address an IDENTITY gives it (what a restored Firecracker clone gets): old address and route gone, new ones working', async () => {
      const vm = await driver.boot({ image: 'minimal', cpus: 1, memoryMib: 256, network: true });
      const net = JSON.parse(await readFile(join(host.paths.runtime, 'vms', vm.id, 'net.json'), 'utf8')) as TapNetwork;
      // A /30 outside Hearth's 172.30.0.0/16 (benchmarking space), so no other VM on this host can hold it.
      const moved = { address: '198.18.77.2/30', gateway: '198.18.77.1', dns: '192.0.2.54' };
      execFileSync('ip', ['addr', 'add', `${moved.gateway}/30`, 'dev', net.device]);
      // The driver's own agent connection, as the Firecracker driver uses it after /snapshot/load.
      const channel = (driver as unknown as { live: { get(id: string): { channel?: AgentChannel } | undefined } }).live.get(vm.id)?.channel;
      assert.ok(channel, 'the driver holds the agent channel');
      assert.ok(((await channel.hello(true)).flags & HELLO_FLAG_IDENTITY_NETWORK) !== 0, 'the agent announces that it applies the network extension');
      await channel.setIdentity(freshIdentity(vm.id, moved));
      const state = (await run(vm.id, 'cat /proc/net/fib_trie; echo @@; cat /proc/net/route; echo @@; cat /etc/resolv.conf')).out.split('@@');
      const [fib = '', routes = '', resolv = ''] = state;
      assert.match(fib, /198\.18\.77\.2\n\s+\/32 host LOCAL/, 'eth0 has the new address');
      assert.doesNotMatch(fib, new RegExp(`${net.guestIp.replaceAll('.', '\\.')}\\n\\s+/32 host LOCAL`), 'and no longer the old one');
      const defaults = routes
        .split('\n')
        .filter((l) => /^eth0\s+00000000\s/.test(l))
        .map((l) => l.split(/\s+/)[2]);
      assert.deepEqual(defaults, ['014D12C6'], 'one default route, via 198.18.77.1');
      assert.match(resolv, /nameserver 192\.0\.2\.54/);
      assert.equal(
        (await run(vm.id, `wget -q -O - http://${moved.gateway}:${allowed.port}/`)).out.trim(),
        'allowed',
        'the host answers on the new gateway address',
      );
      // A malformed network is refused before it is sent; the agent keeps serving.
      await assert.rejects(async () => channel.setIdentity({ ...freshIdentity(vm.id), network: { ...moved, address: '300.1.1.1/30' } }), RangeError);
      assert.equal((await run(vm.id, 'echo still-here')).out.trim(), 'still-here');
      await driver.destroy(vm.id);
      assert.throws(() => execFileSync('ip', ['link', 'show', net.device], { stdio: 'ignore' }), 'the TAP device is gone');
    });
  },
);

test(
  'a Debian-root guest configures its network too (no ip binary there: the agent uses ioctls)',
  { skip: process.getuid?.() !== 0 && 'the debian image is built only as root' },
  async () => {
    const host = await createTestHost();
    const { server, port } = await listen('debian-ok\n');
    try {
      const vm = await host.driver.boot({ image: 'debian', cpus: 1, memoryMib: 512, network: true });
      const out = captureOutput();
      const result = await host.driver.exec(vm.id, { argv: ['curl', '-s', '--max-time', '10', `http://10.0.2.2:${port}/`] }, out.sink);
      assert.equal(result.exitCode, 0, out.text().stderr);
      assert.equal(out.text().stdout.trim(), 'debian-ok');
      await host.driver.destroy(vm.id);
    } finally {
      server.close();
      await host.cleanup();
    }
  },
);
