import { setTimeout as sleep } from 'node:timers/promises';
import { isHearthError } from '../errors.ts';
import { RUNNER_NAME_PREFIX, type ForgeJobStatus } from '../forge/forge.ts';
import type { Finalizer, Job } from '../ledger/ledger.ts';
import { isFinal } from '../ledger/states.ts';
import type { VmPool } from '../pool/pool.ts';
import type { VmShape } from '../scheduler/labels.ts';
import type { Vm } from '../vm/driver.ts';
import type { ControllerContext, Launch } from './context.ts';

/**
 * One job's whole life on this host: boot a VM and register the runner side by
 * side (each recorded with its cleanup duty the moment it exists), hand the
 * runner its credentials through the agent, wait for it to exit, tear
 * everything down. Failures before the runner starts are retried.
 */
export async function launchRunner(ctx: ControllerContext, job: Job, launch: Launch, pool?: VmPool): Promise<void> {
  const log = ctx.logger.child({ jobId: job.id });
  const forge = ctx.forgeOf(job);
  const shape = launch.shape;
  try {
    if (!forge) throw new Error(`no ${job.forge} forge is configured (set its token in the config)`);
    const placed = `placed: ${shape.cpus} vCPU, ${shape.memoryMib} MiB, image ${shape.image}${pool ? `, pool ${pool.config.name}` : ''}, on host ${ctx.hostId}`;
    if (!(await ctx.move(job, 'provisioning', placed))) {
      // Taken off this host (re-queued or ended) between placement and now.
      log.info('job is no longer placed here; not starting it');
      launch.disowned = true;
      return;
    }
    ctx.logs?.write(job.id, 'hearth', placed);
    const [vm, registration] = await Promise.allSettled([
      startVm(ctx, shape, pool).then(async ({ vm: booted, how, hit }) => {
        launch.vmId = booted.id;
        const ready = `VM ${booted.id} ready ${how}`;
        await ctx.ledger.hold(
          job.id,
          { kind: 'vm', ref: booted.id, host: ctx.hostId },
          ready,
          { vm_id: booted.id, ...(pool ? { pool: pool.config.name, pool_hit: hit ? 1 : 0 } : {}) },
          'vm_ready',
        );
        ctx.logs?.write(job.id, 'hearth', ready);
        if (pool) ctx.kick(); // refill behind the job, never in front of it
        return booted;
      }),
      forge.registerRunner({ id: job.id, repository: job.repository, forgeJobId: job.forge_job_id, labels: [...job.labels] }).then(async (registered) => {
        launch.registration = registered;
        // The credential rides in argv: mask it should the runner ever print it.
        ctx.logs?.addSecrets(job.id, registered.argv.slice(1));
        const done = `runner ${registered.runnerName} (id ${registered.runnerId}) registered at ${job.forge}`;
        await ctx.ledger.hold(job.id, { kind: 'runner', ref: registered.runnerId, host: null }, done, {
          runner_id: registered.runnerId,
          runner_name: registered.runnerName,
        });
        ctx.logs?.write(job.id, 'hearth', done);
        return registered;
      }),
    ]);
    if (vm.status === 'rejected') throw vm.reason;
    if (registration.status === 'rejected') throw registration.reason;
    const current = await ctx.ledger.job(job.id);
    if (!current || isFinal(current.state)) {
      log.info({ state: current?.state }, 'job ended while its runner was being prepared');
      return;
    }
    await ctx.move(job, 'runner_registered', `runner ${registration.value.runnerName} handed to VM ${vm.value.id}`, {
      vmId: vm.value.id,
      runnerName: registration.value.runnerName,
      runnerId: registration.value.runnerId,
    });
    const vmLog = log.child({ vmId: vm.value.id });
    vmLog.info({ runner: registration.value.runnerName }, 'starting the runner in the VM');
    const tail: string[] = [];
    const store = ctx.logs?.output(job.id, 'runner');
    const keep = (chunk: Buffer): void => {
      store?.(chunk);
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        tail.push(line.slice(0, 500));
        if (tail.length > 20) tail.shift();
      }
    };
    const result = await ctx.driver
      .exec(
        vm.value.id,
        { argv: registration.value.argv, env: { RUNNER_ALLOW_RUNASROOT: '1' }, cwd: '/root', timeoutSeconds: ctx.settings.jobTimeoutMinutes * 60 },
        { stdout: keep, stderr: keep },
      )
      .catch((error: unknown) => ({ exitCode: -1, signal: 0, durationMs: 0, error: error as Error }));
    const how = 'error' in result ? `stopped: ${result.error.message.split('\n')[0]}` : `exited with code ${result.exitCode}`;
    await ctx.ledger.note(job.id, `runner ${how}`);
    ctx.logs?.write(job.id, 'hearth', `runner ${how}`);
    // The tail goes through the job log's masking: the runner could print anything.
    vmLog.info({ exitCode: result.exitCode, tail: tail.slice(-5).map((line) => ctx.logs?.mask(job.id, line) ?? '[masked]') }, `runner ${how}`);
    await teardown(ctx, job.id, launch);
    const after = await ctx.ledger.job(job.id);
    if (after && !isFinal(after.state) && !launch.disowned)
      await settleFromForge(ctx, after, await forge.jobStatus({ repository: job.repository, forgeJobId: job.forge_job_id }), `the runner ${how}`);
  } catch (error) {
    const reason = isHearthError(error) ? (error.message.split('\n')[0] ?? error.code) : (error as Error).message;
    log.warn({ err: isHearthError(error) ? { code: error.code, message: reason, fix: error.fix } : error }, 'provisioning failed');
    await teardown(ctx, job.id, launch);
    if (!launch.disowned) await ctx.retryOrFail((await ctx.ledger.job(job.id)) ?? job, reason || 'unknown error');
    // A failed attempt waits a little, so a broken forge or host is not hammered; a stop ends the wait.
    await sleep(Math.min(30_000, 1000 * 2 ** job.attempts), undefined, ctx.settings.shutdown ? { signal: ctx.settings.shutdown } : {}).catch(
      (aborted: unknown) => log.debug({ reason: (aborted as Error).message }, 'back-off cut short: the service is stopping'),
    );
  } finally {
    const final = await ctx.ledger.job(job.id);
    if (final && isFinal(final.state)) await teardown(ctx, job.id, launch);
  }
}

/** The job's VM: an idle one from its pool at once, else one started for it now. */
async function startVm(ctx: ControllerContext, shape: VmShape, pool: VmPool | undefined): Promise<{ vm: Vm; how: string; hit: boolean }> {
  if (pool) {
    const idle = pool.take();
    if (idle) return { vm: idle, how: `at once from pool ${pool.config.name} (idle, ${pool.config.mode})`, hit: true };
    const vm = await pool.startForJob();
    return {
      vm,
      how: `in ${(vm.startMs / 1000).toFixed(1)} s: pool ${pool.config.name} had none idle, ${vm.origin.kind === 'snapshot' ? 'restored from its template' : 'booted'} (${vm.accel})`,
      hit: false,
    };
  }
  const vm = await ctx.driver.boot({ image: shape.image, cpus: shape.cpus, memoryMib: shape.memoryMib, network: ctx.settings.network });
  return { vm, how: `in ${(vm.startMs / 1000).toFixed(1)} s (${vm.accel})`, hit: false };
}

/** Decides a job whose runner is gone from what the forge says of it, then tears it down. */
export async function settleFromForge(ctx: ControllerContext, job: Job, status: ForgeJobStatus, lost: string): Promise<void> {
  if (status.status === 'finished')
    await ctx.move(job, 'completed', `forge reports it finished: ${status.conclusion}`, { verdict: { conclusion: status.conclusion } });
  else if (status.status === 'cancelled') await ctx.move(job, 'cancelled', 'forge reports it cancelled', { verdict: { conclusion: 'cancelled' } });
  else if (status.status === 'running' && status.runnerName && status.runnerName !== job.runner_name && status.runnerName.startsWith(RUNNER_NAME_PREFIX)) {
    // With equal labels the forge gave this job another Hearth runner; that runner's VM carries it now.
    await ctx.move(job, 'running', `forge reports it running on ${status.runnerName}`, { ranOn: status.runnerName });
  } else if (status.status === 'running') await ctx.move(job, 'failed', `${lost} while the job ran`, { error: lost });
  else await ctx.retryOrFail(job, lost);
  await teardown(ctx, job.id);
}

/**
 * Carries out a job's cleanup duties that this process can: destroy its VMs on
 * this host, remove its registrations. Each duty is deleted once done, so it
 * is idempotent and any process can finish what another started. A final job
 * with no duty left is released; one going round again has its columns cleared.
 *
 * With `launch` (this process's own handle) and the job given away, only what
 * this launch made is removed and nothing is recorded on the job's timeline.
 */
export async function teardown(ctx: ControllerContext, id: string, launch?: Launch): Promise<void> {
  const job = await ctx.ledger.job(id);
  const log = ctx.logger.child({ jobId: id });
  if (launch?.disowned) {
    const ours = (await ctx.ledger.finalizers([id])).filter((f) => (f.kind === 'vm' ? f.ref === launch.vmId : f.ref === launch.registration?.runnerId));
    // A VM booted but not yet recorded has no duty yet: destroyed all the same.
    if (launch.vmId && !ours.some((f) => f.kind === 'vm')) await ctx.destroyQuietly(launch.vmId, 'its job was given to another host', id);
    if (job) await carryOut(ctx, job, ours, 'its job was given to another host');
    delete launch.vmId;
    delete launch.registration;
    return;
  }
  if (!job) return;
  const duties = (await ctx.ledger.finalizers([id])).filter((f) => f.kind === 'runner' || f.host === ctx.hostId);
  // A VM booted but not yet recorded (the process is between boot and `hold`): destroyed all the same.
  if (launch?.vmId && !duties.some((f) => f.kind === 'vm' && f.ref === launch.vmId)) await ctx.destroyQuietly(launch.vmId, 'teardown of its job', id);
  const done = await carryOut(ctx, job, duties, isFinal(job.state) ? 'its job ended' : 'its job is retried');
  if (launch) {
    delete launch.vmId;
    delete launch.registration;
  }
  if (done.remaining > 0) return;
  const vm = done.vms[0] ?? launch?.vmId ?? job.vm_id;
  const runner = done.runners[0] ?? job.runner_id;
  if (isFinal(job.state)) {
    const how = `torn down: ${vm ? `VM ${vm} destroyed` : 'no VM'}, ${runner ? `runner ${runner} removed` : 'no registration'}`;
    if (await ctx.ledger.release(id, how)) {
      log.info({ vmId: vm ?? undefined }, 'torn down');
      ctx.observer.action?.('released');
      ctx.logs?.write(id, 'hearth', how);
      ctx.logs?.close(id);
      const released = await ctx.ledger.job(id);
      if (released) ctx.observer.released?.(released, await ctx.ledger.timeline(id));
    }
  } else if (done.vms.length > 0 || done.runners.length > 0) {
    await ctx.ledger.note(id, 'VM and registration removed before a retry', { vm_id: null, runner_id: null, runner_name: null });
  }
}

/**
 * Carries out `duties` of `job` (VMs on this host, registrations) and deletes
 * each one done. A registration the forge still calls busy stays, for a later pass.
 */
export async function carryOut(
  ctx: ControllerContext,
  job: Job,
  duties: readonly Finalizer[],
  why: string,
): Promise<{ vms: string[]; runners: string[]; remaining: number }> {
  const out = { vms: [] as string[], runners: [] as string[], remaining: 0 };
  const log = ctx.logger.child({ jobId: job.id });
  for (const duty of duties) {
    if (duty.kind === 'vm') {
      if (duty.host !== ctx.hostId || !(await ctx.destroyQuietly(duty.ref, why, job.id))) {
        out.remaining++;
        continue;
      }
      out.vms.push(duty.ref);
    } else {
      const forge = ctx.forgeOf(job);
      if (forge && (await forge.removeRunner({ repository: job.repository, runnerId: duty.ref })) === 'busy') {
        log.warn({ runnerId: duty.ref }, 'registration still busy at the forge; removing it is retried on a later pass');
        out.remaining++;
        continue;
      }
      if (!forge) log.warn({ runnerId: duty.ref }, `no ${job.forge} forge is configured any more: registration ${duty.ref} is left to the forge`);
      out.runners.push(duty.ref);
    }
    await ctx.ledger.finalized({ jobId: job.id, kind: duty.kind, ref: duty.ref });
  }
  return out;
}
