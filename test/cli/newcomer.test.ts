import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listeningLine } from '../../src/cli/commands/serve.ts';
import { isHearthError } from '../../src/errors.ts';
import { kvmFacts, kvmFix } from '../../src/host/doctor.ts';
import { effectiveLogLevel } from '../../src/log.ts';
import { kvmProbeFailure } from '../../src/vm/qemu/accel.ts';
import { YamlSource } from '../../src/workflow/yaml-source.ts';
import { HEARTH_BIN } from '../support/env.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'hearth-newcomer-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('log level on the console', () => {
  it('keeps info lines off an interactive terminal unless HEARTH_LOG_LEVEL asks, and says so', () => {
    assert.deepEqual(effectiveLogLevel({ configured: 'info', env: {}, interactive: true }), { level: 'warn', reduced: true });
    assert.deepEqual(effectiveLogLevel({ configured: 'info', env: { HEARTH_LOG_LEVEL: 'info' }, interactive: true }), { level: 'info', reduced: false });
    assert.deepEqual(effectiveLogLevel({ configured: 'info', env: {}, interactive: false }), { level: 'info', reduced: false });
    assert.deepEqual(effectiveLogLevel({ configured: 'error', env: {}, interactive: true }), { level: 'error', reduced: false });
    assert.deepEqual(effectiveLogLevel({ env: {}, interactive: false }), { level: 'warn', reduced: false });
    assert.deepEqual(effectiveLogLevel({ env: { HEARTH_LOG_LEVEL: 'debug' }, interactive: true }), { level: 'debug', reduced: false });
  });
});

describe('serve start-up lines', () => {
  it('names the API only when it is enabled', () => {
    assert.match(listeningLine('http://127.0.0.1:8080', true), /metrics: \/metrics; API: \/api\/v1\)$/);
    assert.doesNotMatch(listeningLine('http://127.0.0.1:8080', false), /api/i);
  });
});

describe('KVM probe and doctor', () => {
  it('tells a guest that stopped early from one that timed out', () => {
    assert.equal(
      kvmProbeFailure(93.4, 8000, 'QEMU exited during boot (1)'),
      'a KVM guest stopped after 93 ms without answering (QEMU exited during boot (1)); using TCG',
    );
    assert.equal(
      kvmProbeFailure(8001, 8000, 'the guest agent did not answer within 8 s'),
      'a KVM guest did not answer within 8 s (the guest agent did not answer within 8 s); using TCG',
    );
  });

  it("names what is missing for KVM instead of 'a host with usable /dev/kvm'", () => {
    assert.match(kvmFix({ device: 'usable', cpuFlag: false }), /no vmx\/svm flag: this is likely a VM whose host does not offer nested virtualisation/);
    assert.match(kvmFix({ device: 'absent', cpuFlag: false }), /^there is no \/dev\/kvm and \/proc\/cpuinfo shows no vmx\/svm flag/);
    assert.match(kvmFix({ device: 'denied', cpuFlag: true }), /add it to group kvm/);
    assert.match(kvmFix({ device: 'absent', cpuFlag: true }), /modprobe kvm_intel or kvm_amd/);
    assert.match(kvmFix({ device: 'usable', cpuFlag: true }), /check dmesg/);
    assert.match(kvmFix({ override: 'tcg', device: 'usable', cpuFlag: true }), /HEARTH_ACCEL=tcg forces TCG/);
  });

  it('reads the facts from the device and /proc/cpuinfo', async () => {
    const withFlag = join(root, 'cpuinfo-vmx');
    const withoutFlag = join(root, 'cpuinfo-plain');
    await writeFile(withFlag, 'processor\t: 0\nflags\t\t: fpu vme vmx sse2\n');
    await writeFile(withoutFlag, 'processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n');
    assert.deepEqual(await kvmFacts({ device: join(root, 'no-such-kvm'), cpuinfo: withoutFlag }), { override: undefined, device: 'absent', cpuFlag: false });
    assert.deepEqual(await kvmFacts({ device: withFlag, cpuinfo: withFlag }), { override: undefined, device: 'usable', cpuFlag: true });
  });
});

describe('a missing workflow file', () => {
  it('says "no such file" and lists the CI files nearby, with no :1:1 and no raw ENOENT', async () => {
    const project = join(root, 'project');
    await mkdir(join(project, '.github', 'workflows'), { recursive: true });
    await writeFile(join(project, '.github', 'workflows', 'ci.yml'), 'on: push\n');
    await writeFile(join(project, '.gitlab-ci.yml'), 'test:\n  script: [true]\n');
    const missing = join(project, '.github', 'workflows', 'cl.yml');
    const error = await YamlSource.load(missing).then(
      () => assert.fail('loaded a file that does not exist'),
      (e: unknown) => e,
    );
    assert.ok(isHearthError(error), String(error));
    assert.equal(error.message, `no such file: ${missing}`);
    // The nearest directory with CI files wins: the workflows directory the missing file was to be in.
    assert.equal(error.fix, `did you mean ${join(project, '.github', 'workflows', 'ci.yml')}?`);

    const nowhere = await YamlSource.load(join(root, 'empty', 'ci.yml')).catch((e: unknown) => e);
    assert.ok(isHearthError(nowhere));
    assert.match(nowhere.fix, /give the path of a GitHub workflow \(\.github\/workflows\/\*\.yml\) or a \.gitlab-ci\.yml; none is in /);
  });

  it('hearth run prints it with the fix and exit status 125', () => {
    const run = spawnSync(process.execPath, [HEARTH_BIN, 'run', join(root, 'project', 'ci.yml'), '--dry-run'], { encoding: 'utf8', timeout: 180_000 });
    assert.equal(run.status, 125, run.stderr);
    assert.match(
      run.stderr,
      /HEARTH_ERR_WORKFLOW: no such file: \S+\/project\/ci\.yml\n\s+fix: did you mean \S+\/\.github\/workflows\/ci\.yml or \S+\/\.gitlab-ci\.yml\?/,
    );
    assert.doesNotMatch(run.stderr, /:1:1|ENOENT/);
  });
});

describe('bin/hearth.mjs', () => {
  it('without a build, names npm run build instead of failing on a missing module', async () => {
    const checkout = join(root, 'checkout');
    await mkdir(join(checkout, 'bin'), { recursive: true });
    await copyFile(join(import.meta.dirname, '..', '..', 'bin', 'hearth.mjs'), join(checkout, 'bin', 'hearth.mjs'));
    const run = spawnSync(process.execPath, [join(checkout, 'bin', 'hearth.mjs'), '--help'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.status, 125, run.stderr);
    assert.match(run.stderr, /the compiled CLI \(dist\/cli\/main\.js\) is missing\n\s+fix: run `npm run build`/);
  });
});
