import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { Ledger, type Job } from '../../src/ledger/ledger.ts';
import { FINAL_STATES } from '../../src/ledger/states.ts';
import { Cluster, fakeDriverFor, type Replica, type ReplicaConfig } from '../support/cluster.ts';
import { ForgeSimulator } from '../support/forge-sim/index.ts';
import { LoadBalancer } from '../support/load-balancer.ts';
import { startPostgres, type PostgresServer } from '../support/postgres.ts';
import { OWNED_LABELS, REPO, SECRETS, testServeConfig } from '../support/serve-host.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The scale-out fault matrix (docs/reliability.md): real PostgreSQL from
 * Debian's package, three controller replicas behind a load balancer and two
 * VM hosts, each its own process, with the fake driver (each "VM" runs the
 * runner stand-in's protocol against the forge simulator).
 */
const CONTROLLERS = ['c1', 'c2', 'c3'];
const HOSTS = ['h1', 'h2'];
const FIGURES = process.env.HEARTH_RELIABILITY_FIGURES;

interface World {
  pg: PostgresServer;
  sim: ForgeSimulator;
  lb: LoadBalancer;
  cluster: Cluster;
  url: string;
  ledger: Ledger;
  configFor(name: string, role: 'controller' | 'host', change?: (c: ReplicaConfig) => void): ReplicaConfig;
}

async function startWorld(database: string, jobDurationMs: number): Promise<World> {
  const pg = await startPostgres();
  const url = await pg.createDatabase(database);
  const sim = await ForgeSimulator.start({ ...SECRETS, jobDurationMs, seed: 11 });
  const lb = await LoadBalancer.start([]);
  sim.setWebhookTargets({ github: `${lb.url}/webhooks/github`, gitlab: `${lb.url}/webhooks/gitlab` });
  const cluster = await Cluster.create();
  const ledger = await Ledger.openPostgres(url);
  const configFor = (name: string, role: 'controller' | 'host', change?: (c: ReplicaConfig) => void): ReplicaConfig => {
    const paths = cluster.pathsFor(name);
    const base = testServeConfig(paths, sim, (c) => {
      c.store.url = url;
      c.cluster.role = role;
      c.cluster.hostId = name;
      c.cluster.heartbeatSeconds = 1;
      c.cluster.hostTimeoutSeconds = 4;
      c.reconcile.intervalSeconds = 1;
      c.reconcile.stuckAfterSeconds = 60;
      c.log.level = 'debug';
    });
    const config: ReplicaConfig = {
      ...base,
      paths,
      fakeDriver: fakeDriverFor(sim, { bootDelayMs: 20, pollIntervalMs: 200 }),
      capacity: { cpus: 8, memoryMib: 8192 },
    };
    change?.(config);
    return config;
  };
  return { pg, sim, lb, cluster, url, ledger, configFor };
}

async function stopWorld(w: World | undefined, failed: boolean): Promise<void> {
  if (!w) return;
  await w.ledger.close().catch(() => {});
  await w.cluster.close({ keep: failed });
  await w.lb.close();
  await w.sim.close();
  await w.pg.stop();
}

function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeout: number,
  detail: () => Promise<string> = async () => '',
): Promise<Exclude<T, undefined | null | false>> {
  return waitFor(check, { what, timeout, interval: 250, detail });
}

const random = (min: number, max: number): number => min + Math.random() * (max - min);

/** Final transitions per job: exactly one each, whatever happened. */
async function finalTransitions(ledger: Ledger, ids: readonly string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const id of ids) {
    const events = await ledger.timeline(id);
    counts.set(
      id,
      events.filter((e) => (FINAL_STATES as readonly string[]).includes(e.to) && e.from !== null && !(FINAL_STATES as readonly string[]).includes(e.from))
        .length + events.filter((e) => e.from === null && (FINAL_STATES as readonly string[]).includes(e.to)).length,
    );
  }
  return counts;
}

function jitRegistrations(sim: ForgeSimulator): number {
  return sim.apiLog.filter((e) => e.forge === 'github' && e.method === 'POST' && e.path.endsWith('/generate-jitconfig') && e.status === 201).length;
}

async function recordFigures(lines: string[]): Promise<void> {
  if (FIGURES) await writeFile(FIGURES, `${lines.join('\n')}\n`, { flag: 'a' });
}

describe('scale-out on PostgreSQL: 3 controllers behind a load balancer, 2 hosts', { concurrency: false }, () => {
  test('kill -9 of controller replicas at random points during 200 jobs: every job ends exactly once, nothing leaks', async (t) => {
    let w: World | undefined;
    let failed = true;
    try {
      w = await startWorld('hearth_chaos', 1000);
      const world = w;
      const controllers: Replica[] = [];
      for (const name of CONTROLLERS) controllers.push(await world.cluster.startReplica(name, world.configFor(name, 'controller')));
      for (const name of HOSTS) await world.cluster.startReplica(name, world.configFor(name, 'host'));
      world.lb.setBackends(world.cluster.running(CONTROLLERS).map((r) => r.url));

      const started = Date.now();
      // Chaos: while jobs are queued and in flight, a random controller dies (kill -9) and comes back.
      let kills = 0;
      let done = false;
      const chaos = (async () => {
        while (!done) {
          // Random pauses are the scenario: kills land at unpredictable points of the jobs' lives.
          await new Promise((r) => setTimeout(r, random(300, 1200)));
          if (done) break;
          const alive = world.cluster.running(CONTROLLERS);
          if (alive.length < 2) continue;
          const victim = alive[Math.floor(Math.random() * alive.length)]!;
          await victim.kill9();
          kills++;
          world.lb.setBackends(world.cluster.running(CONTROLLERS).map((r) => r.url));
          await new Promise((r) => setTimeout(r, random(200, 1000)));
          await world.cluster.restart(victim.name);
          world.lb.setBackends(world.cluster.running(CONTROLLERS).map((r) => r.url));
        }
      })();

      const jobs: Awaited<ReturnType<ForgeSimulator['queueGithubJob']>>[] = [];
      for (let i = 0; i < 200; i++) {
        jobs.push(await world.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, `hearth=chaos-${i}`], name: `job-${i % 5}` }));
        // Spreads the arrivals over the chaos (the scenario's pacing, not synchronisation).
        await new Promise((r) => setTimeout(r, 30));
      }
      const ids = jobs.map((j) => `github:${j.id}`);

      const settled = async (): Promise<Job[] | undefined> => {
        const rows = await Promise.all(ids.map((id) => world.ledger.job(id)));
        return rows.every((r) => r && r.released_at !== null) ? (rows as Job[]) : undefined;
      };
      let rows: Job[];
      try {
        rows = await until('all 200 jobs to end and be torn down', settled, 240_000, async () => {
          const states = await world.ledger.countByState();
          return `states ${JSON.stringify(states)}\n${world.cluster
            .running()
            .map((r) => `--- ${r.name}\n${r.logTail(8)}`)
            .join('\n')}`;
        });
      } finally {
        done = true;
        await chaos;
      }
      const seconds = (Date.now() - started) / 1000;

      assert.ok(kills >= 3, `the chaos loop killed controllers (${kills} times)`);
      assert.deepEqual([...new Set(rows.map((r) => r.state))], ['completed'], 'every job completed');
      for (const job of jobs) assert.equal(world.sim.github.jobs.get(job.id)?.conclusion, 'success', `job ${job.id} succeeded at the forge`);
      const finals = await finalTransitions(world.ledger, ids);
      assert.deepEqual([...new Set(finals.values())], [1], 'each job reached a final state exactly once');
      assert.equal(jitRegistrations(world.sim), 200, 'one runner registered per job: none processed twice');
      await until(
        'the forge to hold no Hearth registration',
        async () => (world.sim.github.runners.size === 0 ? true : undefined),
        30_000,
        async () => [...world.sim.github.runners.values()].map((r) => r.name).join(', '),
      );
      const vms = await world.cluster.fakeVms();
      assert.deepEqual(
        vms.filter((vm) => vm.alive),
        [],
        'no VM left running',
      );
      const hosts = await world.ledger.hosts();
      assert.deepEqual(
        hosts.map((h) => [h.id, h.state]),
        [
          ['h1', 'up'],
          ['h2', 'up'],
        ],
      );
      const spread = rows.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.host ?? '-']: (acc[r.host ?? '-'] ?? 0) + 1 }), {});
      t.diagnostic(`200 jobs in ${seconds.toFixed(1)} s with ${kills} controller kills; jobs per host ${JSON.stringify(spread)}`);
      await recordFigures([
        `controller kill -9: 200 jobs, ${kills} kills, ${seconds.toFixed(1)} s, 0 lost, 0 duplicated, ${world.sim.github.runners.size} registrations and ${vms.filter((vm) => vm.alive).length} VMs left, per host ${JSON.stringify(spread)}`,
      ]);
      failed = false;
    } finally {
      await stopWorld(w, failed);
    }
  });

  test('a host dies mid-job: jobs that never started run elsewhere, running ones fail with the reason, nothing is left when it returns', async (t) => {
    let w: World | undefined;
    let failed = true;
    try {
      w = await startWorld('hearth_host_loss', 20_000);
      const world = w;
      await world.cluster.startReplica('c1', world.configFor('c1', 'controller'));
      world.lb.setBackends([world.cluster.replica('c1')!.url]);
      // h1 boots slowly, so jobs placed on it late are still provisioning when it dies.
      await world.cluster.startReplica(
        'h1',
        world.configFor('h1', 'host', (c) => (c.fakeDriver = { ...c.fakeDriver!, bootDelayMs: 4000 })),
      );
      await until('h1 to register', async () => ((await world.ledger.liveHosts(4000)).length === 1 ? true : undefined), 30_000);
      const early = [
        await world.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, 'hearth=loss-1'] }),
        await world.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, 'hearth=loss-2'] }),
      ];
      await until(
        'both early jobs to run on h1',
        async () =>
          (await Promise.all(early.map((j) => world.ledger.job(`github:${j.id}`)))).every((r) => r?.state === 'running' && r.host === 'h1') ? true : undefined,
        60_000,
      );
      await world.cluster.startReplica('h2', world.configFor('h2', 'host'));
      const late = [
        await world.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, 'hearth=loss-3'] }),
        await world.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, 'hearth=loss-4'] }),
      ];
      // Bin-packing puts them on h1, the fuller host that fits; they boot for 4 s there.
      await until(
        'the late jobs to be placed on h1',
        async () =>
          (await Promise.all(late.map((j) => world.ledger.job(`github:${j.id}`)))).every((r) => r?.host === 'h1' && r.state !== 'queued') ? true : undefined,
        30_000,
      );
      const killedAt = Date.now();
      await world.cluster.replica('h1')!.kill9();

      const lateIds = late.map((j) => `github:${j.id}`);
      const earlyIds = early.map((j) => `github:${j.id}`);
      await until(
        'the early jobs to be failed for the lost host',
        async () => ((await Promise.all(earlyIds.map((id) => world.ledger.job(id)))).every((r) => r?.state === 'failed') ? true : undefined),
        30_000,
      );
      const detected = (Date.now() - killedAt) / 1000;
      for (const id of earlyIds) {
        const job = (await world.ledger.job(id))!;
        assert.match(job.last_error ?? '', /host h1 lost \(no heartbeat\) while the job ran/);
      }
      // GitHub gives up on the vanished runners; Hearth then removes their registrations.
      for (const id of earlyIds) await world.sim.loseGithubRunner((await world.ledger.job(id))!.runner_name!);
      const lateDone = await until(
        'the late jobs to run on h2 and complete',
        async () => {
          const rows = await Promise.all(lateIds.map((id) => world.ledger.job(id)));
          return rows.every((r) => r?.state === 'completed' && r.released_at !== null) ? rows : undefined;
        },
        90_000,
        async () =>
          (await Promise.all(lateIds.map(async (id) => `${id}: ${(await world.ledger.timeline(id)).map((e) => `${e.to} (${e.reason})`).join(' -> ')}`))).join(
            '\n',
          ),
      );
      for (const row of lateDone) {
        assert.equal(row!.host, 'h2');
        assert.match((await world.ledger.timeline(row!.id)).map((e) => e.reason).join('\n'), /re-queued: host h1 lost \(no heartbeat\) before the job started/);
      }
      await until(
        'every job released and no registration left',
        async () => {
          const rows = await Promise.all([...earlyIds, ...lateIds].map((id) => world.ledger.job(id)));
          return rows.every((r) => r?.released_at) && world.sim.github.runners.size === 0 ? true : undefined;
        },
        30_000,
        async () => [...world.sim.github.runners.values()].map((r) => `${r.name} busy=${r.busy}`).join(', '),
      );
      assert.equal((await world.ledger.hosts()).find((h) => h.id === 'h1')?.state, 'lost');
      assert.ok(
        (await world.cluster.fakeVms(['h1'])).some((vm) => vm.leaked),
        'the dead host left VMs behind',
      );

      // h1 comes back: it destroys what it left and is placed on again.
      await world.cluster.restart('h1');
      await until(
        'h1 up again with its leftovers destroyed',
        async () => {
          const h1 = (await world.ledger.hosts()).find((h) => h.id === 'h1');
          const leftovers = await world.cluster.fakeVms(['h1']);
          return h1?.state === 'up' && leftovers.length === 0 ? true : undefined;
        },
        30_000,
      );
      t.diagnostic(`host loss detected and acted on ${detected.toFixed(1)} s after kill -9 (timeout 4 s)`);
      await recordFigures([
        `host kill -9 mid-job: running jobs failed and re-queued jobs placed elsewhere ${detected.toFixed(1)} s after the kill (host timeout 4 s); 2 of 2 requeued jobs completed on h2; 0 registrations, 0 VMs left after h1 returned`,
      ]);
      failed = false;
    } finally {
      await stopWorld(w, failed);
    }
  });

  test('PostgreSQL restarts under load: every acknowledged webhook is kept, every job completes', async (t) => {
    let w: World | undefined;
    let failed = true;
    try {
      w = await startWorld('hearth_pg_restart', 500);
      const world = w;
      for (const name of ['c1', 'c2']) await world.cluster.startReplica(name, world.configFor(name, 'controller'));
      for (const name of HOSTS) await world.cluster.startReplica(name, world.configFor(name, 'host'));
      world.lb.setBackends(world.cluster.running(['c1', 'c2']).map((r) => r.url));
      const jobs: Awaited<ReturnType<ForgeSimulator['queueGithubJob']>>[] = [];
      const queueing = (async () => {
        for (let i = 0; i < 60; i++) {
          jobs.push(await world.sim.queueGithubJob({ repo: REPO, labels: [...OWNED_LABELS, `hearth=pg-${i}`] }));
          // Spreads the arrivals over the restart (the scenario's pacing, not synchronisation).
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      // Restart PostgreSQL once jobs are in flight: some already in the ledger, more still arriving.
      await until(
        'jobs in the ledger before the restart',
        async () => (jobs.length >= 10 && (await world.ledger.job(`github:${jobs[0]!.id}`)) ? true : undefined),
        60_000,
      );
      const restartStarted = Date.now();
      await world.pg.restart();
      const outage = (Date.now() - restartStarted) / 1000;
      await queueing;
      const ids = jobs.map((j) => `github:${j.id}`);
      await until(
        'all 60 jobs to complete and be torn down',
        async () => {
          const rows = await Promise.all(ids.map((id) => world.ledger.job(id)));
          return rows.every((r) => r?.state === 'completed' && r.released_at) ? true : undefined;
        },
        180_000,
        async () => JSON.stringify(await world.ledger.countByState()),
      );
      // Acknowledged means answered 2xx: each of those deliveries' jobs is in the ledger.
      const acknowledged = world.sim.deliveries.filter((d) => d.responses.some((r) => r >= 200 && r < 300));
      const refused = world.sim.deliveries.filter((d) => d.responses.length > 0 && !d.responses.some((r) => r >= 200 && r < 300));
      for (const d of acknowledged)
        assert.ok(await world.ledger.job(`github:${d.jobId}`), `delivery ${d.id} (${d.action}) was acknowledged, so job ${d.jobId} is recorded`);
      const finals = await finalTransitions(world.ledger, ids);
      assert.deepEqual([...new Set(finals.values())], [1], 'each job ended exactly once');
      await until('no registration left', async () => (world.sim.github.runners.size === 0 ? true : undefined), 30_000);
      assert.deepEqual(
        (await world.cluster.fakeVms()).filter((vm) => vm.alive),
        [],
      );
      t.diagnostic(
        `PostgreSQL down ${outage.toFixed(1)} s; ${acknowledged.length} deliveries acknowledged, ${refused.length} refused during the outage (found again by reconcile)`,
      );
      await recordFigures([
        `PostgreSQL restart under load: down ${outage.toFixed(1)} s, 60 of 60 jobs completed, ${acknowledged.length} acknowledged deliveries all recorded, ${refused.length} refused during the outage and recovered by reconcile`,
      ]);
      failed = false;
    } finally {
      await stopWorld(w, failed);
    }
  });
});
