import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DemandEstimator } from '../../src/pool/demand.ts';

/** A simulated day: quiet, a burst of one job every 6 s for ten minutes, quiet again. */
export function simulateTrace(): { minute: number; arrivalsPerMinute: number; target: number }[] {
  const demand = new DemandEstimator(300, 0);
  const rows = [];
  for (let minute = 0; minute < 40; minute += 1) {
    const perMinute = minute >= 10 && minute < 20 ? 10 : minute % 5 === 0 ? 1 : 0;
    for (let i = 0; i < perMinute; i += 1) demand.record((minute * 60 + (i * 60) / perMinute) * 1000);
    rows.push({ minute, arrivalsPerMinute: perMinute, target: demand.idleTarget(30, 1, 6, (minute + 1) * 60_000) });
  }
  return rows;
}

test('the idle target follows the arrival rate between the floor and the ceiling', () => {
  const rows = simulateTrace();
  const at = (minute: number) => rows[minute]!.target;
  assert.equal(at(5), 1, 'quiet: the floor');
  assert.ok(at(19) >= 3, `a burst of 10 jobs a minute with 30 s starts needs several idle VMs, got ${at(19)}`);
  assert.ok(at(19) <= 6, 'never above the ceiling');
  assert.ok(at(39) < at(19), 'it shrinks again when the burst is over');
  assert.equal(
    Math.max(...rows.map((r) => r.target)),
    rows.reduce((m, r) => Math.max(m, r.target), 0),
  );
});

test('one arrival after a long quiet spell keeps the floor', () => {
  const demand = new DemandEstimator(3600, 0);
  demand.record(0);
  assert.equal(demand.idleTarget(3, 0, 10, 10 * 3600_000), 0);
  assert.equal(demand.idleTarget(3, 2, 10, 10 * 3600_000), 2);
});
