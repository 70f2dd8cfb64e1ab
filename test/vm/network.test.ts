import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/log.ts';
import type { TapNetwork } from '../../src/vm/network/tap.ts';
import { QemuDriver } from '../../src/vm/qemu/driver.ts';
import { captureOutput, createTestHost, type TestHost } from '../support/env.ts';

const canTap = process.getuid?.() === 0 && existsSync('/dev/net/tun') && (() => {
  try {
    execFileSync('nft', ['list', 'tables'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function listen(body: string): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer((_req, res) => res.end(body)).listen(0, '0.0.0.0', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

describe('TAP networking with an nftables egress policy (QEMU, real VMs)', { skip: !canTap && 'needs root, /dev/net/tun and nft (bootstrap installs nftables as root)' }, () => {
  let host: TestHost;
  let driver: QemuDriver;
  let allowed: { server: Server; port: number };
  let blocked: { server: Server; port: number };
  before(async () => {
    host = await createTestHost();
    allowed = await listen('allowed\n');
    blocked = await listen('blocked\n');
    driver = new QemuDriver({ paths: host.paths, logger: createLogger({ level: 'silent' }), accel: process.env.HEARTH_ACCEL, egress: { allow: ['192.0.2.0/24:443'], hostPorts: [allowed.port], dns: '192.0.2.53' } });
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
    assert.match((await run(a.id, 'timeout 3 wget -q -O - http://198.51.100.1/ || echo no-egress')).out, /no-egress/, 'egress outside the allowlist is dropped');
    await driver.destroy(a.id);
    await driver.destroy(b.id);
    assert.throws(() => execFileSync('ip', ['link', 'show', netA.device], { stdio: 'ignore' }), 'the TAP device is gone');
    assert.throws(() => execFileSync('nft', ['list', 'table', 'inet', `hearth_${netA.device}`], { stdio: 'ignore' }), 'its firewall table is gone');
    assert.equal(existsSync(join(host.paths.runtime, 'net', String(netA.index))), false, 'its /30 is free again');
  });
});

test('a Debian-root guest configures its network too (no ip binary there: the agent uses ioctls)', { skip: process.getuid?.() !== 0 && 'the debian image is built only as root' }, async () => {
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
});
