import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ControllerObserver } from '../controller/controller.ts';
import type { IngestOutcome } from '../controller/ingest.ts';
import type { ForgeKind } from '../forge/forge.ts';
import type { PoolObserver, PoolStatus } from '../pool/pool.ts';
import type { JobRow, Ledger } from '../ledger/ledger.ts';
import { stageDurations, stageTimes } from '../ledger/stages.ts';
import { JOB_STATES } from '../ledger/states.ts';
import type { Capacity } from '../scheduler/capacity.ts';

/** What the host runs now, as the metrics read it on each scrape. */
export interface HostView {
  readonly capacity: Capacity;
  readonly used: () => Capacity;
  /** VMs by state (starting, idle, busy) and pool ('' for VMs started for one job). */
  readonly vms: () => readonly { readonly state: string; readonly pool: string; readonly count: number }[];
  readonly pools: () => readonly PoolStatus[];
  readonly activeJobs: () => number;
}

/** A host running nothing: for servers that only take webhooks (benchmarks, webhook tests). */
export function idleHost(capacity: Capacity = { cpus: 0, memoryMib: 0 }): HostView {
  return { capacity, used: () => ({ cpus: 0, memoryMib: 0 }), vms: () => [], pools: () => [], activeJobs: () => 0 };
}

/** The result label of hearth_jobs_total: the forge's verdict in one vocabulary for both forges. */
export function jobResult(job: Pick<JobRow, 'state' | 'conclusion'>): string {
  const conclusion = job.conclusion;
  if (conclusion === 'success') return 'success';
  if (conclusion === 'failure' || conclusion === 'failed' || conclusion === 'timed_out') return 'failure';
  if (conclusion === 'cancelled' || conclusion === 'canceled' || job.state === 'cancelled') return 'cancelled';
  // Failed with no verdict from the forge: Hearth could not give it a runner, or lost it.
  if (job.state === 'failed') return 'error';
  return conclusion ? 'other' : 'unknown';
}

/** hearth_webhooks_total's result: what became of a delivery, coarse enough to alert on. */
export function webhookResult(outcome: IngestOutcome['outcome'] | 'bad_signature' | 'malformed'): string {
  if (outcome === 'duplicate' || outcome === 'bad_signature' || outcome === 'malformed') return outcome;
  if (outcome === 'not_ours' || outcome === 'ignored' || outcome === 'refused') return 'ignored';
  return 'accepted';
}

/** Every metric Hearth exports, in one registry per server (tests run several). */
export class HearthMetrics {
  readonly registry = new Registry();
  readonly webhooks = new Counter({
    name: 'hearth_webhooks_total',
    help: 'Webhook deliveries by forge and result: accepted, duplicate, bad_signature, malformed, ignored (not ours or not a job event)',
    labelNames: ['forge', 'result'],
    registers: [this.registry],
  });
  readonly ingestSeconds = new Histogram({
    name: 'hearth_webhook_ingest_seconds',
    help: 'Time from a webhook request to its durable record and answer',
    labelNames: ['forge'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });
  readonly jobs = new Counter({
    name: 'hearth_jobs_total',
    help: 'Jobs ended and torn down, by forge and result (success, failure, cancelled, error: Hearth gave it no runner or lost it)',
    labelNames: ['forge', 'result'],
    registers: [this.registry],
  });
  readonly transitions = new Counter({
    name: 'hearth_job_transitions_total',
    help: 'Job state changes made by this controller, by target state',
    labelNames: ['to', 'forge'],
    registers: [this.registry],
  });
  readonly stageSeconds = new Histogram({
    name: 'hearth_job_stage_seconds',
    help: 'Seconds each job spent in each stage: webhook_to_placed, placed_to_vm_ready, vm_ready_to_runner_registered, registered_to_started, started_to_finished, teardown',
    labelNames: ['stage'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300, 900, 3600],
    registers: [this.registry],
  });
  readonly provisionFailures = new Counter({
    name: 'hearth_provision_failures_total',
    help: 'Failed provisioning attempts; final="true" when the job was failed for good',
    labelNames: ['forge', 'final'],
    registers: [this.registry],
  });
  readonly forgeRequests = new Counter({
    name: 'hearth_forge_api_requests_total',
    help: 'Forge API requests by answer status (0: no answer)',
    labelNames: ['forge', 'status'],
    registers: [this.registry],
  });
  readonly forgeRateLimit = new Gauge({
    name: 'hearth_forge_rate_limit_remaining',
    help: 'Requests left in the forge API rate-limit window, from its last answer',
    labelNames: ['forge'],
    registers: [this.registry],
  });
  readonly reconcileSteps = new Counter({
    name: 'hearth_reconcile_steps_total',
    help: 'Reconcile steps run, by step and result',
    labelNames: ['step', 'result'],
    registers: [this.registry],
  });
  readonly reconcileActions = new Counter({
    name: 'hearth_reconcile_actions_total',
    help: 'What reconcile did to close a gap: claimed, released, retried, failed, recovered, enqueued_missed, unstuck, orphan_vm, orphan_runner, logs_pruned',
    labelNames: ['kind'],
    registers: [this.registry],
  });

  readonly poolAssignments = new Counter({
    name: 'hearth_pool_assignments_total',
    help: 'Jobs routed to a pool: result="hit" took an idle VM at once, "miss" started its own',
    labelNames: ['pool', 'result'],
    registers: [this.registry],
  });
  readonly poolStarts = new Histogram({
    name: 'hearth_pool_vm_start_seconds',
    help: 'Seconds to make a pool VM ready, by how (boot or restore from the template)',
    labelNames: ['pool', 'how'],
    buckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21],
    registers: [this.registry],
  });
  readonly poolFailures = new Counter({
    name: 'hearth_pool_vm_failures_total',
    help: 'Pool VMs that failed to start (never handed out)',
    labelNames: ['pool'],
    registers: [this.registry],
  });

  constructor(ledger: Ledger, host: HostView) {
    collectDefaultMetrics({ register: this.registry, prefix: 'hearth_process_' });
    new Gauge({
      name: 'hearth_jobs',
      help: 'Jobs in the ledger by state',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        const counts = await ledger.countByState();
        for (const state of JOB_STATES) this.set({ state }, counts[state] ?? 0);
      },
    });
    new Gauge({
      name: 'hearth_queue_depth',
      help: 'Jobs waiting for a runner (queued in the ledger)',
      registers: [this.registry],
      async collect() {
        this.set((await ledger.countByState()).queued ?? 0);
      },
    });
    new Gauge({
      name: 'hearth_vms',
      help: 'VMs on this host by state (starting, idle, busy) and pool (empty: started for one job)',
      labelNames: ['state', 'pool'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const { state, pool, count } of host.vms()) this.set({ state, pool }, count);
      },
    });
    new Gauge({
      name: 'hearth_host_cpus',
      help: 'vCPUs of this host given to VMs (used) and available to them (total)',
      labelNames: ['kind'],
      registers: [this.registry],
      collect() {
        this.set({ kind: 'used' }, host.used().cpus);
        this.set({ kind: 'total' }, host.capacity.cpus);
      },
    });
    new Gauge({
      name: 'hearth_host_memory_bytes',
      help: 'Memory of this host given to VMs (used) and available to them (total)',
      labelNames: ['kind'],
      registers: [this.registry],
      collect() {
        this.set({ kind: 'used' }, host.used().memoryMib * 1024 * 1024);
        this.set({ kind: 'total' }, host.capacity.memoryMib * 1024 * 1024);
      },
    });
    new Gauge({
      name: 'hearth_pool_target',
      help: 'Idle VMs each pool aims to keep ready',
      labelNames: ['pool'],
      registers: [this.registry],
      collect() {
        for (const pool of host.pools()) this.set({ pool: pool.name }, pool.targetIdle);
      },
    });
    new Gauge({
      name: 'hearth_active_runners',
      help: 'Jobs this process is provisioning or running a VM for',
      registers: [this.registry],
      collect() {
        this.set(host.activeJobs());
      },
    });
  }

  /** For the forge clients: counts each answer and keeps the rate limit left. */
  forgeResponse(forge: ForgeKind, status: number, headers?: Headers): void {
    this.forgeRequests.inc({ forge, status: String(status) });
    // GitHub: x-ratelimit-remaining; GitLab: RateLimit-Remaining.
    const remaining = headers?.get('x-ratelimit-remaining') ?? headers?.get('ratelimit-remaining');
    if (remaining != null && remaining !== '' && Number.isFinite(Number(remaining))) this.forgeRateLimit.set({ forge }, Number(remaining));
  }

  poolObserver(): PoolObserver {
    return {
      assigned: (pool, hit) => this.poolAssignments.inc({ pool, result: hit ? 'hit' : 'miss' }),
      started: (pool, how, seconds) => this.poolStarts.observe({ pool, how }, seconds),
      failed: (pool) => this.poolFailures.inc({ pool }),
    };
  }

  observer(): ControllerObserver {
    return {
      transition: (to, forge) => this.transitions.inc({ to, forge }),
      released: (job, timeline) => {
        this.jobs.inc({ forge: job.forge, result: jobResult(job) });
        for (const { name, seconds } of stageDurations(stageTimes(timeline))) this.stageSeconds.observe({ stage: name }, seconds);
      },
      provisionFailed: (forge, final) => this.provisionFailures.inc({ forge, final: String(final) }),
      reconciled: (step, ok) => this.reconcileSteps.inc({ step, result: ok ? 'ok' : 'error' }),
      action: (kind) => this.reconcileActions.inc({ kind }),
    };
  }
}
