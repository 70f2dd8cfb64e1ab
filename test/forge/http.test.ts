import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GithubAuth } from '../../src/forge/github/auth.ts';
import type { GithubForge } from '../../src/forge/github/client.ts';
import { retryAfterMs } from '../../src/forge/http.ts';
import { createLogger } from '../../src/log.ts';
import { ForgeSimulator } from '../support/forge-sim/index.ts';
import { REPO, SECRETS, simGithubForge } from '../support/serve-host.ts';

describe('forge API calls under rate limiting and errors', () => {
  let sim: ForgeSimulator;
  let github: GithubForge;
  before(async () => {
    sim = await ForgeSimulator.start({ ...SECRETS });
    github = simGithubForge(sim, createLogger({ level: 'silent' }), { retry: { attempts: 5, baseDelayMs: 50, maxDelayMs: 5000 } });
  });
  after(() => sim.close());

  test('a 429 storm is honoured: no request goes out before Retry-After has passed', async () => {
    sim.failApi({ status: 429, count: 3, retryAfterSeconds: 1, path: /\/actions\/runners$/ });
    const started = Date.now();
    const runners = await github.listRunners();
    assert.deepEqual(runners, []);
    const calls = sim.apiLog.filter((e) => e.path.endsWith('/actions/runners'));
    assert.deepEqual(
      calls.map((c) => c.status),
      [429, 429, 429, 200],
    );
    for (let i = 1; i < calls.length; i += 1)
      assert.ok(calls[i]!.at - calls[i - 1]!.at >= 950, `call ${i} came ${calls[i]!.at - calls[i - 1]!.at} ms after the 429`);
    assert.ok(Date.now() - started >= 2900);
  });

  test("GitHub's secondary rate limit (403 with Retry-After) is waited out, not treated as a permission error", async () => {
    sim.failApi({ status: 403, count: 1, retryAfterSeconds: 1, secondaryRateLimit: true, path: /\/actions\/runs$/ });
    const started = Date.now();
    assert.deepEqual(await github.listQueuedJobs(), []);
    assert.ok(Date.now() - started >= 950);
    assert.deepEqual(
      sim.apiLog.filter((e) => e.path.endsWith('/actions/runs')).map((e) => e.status),
      [403, 200],
    );
  });

  test('5xx is retried with backoff; a 401 is not retried and names the fix', async () => {
    sim.failApi({ status: 502, count: 2, path: /generate-jitconfig$/ });
    const registration = await github.registerRunner({ id: 'github:1', repository: REPO, forgeJobId: '1', labels: ['self-hosted', 'hearth'] });
    assert.match(registration.runnerName, /^hearth-github-1-[0-9a-f]{6}$/);
    assert.equal(registration.argv[1], '--jitconfig');
    const bad = simGithubForge(sim, createLogger({ level: 'silent' }), {
      auth: GithubAuth.fromConfig(sim.githubApiUrl, 'wrong-token', { id: null, privateKeyPath: null, installationId: null }),
    });
    const before = sim.apiLog.length;
    await assert.rejects(
      bad.listRunners(),
      (error: Error & { code?: string; fix?: string }) => error.code === 'HEARTH_ERR_FORGE_API' && /github.token/.test(error.fix ?? ''),
    );
    assert.equal(sim.apiLog.length - before, 1, 'one request, no retries');
    assert.equal(await github.removeRunner({ repository: REPO, runnerId: registration.runnerId }), 'removed');
    assert.equal(await github.removeRunner({ repository: REPO, runnerId: registration.runnerId }), 'gone');
  });

  test('Retry-After as seconds or a date, and GitHub rate-limit reset headers', () => {
    assert.equal(retryAfterMs(new Headers({ 'retry-after': '7' })), 7000);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': new Date(10_000).toUTCString() }), 4000), 6000);
    assert.equal(retryAfterMs(new Headers({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '20' }), 15_000), 5000);
    assert.equal(retryAfterMs(new Headers({})), undefined);
  });
});
