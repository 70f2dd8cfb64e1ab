import type { Kysely, Transaction } from 'kysely';
import type { LedgerSchema } from './schema.ts';
import { isFinal, sourcesOf, type JobState } from './states.ts';

/**
 * Every statement the ledger runs, one named function each (after pg-boss's
 * plans): the classes that use them hold no SQL.
 */
type Db = Kysely<LedgerSchema> | Transaction<LedgerSchema>;

/** What a job holds outside the ledger: a VM and a forge registration. null clears. */
export interface JobResources {
  vm_id?: string | null;
  runner_name?: string | null;
  runner_id?: string | null;
  pool?: string | null;
  pool_hit?: number | null;
  host?: string | null;
  cpus?: number | null;
  memory_mib?: number | null;
}

/** Filters of the jobs list (API and dashboard). */
export interface JobFilter {
  readonly forge?: string | undefined;
  readonly repository?: string | undefined;
  readonly state?: JobState | undefined;
}

/** Columns a new job starts without. */
const UNSET_JOB_COLUMNS = {
  state: 'queued',
  attempts: 0,
  vm_id: null,
  runner_name: null,
  runner_id: null,
  released_at: null,
  ran_on: null,
  last_error: null,
  conclusion: null,
  failed_step: null,
  pool: null,
  pool_hit: null,
  host: null,
  started_at: null,
  finished_at: null,
  cpus: null,
  memory_mib: null,
} as const;

/** A new job's row: what ingest knows, with its shape already encoded. */
export type NewJobRow = Omit<LedgerSchema['jobs'], keyof typeof UNSET_JOB_COLUMNS | 'shape'> & { shape: string };

/** Inserts a delivery; false when it was recorded before (a redelivery). */
export async function insertDelivery(db: Db, row: LedgerSchema['deliveries']): Promise<boolean> {
  const result = await db
    .insertInto('deliveries')
    .values(row)
    .onConflict((oc) => oc.column('id').doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
}

/** Inserts a job in `queued`; false when the job is already known. */
export async function insertQueuedJob(db: Db, row: NewJobRow): Promise<boolean> {
  const result = await db
    .insertInto('jobs')
    .values({ ...row, ...UNSET_JOB_COLUMNS })
    .onConflict((oc) => oc.column('id').doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
}

/** The guarded transition: changes the row only from a state the machine allows. */
export async function updateJobState(
  db: Db,
  id: string,
  to: JobState,
  at: string,
  extra: JobResources & { ran_on?: string; last_error?: string; conclusion?: string; failed_step?: string; attempt?: boolean } = {},
): Promise<JobState | undefined> {
  const current = await db.selectFrom('jobs').select(['state', 'started_at']).where('id', '=', id).executeTakeFirst();
  if (!current) return undefined;
  const result = await db
    .updateTable('jobs')
    .set((eb) => ({
      state: to,
      updated_at: at,
      ...(extra.vm_id !== undefined ? { vm_id: extra.vm_id } : {}),
      ...(extra.runner_name !== undefined ? { runner_name: extra.runner_name } : {}),
      ...(extra.runner_id !== undefined ? { runner_id: extra.runner_id } : {}),
      ...(extra.host !== undefined ? { host: extra.host } : {}),
      ...(extra.cpus !== undefined ? { cpus: extra.cpus } : {}),
      ...(extra.memory_mib !== undefined ? { memory_mib: extra.memory_mib } : {}),
      ...(extra.ran_on !== undefined ? { ran_on: extra.ran_on } : {}),
      ...(extra.last_error !== undefined ? { last_error: extra.last_error } : {}),
      ...(extra.conclusion !== undefined ? { conclusion: extra.conclusion } : {}),
      ...(extra.failed_step !== undefined ? { failed_step: extra.failed_step } : {}),
      ...(extra.attempt ? { attempts: eb('attempts', '+', 1) } : {}),
      // Queue time ends when the forge first reports the job running; run time ends when it is final.
      ...(to === 'running' && current.started_at === null ? { started_at: at } : {}),
      ...(isFinal(to) ? { finished_at: at } : {}),
    }))
    .where('id', '=', id)
    .where('state', '=', current.state)
    .where('state', 'in', [...sourcesOf(to)])
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0 ? current.state : undefined;
}

export async function insertJobEvent(db: Db, row: Omit<LedgerSchema['job_events'], 'id'>): Promise<void> {
  await db.insertInto('job_events').values(row).execute();
}

export function selectJob(db: Db, id: string) {
  return db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
}

export function selectJobEvents(db: Db, id: string) {
  return db.selectFrom('job_events').select(['from_state', 'to_state', 'reason', 'at', 'stage']).where('job_id', '=', id).orderBy('id').execute();
}

/** Jobs newest first, after an optional cursor (the id of the last job of the previous page). */
export function selectJobsPage(db: Db, limit: number, after?: { created_at: string; id: string }, filter: JobFilter = {}) {
  let query = db.selectFrom('jobs').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit);
  if (filter.forge) query = query.where('forge', '=', filter.forge);
  if (filter.repository) query = query.where('repository', '=', filter.repository);
  if (filter.state) query = query.where('state', '=', filter.state);
  if (after)
    query = query.where((eb) => eb.or([eb('created_at', '<', after.created_at), eb.and([eb('created_at', '=', after.created_at), eb('id', '<', after.id)])]));
  return query.execute();
}

/** Jobs sitting in `state` since before `before`: for the reconcile loop's deadlines. */
export function selectJobsStuckIn(db: Db, state: JobState, before: string) {
  return db.selectFrom('jobs').selectAll().where('state', '=', state).where('updated_at', '<', before).execute();
}

export function selectJobsInStates(db: Db, states: readonly JobState[]) {
  return db
    .selectFrom('jobs')
    .selectAll()
    .where('state', 'in', [...states])
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}

/** Final jobs whose VM or registration may still exist: the teardown backlog. */
export function selectUnreleasedFinalJobs(db: Db, finalStates: readonly JobState[]) {
  return db
    .selectFrom('jobs')
    .selectAll()
    .where('state', 'in', [...finalStates])
    .where('released_at', 'is', null)
    .execute();
}

/** Records resources without a state change (a VM booted, a runner registered). */
export async function updateJobResources(db: Db, id: string, at: string, resources: JobResources): Promise<void> {
  await db
    .updateTable('jobs')
    .set({ ...resources, updated_at: at })
    .where('id', '=', id)
    .execute();
}

export async function markJobReleased(db: Db, id: string, at: string): Promise<boolean> {
  const result = await db.updateTable('jobs').set({ released_at: at }).where('id', '=', id).where('released_at', 'is', null).executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

export function countJobsByState(db: Db) {
  return db
    .selectFrom('jobs')
    .select(['state', (eb) => eb.fn.countAll<number>().as('count')])
    .groupBy('state')
    .execute();
}

/** Finished jobs since `since`, for Insights (queue and run times, failures, pool hits). */
export function selectFinishedJobsSince(db: Db, since: string, limit: number) {
  return db
    .selectFrom('jobs')
    .select(['repository', 'job_name', 'state', 'conclusion', 'failed_step', 'pool', 'pool_hit', 'created_at', 'started_at', 'finished_at'])
    .where('finished_at', '>=', since)
    .orderBy('finished_at', 'desc')
    .limit(limit)
    .execute();
}

export async function insertJobLogs(db: Db, rows: readonly Omit<LedgerSchema['job_logs'], 'id'>[]): Promise<void> {
  if (rows.length > 0)
    await db
      .insertInto('job_logs')
      .values([...rows])
      .execute();
}

export function countJobLogs(db: Db, jobId: string) {
  return db
    .selectFrom('job_logs')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('job_id', '=', jobId)
    .executeTakeFirstOrThrow();
}

/** A job's log lines after `afterId` (0: from the start), oldest first. */
export function selectJobLogs(db: Db, jobId: string, afterId: number, limit: number) {
  return db
    .selectFrom('job_logs')
    .select(['id', 'at', 'stream', 'text'])
    .where('job_id', '=', jobId)
    .where('id', '>', afterId)
    .orderBy('id')
    .limit(limit)
    .execute();
}

/** Log rotation: drops lines written before `before`. */
export async function deleteJobLogsBefore(db: Db, before: string): Promise<number> {
  const result = await db.deleteFrom('job_logs').where('at', '<', before).executeTakeFirst();
  return Number(result.numDeletedRows);
}

// ---- hosts and placement -------------------------------------------------

/** Registers a host, or updates it when it restarts: up, with a fresh heartbeat. */
export async function upsertHost(db: Db, row: LedgerSchema['hosts']): Promise<void> {
  const { id, ...rest } = row;
  await db
    .insertInto('hosts')
    .values(row)
    .onConflict((oc) => oc.column('id').doUpdateSet(rest))
    .execute();
}

/** A heartbeat: returns the state the host was in (lost: the controller gave its jobs away meanwhile). */
export async function touchHost(db: Db, id: string, at: string, pool: { cpus: number; memoryMib: number }): Promise<string | undefined> {
  const before = await db.selectFrom('hosts').select('state').where('id', '=', id).executeTakeFirst();
  if (!before) return undefined;
  await db.updateTable('hosts').set({ heartbeat_at: at, state: 'up', pool_cpus: pool.cpus, pool_memory_mib: pool.memoryMib }).where('id', '=', id).execute();
  return before.state;
}

export async function setHostState(db: Db, id: string, state: string, onlyIfHeartbeatBefore?: string): Promise<boolean> {
  let query = db.updateTable('hosts').set({ state }).where('id', '=', id).where('state', '!=', state);
  if (onlyIfHeartbeatBefore) query = query.where('heartbeat_at', '<', onlyIfHeartbeatBefore);
  const result = await query.executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

export function selectHosts(db: Db) {
  return db.selectFrom('hosts').selectAll().orderBy('id').execute();
}

/** What each host has committed to jobs that hold or may hold a VM there. */
export function selectCommittedByHost(db: Db, states: readonly JobState[]) {
  return db
    .selectFrom('jobs')
    .select(['host', (eb) => eb.fn.sum<number>('cpus').as('cpus'), (eb) => eb.fn.sum<number>('memory_mib').as('memory_mib')])
    .where('host', 'is not', null)
    .where('state', 'in', [...states])
    .groupBy('host')
    .execute();
}

/**
 * Queued jobs for placement, oldest first. On PostgreSQL the rows are locked
 * with SKIP LOCKED, so two placers (say, an old leader and its successor for
 * a moment) never take the same job; SQLite has one writer anyway.
 */
export function selectQueuedForPlacement(db: Db, limit: number, lock: boolean) {
  const query = db.selectFrom('jobs').selectAll().where('state', '=', 'queued').orderBy('created_at').orderBy('id').limit(limit);
  return lock ? query.forUpdate().skipLocked().execute() : query.execute();
}

export function selectJobsOnHost(db: Db, host: string, states: readonly JobState[]) {
  return db
    .selectFrom('jobs')
    .selectAll()
    .where('host', '=', host)
    .where('state', 'in', [...states])
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}

/** Final jobs not torn down whose host is not `up` (or that never had one): the controller releases them. */
export function selectUnreleasedFinalOffHosts(db: Db, finalStates: readonly JobState[], upHosts: readonly string[]) {
  let query = db
    .selectFrom('jobs')
    .selectAll()
    .where('state', 'in', [...finalStates])
    .where('released_at', 'is', null);
  if (upHosts.length > 0) query = query.where((eb) => eb.or([eb('host', 'is', null), eb('host', 'not in', [...upHosts])]));
  return query.execute();
}

export function selectJobsByIds(db: Db, ids: readonly string[]) {
  return ids.length === 0
    ? Promise.resolve([])
    : db
        .selectFrom('jobs')
        .selectAll()
        .where('id', 'in', [...ids])
        .execute();
}

// ---- finalizers (cleanup duties) -------------------------------------------

export type FinalizerRow = LedgerSchema['finalizers'];

/** Adds a cleanup duty; adding the same one twice is one duty. */
export async function insertFinalizer(db: Db, row: FinalizerRow): Promise<void> {
  await db
    .insertInto('finalizers')
    .values(row)
    .onConflict((oc) => oc.columns(['job_id', 'kind', 'ref']).doNothing())
    .execute();
}

/** Removes a duty once carried out; false when it was already gone (another process did it). */
export async function deleteFinalizer(db: Db, row: Pick<FinalizerRow, 'job_id' | 'kind' | 'ref'>): Promise<boolean> {
  const result = await db.deleteFrom('finalizers').where('job_id', '=', row.job_id).where('kind', '=', row.kind).where('ref', '=', row.ref).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/** Every duty not yet carried out, oldest first; of some jobs only when `jobIds` is given. */
export function selectFinalizers(db: Db, jobIds?: readonly string[]) {
  let query = db.selectFrom('finalizers').selectAll().orderBy('created_at').orderBy('job_id');
  if (jobIds) {
    if (jobIds.length === 0) return Promise.resolve([]);
    query = query.where('job_id', 'in', [...jobIds]);
  }
  return query.execute();
}

export async function countFinalizers(db: Db, jobId: string): Promise<number> {
  const row = await db
    .selectFrom('finalizers')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('job_id', '=', jobId)
    .executeTakeFirstOrThrow();
  return Number(row.count);
}
