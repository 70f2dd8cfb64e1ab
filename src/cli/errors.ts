import { isHearthError } from '../errors.ts';

/** Exit status for Hearth's own failures, as docker uses 125: apart from any command's status. */
export const EXIT_HEARTH_ERROR = 125;
export const EXIT_TIMEOUT = 124;

/** Prints an error the way every command does: what happened, then what to do. */
export function reportError(error: unknown): number {
  if (isHearthError(error)) {
    process.stderr.write(`hearth: error ${error.code}: ${error.message}\n  fix: ${error.fix}\n`);
    return error.code === 'HEARTH_ERR_EXEC_TIMEOUT' ? EXIT_TIMEOUT : EXIT_HEARTH_ERROR;
  }
  process.stderr.write(`hearth: unexpected error: ${(error as Error)?.stack ?? String(error)}\n`);
  return EXIT_HEARTH_ERROR;
}
