import { sql, type ColumnDefinitionBuilder, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { legacyShape } from './job.ts';
import { JOB_STATES } from './states.ts';

export type LedgerDialect = 'sqlite' | 'postgres';

/**
 * Migrations, in order, in code: they ship with the binary and run on start.
 * One set for SQLite and PostgreSQL: portable SQL, except the generated ids,
 * which each engine spells its own way.
 */
function migrations(dialect: LedgerDialect): Record<string, Migration> {
  const idType = dialect === 'postgres' ? 'bigserial' : 'integer';
  const id = (c: ColumnDefinitionBuilder): ColumnDefinitionBuilder => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement());
  return {
    '0001_jobs_and_deliveries': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('deliveries')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('forge', 'text', (c) => c.notNull())
          .addColumn('event', 'text', (c) => c.notNull())
          .addColumn('received_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('jobs')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('forge', 'text', (c) => c.notNull())
          .addColumn('forge_job_id', 'text', (c) => c.notNull())
          .addColumn('repository', 'text', (c) => c.notNull())
          .addColumn('labels', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull().check(sql.raw(`state in (${JOB_STATES.map((s) => `'${s}'`).join(', ')})`)))
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('vm_id', 'text')
          .addColumn('runner_name', 'text')
          .addColumn('last_error', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('jobs_state').on('jobs').columns(['state', 'updated_at']).execute();
        await db.schema
          .createTable('job_events')
          .addColumn('id', idType, id)
          .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id'))
          .addColumn('from_state', 'text')
          .addColumn('to_state', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addColumn('at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('job_events_job').on('job_events').columns(['job_id', 'id']).execute();
      },
    },
    '0002_runner_and_release': {
      async up(db: Kysely<unknown>) {
        // runner_id: the forge's id of the one-job registration, for its removal.
        await db.schema.alterTable('jobs').addColumn('runner_id', 'text').execute();
        // released_at: when the VM and registration were torn down; a final job without it still holds something.
        await db.schema.alterTable('jobs').addColumn('released_at', 'text').execute();
        // ran_on: the runner the forge ran the job on. With equal labels a forge may give a job
        // another job's runner, so it can differ from runner_name.
        await db.schema.alterTable('jobs').addColumn('ran_on', 'text').execute();
      },
    },
    '0003_insights_and_logs': {
      async up(db: Kysely<unknown>) {
        for (const column of ['job_name', 'conclusion', 'failed_step', 'pool', 'host', 'started_at', 'finished_at']) {
          await db.schema.alterTable('jobs').addColumn(column, 'text').execute();
        }
        await db.schema.alterTable('jobs').addColumn('pool_hit', 'integer').execute();
        await db.schema.createIndex('jobs_finished').on('jobs').columns(['finished_at']).execute();
        await db.schema.alterTable('job_events').addColumn('stage', 'text').execute();
        await db.schema
          .createTable('job_logs')
          .addColumn('id', idType, id)
          .addColumn('job_id', 'text', (c) => c.notNull())
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('stream', 'text', (c) => c.notNull())
          .addColumn('text', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('job_logs_job').on('job_logs').columns(['job_id', 'id']).execute();
        await db.schema.createIndex('job_logs_at').on('job_logs').columns(['at']).execute();
      },
    },
    '0004_hosts_and_placement': {
      async up(db: Kysely<unknown>) {
        // Each VM host registers here and heartbeats; its heartbeat is the lease on every job placed on it.
        await db.schema
          .createTable('hosts')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('cpus', 'integer', (c) => c.notNull())
          .addColumn('memory_mib', 'integer', (c) => c.notNull())
          .addColumn('disk_gib', 'integer', (c) => c.notNull())
          .addColumn('drivers', 'text', (c) => c.notNull())
          .addColumn('images', 'text', (c) => c.notNull())
          .addColumn('labels', 'text', (c) => c.notNull())
          .addColumn('pool_cpus', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('pool_memory_mib', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('started_at', 'text', (c) => c.notNull())
          .addColumn('heartbeat_at', 'text', (c) => c.notNull())
          .execute();
        // The shape a job was placed with, so a host's committed capacity is one SUM away.
        await db.schema.alterTable('jobs').addColumn('cpus', 'integer').execute();
        await db.schema.alterTable('jobs').addColumn('memory_mib', 'integer').execute();
        await db.schema.createIndex('jobs_host_state').on('jobs').columns(['host', 'state']).execute();
      },
    },
    '0005_job_shape_and_finalizers': {
      async up(db: Kysely<unknown>) {
        // The shape ingest computed, so nothing downstream parses labels again.
        await db.schema.alterTable('jobs').addColumn('shape', 'text').execute();
        // Jobs recorded before this: their shape from their labels and the default shape, computed here once.
        const { rows } = await sql<{ id: string; labels: string }>`select id, labels from jobs`.execute(db);
        for (const row of rows) await sql`update jobs set shape = ${JSON.stringify(legacyShape(row.labels))} where id = ${row.id}`.execute(db);
        await db.schema
          .createTable('finalizers')
          .addColumn('job_id', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull().check(sql.raw(`kind in ('vm', 'runner')`)))
          .addColumn('ref', 'text', (c) => c.notNull())
          .addColumn('host', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('finalizers_pk', ['job_id', 'kind', 'ref'])
          .execute();
        await db.schema.createIndex('finalizers_host').on('finalizers').columns(['host']).execute();
      },
    },
    '0006_host_capabilities': {
      async up(db: Kysely<unknown>) {
        // What the host's driver can boot (JSON DriverCapabilities), so admission can refuse a shape no host takes.
        await db.schema.alterTable('hosts').addColumn('capabilities', 'text').execute();
      },
    },
  };
}

export function migrationProvider(dialect: LedgerDialect): MigrationProvider {
  return { getMigrations: async () => migrations(dialect) };
}
