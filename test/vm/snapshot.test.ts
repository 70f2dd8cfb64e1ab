import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isHearthError } from '../../src/errors.ts';
import { listSnapshots, removeSnapshot, snapshotDir } from '../../src/vm/snapshots.ts';
import { captureOutput, createTestHost, type TestHost } from '../support/env.ts';

const SPEC = { image: 'minimal', cpus: 1, memoryMib: 256, network: false };
const IDENTITY = 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; hostname; cat /etc/machine-id';

describe('snapshots', () => {
  let host: TestHost;
  before(async () => {
    host = await createTestHost();
    const source = await host.driver.boot(SPEC);
    // State left in the source must be there in every clone.
    assert.equal((await host.driver.exec(source.id, { argv: ['sh', '-c', 'echo warm > /root/state'] })).exitCode, 0);
    const info = await host.driver.snapshot(source.id, 'base');
    assert.ok(info.sizeBytes > 0);
    // The source keeps running after its snapshot.
    assert.equal((await host.driver.exec(source.id, { argv: ['true'] })).exitCode, 0);
    await host.driver.destroy(source.id);
  });
  after(async () => {
    await host.cleanup();
  });

  it('restores clones that keep the saved state but get fresh random output, hostname and machine-id', async () => {
    const identities: string[][] = [];
    for (let i = 0; i < 2; i++) {
      const clone = await host.driver.restore('base');
      assert.deepEqual(clone.origin, { kind: 'snapshot', name: 'base' });
      const out = captureOutput();
      const result = await host.driver.exec(clone.id, { argv: ['sh', '-c', `cat /root/state; ${IDENTITY}`] }, out.sink);
      assert.equal(result.exitCode, 0, out.text().stderr);
      const lines = out.text().stdout.trim().split('\n');
      assert.equal(lines[0], 'warm');
      identities.push(lines.slice(1));
      await host.driver.destroy(clone.id);
    }
    const [a, b] = identities;
    assert.ok(a && b);
    assert.equal(a[0]?.length, 64);
    assert.notEqual(a[0], b[0], 'two clones produced the same /dev/urandom bytes');
    assert.notEqual(a[1], b[1], 'two clones share a hostname');
    assert.notEqual(a[2], b[2], 'two clones share a machine-id');
  });

  it('runs commands in a restored VM exactly as in a cold one, clock included', async () => {
    const clone = await host.driver.restore('base');
    const out = captureOutput();
    const result = await host.driver.exec(clone.id, { argv: ['sh', '-c', 'echo out; echo err >&2; date +%s; exit 3'], env: { X: 'y' } }, out.sink);
    assert.equal(result.exitCode, 3);
    const [first, seconds] = out.text().stdout.trim().split('\n');
    assert.equal(first, 'out');
    assert.equal(out.text().stderr, 'err\n');
    assert.ok(Math.abs(Number(seconds) - Date.now() / 1000) < 5, `guest clock ${seconds} is stale`);
    await host.driver.destroy(clone.id);
  });

  it('refuses to overwrite a snapshot and names the fix', async () => {
    const vm = await host.driver.boot(SPEC);
    await assert.rejects(host.driver.snapshot(vm.id, 'base'), (e) => isHearthError(e, 'HEARTH_ERR_SNAPSHOT_EXISTS') && /snapshot rm base/.test(e.fix));
    await assert.rejects(host.driver.snapshot(vm.id, '../escape'), (e) => isHearthError(e, 'HEARTH_ERR_BAD_OPTION'));
    await host.driver.destroy(vm.id);
  });

  it('refuses a snapshot taken by another QEMU version, and a missing one', async () => {
    const manifestPath = join(snapshotDir(host.paths.data, 'base'), 'snapshot.json');
    const original = await readFile(manifestPath, 'utf8');
    await writeFile(manifestPath, JSON.stringify({ ...JSON.parse(original), vmmVersion: 'QEMU emulator version 0.1' }));
    try {
      await assert.rejects(host.driver.restore('base'), (e) => isHearthError(e, 'HEARTH_ERR_SNAPSHOT_STALE') && /0\.1/.test(e.message));
    } finally {
      await writeFile(manifestPath, original);
    }
    await assert.rejects(host.driver.restore('nope'), (e) => isHearthError(e, 'HEARTH_ERR_SNAPSHOT_NOT_FOUND'));
    assert.deepEqual(
      (await listSnapshots(host.paths.data)).map((s) => s.name),
      ['base'],
    );
  });

  it('removes a snapshot', async () => {
    const vm = await host.driver.boot(SPEC);
    await host.driver.snapshot(vm.id, 'doomed');
    await host.driver.destroy(vm.id);
    await removeSnapshot(host.paths.data, 'doomed');
    assert.deepEqual(
      (await listSnapshots(host.paths.data)).map((s) => s.name),
      ['base'],
    );
  });
});
