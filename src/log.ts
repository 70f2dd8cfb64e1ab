import { pino, type Logger } from 'pino';
import { LOG_REDACT_PATHS, REDACTED } from './redact.ts';

/**
 * The one logger. Structured JSON on stderr; every component takes a child
 * with its identifiers (vmId, jobId, deliveryId) bound, so each line carries them.
 * Values that may hold secrets are censored by path: command environments,
 * tokens and credentials never reach a log line (src/redact.ts says which).
 */
/** The level when nothing chooses one, as the README documents for HEARTH_LOG_LEVEL. */
export const DEFAULT_LOG_LEVEL = 'warn';

/**
 * The level log lines are written at: the configured one (serve's log.level, which HEARTH_LOG_LEVEL
 * overrides and which is `info` unless the file says otherwise), else HEARTH_LOG_LEVEL, else the
 * default. Where the lines go to a log (the journal, a file, a pipe) that level applies as it is. On an
 * interactive terminal, unless HEARTH_LOG_LEVEL asks for more, lines below the default are not
 * written: there they would mix JSON into the human lines `hearth` prints. `reduced` says when that
 * happened, so the caller can tell the person.
 */
export function effectiveLogLevel(options: { configured?: string | undefined; env?: NodeJS.ProcessEnv; interactive: boolean }): {
  level: string;
  reduced: boolean;
} {
  const fromEnv = (options.env ?? process.env).HEARTH_LOG_LEVEL || undefined;
  const level = options.configured ?? fromEnv ?? DEFAULT_LOG_LEVEL;
  const values: Record<string, number> = pino.levels.values;
  const belowDefault = level in values && values[level]! < values[DEFAULT_LOG_LEVEL]!;
  if (options.interactive && fromEnv === undefined && belowDefault) return { level: DEFAULT_LOG_LEVEL, reduced: true };
  return { level, reduced: false };
}

/** `level` is the configured level; on stderr the terminal rule of effectiveLogLevel applies (a given destination takes it as is). */
export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const interactive = options.destination === undefined && process.stderr.isTTY === true;
  return pino(
    {
      level: effectiveLogLevel({ configured: options.level, interactive }).level,
      base: { app: 'hearth' },
      redact: { paths: [...LOG_REDACT_PATHS], censor: REDACTED },
    },
    (options.destination ?? process.stderr) as pino.DestinationStream,
  );
}

export type { Logger };
