import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Ledger } from '../../src/ledger/ledger.ts';
import { JobLogs } from '../../src/ledger/logs.ts';
import { stageDurations, stageTimes } from '../../src/ledger/stages.ts';
import { forEachStore } from '../support/ledgers.ts';

const SHAPE = { cpus: 2, memoryMib: 2048, image: 'debian', pool: null, requires: [] };

forEachStore('job logs and stage marks in the ledger', (open) => {
  let ledger: Ledger;
  let now = Date.parse('2026-11-30T10:00:00Z');
  const clock = (): Date => new Date(now);
  before(async () => {
    ledger = await open(clock);
    await ledger.enqueue({ forge: 'github', forgeJobId: '1', repository: 'o/r', labels: ['hearth'], name: 'build', shape: SHAPE }, 'test');
    await ledger.enqueue({ forge: 'github', forgeJobId: '2', repository: 'o/r', labels: ['hearth'], shape: SHAPE }, 'test');
  });
  test('splits raw output into lines, holding an unfinished line until the rest or close', async () => {
    const logs = new JobLogs(ledger, { maxLinesPerJob: 100, retentionDays: 7, secrets: [] }, clock);
    const sink = logs.output('github:1', 'runner');
    sink(Buffer.from('one\ntw'));
    sink(Buffer.from('o\r\nthr'));
    await logs.flush();
    assert.deepEqual(
      (await logs.lines('github:1', 0, 10)).map((l) => l.text),
      ['one', 'two'],
    );
    logs.close('github:1');
    await logs.flush();
    const lines = await logs.lines('github:1', 0, 10);
    assert.deepEqual(
      lines.map((l) => l.text),
      ['one', 'two', 'thr'],
    );
    assert.ok(
      lines.every((l, i) => i === 0 || l.seq > lines[i - 1]!.seq),
      'seq rises',
    );
    assert.deepEqual(
      (await logs.lines('github:1', lines[1]!.seq, 10)).map((l) => l.text),
      ['thr'],
      'reads resume after a seq',
    );
  });

  test('masks configured secrets, per-job credentials and well-known token shapes before storing', async () => {
    const logs = new JobLogs(ledger, { maxLinesPerJob: 100, retentionDays: 7, secrets: ['webhook-secret-123'] }, clock);
    logs.addSecrets('github:2', ['eyJqaXQiOiJjb25maWcifQ==']);
    logs.write('github:2', 'runner', 'secret webhook-secret-123 and jit eyJqaXQiOiJjb25maWcifQ== here');
    logs.write('github:2', 'runner', 'tokens glrt-abcdefghijklmnopqrst ghs_ABCDEFGHIJKLMNOPQRSTUVWX github_pat_11ABCDEFGHIJKLMNOPQRSTUV');
    logs.write('github:2', 'runner', 'short values like abc are left alone');
    await logs.flush();
    const texts = (await logs.lines('github:2', 0, 10)).map((l) => l.text);
    assert.deepEqual(texts, ['secret *** and jit *** here', 'tokens *** *** ***', 'short values like abc are left alone']);
  });

  test('keeps at most maxLinesPerJob lines and says so once', async () => {
    await ledger.enqueue({ forge: 'github', forgeJobId: '3', repository: 'o/r', labels: ['hearth'], shape: SHAPE }, 'test');
    const logs = new JobLogs(ledger, { maxLinesPerJob: 5, retentionDays: 7, secrets: [] }, clock);
    for (let i = 0; i < 20; i++) logs.write('github:3', 'runner', `line ${i}`);
    await logs.flush();
    const lines = await logs.lines('github:3', 0, 100);
    assert.equal(lines.length, 6);
    assert.match(lines[5]!.text, /log truncated: only the first 5 lines/);
    assert.equal(lines[5]!.stream, 'hearth');
  });

  test('wakes a waiting reader when lines for its job are committed', async () => {
    const logs = new JobLogs(ledger, { maxLinesPerJob: 100, retentionDays: 7, secrets: [] }, clock);
    const started = Date.now();
    const waiting = logs.waitForLines('github:1', 5000);
    logs.write('github:1', 'hearth', 'wake up');
    await waiting;
    assert.ok(Date.now() - started < 2000, 'woken by the commit, not the timeout');
  });

  test('deletes lines past the retention period', async () => {
    const logs = new JobLogs(ledger, { maxLinesPerJob: 100, retentionDays: 7, secrets: [] }, clock);
    const before = await logs.count('github:1');
    assert.ok(before > 0);
    now += 8 * 86_400_000;
    logs.write('github:1', 'hearth', 'fresh');
    assert.ok((await logs.prune()) >= before);
    assert.deepEqual(
      (await logs.lines('github:1', 0, 100)).map((l) => l.text),
      ['fresh'],
    );
  });

  test('the timeline marks each stage, and the stage intervals follow from it', async () => {
    const id = 'github:1';
    await ledger.transition(id, 'claimed', 'claimed');
    now += 1000;
    await ledger.transition(id, 'provisioning', 'placed');
    now += 2000;
    await ledger.note(id, 'VM ready', { vm_id: 'vm-1' }, 'vm_ready');
    now += 500;
    await ledger.transition(id, 'runner_registered', 'registered');
    now += 4000;
    await ledger.transition(id, 'running', 'started');
    now += 60_000;
    await ledger.transition(id, 'completed', 'done', { verdict: { conclusion: 'success' } });
    now += 700;
    await ledger.release(id, 'torn down');
    const times = stageTimes(await ledger.timeline(id));
    assert.ok(
      Object.values(times).every((t) => t !== null),
      JSON.stringify(times),
    );
    const durations = Object.fromEntries(stageDurations(times).map((d) => [d.name, d.seconds]));
    assert.equal(durations.placed_to_vm_ready, 2);
    assert.equal(durations.vm_ready_to_runner_registered, 0.5);
    assert.equal(durations.registered_to_started, 4);
    assert.equal(durations.started_to_finished, 60);
    assert.equal(durations.teardown, 0.7);
    const job = await ledger.job(id);
    assert.equal(job?.conclusion, 'success');
    assert.equal(job?.job_name, 'build');
    assert.ok(job?.started_at && job.finished_at, 'queue and run times are recorded');
  });
});
