import type { Generated } from 'kysely';
import type { JobState } from './states.ts';

export type FinalizerKind = 'vm' | 'runner';

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
    job_name: string | null;
    /** The forge's verdict once the job ended (success, failure, failed, cancelled, ...). */
    conclusion: string | null;
    /** The step that failed (GitHub) or GitLab's failure reason. */
    failed_step: string | null;
    /** The pool that served the job, and whether an idle VM was ready (1) or not (0). */
    pool: string | null;
    pool_hit: number | null;
    /** The host (controller) that ran the job's VM. */
    host: string | null;
    started_at: string | null;
    finished_at: string | null;
    /** The shape the job was placed with (null until placed). */
    cpus: number | null;
    memory_mib: number | null;
    /** The job's shape as ingest computed it (JSON of `JobShape`): placement and the host read it, never the labels. */
    shape: string | null;
  };
  job_events: {
    id: Generated<number>;
    job_id: string;
    from_state: JobState | null;
    to_state: JobState;
    reason: string;
    at: string;
    /** The stage this event marks on the job's timeline (see stages.ts), if any. */
    stage: string | null;
  };
  hosts: {
    id: string;
    cpus: number;
    memory_mib: number;
    disk_gib: number;
    /** JSON string arrays. */
    drivers: string;
    images: string;
    /** key=value labels placement matches (arch=x86_64, kvm=true, ...). */
    labels: string;
    /** JSON DriverCapabilities of the host's driver (null: registered before hosts declared them). */
    capabilities: string | null;
    /** What the host's pools hold now: taken off its capacity. */
    pool_cpus: number;
    pool_memory_mib: number;
    /** up: heartbeating; lost: its heartbeat stopped; left: it stopped cleanly. */
    state: string;
    started_at: string;
    heartbeat_at: string;
  };
  /**
   * Cleanup duties (after actions-runner-controller's finalizers): one row per
   * thing a job made outside the ledger, added when it is made and deleted by
   * an idempotent step once it is gone. A job is released when it is final and
   * has none left, whichever process (or replica) carries them out.
   */
  finalizers: {
    job_id: string;
    /** vm: a VM to destroy (on `host`); runner: a forge registration to remove. */
    kind: FinalizerKind;
    /** The VM id or the forge's runner id. */
    ref: string;
    /** The host that holds the VM (vm), or null (runner: any process with the forge may remove it). */
    host: string | null;
    created_at: string;
  };
  job_logs: {
    /** Global and increasing: the SSE event id a client resumes from. */
    id: Generated<number>;
    job_id: string;
    at: string;
    /** runner: the runner's own output; hearth: what Hearth did for the job. */
    stream: string;
    text: string;
  };
}
