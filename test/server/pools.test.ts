import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { PoolStatus } from '../../src/pool/pool.ts';
import { OWNED_LABELS, REPO, STAND_IN_IMAGE, ensureStandInImage, startServeHarness, type ServeHarness } from '../support/serve-host.ts';
import { waitFor } from '../support/wait.ts';

interface ApiJob {
  state: string;
  releasedAt: string | null;
  timeline: { to: string; reason: string }[];
}

function until<T>(what: string, probe: () => Promise<T | undefined>, timeout = 90_000): Promise<Exclude<T, undefined | null | false>> {
  return waitFor(probe, { what, timeout, interval: 150 });
}

describe('hearth serve with a snapshot pool', () => {
  let h: ServeHarness;
  before(async () => {
    await ensureStandInImage();
    h = await startServeHarness({
      change: (c) => {
        c.pools = [
          {
            name: 'fast',
            labels: ['hearth-fast'],
            cpus: 1,
            memoryMib: 512,
            image: STAND_IN_IMAGE,
            mode: 'snapshot',
            minIdle: 1,
            maxSize: 3,
            maxIdleAgeSeconds: 3600,
            templateMaxAgeSeconds: 86_400,
            autoscale: false,
            maxIdle: 1,
            demandWindowSeconds: 3600,
          },
        ];
      },
    });
  });
  after(() => h.close());

  const pool = async (): Promise<PoolStatus> => (await h.api<{ pools: PoolStatus[] }>('/pools')).pools[0]!;
  const finished = (id: string) =>
    until(`job ${id} to finish and be torn down`, async () => {
      const job = (await h.service.ledger.job(id)) ? await h.api<ApiJob>(`/jobs/${encodeURIComponent(id)}`) : undefined;
      return job?.releasedAt ? job : undefined;
    }).catch(async (error: unknown) => {
      const job = await h.service.ledger.job(id);
      throw new Error(
        `${(error as Error).message}\n${JSON.stringify(job ? await h.service.ledger.timeline(id) : null)}\n${h.logLines
          .filter((l) => /runner output|warn|error|pool/.test(l))
          .slice(-25)
          .join('\n')}`,
      );
    });

  test('a job routed to the pool takes the idle clone at once (a hit), and the pool refills behind it', async () => {
    await until('the pool to have an idle clone', async () => ((await pool()).idle >= 1 ? true : undefined));
    const job = await h.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, 'hearth-fast'] });
    const done = await finished(`github:${job.id}`);
    assert.equal(done.state, 'completed', JSON.stringify(done.timeline));
    assert.match(done.timeline.map((e) => e.reason).join('\n'), /ready at once from pool fast \(idle, snapshot\)/);
    await until('the refill', async () => ((await pool()).idle >= 1 ? true : undefined));
    const status = await pool();
    assert.equal(status.hits, 1);
    const metrics = await (await fetch(`${h.service.url}/metrics`)).text();
    assert.match(metrics, /hearth_pool_assignments_total\{pool="fast",result="hit"\} 1/);
    assert.match(metrics, /hearth_vms\{state="idle",pool="fast"\} 1/);
  });

  test('with more jobs than idle clones, the miss restores its own clone instead of waiting for the refill', async () => {
    await until('the pool to have an idle clone', async () => ((await pool()).idle >= 1 ? true : undefined));
    const jobs = [
      await h.sim.queueGithubJob({ repo: REPO, labels: ['self-hosted', 'hearth/pool=fast'] }),
      await h.sim.queueGithubJob({ repo: REPO, labels: ['self-hosted', 'hearth/pool=fast'] }),
    ];
    const timelines = await Promise.all(jobs.map((j) => finished(`github:${j.id}`)));
    const reasons = timelines.map((t) => t.timeline.map((e) => e.reason).join('\n')).join('\n');
    assert.ok(timelines.every((t) => t.state === 'completed'));
    // Restored from the template, or booted while a template is being (re)built: either way, at once.
    assert.match(reasons, /pool fast had none idle, (restored from its template|booted)/);
    const status = await pool();
    assert.ok(status.misses >= 1, JSON.stringify(status));
  });
});
