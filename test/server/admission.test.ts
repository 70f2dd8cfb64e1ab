import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { resolvePaths, type HearthPaths } from '../../src/config/paths.ts';
import { isHearthError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { startHearthService, type HearthService } from '../../src/server/service.ts';
import { FIRECRACKER_CAPABILITIES } from '../../src/vm/firecracker/driver.ts';
import { FakeDriver } from '../support/fake-driver.ts';
import { ForgeSimulator } from '../support/forge-sim/index.ts';
import { REPO, SECRETS, testServeConfig } from '../support/serve-host.ts';

/**
 * Admission asks the driver before anything reaches the forge: with a driver
 * that declares Firecracker's capabilities (1 or an even count of vCPUs), a
 * `hearth-3cpu` job is refused at ingest with the reason and never gets a
 * runner registration, while a `hearth-2cpu` job on the same service does.
 */
describe('admission against the driver capabilities', () => {
  let root: string;
  let sim: ForgeSimulator;
  let service: HearthService;
  const logLines: string[] = [];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'hearth-admission-'));
    const paths: HearthPaths = { cache: resolvePaths().cache, data: join(root, 'data'), runtime: join(root, 'run') };
    sim = await ForgeSimulator.start({ ...SECRETS, jobDurationMs: 100, seed: 3 });
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        callback();
      },
    });
    const logger = createLogger({ level: 'debug', destination });
    const driver = new FakeDriver({
      runtimeDir: paths.runtime,
      name: 'firecracker',
      capabilities: FIRECRACKER_CAPABILITIES,
      pollIntervalMs: 100,
      rewriteUrl: (url) => (url.startsWith(sim.guestUrl) ? `${sim.url}${url.slice(sim.guestUrl.length)}` : url),
      logger,
    });
    const config = testServeConfig(paths, sim, (c) => {
      c.runners.image = 'minimal';
      c.gitlab.token = null;
    });
    service = await startHearthService({ config, paths, logger, capacity: { cpus: 8, memoryMib: 8192 }, driver });
    sim.setWebhookTargets({ github: `${service.url}/webhooks/github`, gitlab: `${service.url}/webhooks/gitlab` });
  });

  after(async () => {
    await service?.close('test finished');
    await sim?.close();
    await rm(root, { recursive: true, force: true });
  });

  test('a hearth-3cpu job is refused at ingest with the reason and never registered at the forge; a hearth-2cpu job is', async () => {
    const refused = await sim.queueGithubJob({ repo: REPO, labels: ['self-hosted', 'hearth', 'hearth-3cpu'] });
    const refusalOf = (line: string): boolean => line.includes('refusing an owned job') && line.includes(`github:${refused.id}`);
    await sim.waitFor(() => logLines.some(refusalOf), 30_000, 'the refusal to be logged');
    const refusal = JSON.parse(logLines.find(refusalOf)!) as { reason: string };
    assert.equal(refusal.reason, '3 vCPUs: firecracker takes 1 or an even number up to 32; use hearth-2cpu or hearth-4cpu');
    assert.equal(await service.ledger.job(`github:${refused.id}`), undefined, 'not in the ledger');

    // The same service with the same driver admits a shape the driver takes, and registers a runner for it.
    const admitted = await sim.queueGithubJob({ repo: REPO, labels: ['self-hosted', 'hearth', 'hearth-2cpu-512mb'] });
    await sim.waitFor(() => sim.github.jobs.get(admitted.id)?.conclusion === 'success', 60_000, 'the 2-vCPU job to run on a registered runner');
    assert.equal(sim.apiLog.filter((e) => e.path.includes('generate-jitconfig')).length, 1, 'one runner registration: the admitted job only');
    assert.equal(sim.github.jobs.get(refused.id)?.runnerName ?? null, null, 'no runner took the refused job');
    assert.equal(sim.github.jobs.get(refused.id)?.status, 'queued');
  });

  test('a pool of a size the driver cannot boot stops serve at start, naming the sizes that would do', async () => {
    const paths: HearthPaths = { cache: resolvePaths().cache, data: join(root, 'pool-data'), runtime: join(root, 'pool-run') };
    const driver = new FakeDriver({ runtimeDir: paths.runtime, name: 'firecracker', capabilities: FIRECRACKER_CAPABILITIES });
    const config = testServeConfig(paths, sim, (c) => {
      c.runners.image = 'minimal';
      c.pools = [
        {
          name: 'odd',
          labels: ['hearth-odd'],
          cpus: 3,
          memoryMib: 512,
          image: 'minimal',
          mode: 'booted',
          minIdle: 1,
          maxSize: 2,
          maxIdleAgeSeconds: 3600,
          templateMaxAgeSeconds: 86_400,
          autoscale: false,
          maxIdle: 1,
          demandWindowSeconds: 3600,
        },
      ];
    });
    await assert.rejects(
      startHearthService({ config, paths, logger: createLogger({ level: 'silent' }), capacity: { cpus: 8, memoryMib: 8192 }, driver }),
      (e) => {
        assert.ok(isHearthError(e, 'HEARTH_ERR_BAD_OPTION'));
        assert.equal(e.message, 'pools.odd.cpus: 3 vCPUs: firecracker takes 1 or an even number up to 32');
        assert.equal(e.fix, 'set it to 2 or 4');
        return true;
      },
    );
  });
});
