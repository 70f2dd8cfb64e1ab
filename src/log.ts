import { pino, type Logger } from 'pino';
import { LOG_REDACT_PATHS, REDACTED } from './redact.ts';

/**
 * The one logger. Structured JSON on stderr; every component takes a child
 * with its identifiers (vmId, jobId, deliveryId) bound, so each line carries them.
 * Values that may hold secrets are censored by path: command environments,
 * tokens and credentials never reach a log line (src/redact.ts says which).
 */
export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.HEARTH_LOG_LEVEL ?? 'warn',
      base: { app: 'hearth' },
      redact: { paths: [...LOG_REDACT_PATHS], censor: REDACTED },
    },
    (options.destination ?? process.stderr) as pino.DestinationStream,
  );
}

export type { Logger };
