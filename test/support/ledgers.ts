import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { Ledger } from '../../src/ledger/ledger.ts';
import { startPostgres, type PostgresServer } from './postgres.ts';

export type OpenLedger = (clock?: () => Date) => Promise<Ledger>;

/**
 * Runs `suite` once per store: SQLite (a temp file) and PostgreSQL (a server
 * from Debian's package, one per test file, a fresh database per ledger), so
 * the one set of ledger code and migrations is proven on both.
 */
export function forEachStore(title: string, suite: (open: OpenLedger) => void): void {
  describe(`${title} (SQLite)`, () => {
    let dir: string;
    const opened: Ledger[] = [];
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'hearth-ledger-'));
    });
    after(async () => {
      for (const ledger of opened) await ledger.close();
      await rm(dir, { recursive: true, force: true });
    });
    suite(async (clock) => {
      const ledger = await Ledger.openSqlite(join(dir, `ledger-${opened.length}.sqlite`), clock);
      opened.push(ledger);
      return ledger;
    });
  });

  describe(`${title} (PostgreSQL)`, () => {
    let server: PostgresServer;
    const opened: Ledger[] = [];
    before(async () => {
      server = await startPostgres();
    });
    after(async () => {
      for (const ledger of opened) await ledger.close();
      await server?.stop();
    });
    suite(async (clock) => {
      const url = await server.createDatabase(`ledger_${opened.length}`);
      const ledger = await Ledger.openPostgres(url, clock);
      opened.push(ledger);
      return ledger;
    });
  });
}
