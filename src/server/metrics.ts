import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ControllerObserver } from '../controller/controller.ts';
import type { PoolObserver, PoolStatus } from '../pool/pool.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { JOB_STATES } from '../ledger/states.ts';

/** Every metric Hearth exports, in one registry per server (tests run several). */
export class HearthMetrics {
  readonly registry = new Registry();
  readonly webhooks = new Counter({ name: 'hearth_webhooks_total', help: 'Webhook deliveries by forge and outcome (enqueued, duplicate, rejected_signature, ...)', labelNames: ['forge', 'outcome'], registers: [this.registry] });
  readonly ingestSeconds = new Histogram({ name: 'hearth_webhook_ingest_seconds', help: 'Time from a webhook request to its durable record and answer', labelNames: ['forge'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5], registers: [this.registry] });
  readonly transitions = new Counter({ name: 'hearth_job_transitions_total', help: 'Job state changes by target state', labelNames: ['to', 'forge'], registers: [this.registry] });
  readonly stageSeconds = new Histogram({ name: 'hearth_job_stage_seconds', help: 'Seconds from claiming a job to each provisioning stage', labelNames: ['stage'], buckets: [0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120], registers: [this.registry] });
  readonly provisionFailures = new Counter({ name: 'hearth_provision_failures_total', help: 'Failed provisioning attempts; final="true" when the job was failed for good', labelNames: ['forge', 'final'], registers: [this.registry] });
  readonly forgeResponses = new Counter({ name: 'hearth_forge_api_responses_total', help: 'Forge API responses by status (0: no response)', labelNames: ['forge', 'status'], registers: [this.registry] });
  readonly reconcileSteps = new Counter({ name: 'hearth_reconcile_steps_total', help: 'Reconcile steps run, by step and result', labelNames: ['step', 'result'], registers: [this.registry] });
  readonly orphans = new Counter({ name: 'hearth_orphans_removed_total', help: 'VMs and registrations removed because no job held them', labelNames: ['kind'], registers: [this.registry] });

  readonly poolAssignments = new Counter({ name: 'hearth_pool_assignments_total', help: 'Jobs routed to a pool: result="hit" took an idle VM at once, "miss" started its own', labelNames: ['pool', 'result'], registers: [this.registry] });
  readonly poolStarts = new Histogram({ name: 'hearth_pool_vm_start_seconds', help: 'Seconds to make a pool VM ready, by how (boot or restore from the template)', labelNames: ['pool', 'how'], buckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21], registers: [this.registry] });
  readonly poolFailures = new Counter({ name: 'hearth_pool_vm_failures_total', help: 'Pool VMs that failed to start (never handed out)', labelNames: ['pool'], registers: [this.registry] });

  constructor(ledger: Ledger, activeJobs: () => number, pools: () => readonly PoolStatus[] = () => []) {
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
      name: 'hearth_pool_vms',
      help: 'Pool VMs by state: idle (ready to hand out), starting (refilling), busy (handed to a job)',
      labelNames: ['pool', 'state'],
      registers: [this.registry],
      collect() {
        for (const pool of pools()) {
          this.set({ pool: pool.name, state: 'idle' }, pool.idle);
          this.set({ pool: pool.name, state: 'starting' }, pool.starting);
          this.set({ pool: pool.name, state: 'busy' }, pool.busy);
        }
      },
    });
    new Gauge({
      name: 'hearth_active_runners',
      help: 'Jobs this process is provisioning or running a VM for',
      registers: [this.registry],
      collect() {
        this.set(activeJobs());
      },
    });
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
      stage: (stage, seconds) => this.stageSeconds.observe({ stage }, seconds),
      provisionFailed: (forge, final) => this.provisionFailures.inc({ forge, final: String(final) }),
      reconciled: (step, ok) => this.reconcileSteps.inc({ step, result: ok ? 'ok' : 'error' }),
      orphanRemoved: (kind) => this.orphans.inc({ kind }),
    };
  }
}
