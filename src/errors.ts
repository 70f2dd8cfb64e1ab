/**
 * Every error Hearth reports on purpose is declared here once: a code, a message
 * template and the fix to print. docs/errors.md lists the same codes; a test keeps
 * the two in step.
 */
export interface ErrorSpec {
  readonly message: string;
  readonly fix: string;
}

export const ERRORS = {
  HEARTH_ERR_TOOL_MISSING: {
    message: '{tool} is not installed',
    fix: 'install it: apt-get install -y --no-install-recommends {package}',
  },
  HEARTH_ERR_KERNEL_FETCH: {
    message: 'could not fetch the guest kernel package {package}: {reason}',
    fix: 'run `apt-get update` as root so apt knows {package}, or set HEARTH_KERNEL_DEB to a downloaded linux-image-*-cloud-amd64 .deb',
  },
  HEARTH_ERR_NEEDS_ROOT: {
    message: '{what} needs root',
    fix: 'run it as root: {command}',
  },
  HEARTH_ERR_BUSYBOX_NOT_STATIC: {
    message: '{path} is not a statically linked busybox',
    fix: 'install busybox-static: apt-get install -y busybox-static',
  },
  HEARTH_ERR_AGENT_COMPILE: {
    message: 'compiling the guest agent failed: {reason}',
    fix: 'install a C compiler with static glibc: apt-get install -y gcc libc6-dev',
  },
  HEARTH_ERR_IMAGE_UNKNOWN: {
    message: 'unknown image "{image}"',
    fix: 'use one of: {known}',
  },
  HEARTH_ERR_IMAGE_NOT_BUILT: {
    message: 'image "{image}" is not built',
    fix: 'build it: {command}',
  },
  HEARTH_ERR_BAD_OPTION: {
    message: '{option}: {reason}',
    fix: '{hint}',
  },
  HEARTH_ERR_VM_BOOT: {
    message: 'VM {vmId} did not start: {reason}',
    fix: 'check `hearth doctor`; the guest console is in the last lines above ({consoleLog})',
  },
  HEARTH_ERR_VM_GONE: {
    message: 'VM {vmId} is gone: {reason}',
    fix: 'it was destroyed or its QEMU process exited; start a new VM',
  },
  HEARTH_ERR_VM_STATE: {
    message: 'VM {vmId} cannot {action} while {state}',
    fix: '{hint}',
  },
  HEARTH_ERR_EXEC_TIMEOUT: {
    message: 'command in VM {vmId} ran past its {timeoutSeconds}s timeout; the VM was destroyed',
    fix: 'raise --timeout, or make the command finish sooner',
  },
  HEARTH_ERR_AGENT_PROTOCOL: {
    message: 'guest agent of VM {vmId} broke the protocol: {reason}',
    fix: 'rebuild the image so host and agent match: hearth image build minimal',
  },
  HEARTH_ERR_SNAPSHOT_NOT_FOUND: {
    message: 'snapshot "{name}" does not exist',
    fix: 'create it: hearth vm snapshot create {name}, or list them: hearth vm snapshot ls',
  },
  HEARTH_ERR_SNAPSHOT_EXISTS: {
    message: 'snapshot "{name}" already exists',
    fix: 'remove it first: hearth vm snapshot rm {name}',
  },
  HEARTH_ERR_SNAPSHOT_STALE: {
    message: 'snapshot "{name}" no longer matches this host: {reason}',
    fix: 'recreate it: hearth vm snapshot rm {name} && hearth vm snapshot create {name}',
  },
  HEARTH_ERR_SNAPSHOT_FAILED: {
    message: 'snapshot of VM {vmId} failed: {reason}',
    fix: 'check free disk space in {dir} and `hearth doctor`',
  },
  HEARTH_ERR_WORKFLOW: {
    message: '{location}: {reason}',
    fix: '{hint}',
  },
  HEARTH_ERR_CONFIG: {
    message: 'config {source}: {key} {reason}',
    fix: '{hint}',
  },
  HEARTH_ERR_FORGE_API: {
    message: '{forge} API {method} {path} failed with {status}: {reason}',
    fix: '{hint}',
  },
  HEARTH_ERR_PROVISION: {
    message: 'job {jobId}: provisioning failed after {attempts} attempt(s): {reason}',
    fix: 'read the job timeline (GET /api/v1/jobs/{jobId}) and the log lines with its jobId; fix the cause named there, then re-run the job at the forge',
  },
  HEARTH_ERR_VMM_MISSING: {
    message: '{tool} is not installed or not executable ({path})',
    fix: '{hint}',
  },
  HEARTH_ERR_AGENT_NO_CONNECT: {
    message: 'the agent of VM {vmId} did not connect back to {url} within {seconds}s',
    fix: 'check that the guest can reach {url} (the advertised URL must be an address of this host on the VM network, and a firewall must let it in to {listen}) and that the image runs cloud-init, which starts the agent from user-data; the VM console on the flintlockd host shows both',
  },
  HEARTH_ERR_DRIVER_UNSUPPORTED: {
    message: 'the {driver} driver cannot {action}: {reason}',
    fix: '{hint}',
  },
  HEARTH_ERR_FLINTLOCK: {
    message: 'flintlockd at {endpoint}: {operation} for VM {vmId} failed: {reason}',
    fix: '{hint}',
  },
  HEARTH_ERR_MMDS_SECRET: {
    message: 'job metadata "{name}" looks like a secret ({why}); MMDS would serve it to every process in the guest',
    fix: 'pass only non-secret facts as metadata; deliver credentials to the job through the agent channel, which the driver never writes to disk or MMDS',
  },
  HEARTH_ERR_SERVER_API: {
    message: 'hearth serve at {url}: {reason}',
    fix: '{hint}',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

function fill(template: string, context: Record<string, unknown>): string {
  return template.replace(/\{(\w+)\}/g, (whole, key: string) => (key in context ? String(context[key]) : whole));
}

/** An error a person can act on: what happened (message), with what (context), and what to do (fix). */
export class HearthError extends Error {
  readonly code: ErrorCode;
  readonly fix: string;
  readonly context: Record<string, unknown>;

  constructor(code: ErrorCode, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(fill(ERRORS[code].message, context), options);
    this.name = 'HearthError';
    this.code = code;
    this.fix = fill(ERRORS[code].fix, context);
    this.context = context;
  }
}

export function isHearthError(error: unknown, code?: ErrorCode): error is HearthError {
  return error instanceof HearthError && (code === undefined || error.code === code);
}
