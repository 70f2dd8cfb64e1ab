import { performance } from 'node:perf_hooks';
import type { VmDriver } from '../../vm/driver.ts';
import { GuestSession } from './guest-session.ts';
import type { JobLog } from './job-log.ts';
import type { JobRun } from './plan-runner.ts';

export interface JobVm {
  readonly session: GuestSession;
  readonly bootMs: number;
  /** Destroys the VM; call it whatever happened to the job. */
  dispose(): Promise<void>;
}

/**
 * The fresh VM of one job: its shape from the job's labels, the project copied
 * in, destroyed when the job is aborted (fail-fast, Ctrl-C) or done, and a
 * deadline from the job's timeout after which the host kills it.
 */
export async function bootJobVm(run: JobRun, host: { driver: VmDriver; repoRoot: string; network: boolean }, log: JobLog): Promise<JobVm> {
  const started = performance.now();
  const { shape } = run;
  const vm = await host.driver.boot({ image: shape.image, cpus: shape.cpus, memoryMib: shape.memoryMib, network: host.network, source: host.repoRoot });
  const bootMs = performance.now() - started;
  log.line(`VM ${vm.id} ready in ${(bootMs / 1000).toFixed(1)} s (${shape.cpus} vCPU, ${shape.memoryMib} MiB, ${shape.image})`);
  const abort = (): void => void host.driver.destroy(vm.id);
  run.signal.addEventListener('abort', abort);
  return {
    session: new GuestSession(host.driver, vm.id, log, Date.now() + run.job.timeoutMinutes * 60_000),
    bootMs,
    async dispose() {
      run.signal.removeEventListener('abort', abort);
      await host.driver.destroy(vm.id);
    },
  };
}
