import assert from 'node:assert/strict';
import { it } from 'node:test';
import { kernelCommandLine, qemuArgs, shellQuote } from '../../src/vm/qemu/args.ts';

const base = { accel: 'tcg' as const, cpus: 2, memoryMib: 512, network: false, kernel: '/k', initrd: '/i', runtimeDir: '/run/hearth/vms/vm-1' };

it('uses microvm, the TSC fix under TCG only, and no network device unless asked', () => {
  const args = qemuArgs(base);
  assert.equal(args[args.indexOf('-M') + 1]?.split(',')[0], 'microvm');
  assert.equal(args[args.indexOf('-smp') + 1], '2');
  assert.equal(args[args.indexOf('-m') + 1], '512');
  assert.match(kernelCommandLine(base), /tsc_early_khz=2000000 lpj=4000000/);
  assert.doesNotMatch(kernelCommandLine({ ...base, accel: 'kvm' }), /tsc_early_khz/);
  assert.ok(!args.some((a) => a.includes('netdev')), 'no network without --network');
  assert.ok(args.includes('-nodefaults'));
  const withNet = qemuArgs({ ...base, network: true });
  assert.ok(withNet.includes('user,id=net0'));
  assert.match(kernelCommandLine({ ...base, network: true }), /hearth\.net=1/);
});

it('escapes commas in paths and quotes the incoming state file for the shell', () => {
  const args = qemuArgs({ ...base, runtimeDir: '/tmp/a,b', incoming: "/snap/it's/state" });
  assert.ok(args.includes('file:/tmp/a,,b/console.log'));
  assert.equal(args[args.indexOf('-incoming') + 1], `exec:cat '/snap/it'\\''s/state'`);
  assert.equal(shellQuote('plain'), "'plain'");
});
