import { pino, type Logger } from 'pino';

/**
 * The one logger. Structured JSON on stderr; every component takes a child
 * with its identifiers (vmId, jobId, deliveryId) bound, so each line carries them.
 * Values that may hold secrets are censored by path: command environments,
 * tokens and credentials never reach a log line.
 */
export const REDACT_PATHS = ['env', '*.env', 'secret', '*.secret', 'token', '*.token', 'password', '*.password', 'authorization', '*.authorization', 'jitConfig', '*.jitConfig'];

export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.HEARTH_LOG_LEVEL ?? 'warn',
      base: { app: 'hearth' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    (options.destination ?? process.stderr) as pino.DestinationStream,
  );
}

export type { Logger };
