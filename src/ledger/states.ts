/**
 * The one job state machine. Every change of a job's state goes through
 * `canTransition`; the ledger applies it as a guarded update, so a late,
 * duplicate or out-of-order event (completed before in_progress) changes
 * nothing it shouldn't.
 *
 * - queued: the forge wants a runner for it; nobody is working on it
 * - claimed: one controller took it (the claim is the lock)
 * - provisioning: a VM is being booted or restored for it
 * - runner_registered: the forge knows the one-job runner; the VM is running it
 * - running: the forge reports the job in progress on our runner
 * - completed / failed / cancelled: final
 */
export const JOB_STATES = ['queued', 'claimed', 'provisioning', 'runner_registered', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const FINAL_STATES: readonly JobState[] = ['completed', 'failed', 'cancelled'];

/** Placed on a host and not ended: what such a job holds (its shape) is committed on that host. */
export const TRANSITIONAL: readonly JobState[] = ['claimed', 'provisioning', 'runner_registered', 'running'];

/** For each target state, the states it may be reached from. */
const SOURCES: Record<JobState, readonly JobState[]> = {
  queued: ['claimed', 'provisioning', 'runner_registered'], // released for a retry
  claimed: ['queued'],
  provisioning: ['claimed'],
  runner_registered: ['provisioning'],
  // The forge may report in_progress before we recorded the registration.
  running: ['provisioning', 'runner_registered'],
  completed: ['queued', 'claimed', 'provisioning', 'runner_registered', 'running'],
  failed: ['queued', 'claimed', 'provisioning', 'runner_registered', 'running'],
  cancelled: ['queued', 'claimed', 'provisioning', 'runner_registered', 'running'],
};

export function sourcesOf(target: JobState): readonly JobState[] {
  return SOURCES[target];
}

export function canTransition(from: JobState, to: JobState): boolean {
  return SOURCES[to].includes(from);
}

export function isFinal(state: JobState): boolean {
  return FINAL_STATES.includes(state);
}
