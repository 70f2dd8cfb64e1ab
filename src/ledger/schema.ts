import type { Generated } from 'kysely';
import type { JobState } from './states.ts';

/** Tables as kysely sees them. Timestamps are ISO-8601 strings (sortable, portable to Postgres). */
export interface LedgerSchema {
  deliveries: {
    /** `${forge}:${delivery id}`: X-GitHub-Delivery or GitLab's Idempotency-Key. */
    id: string;
    forge: string;
    event: string;
    received_at: string;
  };
  jobs: {
    /** `${forge}:${forge job id}` */
    id: string;
    forge: string;
    forge_job_id: string;
    repository: string;
    labels: string;
    state: JobState;
    attempts: number;
    vm_id: string | null;
    runner_name: string | null;
    runner_id: string | null;
    released_at: string | null;
    ran_on: string | null;
    last_error: string | null;
    created_at: string;
    updated_at: string;
  };
  job_events: {
    id: Generated<number>;
    job_id: string;
    from_state: JobState | null;
    to_state: JobState;
    reason: string;
    at: string;
  };
}
