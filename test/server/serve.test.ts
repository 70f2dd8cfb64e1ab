import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OWNED_LABELS, PROJECT, REPO, SECRETS, ensureStandInImage, startServeHarness, type ServeHarness } from '../support/serve-host.ts';
import { processListContains } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';

interface ApiJob {
  id: string;
  state: string;
  vmId: string | null;
  runnerName: string | null;
  releasedAt: string | null;
  timeline: { from: string | null; to: string; reason: string }[];
}

async function waitForJob(h: ServeHarness, id: string, done: (job: ApiJob) => boolean, what: string, timeout = 90_000): Promise<ApiJob> {
  let last: ApiJob | undefined;
  return waitFor(
    async () => {
      last = (await h.service.ledger.job(id)) ? await h.api<ApiJob>(`/jobs/${encodeURIComponent(id)}`) : undefined;
      return last && done(last) ? last : undefined;
    },
    { what, timeout, interval: 200, detail: () => `job is ${JSON.stringify(last)}\n${h.logLines.slice(-15).join('\n')}` },
  );
}

const finishedAndReleased = (job: ApiJob): boolean => job.releasedAt !== null;

async function assertNothingLeft(h: ServeHarness, vmId: string | null): Promise<void> {
  assert.deepEqual(await h.service.driver.list(), [], 'no VM in the registry');
  if (vmId) assert.equal(await processListContains(vmId), false, `no QEMU process for ${vmId}`);
}

describe('hearth serve with a forge simulator and real VMs', () => {
  before(async () => {
    await ensureStandInImage();
  });

  let h: ServeHarness | undefined;
  after(async () => {
    await h?.close();
  });

  test('GitHub: a queued workflow_job gets a JIT runner in a fresh VM, runs, and everything is torn down', async () => {
    h = await startServeHarness();
    const job = await h.sim.queueGithubJob({ repo: REPO, labels: OWNED_LABELS });
    const id = `github:${job.id}`;
    const done = await waitForJob(h, id, finishedAndReleased, 'the GitHub job to finish and be torn down');
    assert.equal(done.state, 'completed', JSON.stringify(done.timeline));
    assert.equal(h.sim.github.jobs.get(job.id)?.conclusion, 'success');
    assert.match(h.sim.github.jobs.get(job.id)?.runnerName ?? '', /^hearth-github-\d+-[0-9a-f]{6}$/);
    const stages = done.timeline.map((e) => e.to + ': ' + e.reason).join('\n');
    for (const stage of [
      /queued: github webhook/,
      /claimed/,
      /provisioning: placed: 1 vCPU, 512 MiB/,
      /VM vm-[0-9a-f]+ ready/,
      /runner hearth-.* registered at github/,
      /runner_registered/,
      /running: github webhook .*in_progress/,
      /completed: github webhook .*completed \(success\)/,
      /torn down/,
    ]) {
      assert.match(stages, stage);
    }
    // The stand-in could only call back with the JIT config if it reached the guest.
    const runners = [...h.sim.deliveries].filter((d) => d.jobId === job.id).map((d) => d.action);
    assert.deepEqual(runners, ['queued', 'in_progress', 'completed']);
    assert.ok(
      h.sim.apiLog.some((e) => e.forge === 'runner' && e.path.endsWith('/start') && e.status === 200),
      'the runner stand-in in the VM called back with its JIT config',
    );
    assert.equal(h.sim.github.runners.size, 0, 'no registration left at GitHub');
    await assertNothingLeft(h, done.vmId);
    const secretsInLog = h.logLines.filter(
      (l) => l.includes(SECRETS.githubToken) || l.includes('encoded_jit_config') || /jitconfig [A-Za-z0-9+/=]{20,}/.test(l),
    );
    assert.deepEqual(secretsInLog, []);
    await h.close();
    h = undefined;
  });

  test('GitLab: a pending Job Hook gets a glrt- runner bound to the job by a unique tag, run-single runs it, the runner is deleted', async () => {
    h = await startServeHarness();
    const job = await h.sim.queueGitlabJob({ projectId: PROJECT, tags: ['hearth', 'hearth-1cpu-512mb'] });
    const id = `gitlab:${job.id}`;
    const done = await waitForJob(h, id, finishedAndReleased, 'the GitLab job to finish and be torn down');
    assert.equal(done.state, 'completed', JSON.stringify(done.timeline));
    assert.equal(h.sim.gitlab.jobs.get(job.id)?.status, 'success');
    assert.ok(
      h.sim.apiLog.some((e) => e.forge === 'gitlab' && e.method === 'GET' && e.path === `/gitlab/api/v4/projects/${PROJECT}/jobs/${job.id}`),
      'the job tags were read from the API',
    );
    assert.equal(h.sim.gitlab.runners.size, 0, 'the runner was deleted at GitLab');
    assert.match(done.timeline.map((e) => e.reason).join('\n'), /torn down/);
    await assertNothingLeft(h, done.vmId);
    await h.close();
    h = undefined;
  });

  test('a job that is not ours is never launched', async () => {
    h = await startServeHarness();
    const job = await h.sim.queueGithubJob({ repo: REPO, labels: ['self-hosted', 'k8s'] });
    await h.sim.webhooksIdle();
    await h.service.controller.reconcile();
    assert.equal(await h.service.ledger.job(`github:${job.id}`), undefined);
    assert.equal(h.sim.github.runners.size, 0);
    assert.deepEqual(await h.service.driver.list(), []);
    await h.close();
    h = undefined;
  });

  test('cancellation at the forge tears the VM down while the job runs', async () => {
    h = await startServeHarness({ jobDurationMs: 120_000 });
    const job = await h.sim.queueGithubJob({ repo: REPO, labels: OWNED_LABELS });
    const id = `github:${job.id}`;
    const running = await waitForJob(h, id, (j) => j.state === 'running', 'the job to run');
    assert.ok(running.vmId);
    await h.sim.cancelGithubJob(job.id);
    const done = await waitForJob(h, id, finishedAndReleased, 'the cancelled job to be torn down', 30_000);
    assert.equal(done.state, 'cancelled');
    await assertNothingLeft(h, running.vmId);
    await h.close();
    h = undefined;
  });

  test('a job that cannot get a runner is retried, then failed visibly: in the API, the metrics and the log', async () => {
    h = await startServeHarness({ change: (c) => void (c.reconcile.maxAttempts = 2) });
    // GitHub keeps failing: every call is retried with backoff, then the attempt fails.
    h.sim.failApi({ status: 500, count: 1000, path: /generate-jitconfig$/ });
    const job = await h.sim.queueGithubJob({ repo: REPO, labels: OWNED_LABELS });
    const done = await waitForJob(h, `github:${job.id}`, finishedAndReleased, 'the job to be failed', 90_000);
    assert.equal(done.state, 'failed');
    const reasons = done.timeline.map((e) => `${e.to}: ${e.reason}`).join('\n');
    assert.match(reasons, /queued: retrying: github API POST .*generate-jitconfig failed with 500/);
    assert.match(reasons, /failed: job github:\d+: provisioning failed after 2 attempt\(s\)/);
    const metrics = await (await fetch(`${h.service.url}/metrics`)).text();
    assert.match(metrics, /hearth_provision_failures_total\{forge="github",final="true"\} 1/);
    assert.ok(h.logLines.some((l) => l.includes('no runner after the allowed attempts') && l.includes(`github:${job.id}`)));
    assert.deepEqual(await h.service.driver.list(), [], 'the VMs of both attempts are gone');
    await h.close();
    h = undefined;
  });

  test('stopping while a forge call waits out a rate limit ends promptly and leaves no VM', async () => {
    h = await startServeHarness();
    h.sim.failApi({ status: 429, count: 1000, retryAfterSeconds: 60, path: /generate-jitconfig$/ });
    const job = await h.sim.queueGithubJob({ repo: REPO, labels: OWNED_LABELS });
    await waitForJob(h, `github:${job.id}`, (j) => j.vmId !== null, 'its VM to boot while the registration waits');
    const runtime = h.paths.runtime;
    const started = Date.now();
    await h.close();
    h = undefined;
    assert.ok(Date.now() - started < 15_000, `stop took ${Date.now() - started} ms with a 60 s Retry-After pending`);
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual(await readdir(`${runtime}/vms`).catch(() => []), [], 'no VM left');
  });

  test('with 30 % of webhooks dropped, every owned job still runs (reconcile finds what the webhooks missed)', async () => {
    h = await startServeHarness({ seed: 4 });
    h.sim.faults.dropRate = 0.3;
    const jobs: { id: number }[] = [];
    for (let i = 0; i < 5; i += 1) jobs.push(await h.sim.queueGithubJob({ repo: REPO, labels: OWNED_LABELS }));
    await h.sim.waitFor(() => jobs.every((j) => h!.sim.github.jobs.get(j.id)?.status === 'completed'), 150_000, 'every job to complete at the forge');
    const droppedQueued = new Set(h.sim.deliveries.filter((d) => d.dropped && d.action === 'queued').map((d) => d.jobId));
    // Seed 4 drops three of the five queued deliveries: those jobs exist only because reconcile polled.
    assert.ok(droppedQueued.size >= 2, `the simulator dropped ${droppedQueued.size} queued deliveries`);
    for (const job of jobs) {
      const done = await waitForJob(h, `github:${job.id}`, finishedAndReleased, `job ${job.id} to be torn down`, 60_000);
      assert.equal(done.state, 'completed', JSON.stringify(done.timeline));
      if (droppedQueued.has(job.id)) assert.match(done.timeline[0]?.reason ?? '', /found queued at the forge by reconcile/);
    }
    assert.equal(h.sim.github.runners.size, 0);
    assert.deepEqual(await h.service.driver.list(), []);
    await h.close();
    h = undefined;
  });
});
