import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';

/**
 * Why a Flintlock operation failed, in Hearth's terms. flintlockd reports
 * most failures as gRPC UNKNOWN with a wrapped Go error (see
 * infrastructure/grpc/server.go upstream), so the reason is read from the
 * message as well as the code:
 * - not-found: no microVM has that uid (e.g. it was deleted already)
 * - invalid-spec: flintlockd rejected the request; `details` names the field
 * - unreachable: no flintlockd answered at the endpoint
 * - timeout: a call or a wait ran out of time
 * - failed: flintlockd gave up reconciling the microVM (state FAILED)
 * - other: anything else; `details` has flintlockd's text
 */
export type FlintlockFailure = 'not-found' | 'invalid-spec' | 'unreachable' | 'timeout' | 'failed' | 'other';

export interface FlintlockErrorContext {
  /** The RPC (CreateMicroVM, ...) or client step (waitForState) that failed. */
  readonly operation: string;
  readonly endpoint: string;
  readonly uid?: string;
  /** gRPC status name (UNAVAILABLE, ...); absent for failures seen without an RPC error. */
  readonly grpcCode?: string;
  readonly details: string;
}

/**
 * Any Flintlock failure, with the context to act on it as fields and the fix
 * both as `fix` and at the end of the message, so a log line alone is enough.
 * (src/errors.ts has no Flintlock code yet; this mirrors HearthError's shape.)
 */
export class FlintlockError extends Error implements FlintlockErrorContext {
  readonly reason: FlintlockFailure;
  readonly operation: string;
  readonly endpoint: string;
  readonly uid?: string;
  readonly grpcCode?: string;
  readonly details: string;
  readonly fix: string;

  constructor(reason: FlintlockFailure, context: FlintlockErrorContext, options?: { cause?: unknown }) {
    const fix = fixFor(reason, context);
    const what = `flintlock ${context.operation}${context.uid ? ` of microVM ${context.uid}` : ''}`;
    const code = context.grpcCode ? ` with ${context.grpcCode}` : '';
    super(`${what} failed${code}: ${context.details}; fix: ${fix}`, options);
    this.name = 'FlintlockError';
    this.reason = reason;
    this.operation = context.operation;
    this.endpoint = context.endpoint;
    if (context.uid !== undefined) this.uid = context.uid;
    if (context.grpcCode !== undefined) this.grpcCode = context.grpcCode;
    this.details = context.details;
    this.fix = fix;
  }
}

export function isFlintlockError(error: unknown, reason?: FlintlockFailure): error is FlintlockError {
  return error instanceof FlintlockError && (reason === undefined || error.reason === reason);
}

// flintlockd's own texts for the two failures it does not give a proper code:
// specNotFoundError and the validator's wrapper in core/application.
const NOT_FOUND_TEXT = /microvm spec \S+ not found/i;
const INVALID_SPEC_TEXT = /validate microvm spec|invalid create microvm request|uid is required|invalid request/i;

/** Wraps a gRPC failure of one call, classifying it by code and, for UNKNOWN, by flintlockd's text. */
export function fromGrpcError(error: ServiceError, context: Omit<FlintlockErrorContext, 'grpcCode' | 'details'>): FlintlockError {
  const grpcCode = GrpcStatus[error.code] ?? String(error.code);
  const details = error.details || error.message;
  return new FlintlockError(classify(error.code, details), { ...context, grpcCode, details }, { cause: error });
}

function classify(code: GrpcStatus, details: string): FlintlockFailure {
  switch (code) {
    case GrpcStatus.NOT_FOUND:
      return 'not-found';
    case GrpcStatus.INVALID_ARGUMENT:
      return 'invalid-spec';
    case GrpcStatus.UNAVAILABLE:
      return 'unreachable';
    case GrpcStatus.DEADLINE_EXCEEDED:
      return 'timeout';
    case GrpcStatus.UNKNOWN:
      if (NOT_FOUND_TEXT.test(details)) return 'not-found';
      if (INVALID_SPEC_TEXT.test(details)) return 'invalid-spec';
      return 'other';
    default:
      return 'other';
  }
}

function fixFor(reason: FlintlockFailure, context: FlintlockErrorContext): string {
  switch (reason) {
    case 'unreachable':
      return `is flintlockd running at ${context.endpoint}? start it (systemctl start flintlockd), or point Hearth at its --grpc-endpoint; check TLS matches on both sides`;
    case 'timeout':
      return `flintlockd at ${context.endpoint} did not answer in time; check its log and the host's load, then retry`;
    case 'not-found':
      return 'the microVM does not exist on this flintlockd (deleted already?); list them with listMicroVms(namespace)';
    case 'invalid-spec':
      return 'fix the field named in the details and create the microVM again';
    case 'failed':
      return `flintlockd gave up on the microVM; read flintlockd's log at ${context.endpoint} for the cause, delete it and create it again`;
    case 'other':
      if (context.grpcCode === 'UNIMPLEMENTED')
        return `flintlockd at ${context.endpoint} lacks ${context.operation}; upgrade it to a release with the v1alpha1 MicroVM API`;
      if (context.grpcCode === 'UNAUTHENTICATED' || context.grpcCode === 'PERMISSION_DENIED')
        return `flintlockd at ${context.endpoint} refused the caller; check its basic-auth and TLS settings`;
      return `read flintlockd's log at ${context.endpoint}; it has the full error`;
  }
}
