import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { defaultServeConfig } from '../../src/config/serve-config.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { createLogger } from '../../src/log.ts';
import { buildServer } from '../../src/server/app.ts';
import { HearthMetrics, idleHost } from '../../src/server/metrics.ts';
import { allowlist, RateLimiter } from '../../src/server/guards.ts';
import { DEFAULT_SHAPE } from '../../src/scheduler/labels.ts';
import { createTestHost, type TestHost } from '../support/env.ts';

const SECRET = 'webhook-secret-under-test';
const SIGNING_SECRET = `whsec_${Buffer.from('standard-webhooks-key-under-test').toString('base64')}`;
const examplesPath = createRequire(import.meta.url).resolve('@octokit/webhooks-examples/api.github.com/index.json');
const examples = JSON.parse(readFileSync(examplesPath, 'utf8')) as { name: string; examples: Record<string, unknown>[] }[];
const workflowJobExamples = examples.find((e) => e.name === 'workflow_job')?.examples ?? [];

/** A documented example payload with this job's id, action and labels. */
function workflowJob(action: string, id: number, labels: string[], extra: Record<string, unknown> = {}): Buffer {
  const base = structuredClone(workflowJobExamples.find((e) => e.action === action) ?? workflowJobExamples[0]!) as {
    action: string;
    workflow_job: Record<string, unknown>;
  };
  base.action = action;
  Object.assign(base.workflow_job, { id, labels, ...extra });
  return Buffer.from(JSON.stringify(base));
}

function signed(body: Buffer, secret = SECRET): Record<string, string> {
  return {
    'content-type': 'application/json',
    'x-github-event': 'workflow_job',
    'x-github-delivery': randomUUID(),
    'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
  };
}

describe('webhook ingestion over HTTP', () => {
  let host: TestHost;
  let ledger: Ledger;
  let app: FastifyInstance;
  const logLines: string[] = [];
  let changes = 0;

  before(async () => {
    host = await createTestHost();
    ledger = await Ledger.openSqlite(`${host.paths.data}/hearth.db`);
    const config = defaultServeConfig(host.paths);
    config.github.webhookSecret = [SECRET, 'older-secret-still-accepted'];
    config.api.token = 'api-token-under-test-0123';
    config.server.rateLimitPerMinute = 0; // the fuzz test sends 1,000 requests from one address
    const logger = createLogger({ level: 'debug', destination: { write: (line: string) => logLines.push(line) } as unknown as NodeJS.WritableStream });
    app = await buildServer({
      config,
      logger,
      metrics: new HearthMetrics(ledger, idleHost()),
      ledger,
      driver: host.driver,
      limits: { maxCpus: 8, maxMemoryMib: 16384, images: ['debian', 'minimal'] },
      defaultShape: DEFAULT_SHAPE,
      gitlab: undefined,
      onChange: () => void changes++,
      secrets: { github: config.github.webhookSecret, gitlabTokens: ['gitlab-token-under-test'], gitlabSigning: [SIGNING_SECRET] },
      ready: async () => ({ ok: true, checks: {} }),
    });
  });
  after(async () => {
    await app.close();
    await ledger.close();
    await host.cleanup();
  });

  const post = (body: Buffer | string, headers: Record<string, string>) => app.inject({ method: 'POST', url: '/webhooks/github', payload: body, headers });

  test('the example payloads are the documented ones', () => {
    assert.ok(workflowJobExamples.length >= 4, 'workflow_job examples from @octokit/webhooks-examples');
  });

  test('a bad signature is a 401, logged without the signature, and nothing is stored', async () => {
    const body = workflowJob('queued', 9001, ['hearth']);
    const headers = signed(body, 'wrong-secret');
    const response = await post(body, headers);
    assert.equal(response.statusCode, 401);
    assert.equal(await ledger.job('github:9001'), undefined);
    assert.deepEqual(await ledger.jobs(10), []);
    const rejection = logLines.find((l) => l.includes('webhook rejected'));
    assert.ok(rejection);
    assert.ok(!rejection.includes(headers['x-hub-signature-256']!.slice(7)), 'the signature is not logged');
    assert.ok(!logLines.some((l) => l.includes(SECRET)), 'the secret is not logged');
  });

  test('a rotated-out secret still listed is accepted; a replayed delivery makes one job', async () => {
    const body = workflowJob('queued', 9002, ['self-hosted', 'hearth-2cpu-4gb']);
    const headers = signed(body, 'older-secret-still-accepted');
    const first = await post(body, headers);
    assert.equal(first.statusCode, 200);
    assert.equal(first.json().outcome, 'enqueued');
    const again = await post(body, headers);
    assert.equal(again.statusCode, 200);
    assert.equal(again.json().outcome, 'duplicate');
    const jobs = (await ledger.jobs(100)).filter((j) => j.id === 'github:9002');
    assert.equal(jobs.length, 1);
    assert.equal((await ledger.timeline('github:9002')).length, 1);
  });

  test('completed before in_progress (and a late queued) leaves the job completed', async () => {
    const labels = ['hearth'];
    assert.equal(
      (await post(workflowJob('completed', 9003, labels, { conclusion: 'success', runner_name: 'hearth-x' }), signed(workflowJob('completed', 9003, labels))))
        .statusCode,
      401,
      'headers must match the body',
    );
    const completed = workflowJob('completed', 9003, labels, { conclusion: 'success', runner_name: 'hearth-x' });
    assert.equal((await post(completed, signed(completed))).statusCode, 200);
    const progress = workflowJob('in_progress', 9003, labels, { runner_name: 'hearth-x' });
    assert.equal((await post(progress, signed(progress))).statusCode, 200);
    const queued = workflowJob('queued', 9003, labels);
    assert.equal((await post(queued, signed(queued))).statusCode, 200);
    const job = await ledger.job('github:9003');
    assert.equal(job?.state, 'completed');
    assert.ok(job?.released_at, 'nothing to tear down for a job that ended before it was seen');
    assert.deepEqual(
      (await ledger.timeline('github:9003')).map((e) => e.to),
      ['queued', 'completed'],
    );
  });

  test('jobs without a hearth label are answered 202 and not stored; other events and ping too', async () => {
    const body = workflowJob('queued', 9004, ['self-hosted', 'k8s']);
    const response = await post(body, signed(body));
    assert.equal(response.statusCode, 202);
    assert.equal(await ledger.job('github:9004'), undefined);
    const push = Buffer.from('{"ref":"refs/heads/main"}');
    assert.equal((await post(push, { ...signed(push), 'x-github-event': 'push' })).statusCode, 202);
    const ping = Buffer.from('{"zen":"Keep it logically awesome.","hook_id":1}');
    assert.equal((await post(ping, { ...signed(ping), 'x-github-event': 'ping' })).statusCode, 200);
  });

  test('wrong content type is a 415 that names the fix; the API needs its bearer token and caps limit', async () => {
    const response = await post('payload=%7B%7D', {
      'content-type': 'application/x-www-form-urlencoded',
      'x-github-event': 'ping',
      'x-github-delivery': randomUUID(),
    });
    assert.equal(response.statusCode, 415);
    assert.match(response.body, /application\/json/);
    assert.equal((await app.inject({ url: '/api/v1/jobs' })).statusCode, 401);
    const auth = { authorization: 'Bearer api-token-under-test-0123' };
    assert.equal((await app.inject({ url: '/api/v1/jobs?limit=10001', headers: auth })).statusCode, 400);
    const page1 = (await app.inject({ url: '/api/v1/jobs?limit=1', headers: auth })).json() as { jobs: { id: string }[]; nextCursor: string };
    const page2 = (await app.inject({ url: `/api/v1/jobs?limit=1&cursor=${page1.nextCursor}`, headers: auth })).json() as { jobs: { id: string }[] };
    assert.equal(page1.jobs.length, 1);
    assert.notEqual(page1.jobs[0]?.id, page2.jobs[0]?.id);
  });

  test('GitLab: the X-Gitlab-Token or a Standard Webhooks signature is required; a Job Hook without reachable tags is deferred to reconcile', async () => {
    const hook = Buffer.from(
      JSON.stringify({ object_kind: 'build', build_id: 5001, project_id: 42, build_status: 'pending', build_name: 'test', runner: null }),
    );
    const base = { 'content-type': 'application/json', 'x-gitlab-event': 'Job Hook' };
    const postGitlab = (headers: Record<string, string>) =>
      app.inject({ method: 'POST', url: '/webhooks/gitlab', payload: hook, headers: { ...base, ...headers } });
    assert.equal((await postGitlab({ 'x-gitlab-token': 'wrong', 'idempotency-key': randomUUID() })).statusCode, 401);
    const byToken = await postGitlab({ 'x-gitlab-token': 'gitlab-token-under-test', 'idempotency-key': randomUUID() });
    assert.equal(byToken.statusCode, 200);
    assert.equal(byToken.json().outcome, 'deferred', 'no GitLab API here: the tags cannot be read, reconcile will find the job');
    const id = randomUUID();
    const timestamp = String(Math.floor(Date.now() / 1000));
    const key = Buffer.from(SIGNING_SECRET.slice(6), 'base64');
    const signature = `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${hook.toString()}`).digest('base64')}`;
    assert.equal(
      (await postGitlab({ 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signature, 'idempotency-key': id })).statusCode,
      200,
    );
    assert.equal(
      (await postGitlab({ 'webhook-id': id, 'webhook-timestamp': String(Number(timestamp) - 3600), 'webhook-signature': signature, 'idempotency-key': id }))
        .statusCode,
      401,
      'an old timestamp is a replay',
    );
    assert.equal(await ledger.job('gitlab:5001'), undefined);
  });

  test('1,000 fuzzed malformed payloads: no crash, no 5xx, no state change', async () => {
    const before = JSON.stringify(await ledger.jobs(1000));
    const changesBefore = changes;
    const seedBody = workflowJob('queued', 9005, ['self-hosted', 'k8s']).toString('utf8');
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1000; i += 1) {
      let body: string;
      switch (i % 5) {
        case 0: // byte flips
          body = [...seedBody].map((c) => (random(40) === 0 ? String.fromCharCode(random(128)) : c)).join('');
          break;
        case 1: // truncation
          body = seedBody.slice(0, random(seedBody.length));
          break;
        case 2: // wrong types in the fields Hearth reads
          body = JSON.stringify({
            action: random(2) ? 'queued' : 7,
            workflow_job: [null, 'x', { id: 'NaN', labels: 'hearth' }, { id: -1, labels: [1, 2] }][random(4)],
            repository: { full_name: random(2) ? '../../etc' : null },
          });
          break;
        case 3: // deep nesting and huge numbers
          body = '['.repeat(random(5000)) + ']'.repeat(random(5000));
          break;
        default: // not JSON at all
          body = Buffer.from(Array.from({ length: random(300) }, () => random(256))).toString('latin1');
      }
      const raw = Buffer.from(body, 'latin1');
      const headers = i % 2 === 0 ? signed(raw) : { ...signed(raw), 'x-hub-signature-256': 'sha256=' + 'f'.repeat(64) };
      const response = await post(raw, headers);
      statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
      assert.ok(response.statusCode < 500, `payload ${i} got ${response.statusCode}: ${response.body}`);
    }
    assert.equal(JSON.stringify(await ledger.jobs(1000)), before, 'no job was added or changed');
    assert.equal(changes, changesBefore);
    assert.ok((statuses.get(401) ?? 0) >= 500 && (statuses.get(400) ?? 0) > 100, JSON.stringify([...statuses]));
    assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
  });
});

test('the per-IP rate limit allows a burst, then answers with the seconds to wait', () => {
  const limiter = new RateLimiter(60);
  const now = 1_000_000;
  for (let i = 0; i < 60; i += 1) assert.equal(limiter.take('10.0.0.1', now), 0);
  assert.equal(limiter.take('10.0.0.1', now), 1);
  assert.equal(limiter.take('10.0.0.2', now), 0, 'another address has its own bucket');
  assert.equal(limiter.take('10.0.0.1', now + 1000), 0, 'one token back after a second');
});

test('CIDR allowlists match IPv4, IPv6 and IPv4-mapped addresses', () => {
  const allowed = allowlist(['10.0.0.0/8', '::1/128']);
  assert.ok(allowed);
  assert.equal(allowed('10.2.3.4'), true);
  assert.equal(allowed('::ffff:10.2.3.4'), true);
  assert.equal(allowed('::1'), true);
  assert.equal(allowed('192.168.1.1'), false);
  assert.equal(allowlist([]), undefined);
});
