import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import type { Ledger } from '../../src/ledger/ledger.ts';
import { canTransition, JOB_STATES } from '../../src/ledger/states.ts';
import { forEachStore } from '../support/ledgers.ts';

forEachStore('the job ledger', (open) => {
  let ledger: Ledger;
  let now = new Date('2026-11-22T10:00:00Z');
  before(async () => {
    ledger = await open(() => now);
  });

  const job = (id: string) => ({
    forge: 'github' as const,
    forgeJobId: id,
    repository: 'octo/repo',
    labels: ['hearth', 'hearth-2cpu-4gb'],
    shape: { cpus: 2, memoryMib: 4096, image: 'debian', pool: null, requires: [] },
  });

  it('deduplicates deliveries and jobs', async () => {
    assert.equal(await ledger.recordDelivery('github', 'd-1', 'workflow_job'), true);
    assert.equal(await ledger.recordDelivery('github', 'd-1', 'workflow_job'), false);
    assert.deepEqual(await ledger.enqueue(job('1'), 'webhook queued'), { id: 'github:1', created: true });
    assert.deepEqual(await ledger.enqueue(job('1'), 'webhook queued again'), { id: 'github:1', created: false });
    assert.equal((await ledger.timeline('github:1')).length, 1);
  });

  it('walks the happy path and keeps a timeline with times and reasons', async () => {
    await ledger.enqueue(job('2'), 'webhook queued');
    for (const [to, reason] of [
      ['claimed', 'placed on host-a'],
      ['provisioning', 'booting'],
      ['runner_registered', 'JIT config issued'],
      ['running', 'in_progress'],
      ['completed', 'success'],
    ] as const) {
      now = new Date(now.getTime() + 1000);
      assert.equal(await ledger.transition('github:2', to, reason, to === 'provisioning' ? { vmId: 'vm-1' } : {}), true, `to ${to}`);
    }
    const timeline = await ledger.timeline('github:2');
    assert.deepEqual(
      timeline.map((e) => [e.from, e.to]),
      [
        [null, 'queued'],
        ['queued', 'claimed'],
        ['claimed', 'provisioning'],
        ['provisioning', 'runner_registered'],
        ['runner_registered', 'running'],
        ['running', 'completed'],
      ],
    );
    assert.ok(timeline.every((e, i) => i === 0 || e.at > timeline[i - 1]!.at));
    assert.equal((await ledger.job('github:2'))?.vm_id, 'vm-1');
  });

  it('stays consistent when events come out of order or twice', async () => {
    await ledger.enqueue(job('3'), 'webhook queued');
    assert.equal(await ledger.transition('github:3', 'completed', 'completed arrived first'), true);
    assert.equal(await ledger.transition('github:3', 'running', 'late in_progress'), false);
    assert.equal(await ledger.transition('github:3', 'completed', 'duplicate completed'), false);
    assert.equal(await ledger.transition('github:3', 'claimed', 'late claim'), false);
    assert.equal((await ledger.job('github:3'))?.state, 'completed');
    assert.equal((await ledger.timeline('github:3')).length, 2);
    assert.equal(await ledger.transition('github:nope', 'claimed', 'no such job'), false);
  });

  it('allows only the documented transitions, and two claims of one job have one winner', async () => {
    assert.equal(canTransition('queued', 'claimed'), true);
    assert.equal(canTransition('completed', 'queued'), false);
    for (const state of ['completed', 'failed', 'cancelled'] as const) for (const to of JOB_STATES) assert.equal(canTransition(state, to), false);
    await ledger.enqueue(job('4'), 'webhook queued');
    const claims = await Promise.all([ledger.transition('github:4', 'claimed', 'replica a'), ledger.transition('github:4', 'claimed', 'replica b')]);
    assert.deepEqual(claims.sort(), [false, true]);
  });

  it('pages jobs newest first with a cursor, and finds jobs stuck past a deadline', async () => {
    const first = await ledger.jobs(2);
    assert.equal(first.length, 2);
    const second = await ledger.jobs(10, first.at(-1));
    assert.ok(second.every((j) => !first.some((f) => f.id === j.id)));
    assert.equal(first.length + second.length, 4);
    now = new Date(now.getTime() + 60 * 60_000);
    assert.deepEqual(
      (await ledger.stuckIn('claimed', 30 * 60_000)).map((j) => j.id),
      ['github:4'],
    );
  });
});
