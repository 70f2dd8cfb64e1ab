import { HearthError } from '../errors.ts';
import { formatLocation, type SourceLocation } from './model.ts';

/** A workflow file problem at a place: the message starts with file:line:column. */
export function workflowError(location: SourceLocation, reason: string, hint: string): HearthError {
  return new HearthError('HEARTH_ERR_WORKFLOW', {
    location: formatLocation(location),
    reason,
    hint,
    file: location.file,
    line: location.line,
    column: location.column,
  });
}
