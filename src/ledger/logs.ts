import { EventEmitter } from 'node:events';
import { countJobLogs, deleteJobLogsBefore, insertJobLogs, selectJobLogs } from './plans.ts';
import type { Ledger } from './ledger.ts';
import { maskSecrets } from '../redact.ts';

/** runner: what the runner in the VM printed; hearth: what Hearth did for the job. */
export type LogStream = 'runner' | 'hearth';

export interface LogLine {
  /** Increasing across all jobs: the SSE event id a reader resumes after. */
  readonly seq: number;
  readonly at: string;
  readonly stream: LogStream;
  readonly text: string;
}

export interface JobLogOptions {
  readonly maxLinesPerJob: number;
  readonly retentionDays: number;
  /** Values never to store (forge tokens, webhook secrets): masked wherever they appear. */
  readonly secrets: readonly string[];
}

const MAX_LINE_CHARS = 4000;
const FLUSH_DELAY_MS = 100;
const FLUSH_ROWS = 500;
const RETRY_DELAY_MS = 1000;
/** Lines held while the store is unreachable; beyond this the oldest unsent ones are dropped. */
const MAX_PENDING_ROWS = 50_000;

/**
 * Each job's log: the runner's output and Hearth's own steps, in the ledger
 * (so every replica and the API see it), bounded per job and deleted after the
 * retention period. Writes are batched; secrets are masked before they are
 * stored, so nothing downstream (API, SSE, dashboard) can leak them.
 */
export class JobLogs {
  private pending: { job_id: string; at: string; stream: LogStream; text: string }[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly written = new Map<string, number>();
  private readonly partial = new Map<string, string>();
  private readonly jobSecrets = new Map<string, string[]>();
  private readonly secrets: string[];
  /** Emits the job id after its new lines are committed. */
  readonly committed = new EventEmitter();

  constructor(
    private readonly ledger: Ledger,
    private readonly options: JobLogOptions,
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.secrets = options.secrets.filter((s) => s.length >= 6);
    this.committed.setMaxListeners(0);
  }

  /** Values to mask in this job's lines only (its runner's credential). */
  addSecrets(jobId: string, values: readonly string[]): void {
    const list = this.jobSecrets.get(jobId) ?? [];
    list.push(...values.filter((v) => v.length >= 6));
    this.jobSecrets.set(jobId, list);
  }

  /** One whole line. */
  write(jobId: string, stream: LogStream, text: string): void {
    for (const line of text.split('\n')) this.push(jobId, stream, line);
  }

  /** A sink for raw output: splits it into lines, holding back an unfinished last line. */
  output(jobId: string, stream: LogStream): (chunk: Buffer) => void {
    const key = `${jobId}\u0000${stream}`;
    return (chunk) => {
      const text = (this.partial.get(key) ?? '') + chunk.toString('utf8');
      const lines = text.split('\n');
      const rest = lines.pop() ?? '';
      for (const line of lines) this.push(jobId, stream, line.replace(/\r$/, ''));
      if (rest.length > MAX_LINE_CHARS) this.push(jobId, stream, rest);
      else if (rest) this.partial.set(key, rest);
      else this.partial.delete(key);
    };
  }

  /** The job's output is over: writes any unfinished line and forgets the job's secrets. */
  close(jobId: string): void {
    for (const stream of ['runner', 'hearth'] as const) {
      const key = `${jobId}\u0000${stream}`;
      const rest = this.partial.get(key);
      if (rest) this.push(jobId, stream, rest);
      this.partial.delete(key);
    }
    this.jobSecrets.delete(jobId);
    this.written.delete(jobId);
  }

  private push(jobId: string, stream: LogStream, raw: string): void {
    const count = this.written.get(jobId) ?? 0;
    if (count > this.options.maxLinesPerJob) return;
    this.written.set(jobId, count + 1);
    const text =
      count === this.options.maxLinesPerJob
        ? `[hearth] log truncated: only the first ${this.options.maxLinesPerJob} lines of a job are kept (log.jobMaxLines)`
        : this.mask(jobId, raw.length > MAX_LINE_CHARS ? `${raw.slice(0, MAX_LINE_CHARS)} [line cut at ${MAX_LINE_CHARS} characters]` : raw);
    this.pending.push({ job_id: jobId, at: this.clock().toISOString(), stream: count === this.options.maxLinesPerJob ? 'hearth' : stream, text });
    if (this.pending.length >= FLUSH_ROWS) void this.flush();
    else this.flushTimer ??= setTimeout(() => void this.flush(), FLUSH_DELAY_MS);
  }

  mask(jobId: string, text: string): string {
    // Known token shapes too, masked even when Hearth never saw their value.
    return maskSecrets(text, [...this.secrets, ...(this.jobSecrets.get(jobId) ?? [])], { minLength: 1, tokenShapes: true });
  }

  /** Commits what is pending; resolves once it is in the ledger. */
  flush(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const rows = this.pending;
    this.pending = [];
    this.flushing = this.flushing.then(async () => {
      if (rows.length === 0) return;
      try {
        await insertJobLogs(this.ledger.db, rows);
      } catch {
        // The store is away (a restart): keep the lines, up to a bound, and try again shortly.
        this.pending = [...rows, ...this.pending].slice(0, MAX_PENDING_ROWS);
        this.flushTimer ??= setTimeout(() => void this.flush(), RETRY_DELAY_MS);
        return;
      }
      for (const jobId of new Set(rows.map((r) => r.job_id))) this.committed.emit('job', jobId);
    });
    return this.flushing;
  }

  /** Lines after `afterSeq` (0: from the start), oldest first. */
  async lines(jobId: string, afterSeq: number, limit: number): Promise<LogLine[]> {
    const rows = await selectJobLogs(this.ledger.db, jobId, afterSeq, limit);
    return rows.map((r) => ({ seq: Number(r.id), at: r.at, stream: r.stream as LogStream, text: r.text }));
  }

  async count(jobId: string): Promise<number> {
    return Number((await countJobLogs(this.ledger.db, jobId)).count);
  }

  /**
   * Resolves when lines for `jobId` are committed, or after `timeoutMs`, or
   * when `signal` aborts: readers poll the ledger on each wake, so lines
   * written by another replica are seen too.
   */
  waitForLines(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.committed.off('job', onJob);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const onJob = (id: string): void => {
        if (id === jobId) done();
      };
      const timer = setTimeout(done, timeoutMs);
      this.committed.on('job', onJob);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Deletes lines older than the retention period; returns how many. */
  async prune(): Promise<number> {
    await this.flush();
    return deleteJobLogsBefore(this.ledger.db, new Date(this.clock().getTime() - this.options.retentionDays * 86_400_000).toISOString());
  }
}
