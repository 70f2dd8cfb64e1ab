import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decideAccel } from '../../src/vm/qemu/accel.ts';

let dir: string;
let kvm: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-accel-'));
  // Stands in for /dev/kvm: only its access rights matter before the probe.
  kvm = join(dir, 'kvm');
  await writeFile(kvm, '');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A probe that counts its calls and answers `verdict` (or never, for a hang). */
function probe(verdict?: { usable: boolean; reason: string }) {
  const calls = { count: 0 };
  const run = (): Promise<{ usable: boolean; reason: string }> => {
    calls.count++;
    return verdict ? Promise.resolve(verdict) : new Promise(() => {});
  };
  return { run, calls };
}

const cacheDir = (name: string): string => join(dir, name);
const bootId = (id: string) => async () => id;

describe('decideAccel: KVM only when a probe boot proves it', () => {
  it('a probe that answers means KVM, and the verdict is cached for this host boot', async () => {
    const p = probe({ usable: true, reason: 'a KVM guest answered in 180 ms' });
    const decision = await decideAccel({ cacheDir: cacheDir('ok'), probe: p.run, kvmDevice: kvm, bootId: bootId('boot-1') });
    assert.deepEqual(decision, { accel: 'kvm', reason: 'a KVM guest answered in 180 ms' });
    const record = JSON.parse(await readFile(join(cacheDir('ok'), 'kvm-probe.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(record.bootId, 'boot-1');
    assert.equal(record.usable, true);
  });

  it('a probe that hangs means TCG with the reason, once the backstop passes', async () => {
    const p = probe();
    const started = Date.now();
    const decision = await decideAccel({ cacheDir: cacheDir('hang'), probe: p.run, kvmDevice: kvm, bootId: bootId('boot-1'), probeTimeoutMs: 200 });
    assert.equal(decision.accel, 'tcg');
    assert.equal(decision.reason, 'the KVM probe did not finish within 0.2 s (a guest hung under KVM); using TCG');
    assert.ok(Date.now() - started < 5000);
    const again = await decideAccel({ cacheDir: cacheDir('hang'), probe: p.run, kvmDevice: kvm, bootId: bootId('boot-1'), probeTimeoutMs: 200 });
    assert.equal(again.accel, 'tcg', 'a hang is remembered: the next VM does not wait for it again');
    assert.equal(p.calls.count, 1);
  });

  it('a probe that reports failure means TCG', async () => {
    const decision = await decideAccel({
      cacheDir: cacheDir('fail'),
      probe: probe({ usable: false, reason: 'a KVM guest did not answer within 8 s' }).run,
      kvmDevice: kvm,
      bootId: bootId('boot-1'),
    });
    assert.deepEqual(decision, { accel: 'tcg', reason: 'a KVM guest did not answer within 8 s' });
  });

  it('a probe that cannot boot at all (no minimal image) means TCG now, keeps no verdict, and probes again next time', async () => {
    const dirName = cacheDir('noimage');
    const broken = (): Promise<{ usable: boolean; reason: string }> => Promise.reject(new Error('no image named minimal\nbuild it first'));
    const decision = await decideAccel({ cacheDir: dirName, probe: broken, kvmDevice: kvm, bootId: bootId('boot-1') });
    assert.deepEqual(decision, { accel: 'tcg', reason: 'the KVM probe could not run (no image named minimal); using TCG; the next start probes again' });
    const p = probe({ usable: true, reason: 'answered once the image was there' });
    assert.equal((await decideAccel({ cacheDir: dirName, probe: p.run, kvmDevice: kvm, bootId: bootId('boot-1') })).accel, 'kvm');
    assert.equal(p.calls.count, 1, 'the failed probe left no verdict behind');
  });

  it('without a usable KVM device it is TCG at once, without probing', async () => {
    const p = probe({ usable: true, reason: 'never asked' });
    const missing = join(dir, 'no-such-kvm');
    const decision = await decideAccel({ cacheDir: cacheDir('nokvm'), probe: p.run, kvmDevice: missing, bootId: bootId('boot-1') });
    assert.deepEqual(decision, { accel: 'tcg', reason: `${missing} is missing or not writable by this user` });
    assert.equal(p.calls.count, 0);
  });

  it('reuses the cached verdict of this boot, probes again after a reboot, and --reprobe (fresh) ignores the cache', async () => {
    const dirName = cacheDir('cache');
    const first = probe({ usable: true, reason: 'answered' });
    await decideAccel({ cacheDir: dirName, probe: first.run, kvmDevice: kvm, bootId: bootId('boot-1') });
    const later = probe({ usable: false, reason: 'hung this time' });
    const cached = await decideAccel({ cacheDir: dirName, probe: later.run, kvmDevice: kvm, bootId: bootId('boot-1') });
    assert.equal(cached.accel, 'kvm');
    assert.match(cached.reason, /^answered \(probed \d{4}-\d\d-\d\dT/);
    assert.equal(later.calls.count, 0, 'the cached verdict was not reused');
    const reprobed = await decideAccel({ cacheDir: dirName, probe: later.run, kvmDevice: kvm, bootId: bootId('boot-1'), fresh: true });
    assert.deepEqual(reprobed, { accel: 'tcg', reason: 'hung this time' });
    assert.equal(later.calls.count, 1);
    const afterReprobe = await decideAccel({ cacheDir: dirName, probe: first.run, kvmDevice: kvm, bootId: bootId('boot-1') });
    assert.equal(afterReprobe.accel, 'tcg', "the reprobe's verdict replaced the cached one");
    const rebooted = await decideAccel({ cacheDir: dirName, probe: first.run, kvmDevice: kvm, bootId: bootId('boot-2') });
    assert.deepEqual(rebooted, { accel: 'kvm', reason: 'answered' });
    assert.equal(first.calls.count, 2);
  });

  it('HEARTH_ACCEL decides without probing', async () => {
    const p = probe({ usable: true, reason: 'never asked' });
    assert.deepEqual(await decideAccel({ cacheDir: cacheDir('override'), override: 'tcg', probe: p.run, kvmDevice: kvm }), {
      accel: 'tcg',
      reason: 'set by HEARTH_ACCEL',
    });
    assert.equal(p.calls.count, 0);
  });
});
