import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac, createSign, generateKeyPairSync, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createRequire } from 'node:module';
import { ForgeSimulator, GITHUB_RUNNER_STAND_IN, GITLAB_RUNNER_STAND_IN, type ForgeSimulatorOptions } from './index.ts';
import { waitFor } from '../wait.ts';

type Json = Record<string, unknown>;

const OPTIONS: ForgeSimulatorOptions = {
  githubWebhookSecret: 'gh-hook-secret',
  gitlabWebhookToken: 'gl-hook-token',
  githubToken: 'ghp_simulatedPersonalAccessToken',
  gitlabToken: 'glpat-simulated',
  jobDurationMs: 200,
  seed: 42,
  guestHost: '127.0.0.1',
};

const sims: ForgeSimulator[] = [];
const servers: Server[] = [];
after(async () => {
  await Promise.all(sims.map((s) => s.close()));
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

async function startSim(extra: Partial<ForgeSimulatorOptions> = {}): Promise<ForgeSimulator> {
  const sim = await ForgeSimulator.start({ ...OPTIONS, ...extra });
  sims.push(sim);
  return sim;
}

interface Received {
  headers: IncomingHttpHeaders;
  raw: Buffer;
  body: Json;
}

/** A stand-in for Hearth's webhook endpoint: records what arrives, answers `status`. */
async function startReceiver(status = 200): Promise<{ url: string; got: Received[] }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let body: Json = {};
      try {
        body = JSON.parse(raw.toString('utf8')) as Json;
      } catch {
        // fuzz bodies need not be JSON
      }
      got.push({ headers: req.headers, raw, body });
      res.writeHead(status).end();
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got };
}

async function gh(
  sim: ForgeSimulator,
  method: string,
  path: string,
  body?: unknown,
  token: string | null = OPTIONS.githubToken,
): Promise<{ status: number; json: Json; headers: Headers }> {
  const headers: Record<string, string> = { accept: 'application/vnd.github+json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${sim.githubApiUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Json) : {}, headers: res.headers };
}

async function gl(
  sim: ForgeSimulator,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = { 'private-token': OPTIONS.gitlabToken },
): Promise<{ status: number; json: unknown; headers: Headers }> {
  const res = await fetch(`${sim.gitlabUrl}/api/v4${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as unknown) : null, headers: res.headers };
}

function sign(secret: string, raw: Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`;
}

function signatureMatches(secret: string, raw: Buffer, header: string): boolean {
  const expected = Buffer.from(sign(secret, raw));
  const actual = Buffer.from(header);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

// ---- running the stand-ins on the host -------------------------------------

/**
 * The stand-ins target busybox, so they run under busybox sh with busybox's
 * wget, base64, sed, sleep and timeout first on PATH when /bin/busybox has
 * wget; else under /bin/sh with the host's wget; else the tests skip.
 */
function standInShell(): { shell: string; path: string } | string {
  const probe = spawnSync('/bin/busybox', ['wget', '--help'], { stdio: 'ignore' });
  if (!probe.error && probe.status === 0) {
    const bin = mkdtempSync(join(tmpdir(), 'forge-sim-busybox-'));
    for (const tool of ['wget', 'base64', 'sed', 'sleep', 'timeout']) symlinkSync('/bin/busybox', join(bin, tool));
    process.on('exit', () => rmSync(bin, { recursive: true, force: true }));
    return { shell: '/bin/busybox', path: `${bin}:${process.env.PATH ?? ''}` };
  }
  const wget = spawnSync('sh', ['-c', 'command -v wget'], { stdio: 'ignore' });
  if (wget.status === 0) return { shell: '/bin/sh', path: process.env.PATH ?? '' };
  return 'neither busybox wget nor wget is installed on this host';
}

const toolchain = standInShell();
const skipStandIns = typeof toolchain === 'string' ? toolchain : false;

function runStandIn(script: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  if (typeof toolchain === 'string') throw new Error(toolchain);
  const shellArgs = toolchain.shell === '/bin/busybox' ? ['sh', script, ...args] : [script, ...args];
  // No proxies: the simulator is on loopback.
  const env: NodeJS.ProcessEnv = { PATH: toolchain.path, HOME: process.env.HOME ?? '/tmp', LANG: 'C' };
  const child = spawn(toolchain.shell, shellArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

// ---- GitHub --------------------------------------------------------------

describe('GitHub webhooks', () => {
  it('signs the raw body with HMAC-SHA256 and builds it from the workflow_job example', async () => {
    const sim = await startSim();
    const receiver = await startReceiver();
    sim.setWebhookTargets({ github: receiver.url });
    const job = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['self-hosted', 'hearth'], name: 'test' });

    assert.equal(receiver.got.length, 1);
    const [hook] = receiver.got as [Received];
    const signature = String(hook.headers['x-hub-signature-256']);
    assert.ok(signatureMatches(OPTIONS.githubWebhookSecret, hook.raw, signature), 'signature verifies with the secret');
    assert.ok(!signatureMatches('another secret', hook.raw, signature), 'signature does not verify with another secret');
    assert.equal(hook.headers['x-github-event'], 'workflow_job');
    assert.match(String(hook.headers['x-github-delivery']), /^[0-9a-f-]{36}$/);
    assert.ok(hook.headers['x-github-hook-id']);
    assert.match(String(hook.headers['user-agent']), /^GitHub-Hookshot\//);
    assert.equal(hook.headers['content-type'], 'application/json');

    const wj = hook.body.workflow_job as Json;
    assert.equal(hook.body.action, 'queued');
    assert.deepEqual(
      { id: wj.id, run_id: wj.run_id, status: wj.status, labels: wj.labels, runner_id: wj.runner_id, name: wj.name },
      { id: job.id, run_id: job.runId, status: 'queued', labels: ['self-hosted', 'hearth'], runner_id: null, name: 'test' },
    );
    const repo = hook.body.repository as Json;
    assert.equal(repo.full_name, 'acme/widgets');
    assert.equal((repo.owner as Json).login, 'acme');

    // Same shape as GitHub's: every field of the package's queued example is there.
    const require = createRequire(import.meta.url);
    const sets = JSON.parse(readFileSync(require.resolve('@octokit/webhooks-examples/api.github.com/index.json'), 'utf8')) as {
      name: string;
      examples: Json[];
    }[];
    const example = sets.find((s) => s.name === 'workflow_job')!.examples.find((e) => e.action === 'queued')!;
    for (const key of Object.keys(example.workflow_job as Json)) assert.ok(key in wj, `workflow_job.${key} is present`);
    assert.ok('sender' in hook.body);

    await sim.sendGithubPing();
    assert.equal(receiver.got[1]?.headers['x-github-event'], 'ping');
    assert.ok(signatureMatches(OPTIONS.githubWebhookSecret, receiver.got[1]!.raw, String(receiver.got[1]!.headers['x-hub-signature-256'])));
  });
});

describe('GitHub REST', () => {
  it('answers 401 Bad credentials without a valid token, and accepts `token X` and `Bearer X`', async () => {
    const sim = await startSim();
    for (const token of [null, 'ghp_wrong']) {
      const res = await gh(sim, 'GET', '/repos/acme/widgets/actions/runners', undefined, token);
      assert.equal(res.status, 401);
      assert.equal(res.json.message, 'Bad credentials');
    }
    const res = await fetch(`${sim.url}/repos/acme/widgets/actions/runners`, { headers: { authorization: `token ${OPTIONS.githubToken}` } });
    assert.equal(res.status, 200);
    assert.equal((await gh(sim, 'GET', '/repos/acme/widgets/actions/nonsense')).status, 404);
  });

  it('validates generate-jitconfig: 422 naming the field, 409 for a taken name, 201 with an opaque config', async () => {
    const sim = await startSim();
    const path = '/repos/acme/widgets/actions/runners/generate-jitconfig';
    const missingGroup = await gh(sim, 'POST', path, { name: 'r1', labels: ['hearth'] });
    assert.equal(missingGroup.status, 422);
    assert.match(String(missingGroup.json.message), /runner_group_id/);
    const badLabels = await gh(sim, 'POST', path, { name: 'r1', runner_group_id: 1, labels: [] });
    assert.equal(badLabels.status, 422);
    assert.match(String(badLabels.json.message), /labels/);
    assert.equal((await gh(sim, 'POST', path, { name: 'r1', runner_group_id: '1', labels: ['x'] })).status, 422);

    const created = await gh(sim, 'POST', path, { name: 'r1', runner_group_id: 1, labels: ['self-hosted', 'hearth'] });
    assert.equal(created.status, 201);
    const runner = created.json.runner as Json;
    assert.equal(runner.name, 'r1');
    assert.equal(runner.status, 'offline');
    assert.equal(runner.busy, false);
    assert.deepEqual(
      (runner.labels as Json[]).map((l) => [l.name, l.type]),
      [
        ['self-hosted', 'custom'],
        ['hearth', 'custom'],
      ],
    );
    const config = JSON.parse(Buffer.from(String(created.json.encoded_jit_config), 'base64').toString()) as Json;
    assert.equal(config.runnerId, runner.id);
    assert.equal(config.callbackUrl, `${sim.guestUrl}/_sim/github/runner`);
    assert.match(String(config.secret), /^[0-9a-f]{32}$/);

    const duplicate = await gh(sim, 'POST', path, { name: 'r1', runner_group_id: 1, labels: ['hearth'] });
    assert.equal(duplicate.status, 409);
    // Names are unique per scope, so another repo may reuse it.
    assert.equal(
      (await gh(sim, 'POST', '/repos/acme/other/actions/runners/generate-jitconfig', { name: 'r1', runner_group_id: 1, labels: ['hearth'] })).status,
      201,
    );

    const listed = await gh(sim, 'GET', '/repos/acme/widgets/actions/runners?per_page=100');
    assert.equal(listed.json.total_count, 1);
    assert.equal(((listed.json.runners as Json[])[0] as Json).id, runner.id);
  });

  it('lists queued runs, their jobs, and single jobs', async () => {
    const sim = await startSim();
    const a = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['hearth'] });
    const b = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['hearth', 'big'] });
    await sim.queueGithubJob({ repo: 'acme/other', labels: ['hearth'] });
    await sim.cancelGithubJob(a.id);

    const queued = await gh(sim, 'GET', '/repos/acme/widgets/actions/runs?status=queued&per_page=100');
    assert.equal(queued.status, 200);
    assert.equal(queued.json.total_count, 1);
    const run = (queued.json.workflow_runs as Json[])[0]!;
    assert.deepEqual([run.id, run.status], [b.runId, 'queued']);
    assert.ok(String(run.html_url).length > 0);

    const paged = await gh(sim, 'GET', '/repos/acme/widgets/actions/runs?per_page=1&page=2');
    assert.equal(paged.json.total_count, 2);
    assert.equal((paged.json.workflow_runs as Json[]).length, 1);
    assert.match(paged.headers.get('link') ?? '', /rel="prev"/);

    const jobs = await gh(sim, 'GET', `/repos/acme/widgets/actions/runs/${b.runId}/jobs`);
    assert.equal(jobs.json.total_count, 1);
    const listedJob = (jobs.json.jobs as Json[])[0]!;
    assert.deepEqual([listedJob.id, listedJob.status, listedJob.labels], [b.id, 'queued', ['hearth', 'big']]);

    const single = await gh(sim, 'GET', `/repos/acme/widgets/actions/jobs/${a.id}`);
    assert.deepEqual([single.json.status, single.json.conclusion], ['completed', 'cancelled']);
    assert.equal((await gh(sim, 'GET', `/repos/acme/other/actions/jobs/${a.id}`)).status, 404);
    assert.equal((await gh(sim, 'GET', '/repos/acme/widgets/actions/jobs/1')).status, 404);
  });

  it('hands jobs to JIT runners by label and scope, refuses to delete a busy runner', async () => {
    const sim = await startSim({ jobDurationMs: 60_000 });
    const job = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['hearth', 'big'] });
    const small = await gh(sim, 'POST', '/orgs/acme/actions/runners/generate-jitconfig', { name: 'small', runner_group_id: 1, labels: ['hearth'] });
    const big = await gh(sim, 'POST', '/orgs/acme/actions/runners/generate-jitconfig', { name: 'big', runner_group_id: 1, labels: ['hearth', 'big', 'extra'] });
    const start = (config: unknown): Promise<Response> => fetch(`${sim.url}/_sim/github/runner/start`, { method: 'POST', body: String(config) });

    assert.equal((await start('bm90IGEgY29uZmln')).status, 403);
    assert.equal((await start(small.json.encoded_jit_config)).status, 204, 'a runner missing a label gets nothing');
    const took = await start(big.json.encoded_jit_config);
    assert.equal(took.status, 200);
    assert.equal(((await took.json()) as Json).jobId, job.id);
    const bigId = (big.json.runner as Json).id as number;
    assert.deepEqual([sim.github.jobs.get(job.id)?.status, sim.github.jobs.get(job.id)?.runnerId], ['in_progress', bigId]);
    assert.equal(sim.github.runners.get(bigId)?.credentialsSeenInGuest, true);

    const busy = await gh(sim, 'DELETE', `/orgs/acme/actions/runners/${bigId}`);
    assert.equal(busy.status, 422);
    assert.equal(busy.json.message, 'Bad request - Runner "big" is still running a job"');
    assert.equal((await gh(sim, 'DELETE', `/orgs/acme/actions/runners/${(small.json.runner as Json).id as number}`)).status, 204);
    assert.equal((await gh(sim, 'DELETE', '/orgs/acme/actions/runners/999999')).status, 404);

    // Cancelling releases the runner, and its /finish hears about it.
    await sim.cancelGithubJob(job.id);
    const finish = await fetch(`${sim.url}/_sim/github/runner/finish`, { method: 'POST', body: String(big.json.encoded_jit_config) });
    assert.deepEqual(await finish.json(), { jobId: job.id, conclusion: 'cancelled' });
    assert.equal(sim.github.runners.has(bigId), false);
  });

  it('issues installation tokens for a valid app JWT and refuses bad ones', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const sim = await startSim({
      githubAppId: '12345',
      githubAppPublicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      githubInstallationId: '678',
    });
    const jwt = (claims: Json, key = privateKey): string => {
      const head = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT' })).toString('base64url');
      const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
      return `${head}.${body}.${createSign('RSA-SHA256').update(`${head}.${body}`).sign(key).toString('base64url')}`;
    };
    const now = Math.floor(Date.now() / 1000);
    const good = jwt({ iat: now - 60, exp: now + 540, iss: '12345' });

    const issued = await gh(sim, 'POST', '/app/installations/678/access_tokens', undefined, good);
    assert.equal(issued.status, 201);
    assert.match(String(issued.json.token), /^ghs_/);
    assert.ok(Math.abs(Date.parse(String(issued.json.expires_at)) - Date.now() - 3600_000) < 5000);
    assert.equal((await gh(sim, 'GET', '/repos/acme/widgets/actions/runners', undefined, String(issued.json.token))).status, 200);

    assert.equal((await gh(sim, 'POST', '/app/installations/679/access_tokens', undefined, good)).status, 404);
    for (const bad of [
      jwt({ iat: now - 60, exp: now + 540, iss: '12345' }, other),
      jwt({ iat: now - 60, exp: now + 3600, iss: '12345' }),
      jwt({ iat: now - 900, exp: now - 300, iss: '12345' }),
      jwt({ iat: now, exp: now + 60, iss: '999' }),
      'not.a.jwt',
    ]) {
      assert.equal((await gh(sim, 'POST', '/app/installations/678/access_tokens', undefined, bad)).status, 401);
    }
    // The JWT itself is not an API token.
    assert.equal((await gh(sim, 'GET', '/repos/acme/widgets/actions/runners', undefined, good)).status, 401);
  });
});

// ---- faults --------------------------------------------------------------

describe('faults', () => {
  it('drops, duplicates and reorders deliveries, and redelivers on request', async () => {
    const sim = await startSim();
    const receiver = await startReceiver();
    sim.setWebhookTargets({ github: receiver.url });

    sim.faults.dropRate = 1;
    const dropped = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['hearth'] });
    assert.equal(receiver.got.length, 0);
    const droppedRecord = sim.deliveries.find((d) => d.jobId === dropped.id)!;
    assert.deepEqual([droppedRecord.dropped, droppedRecord.responses], [true, []]);
    assert.equal(await sim.redeliver(droppedRecord.id), 200);
    assert.equal(receiver.got[0]?.headers['x-github-delivery'], droppedRecord.id);

    sim.faults.dropRate = 0;
    sim.faults.duplicate = true;
    const twice = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['hearth'] });
    const dupes = receiver.got.slice(1);
    assert.equal(dupes.length, 2);
    assert.equal(dupes[0]!.headers['x-github-delivery'], dupes[1]!.headers['x-github-delivery']);
    assert.deepEqual(dupes[0]!.raw, dupes[1]!.raw);
    assert.deepEqual(sim.deliveries.find((d) => d.jobId === twice.id)?.responses, [200, 200]);

    sim.faults.duplicate = false;
    sim.faults.reorder = true;
    const first = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['hearth'] });
    const second = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['hearth'] });
    assert.equal(receiver.got.length, 3);
    assert.ok(sim.deliveries.filter((d) => d.held).length === 2);
    await sim.flushHeld();
    assert.deepEqual(
      receiver.got.slice(3).map((r) => (r.body.workflow_job as Json).id),
      [second.id, first.id],
    );
    assert.equal(sim.deliveries.filter((d) => d.held).length, 0);
  });

  it('drops the same deliveries for the same seed', async () => {
    const pattern = async (): Promise<boolean[]> => {
      const sim = await startSim({ seed: 7 });
      sim.faults.dropRate = 0.5;
      for (let i = 0; i < 12; i++) await sim.queueGitlabJob({ projectId: 1, tags: [] });
      return sim.deliveries.map((d) => d.dropped);
    };
    const one = await pattern();
    assert.deepEqual(await pattern(), one);
    assert.ok(one.includes(true) && one.includes(false), 'a 50% rate drops some and keeps some');
  });

  it('failApi answers 429 with Retry-After exactly `count` times, then recovers', async () => {
    const sim = await startSim();
    sim.failApi({ status: 429, count: 2, retryAfterSeconds: 7, path: /\/actions\/runners$/ });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await gh(sim, 'GET', '/repos/acme/widgets/actions/runners');
      statuses.push(res.status);
      if (res.status === 429) {
        assert.equal(res.headers.get('retry-after'), '7');
        assert.equal(res.headers.get('x-ratelimit-remaining'), '0');
        assert.ok(Number(res.headers.get('x-ratelimit-reset')) > Date.now() / 1000);
        assert.equal(typeof res.json.message, 'string');
        assert.equal(typeof res.json.documentation_url, 'string');
      }
    }
    assert.deepEqual(statuses, [429, 429, 200]);
    // A path the rule does not match is untouched.
    sim.failApi({ status: 503, count: 1, path: /\/actions\/runs$/ });
    assert.equal((await gh(sim, 'GET', '/repos/acme/widgets/actions/runners')).status, 200);
    assert.equal((await gh(sim, 'GET', '/repos/acme/widgets/actions/runs')).status, 503);

    sim.failApi({ status: 403, count: 1, secondaryRateLimit: true, retryAfterSeconds: 3 });
    const secondary = await gh(sim, 'GET', '/repos/acme/widgets/actions/runs');
    assert.deepEqual([secondary.status, secondary.headers.get('retry-after')], [403, '3']);
    assert.match(String(secondary.json.message), /secondary rate limit/);

    sim.failApi({ status: 502, count: 1 });
    const gitlab = await gl(sim, 'GET', '/projects/1/jobs');
    assert.deepEqual([gitlab.status, gitlab.json], [502, { message: '502 Bad Gateway' }]);

    const logged = sim.apiLog.filter((e) => e.path === '/repos/acme/widgets/actions/runners').map((e) => e.status);
    assert.deepEqual(logged, [429, 429, 200, 200]);
    assert.ok(sim.apiLog.every((e) => !JSON.stringify(e).includes(OPTIONS.githubToken)));
  });
});

// ---- GitLab --------------------------------------------------------------

describe('GitLab', () => {
  it('answers 401 without PRIVATE-TOKEN and manages runners', async () => {
    const sim = await startSim();
    const denied = await gl(sim, 'GET', '/projects/1/jobs', undefined, {});
    assert.deepEqual([denied.status, denied.json], [401, { message: '401 Unauthorized' }]);

    assert.equal((await gl(sim, 'POST', '/user/runners', { project_id: 1 })).status, 400);
    assert.equal((await gl(sim, 'POST', '/user/runners', { runner_type: 'project_type' })).status, 400);
    const form = await fetch(`${sim.gitlabUrl}/api/v4/user/runners`, {
      method: 'POST',
      headers: { 'private-token': OPTIONS.gitlabToken, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'runner_type=project_type&project_id=1&description=vm-1&tag_list=hearth,job-1&run_untagged=false',
    });
    assert.equal(form.status, 201);
    const created = (await form.json()) as Json;
    assert.match(String(created.token), /^glrt-/);
    assert.equal(created.token_expires_at, null);

    const details = await gl(sim, 'GET', `/runners/${created.id as number}`);
    assert.deepEqual((details.json as Json).tag_list, ['hearth', 'job-1']);
    const listed = await gl(sim, 'GET', '/projects/1/runners');
    assert.deepEqual(
      (listed.json as Json[]).map((r) => [r.id, r.runner_type, r.is_shared]),
      [[created.id, 'project_type', false]],
    );
    assert.equal(((await gl(sim, 'GET', '/projects/2/runners')).json as Json[]).length, 0);
    assert.equal((await gl(sim, 'DELETE', `/runners/${created.id as number}`)).status, 204);
    assert.equal((await gl(sim, 'DELETE', `/runners/${created.id as number}`)).status, 404);
  });

  it('hands a job only to a runner holding all its tags', async () => {
    const sim = await startSim();
    const job = await sim.queueGitlabJob({ projectId: 5, tags: ['a', 'b'] });
    const untagged = await sim.queueGitlabJob({ projectId: 5, tags: [] });
    const make = async (tags: string[], extra: Json = {}): Promise<string> =>
      String(((await gl(sim, 'POST', '/user/runners', { runner_type: 'project_type', project_id: 5, tag_list: tags, ...extra })).json as Json).token);
    const request = (token: string): Promise<Response> =>
      fetch(`${sim.gitlabUrl}/api/v4/jobs/request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });

    assert.equal((await request('glrt-unknown')).status, 403);
    assert.equal((await request(await make(['a'], { run_untagged: false }))).status, 204, 'runner [a] may not take a job tagged [a, b]');
    const otherProject = String(
      ((await gl(sim, 'POST', '/user/runners', { runner_type: 'project_type', project_id: 6, tag_list: ['a', 'b'] })).json as Json).token,
    );
    assert.equal((await request(otherProject)).status, 204, 'a project runner serves its own project only');

    const runner = await make(['a', 'b', 'c'], { run_untagged: false });
    // The simulated run (200 ms) starts when the job is handed out, so the update can't come back sooner.
    const takenAt = Date.now();
    const taken = await request(runner);
    assert.equal(taken.status, 201);
    const text = await taken.text();
    assert.match(text, new RegExp(`^\\{"id":${job.id},"token":"[^"]+"`));
    assert.deepEqual([sim.gitlab.jobs.get(job.id)?.status, sim.gitlab.jobs.get(untagged.id)?.status], ['running', 'pending']);

    const shown = await gl(sim, 'GET', `/projects/5/jobs/${job.id}`);
    assert.deepEqual([(shown.json as Json).status, (shown.json as Json).tag_list], ['running', ['a', 'b']]);
    assert.deepEqual((await gl(sim, 'GET', `/projects/6/jobs/${job.id}`)).json, { message: '404 Job Not Found' });
    const pending = await gl(sim, 'GET', '/projects/5/jobs?scope[]=pending');
    assert.deepEqual(
      (pending.json as Json[]).map((j) => j.id),
      [untagged.id],
    );

    // busybox wget sends the PUT as a POST with X-HTTP-Method-Override.
    const jobToken = (JSON.parse(text) as Json).token as string;
    const put = (token: string): Promise<Response> =>
      fetch(`${sim.gitlabUrl}/api/v4/jobs/${job.id}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-http-method-override': 'PUT' },
        body: JSON.stringify({ token, state: 'success' }),
      });
    assert.equal((await put('glcbt-wrong')).status, 403);
    assert.equal((await put(jobToken)).status, 200);
    assert.ok(Date.now() - takenAt >= 200, 'the update waits for the simulated run');
    assert.equal(sim.gitlab.jobs.get(job.id)?.status, 'success');
  });

  it('sends Job Hooks with the documented headers and no job tags', async () => {
    const sim = await startSim();
    const receiver = await startReceiver();
    sim.setWebhookTargets({ gitlab: receiver.url });
    const job = await sim.queueGitlabJob({ projectId: 3, tags: ['secret-tag-x'], name: 'compile' });
    await sim.cancelGitlabJob(job.id);

    assert.deepEqual(
      receiver.got.map((r) => r.body.build_status),
      ['pending', 'canceled'],
    );
    const [hook] = receiver.got as [Received];
    assert.equal(hook.headers['x-gitlab-event'], 'Job Hook');
    assert.equal(hook.headers['x-gitlab-token'], OPTIONS.gitlabWebhookToken);
    for (const header of ['x-gitlab-event-uuid', 'x-gitlab-webhook-uuid', 'idempotency-key']) assert.ok(hook.headers[header], `${header} is sent`);
    assert.equal(sim.deliveries[0]?.id, hook.headers['idempotency-key']);
    assert.deepEqual(
      [hook.body.object_kind, hook.body.build_id, hook.body.build_name, hook.body.project_id, hook.body.runner],
      ['build', job.id, 'compile', 3, null],
    );
    for (const key of ['build_stage', 'build_created_at', 'pipeline_id', 'project_name', 'ref', 'sha', 'user', 'commit', 'repository', 'project'])
      assert.ok(key in hook.body, `${key} is present`);
    assert.ok(!hook.raw.toString().includes('tag_list'), 'no tag_list anywhere in the hook');
    assert.ok(!hook.raw.toString().includes('secret-tag-x'), 'the job tags are not in the hook');
  });
});

// ---- stand-ins -------------------------------------------------------------

describe('runner stand-ins', () => {
  it('github-run.sh takes the job: queued → in_progress → completed, hooks in order', { skip: skipStandIns }, async () => {
    const sim = await startSim();
    const receiver = await startReceiver();
    sim.setWebhookTargets({ github: receiver.url });
    const job = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['self-hosted', 'hearth'] });
    const jit = await gh(sim, 'POST', '/repos/acme/widgets/actions/runners/generate-jitconfig', {
      name: 'vm-1',
      runner_group_id: 1,
      labels: ['self-hosted', 'hearth'],
    });
    const runnerId = (jit.json.runner as Json).id as number;

    const run = await runStandIn(GITHUB_RUNNER_STAND_IN, ['--jitconfig', String(jit.json.encoded_jit_config)]);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(!run.stdout.includes(String(jit.json.encoded_jit_config)), 'the config stays out of the output');
    await sim.webhooksIdle();

    assert.deepEqual([sim.github.jobs.get(job.id)?.status, sim.github.jobs.get(job.id)?.conclusion], ['completed', 'success']);
    assert.equal(sim.github.runners.has(runnerId), false, 'the JIT runner is gone after its job');
    const hooks = receiver.got.map((r) => [r.body.action, (r.body.workflow_job as Json).runner_id]);
    assert.deepEqual(hooks, [
      ['queued', null],
      ['in_progress', runnerId],
      ['completed', runnerId],
    ]);
  });

  it('github-run.sh exits non-zero when the job is cancelled, and on bad options', { skip: skipStandIns }, async () => {
    const sim = await startSim({ jobDurationMs: 30_000 });
    const jit = await gh(sim, 'POST', '/orgs/acme/actions/runners/generate-jitconfig', { name: 'vm-2', runner_group_id: 1, labels: ['hearth'] });
    // Started before any job exists, so it has to poll (204) first, like a runner waiting for work.
    const running = runStandIn(GITHUB_RUNNER_STAND_IN, ['--jitconfig', String(jit.json.encoded_jit_config)]);
    await waitFor(() => sim.apiLog.some((e) => e.forge === 'runner' && e.status === 204), { timeout: 10_000, what: 'the stand-in to poll' });
    const job = await sim.queueGithubJob({ repo: 'acme/widgets', labels: ['hearth'] });
    await waitFor(() => sim.github.jobs.get(job.id)?.status === 'in_progress', { timeout: 10_000, what: 'the stand-in to take the job' });
    await sim.cancelGithubJob(job.id);
    const run = await running;
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /cancelled/);
    assert.equal((await runStandIn(GITHUB_RUNNER_STAND_IN, ['--nope'])).code, 2);
  });

  it('gitlab-runner takes a tagged job: pending → running → success, hooks in order', { skip: skipStandIns }, async () => {
    const sim = await startSim();
    const receiver = await startReceiver();
    sim.setWebhookTargets({ gitlab: receiver.url });
    const job = await sim.queueGitlabJob({ projectId: 9, tags: ['hearth', 'job-77'] });
    const created = (await gl(sim, 'POST', '/user/runners', { runner_type: 'project_type', project_id: 9, tag_list: 'hearth,job-77', run_untagged: false }))
      .json as Json;

    const run = await runStandIn(GITLAB_RUNNER_STAND_IN, [
      'run-single',
      '--url',
      sim.guestGitlabUrl,
      '--token',
      String(created.token),
      '--executor',
      'shell',
      '--max-builds',
      '1',
      '--wait-timeout',
      '20',
    ]);
    assert.equal(run.code, 0, run.stderr);
    await sim.webhooksIdle();

    assert.deepEqual([sim.gitlab.jobs.get(job.id)?.status, sim.gitlab.jobs.get(job.id)?.runnerId], ['success', created.id]);
    assert.equal(sim.gitlab.runners.get(created.id as number)?.credentialsSeenInGuest, true);
    assert.deepEqual(
      receiver.got.map((r) => r.body.build_status),
      ['pending', 'running', 'success'],
    );
    assert.equal((receiver.got[1]!.body.runner as Json).id, created.id);

    const bad = await runStandIn(GITLAB_RUNNER_STAND_IN, ['run-single', '--url', sim.guestGitlabUrl, '--token', 'x', '--executor', 'shell', '--bogus', '1']);
    assert.equal(bad.code, 2);
  });
});

it("the simulator's waitFor is the shared one: it names what it was waiting for", async () => {
  const sim = await startSim();
  await assert.rejects(
    sim.waitFor(() => false, 120, 'the moon'),
    /timed out after 120 ms waiting for the moon/,
  );
});
