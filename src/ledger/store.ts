import Database from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pg from 'pg';
import { migrationProvider, type LedgerDialect } from './migrations.ts';
import type { LedgerSchema } from './schema.ts';

export type StoreTarget = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/** A store's warnings (a pooled connection dropped): logged by whoever opened it. */
export type StoreWarn = (message: string, error: unknown) => void;

/**
 * The store and its dialect: opens SQLite (WAL) or PostgreSQL, migrates it to
 * the latest schema and closes it. It knows nothing about jobs.
 */
export class LedgerStore {
  private constructor(
    readonly db: Kysely<LedgerSchema>,
    readonly dialect: LedgerDialect,
    readonly clock: () => Date,
    /** PostgreSQL only: where the notifier opens its LISTEN connection. */
    readonly url: string | undefined,
  ) {}

  static open(target: StoreTarget, clock: () => Date = () => new Date(), warn: StoreWarn = warnToStderr): Promise<LedgerStore> {
    return target.kind === 'postgres' ? LedgerStore.openPostgres(target.url, clock, 10, warn) : LedgerStore.openSqlite(target.path, clock);
  }

  static async openPostgres(url: string, clock: () => Date = () => new Date(), poolSize = 10, warn: StoreWarn = warnToStderr): Promise<LedgerStore> {
    const pool = new pg.Pool({ connectionString: url, max: poolSize, connectionTimeoutMillis: 10_000 });
    // A client whose server went away (a restart) must not crash the process: the pool replaces it,
    // and a statement in flight fails on its own promise, so the reconcile pass retries.
    pool.on('error', (error) => warn('an idle PostgreSQL connection failed; the pool replaces it', error));
    pool.on('connect', (client) => client.on('error', (error) => warn('a PostgreSQL connection failed; its statement fails and is retried', error)));
    const store = new LedgerStore(new Kysely<LedgerSchema>({ dialect: new PostgresDialect({ pool }) }), 'postgres', clock, url);
    await store.migrate(redactedUrl(url));
    return store;
  }

  static async openSqlite(path: string, clock: () => Date = () => new Date()): Promise<LedgerStore> {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const sqlite = new Database(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    // Kysely prepares every statement anew; the ledger runs a small fixed set of
    // parameterised statements, so reusing them halves the cost of a webhook.
    const statements = new Map<string, Database.Statement>();
    const database = {
      close: () => void sqlite.close(),
      prepare(sqlText: string): Database.Statement {
        let statement = statements.get(sqlText);
        if (!statement) {
          statement = sqlite.prepare(sqlText);
          if (statements.size < 1000) statements.set(sqlText, statement);
        }
        return statement;
      },
    };
    const store = new LedgerStore(new Kysely<LedgerSchema>({ dialect: new SqliteDialect({ database }) }), 'sqlite', clock, undefined);
    await store.migrate(path);
    return store;
  }

  private async migrate(where: string): Promise<void> {
    const { error } = await new Migrator({ db: this.db, provider: migrationProvider(this.dialect) }).migrateToLatest();
    if (error) throw new Error(`ledger migration failed for ${where}: ${(error as Error).message}`, { cause: error });
  }

  now(): string {
    return this.clock().toISOString();
  }

  /** The time `ms` ago, as stored. */
  ago(ms: number): string {
    return new Date(this.clock().getTime() - ms).toISOString();
  }

  close(): Promise<void> {
    return this.db.destroy();
  }
}

/** Without a logger (tests, benches), a dropped connection is written to stderr rather than lost. */
export function warnToStderr(message: string, error: unknown): void {
  process.emitWarning(`${message}: ${(error as Error).message}`, 'HearthLedgerWarning');
}

export function redactedUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
