import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { OWNED_LABELS, REPO, SECRETS, ensureStandInImage, startServeHarness, type ServeHarness } from '../support/serve-host.ts';
import { HEARTH_BIN } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';

/** The hearth CLI against the test server; resolves with its exit code and output. */
function hearth(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [HEARTH_BIN, ...args], {
      env: { ...process.env, HEARTH_SERVE_CONFIG: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

/** Reads a Server-Sent Events stream until `end` (or `stopAfter` log events), as EventSource would parse it. */
async function readSse(url: string, headers: Record<string, string>, stopAfter = Infinity, timeoutMs = 120_000): Promise<SseEvent[]> {
  const abort = AbortSignal.timeout(timeoutMs);
  const response = await fetch(url, { headers, signal: abort });
  assert.equal(response.status, 200, await (response.status === 200 ? Promise.resolve('') : response.text()));
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = response.body!.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return events;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event: SseEvent = { event: 'message', data: '' };
        let hasData = false;
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'id') event.id = value;
          else if (field === 'event') event.event = value;
          else if (field === 'data') {
            event.data += (hasData ? '\n' : '') + value;
            hasData = true;
          }
        }
        if (!hasData) continue;
        events.push(event);
        if (event.event === 'end' || events.filter((e) => e.event === 'log').length >= stopAfter) return events;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3]);
  }
  return undefined;
}

interface ApiJob {
  id: string;
  state: string;
  name: string | null;
  conclusion: string | null;
  failedStep: string | null;
  host: string | null;
  releasedAt: string | null;
  stages: Record<string, string | null>;
}

describe('observability: metrics, stage timelines, job logs over SSE, status and insights', () => {
  let h: ServeHarness;
  const auth = { authorization: `Bearer ${SECRETS.apiToken}` };
  let passing: ApiJob;
  let failing: ApiJob;
  let liveEvents: SseEvent[] = [];

  before(async () => {
    await ensureStandInImage();
    h = await startServeHarness({ jobDurationMs: 1500 });
  });
  after(async () => {
    await h?.close();
  });

  const waitReleased = (id: string): Promise<ApiJob> =>
    waitFor(
      async () => {
        if (!(await h.service.ledger.job(id))) return undefined;
        const job = await h.api<ApiJob>(`/jobs/${encodeURIComponent(id)}`);
        return job.releasedAt ? job : undefined;
      },
      { what: `${id} to be torn down`, timeout: 150_000, interval: 200, detail: () => h.logLines.slice(-20).join('\n') },
    );

  test('a job streams its log live while it runs, then ends; a passing and a failing job are recorded with their verdicts', async () => {
    const bad = await fetch(`${h.service.url}/webhooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'ping', 'x-github-delivery': 'bad-sig-1', 'x-hub-signature-256': 'sha256=00' },
      body: '{}',
    });
    assert.equal(bad.status, 401);

    // Pinned labels (as the README recommends), so neither job can take the other's runner.
    const ok = await h.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, 'hearth=obs-1'], name: 'build' });
    const okId = `github:${ok.id}`;
    await waitFor(() => h.service.ledger.job(okId), { what: `${okId} in the ledger` });
    // Subscribed while the job is still being set up: the lines arrive as they are written.
    const streaming = readSse(`${h.service.url}/api/v1/jobs/${encodeURIComponent(okId)}/logs/stream`, auth);
    const broken = await h.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, 'hearth=obs-2'], name: 'test', failingStep: 'Run tests' });
    liveEvents = await streaming;
    passing = await waitReleased(okId);
    failing = await waitReleased(`github:${broken.id}`);

    const texts = liveEvents.filter((e) => e.event === 'log').map((e) => (JSON.parse(e.data) as { text: string }).text);
    assert.equal(liveEvents.at(-1)?.event, 'end', 'the stream ends after the teardown');
    assert.ok(
      texts.some((t) => /^placed: 1 vCPU, 512 MiB/.test(t)),
      texts.join('\n'),
    );
    assert.ok(
      texts.some((t) => /^VM vm-[0-9a-f]+ ready/.test(t)),
      texts.join('\n'),
    );
    assert.ok(
      texts.some((t) => /run\.sh stand-in: runner hearth-github-\d+-[0-9a-f]{6} connecting/.test(t)),
      'the runner output from inside the VM is in the log',
    );
    assert.ok(
      texts.some((t) => /^torn down: VM vm-/.test(t)),
      texts.join('\n'),
    );
    const jit = [...h.sim.github.runners.values()].map((r) => r.jitConfig);
    for (const line of texts)
      for (const secret of [...jit, SECRETS.githubToken, SECRETS.apiToken]) assert.ok(!line.includes(secret), 'no credential in the log');
    const ids = liveEvents.filter((e) => e.event === 'log').map((e) => Number(e.id));
    assert.ok(
      ids.every((id, i) => i === 0 || id > ids[i - 1]!),
      'event ids rise',
    );

    assert.equal(passing.state, 'completed');
    assert.equal(passing.conclusion, 'success');
    assert.equal(passing.name, 'build');
    assert.ok(passing.host, 'the host that ran it is recorded');
    for (const stage of ['received', 'placed', 'vmReady', 'registered', 'started', 'finished', 'released'])
      assert.ok(passing.stages[stage], `stage ${stage} has a time: ${JSON.stringify(passing.stages)}`);
    assert.equal(failing.conclusion, 'failure');
    assert.equal(failing.failedStep, 'Run tests');
  });

  test('a reader that reconnects with Last-Event-ID gets exactly the lines after it, then the end', async () => {
    const logs = liveEvents.filter((e) => e.event === 'log');
    assert.ok(logs.length >= 4, `enough lines to resume in the middle: ${logs.length}`);
    const url = `${h.service.url}/api/v1/jobs/${encodeURIComponent(passing.id)}/logs/stream`;
    const firstTwo = await readSse(url, auth, 2);
    assert.deepEqual(
      firstTwo.map((e) => e.id),
      logs.slice(0, 2).map((e) => e.id),
    );
    const resumed = await readSse(url, { ...auth, 'last-event-id': firstTwo[1]!.id! });
    assert.deepEqual(
      resumed.filter((e) => e.event === 'log').map((e) => e.data),
      logs.slice(2).map((e) => e.data),
      'no line lost, none repeated',
    );
    assert.equal(resumed.at(-1)?.event, 'end');
    const viaQuery = await readSse(`${url}?lastEventId=${logs.at(-2)!.id!}`, auth);
    assert.deepEqual(
      viaQuery.filter((e) => e.event === 'log').map((e) => e.id),
      [logs.at(-1)!.id],
    );
    const page = await h.api<{ lines: { seq: number }[]; done: boolean }>(`/jobs/${encodeURIComponent(passing.id)}/logs?after=${logs[0]!.id!}&limit=2`);
    assert.deepEqual(
      page.lines.map((l) => String(l.seq)),
      logs.slice(1, 3).map((e) => e.id),
    );
    assert.equal(page.done, false);
    const bad = await fetch(`${url}?lastEventId=abc`, { headers: auth });
    assert.equal(bad.status, 400);
    const anonymous = await fetch(url);
    assert.equal(anonymous.status, 401, 'the log stream needs the token like every API route');
  });

  test('metrics after the scripted lifecycle: jobs by result, every stage once per job, webhooks, forge API, reconcile, capacity', async () => {
    const text = await (await fetch(`${h.service.url}/metrics`)).text();
    assert.equal(metricValue(text, 'hearth_jobs_total', { forge: 'github', result: 'success' }), 1);
    assert.equal(metricValue(text, 'hearth_jobs_total', { forge: 'github', result: 'failure' }), 1);
    for (const stage of [
      'webhook_to_placed',
      'placed_to_vm_ready',
      'vm_ready_to_runner_registered',
      'registered_to_started',
      'started_to_finished',
      'teardown',
    ]) {
      assert.equal(metricValue(text, 'hearth_job_stage_seconds_count', { stage }), 2, `stage ${stage} observed for both jobs`);
    }
    // The runner ran for the sim's job duration: started_to_finished sums to about 2 × 1.5 s.
    assert.ok((metricValue(text, 'hearth_job_stage_seconds_sum', { stage: 'started_to_finished' }) ?? 0) >= 2);
    assert.equal(metricValue(text, 'hearth_webhooks_total', { forge: 'github', result: 'bad_signature' }), 1);
    assert.ok(
      (metricValue(text, 'hearth_webhooks_total', { forge: 'github', result: 'accepted' }) ?? 0) >= 6,
      'queued, in_progress and completed for each job',
    );
    assert.ok((metricValue(text, 'hearth_forge_api_requests_total', { forge: 'github', status: '201' }) ?? 0) >= 2, 'a JIT config per job');
    const remaining = metricValue(text, 'hearth_forge_rate_limit_remaining', { forge: 'github' });
    assert.ok(remaining !== undefined && remaining > 0 && remaining < 5000, `rate limit remaining read from the answers: ${remaining}`);
    assert.equal(metricValue(text, 'hearth_reconcile_actions_total', { kind: 'claimed' }), 2);
    assert.equal(metricValue(text, 'hearth_reconcile_actions_total', { kind: 'released' }), 2);
    assert.equal(metricValue(text, 'hearth_queue_depth'), 0);
    assert.equal(metricValue(text, 'hearth_vms', { state: 'busy', pool: '' }), 0);
    assert.equal(metricValue(text, 'hearth_host_cpus', { kind: 'total' }), 4);
    assert.equal(metricValue(text, 'hearth_host_cpus', { kind: 'used' }), 0);
    assert.equal(metricValue(text, 'hearth_host_memory_bytes', { kind: 'total' }), 4096 * 1024 * 1024);
    assert.equal(metricValue(text, 'hearth_jobs', { state: 'completed' }), 2);
  });

  test('the Grafana dashboard reads only metrics Hearth exports', async () => {
    const dashboard = JSON.parse(await readFile(new URL('../../deploy/grafana/hearth.json', import.meta.url), 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const text = await (await fetch(`${h.service.url}/metrics`)).text();
    const exported = new Set(
      [...text.matchAll(/^# TYPE (hearth_[a-z_]+) (\w+)/gm)].flatMap((m) =>
        m[2] === 'histogram' ? [`${m[1]}_bucket`, `${m[1]}_sum`, `${m[1]}_count`] : [m[1]!],
      ),
    );
    const used = dashboard.panels.flatMap((p) => p.targets.flatMap((t) => [...t.expr.matchAll(/hearth_[a-z_]+/g)].map((m) => m[0])));
    assert.ok(used.length >= 15, 'the dashboard has panels');
    for (const name of used) assert.ok(exported.has(name), `the dashboard uses ${name}, which /metrics does not export`);
  });

  test('status and insights', async () => {
    const status = await h.api<{
      host: { name: string; driver: string };
      capacity: { cpus: { used: number; total: number } };
      queueDepth: number;
      vms: unknown[];
      jobs: { byState: Record<string, number> };
    }>('/status');
    assert.equal(status.capacity.cpus.total, 4);
    assert.equal(status.queueDepth, 0);
    assert.equal(status.jobs.byState.completed, 2);
    assert.equal(status.host.driver, 'qemu');
    const insights = await h.api<{
      groups: {
        repository: string;
        name: string;
        runs: number;
        failures: number;
        topFailingSteps: { step: string; count: number }[];
        runSeconds: { p50: number | null };
      }[];
    }>('/insights');
    const test = insights.groups.find((g) => g.name === 'test');
    assert.deepEqual(test && { repo: test.repository, runs: test.runs, failures: test.failures, steps: test.topFailingSteps }, {
      repo: REPO,
      runs: 1,
      failures: 1,
      steps: [{ step: 'Run tests', count: 1 }],
    });
    const build = insights.groups.find((g) => g.name === 'build');
    assert.ok(build && build.failures === 0 && (build.runSeconds.p50 ?? 0) >= 1, JSON.stringify(build));
    const filtered = await h.api<{ jobs: { id: string }[] }>(`/jobs?repo=${encodeURIComponent(REPO)}&state=completed&forge=github`);
    assert.equal(filtered.jobs.length, 2);
    assert.equal((await h.api<{ jobs: unknown[] }>('/jobs?forge=gitlab')).jobs.length, 0);
    const wrong = await fetch(`${h.service.url}/api/v1/jobs?state=finished`, { headers: auth });
    assert.equal(wrong.status, 400);
    assert.match(await wrong.text(), /state must be one of queued, claimed/);
  });

  test('hearth status and hearth logs [-f] read the running server', async () => {
    const env = { HEARTH_URL: h.service.url, HEARTH_API_TOKEN: SECRETS.apiToken };
    const status = await hearth(['status'], env);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /cpu +\[\.+\] 0\/4 vCPU/);
    assert.match(status.stdout, /queue +0 waiting; 2 completed/);
    assert.ok(status.stdout.includes(passing.id) && status.stdout.includes('completed (failure)'), status.stdout);
    const logs = await hearth(['logs', passing.id], env);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /\[hearth\] placed: 1 vCPU/);
    assert.match(logs.stdout, /run\.sh stand-in: runner hearth-github/);
    // The job is torn down, so following ends by itself after the last line.
    const followed = await hearth(['logs', '-f', passing.id], env);
    assert.equal(followed.code, 0, followed.stderr);
    assert.equal(followed.stdout, logs.stdout);
    const unknown = await hearth(['logs', 'github:999999999'], env);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /HEARTH_ERR_SERVER_API.*answered 404[\s\S]*fix: check the job id/);
    const noToken = await hearth(['status'], { HEARTH_URL: h.service.url, HEARTH_API_TOKEN: 'a-wrong-token-0123456789' });
    assert.equal(noToken.code, 125);
    assert.match(noToken.stderr, /answered 401[\s\S]*fix: set HEARTH_API_TOKEN/);
  });
});
