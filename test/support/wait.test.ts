import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from './wait.ts';

test('waitFor returns the first value that holds, checking until then', async () => {
  let calls = 0;
  const value = await waitFor(() => (++calls >= 3 ? { calls } : undefined), { what: 'the third call', interval: 1 });
  assert.deepEqual(value, { calls: 3 });
  assert.equal(await waitFor(async () => 0, { what: 'zero, which holds' }), 0);
  assert.equal(await waitFor(() => '', { what: 'an empty string, which holds' }), '');
});

test('waitFor fails after its timeout naming what it waited for and the detail, having checked at the deadline', async () => {
  let calls = 0;
  const started = Date.now();
  await assert.rejects(
    waitFor(
      () => {
        calls++;
        return false;
      },
      { what: 'the moon', timeout: 120, interval: 30, detail: async () => `checked ${calls} times` },
    ),
    (error: Error) => {
      assert.match(error.message, /^timed out after 120 ms waiting for the moon\nchecked \d+ times$/);
      return true;
    },
  );
  assert.ok(Date.now() - started >= 120, 'it waited the whole timeout');
  assert.ok(calls >= 3, `it checked more than once (${calls})`);
});

test('an error thrown by the condition ends the wait at once', async () => {
  const started = Date.now();
  await assert.rejects(
    waitFor(
      () => {
        throw new Error('probe broke');
      },
      { what: 'anything', timeout: 10_000 },
    ),
    /probe broke/,
  );
  assert.ok(Date.now() - started < 5_000);
});
