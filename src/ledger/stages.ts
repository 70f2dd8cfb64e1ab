import { isFinal, type JobState } from './states.ts';

/**
 * The stages of a job's life as operators ask about them ("where is my job
 * stuck?"). Each is marked by one event on the job's timeline: state changes
 * mark most of them, notes mark the VM being ready and the teardown.
 */
export const STAGES = ['received', 'placed', 'vm_ready', 'registered', 'started', 'finished', 'released'] as const;
export type Stage = (typeof STAGES)[number];

/** The stage a state change marks, if any. */
export function stageOfTransition(from: JobState | null, to: JobState): Stage | null {
  if (from === null) return isFinal(to) ? 'finished' : 'received';
  if (to === 'provisioning') return 'placed';
  if (to === 'runner_registered') return 'registered';
  if (to === 'running') return 'started';
  if (isFinal(to)) return 'finished';
  return null;
}

export type StageTimes = Record<Stage, string | null>;

/**
 * When each stage was reached, from a timeline in order. A retry repeats
 * placement, so the last mark of a stage counts; `received` keeps the first.
 */
export function stageTimes(events: readonly { readonly stage: string | null; readonly at: string }[]): StageTimes {
  const times: StageTimes = { received: null, placed: null, vm_ready: null, registered: null, started: null, finished: null, released: null };
  for (const event of events) {
    const stage = event.stage as Stage | null;
    if (stage === null || !(stage in times)) continue;
    if (stage === 'received' && times.received !== null) continue;
    times[stage] = event.at;
  }
  return times;
}

/** The intervals `hearth_job_stage_seconds` reports, each between two stages. */
export const STAGE_INTERVALS: readonly { readonly name: string; readonly from: Stage; readonly to: Stage }[] = [
  { name: 'webhook_to_placed', from: 'received', to: 'placed' },
  { name: 'placed_to_vm_ready', from: 'placed', to: 'vm_ready' },
  { name: 'vm_ready_to_runner_registered', from: 'vm_ready', to: 'registered' },
  { name: 'registered_to_started', from: 'registered', to: 'started' },
  { name: 'started_to_finished', from: 'started', to: 'finished' },
  { name: 'teardown', from: 'finished', to: 'released' },
];

/** Seconds spent in each interval the job went through (both ends known, in order). */
export function stageDurations(times: StageTimes): { name: string; seconds: number }[] {
  const out: { name: string; seconds: number }[] = [];
  for (const interval of STAGE_INTERVALS) {
    const from = times[interval.from];
    const to = times[interval.to];
    if (!from || !to) continue;
    const seconds = (Date.parse(to) - Date.parse(from)) / 1000;
    if (seconds >= 0) out.push({ name: interval.name, seconds });
  }
  return out;
}
