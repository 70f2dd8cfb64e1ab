import type { Kysely, Transaction } from 'kysely';
import type { LedgerSchema } from './schema.ts';

export type Work<T> = (tx: Transaction<LedgerSchema>) => Promise<T>;

interface Pending {
  readonly work: Work<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Every change to the ledger goes through here: writes requested in the same
 * I/O phase share one transaction (group commit), in the order they were
 * asked for, and each caller hears back only after the commit that holds its
 * rows. With hundreds of jobs in flight, the commit is most of a write's cost.
 */
export class WriteQueue {
  private pending: Pending[] = [];
  private flushing = false;

  constructor(private readonly db: Kysely<LedgerSchema>) {}

  write<T>(work: Work<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.flushing) return;
      this.flushing = true;
      // After the current I/O phase, everything asked for in it shares one commit.
      setImmediate(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, 256);
        try {
          const results = await this.db.transaction().execute(async (tx) => {
            const out: unknown[] = [];
            for (const item of batch) out.push(await item.work(tx));
            return out;
          });
          batch.forEach((item, i) => item.resolve(results[i]));
        } catch {
          // One failing write must not fail its neighbours: each runs again in its own
          // transaction, and the one that fails there rejects its own caller with the error.
          for (const item of batch) {
            try {
              item.resolve(await this.db.transaction().execute((tx) => item.work(tx)));
            } catch (error) {
              item.reject(error);
            }
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }
}
