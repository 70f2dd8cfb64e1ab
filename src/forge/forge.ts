/**
 * The seam between Hearth and a forge (GitHub, GitLab). The controller speaks
 * only this; each forge module turns it into its own REST calls.
 */
export type ForgeKind = 'github' | 'gitlab';

/** A job as the forge reports it: enough to decide ownership and to enqueue it. */
export interface ForgeJob {
  readonly forge: ForgeKind;
  readonly forgeJobId: string;
  /** GitHub `owner/name`; GitLab the numeric project id. */
  readonly repository: string;
  readonly labels: readonly string[];
  /** The job's name as the forge shows it (GitHub's workflow_job.name, GitLab's build_name). */
  readonly name?: string | undefined;
}

/** What the forge says about a job now, normalised. */
export type ForgeJobStatus =
  | { readonly status: 'queued' }
  | { readonly status: 'running'; readonly runnerName: string | null }
  | { readonly status: 'finished'; readonly conclusion: string }
  | { readonly status: 'cancelled' }
  | { readonly status: 'unknown' };

/** A one-job runner registered at the forge, and the command that runs it in the guest. */
export interface RunnerRegistration {
  readonly runnerId: string;
  readonly runnerName: string;
  /** argv for the guest agent. It holds the credential: never log it. */
  readonly argv: readonly string[];
}

export interface ForgeRunner {
  readonly runnerId: string;
  readonly runnerName: string;
  /** Where it is registered, as `removeRunner` needs it (a repository or project id). */
  readonly repository: string;
  readonly busy: boolean;
}

export interface Forge {
  readonly kind: ForgeKind;
  /** Jobs waiting for a runner in every configured repository, org or project. */
  listQueuedJobs(): Promise<ForgeJob[]>;
  jobStatus(job: { repository: string; forgeJobId: string }): Promise<ForgeJobStatus>;
  registerRunner(job: { id: string; repository: string; forgeJobId: string; labels: readonly string[] }): Promise<RunnerRegistration>;
  /** Idempotent: a registration that is already gone counts as removed. */
  removeRunner(runner: { repository: string; runnerId: string }): Promise<'removed' | 'gone' | 'busy'>;
  /** Registrations Hearth made (named `hearth-…`) in every configured scope. */
  listRunners(): Promise<ForgeRunner[]>;
}

/** Every runner Hearth registers is named this way, so orphans can be found by name. */
export const RUNNER_NAME_PREFIX = 'hearth-';

export function runnerName(jobId: string, random: string): string {
  // Runner names allow letters, digits, '-', '_' and '.'; the ledger id has a ':'.
  return `${RUNNER_NAME_PREFIX}${jobId.replace(/[^A-Za-z0-9._-]/g, '-')}-${random}`;
}
