import type { FastifyReply, FastifyRequest } from 'fastify';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Ledger } from '../ledger/ledger.ts';
import type { JobLogs, LogLine } from '../ledger/logs.ts';

const PAGE = 500;
const KEEPALIVE_MS = 15_000;
/** After the job is torn down, lines still in another writer's batch get this long to land. */
const SETTLE_MS = 300;

function event(line: LogLine): string {
  // JSON keeps the text on one `data:` line whatever it holds.
  return `id: ${line.seq}\nevent: log\ndata: ${JSON.stringify(line)}\n\n`;
}

/**
 * A job's log as Server-Sent Events: every line after `after` (the client's
 * Last-Event-ID), then new lines as they are committed, then an `end` event
 * once the job is torn down. Level-triggered: each wake reads the ledger, so a
 * reconnecting client loses nothing and lines from other replicas arrive too.
 */
export async function streamJobLog(
  request: FastifyRequest,
  reply: FastifyReply,
  options: { ledger: Ledger; logs: JobLogs; jobId: string; after: number },
): Promise<void> {
  const { ledger, logs, jobId } = options;
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  raw.write('retry: 2000\n\n');
  const closed = new AbortController();
  request.raw.on('close', () => closed.abort());
  let last = options.after;
  let quietSince = Date.now();
  let settled = false;
  try {
    while (!closed.signal.aborted) {
      await logs.flush();
      const lines = await logs.lines(jobId, last, PAGE);
      for (const line of lines) {
        raw.write(event(line));
        last = line.seq;
      }
      if (lines.length > 0) {
        quietSince = Date.now();
        if (lines.length === PAGE) continue;
      }
      const job = await ledger.job(jobId);
      if (!job || job.released_at !== null) {
        if (settled && lines.length === 0) {
          raw.write('event: end\ndata: {}\n\n');
          break;
        }
        settled = true;
        await sleep(SETTLE_MS);
        continue;
      }
      if (Date.now() - quietSince > KEEPALIVE_MS) {
        raw.write(': keep-alive\n\n');
        quietSince = Date.now();
      }
      await logs.waitForLines(jobId, 1000, closed.signal);
    }
  } catch (error) {
    request.log.warn({ jobId, err: error }, 'job log stream failed');
  } finally {
    raw.end();
  }
}
