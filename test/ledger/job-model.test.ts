import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Ledger } from '../../src/ledger/ledger.ts';
import { migrationProvider, type LedgerDialect } from '../../src/ledger/migrations.ts';
import { forEachStore } from '../support/ledgers.ts';
import { startPostgres, type PostgresServer } from '../support/postgres.ts';

const SHAPE = { cpus: 4, memoryMib: 8192, image: 'minimal', pool: 'fast', requires: ['arch=arm64'] };

forEachStore('typed jobs and cleanup duties', (open) => {
  let ledger: Ledger;
  let now = new Date('2026-12-01T10:00:00Z');
  before(async () => {
    ledger = await open(() => now);
  });
  const job = (id: string) => ({
    forge: 'gitlab' as const,
    forgeJobId: id,
    repository: 'group/project',
    labels: ['hearth', 'hearth/cpu=4/ram=8'],
    shape: SHAPE,
  });

  it('returns jobs with their labels as a list, the forge as its kind and the shape stored at ingest', async () => {
    await ledger.enqueue(job('1'), 'webhook');
    const stored = await ledger.job('gitlab:1');
    assert.deepEqual(stored?.labels, ['hearth', 'hearth/cpu=4/ram=8']);
    assert.equal(stored?.forge, 'gitlab');
    assert.deepEqual(stored?.shape, SHAPE);
    assert.deepEqual(
      (await ledger.inStates(['queued'])).map((j) => j.shape.pool),
      ['fast'],
    );
    const placed = await ledger.placeQueued(
      10,
      async (jobs) => new Map(jobs.map((j) => [j.id, { host: 'h1', cpus: j.shape.cpus, memoryMib: j.shape.memoryMib, reason: 'placed on h1' }])),
    );
    assert.deepEqual(placed, [{ id: 'gitlab:1', host: 'h1' }]);
    assert.deepEqual(await ledger.committedByHost(), new Map([['h1', { cpus: 4, memoryMib: 8192 }]]));
  });

  it('keeps a final job unreleased while a cleanup duty remains, and releases it once the last is done', async () => {
    await ledger.enqueue(job('2'), 'webhook');
    await ledger.hold('gitlab:2', { kind: 'vm', ref: 'vm-2', host: 'h1' }, 'VM vm-2 ready', { vm_id: 'vm-2' }, 'vm_ready');
    await ledger.hold('gitlab:2', { kind: 'runner', ref: '77', host: null }, 'runner registered', { runner_id: '77', runner_name: 'hearth-2' });
    // Holding the same thing twice is one duty.
    await ledger.hold('gitlab:2', { kind: 'runner', ref: '77', host: null }, 'runner registered again', { runner_id: '77' });
    const duties = await ledger.finalizers(['gitlab:2']);
    assert.deepEqual(duties.map((d) => [d.kind, d.ref, d.host]).sort(), [
      ['runner', '77', null],
      ['vm', 'vm-2', 'h1'],
    ]);
    const held = await ledger.job('gitlab:2');
    assert.equal(held?.vm_id, 'vm-2');
    assert.equal(held?.runner_id, '77');
    assert.equal(await ledger.transition('gitlab:2', 'failed', 'boot failed'), true);
    assert.equal(await ledger.release('gitlab:2', 'too early'), false, 'a duty remains');
    assert.equal(await ledger.finalized({ jobId: 'gitlab:2', kind: 'vm', ref: 'vm-2' }), true);
    assert.equal(await ledger.finalized({ jobId: 'gitlab:2', kind: 'vm', ref: 'vm-2' }), false, 'carrying a duty out twice is harmless');
    assert.equal(await ledger.release('gitlab:2', 'still early'), false);
    assert.equal(await ledger.finalized({ jobId: 'gitlab:2', kind: 'runner', ref: '77' }), true);
    now = new Date(now.getTime() + 1000);
    assert.equal(await ledger.release('gitlab:2', 'torn down'), true);
    assert.equal(await ledger.release('gitlab:2', 'torn down twice'), false);
    assert.deepEqual(await ledger.finalizers(['gitlab:2']), []);
    assert.ok((await ledger.job('gitlab:2'))?.released_at);
  });
});

/** A store at the schema before shapes were stored (0004), holding one job, then opened by this version. */
describe('migration 0005 computes the shape of jobs recorded before it, once', () => {
  let dir: string;
  let server: PostgresServer | undefined;
  const opened: Ledger[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-migrate-'));
    server = await startPostgres();
  });
  after(async () => {
    for (const ledger of opened) await ledger.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function seedOldStore(db: Kysely<unknown>, dialect: LedgerDialect): Promise<void> {
    const { error } = await new Migrator({ db, provider: migrationProvider(dialect) }).migrateTo('0004_hosts_and_placement');
    assert.equal(error, undefined);
    const at = '2026-11-01T00:00:00.000Z';
    for (const [id, labels] of [
      ['github:1', ['self-hosted', 'hearth', 'hearth-4cpu-8gb']],
      ['github:2', ['hearth', 'hearth/pool=fast/arch=arm64']],
      ['github:3', ['hearth', 'hearth/gpu=1']],
    ] as const) {
      await sql`insert into jobs (id, forge, forge_job_id, repository, labels, state, attempts, created_at, updated_at) values (${id}, 'github', ${id.slice(7)}, 'octo/repo', ${JSON.stringify(labels)}, 'queued', 0, ${at}, ${at})`.execute(
        db,
      );
    }
    await db.destroy();
  }

  async function check(ledger: Ledger): Promise<void> {
    opened.push(ledger);
    assert.deepEqual((await ledger.job('github:1'))?.shape, { cpus: 4, memoryMib: 8192, image: 'debian', pool: null, requires: [] });
    assert.deepEqual((await ledger.job('github:2'))?.shape, { cpus: 2, memoryMib: 2048, image: 'debian', pool: 'fast', requires: ['arch=arm64'] });
    // Labels today's parser refuses: the job keeps the default shape rather than breaking every read.
    assert.deepEqual((await ledger.job('github:3'))?.shape, { cpus: 2, memoryMib: 2048, image: 'debian', pool: null, requires: [] });
    assert.deepEqual((await ledger.job('github:1'))?.labels, ['self-hosted', 'hearth', 'hearth-4cpu-8gb']);
  }

  it('on SQLite', async () => {
    const path = join(dir, 'old.sqlite');
    await seedOldStore(new Kysely<unknown>({ dialect: new SqliteDialect({ database: new Database(path) }) }), 'sqlite');
    await check(await Ledger.openSqlite(path));
  });

  it('on PostgreSQL', async () => {
    const url = await server!.createDatabase('old_store');
    await seedOldStore(new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }) }), 'postgres');
    await check(await Ledger.openPostgres(url));
  });
});
