import type { FastifyInstance } from 'fastify';
import { statfs } from 'node:fs/promises';
import { arch, cpus, hostname } from 'node:os';
import { driverSettings, loadHostConfig, type LoadedHostConfig } from '../config/host-config.ts';
import { serveSecrets, storeTarget, type ServeConfig } from '../config/serve-config.ts';
import type { HearthPaths } from '../config/paths.ts';
import { RunnerController } from '../controller/controller.ts';
import type { Forge, ForgeKind } from '../forge/forge.ts';
import { GithubAuth } from '../forge/github/auth.ts';
import { GithubForge } from '../forge/github/client.ts';
import { GitlabForge } from '../forge/gitlab/client.ts';
import { DEFAULT_RETRY } from '../forge/http.ts';
import { loadImage } from '../image/store.ts';
import { Ledger, type HostInfo } from '../ledger/ledger.ts';
import { LeaderElection } from '../ledger/leader.ts';
import { JobLogs } from '../ledger/logs.ts';
import type { Logger } from '../log.ts';
import { HearthError } from '../errors.ts';
import { DriverAdmission } from '../scheduler/admission.ts';
import { hostCapacity, type Capacity } from '../scheduler/capacity.ts';
import { shapeProblem, VM_BOUNDS } from '../vm/bounds.ts';
import { createHostDriver, type HostDriver } from '../vm/host-driver.ts';
import { VmPool, type PoolStatus } from '../pool/pool.ts';
import { buildServer } from './app.ts';
import { HearthMetrics, type HostView } from './metrics.ts';

export interface HearthService {
  readonly app: FastifyInstance;
  readonly ledger: Ledger;
  readonly controller: RunnerController;
  readonly driver: HostDriver;
  /** Where it listens, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  /** What it chose, one line each, for the start-up message. */
  readonly choices: readonly string[];
  close(reason: string): Promise<void>;
}

function createDriver(config: ServeConfig, host: LoadedHostConfig, paths: HearthPaths, logger: Logger): HostDriver {
  // auto: QEMU, which runs everywhere (KVM where a probe boot proves it works, else TCG).
  const name = config.driver.name === 'auto' ? 'qemu' : config.driver.name;
  // With an allowlist, networked runners get TAP devices and nftables instead of QEMU's user-mode NAT.
  const egress =
    config.runners.egress.length > 0 || name === 'firecracker'
      ? { allow: config.runners.egress, hostPorts: config.runners.egressHostPorts.map(Number), dns: config.runners.dns }
      : undefined;
  return createHostDriver(name, {
    paths,
    logger,
    bootTimeoutMs: config.runners.bootTimeoutSeconds * 1000,
    ...(config.driver.accel !== 'auto' ? { accel: config.driver.accel } : {}),
    ...driverSettings(host),
    egress,
  });
}

/** The forges with credentials, by kind; GitLab also as itself, for the tags its job hook lacks (ingest fetches them). */
function createForges(
  config: ServeConfig,
  logger: Logger,
  metrics: HearthMetrics,
  shutdown: AbortSignal,
): { forges: Map<ForgeKind, Forge>; gitlab: GitlabForge | undefined } {
  const retry = { ...DEFAULT_RETRY, signal: shutdown };
  const forges = new Map<ForgeKind, Forge>();
  const onResponse = (forge: ForgeKind, status: number, headers?: Headers): void => metrics.forgeResponse(forge, status, headers);
  const auth = GithubAuth.fromConfig(config.github.apiUrl, config.github.token, config.github.app);
  if (auth.configured) {
    forges.set(
      'github',
      new GithubForge({
        apiUrl: config.github.apiUrl,
        auth,
        repos: config.github.repos,
        orgs: config.github.orgs,
        runnerGroupId: config.github.runnerGroupId,
        runnerCommand: config.github.runnerCommand,
        logger: logger.child({ forge: 'github' }),
        onResponse,
        retry,
      }),
    );
  }
  const gitlab = config.gitlab.token
    ? new GitlabForge({
        url: config.gitlab.url,
        runnerUrl: config.gitlab.runnerUrl ?? config.gitlab.url,
        token: config.gitlab.token,
        projects: config.gitlab.projects,
        groups: config.gitlab.groups,
        runnerCommand: config.gitlab.runnerCommand,
        waitTimeoutSeconds: config.gitlab.waitTimeoutSeconds,
        logger: logger.child({ forge: 'gitlab' }),
        onResponse,
        retry,
      })
    : undefined;
  if (gitlab) forges.set('gitlab', gitlab);
  return { forges, gitlab };
}

/** What this host offers placement: capacity, free disk, driver, images it can boot, and labels to match. */
async function describeHost(config: ServeConfig, paths: HearthPaths, driver: HostDriver, capacity: Capacity, images: readonly string[]): Promise<HostInfo> {
  const fromCache = driver.capabilities.images.kind === 'cache';
  const bootable: string[] = [];
  for (const image of images) {
    // Local drivers boot images from this host's cache; remote ones (flintlock) name them elsewhere.
    if (
      !fromCache ||
      (await loadImage(paths.cache, image).then(
        () => true,
        () => false,
      ))
    )
      bootable.push(image);
  }
  let diskGib = 0;
  try {
    const stats = await statfs(paths.data, { bigint: false }).catch(async () => statfs('/'));
    diskGib = Math.floor((stats.bavail * stats.bsize) / 1024 ** 3);
  } catch {
    // unknown: placement does not use disk yet
  }
  const kvm = driver.accel ? (await driver.accel()).accel === 'kvm' : driver.capabilities.accel.every((a) => a === 'kvm');
  return {
    id: config.cluster.hostId,
    cpus: capacity.cpus,
    memoryMib: capacity.memoryMib,
    diskGib,
    drivers: [driver.name],
    images: bootable,
    labels: [`arch=${arch() === 'x64' ? 'x86_64' : arch()}`, `kvm=${kvm}`, `driver=${driver.name}`],
    capabilities: driver.capabilities,
  };
}

/**
 * Wires `hearth serve`: ledger, driver, forges, controller and HTTP server,
 * then listens. `close` stops taking work and tears down what this process holds.
 */
export async function startHearthService(options: {
  config: ServeConfig;
  paths: HearthPaths;
  logger: Logger;
  capacity?: Capacity;
  driver?: HostDriver;
  host?: LoadedHostConfig;
}): Promise<HearthService> {
  const { config, paths, logger } = options;
  const choices: string[] = [];
  // The CLI passes the host settings it resolved; an embedder that does not gets them from the environment.
  const driver = options.driver ?? createDriver(config, options.host ?? loadHostConfig(), paths, logger);
  // The store (and the cluster role below) are in the config's notes, which `hearth serve` prints before starting.
  const target = storeTarget(config.store.url);
  const ledger = await Ledger.open(target, undefined, (message, error) => logger.warn({ err: error }, message));
  const accel = await driver.accel?.();
  choices.push(accel ? `driver: ${driver.name} (${accel.accel}${accel.reason ? `: ${accel.reason}` : ''})` : `driver: ${driver.name}`);
  const capacity = options.capacity ?? hostCapacity();
  const cores = cpus().length;
  const counted = options.capacity ? '' : ` (${cores} cores x ${capacity.cpus / cores} overcommit)`;
  choices.push(
    `capacity: ${capacity.cpus} vCPU${counted}, ${capacity.memoryMib} MiB${config.runners.maxConcurrent > 0 ? `, at most ${config.runners.maxConcurrent} runners` : ''}`,
  );

  const controllerRef: { current?: RunnerController } = {};
  const leader = new LeaderElection(
    target.kind === 'postgres' ? target.url : null,
    (leading) => {
      // On one machine (SQLite) this process always leads: worth saying only where replicas compete.
      logger[target.kind === 'postgres' ? 'info' : 'debug'](
        { host: config.cluster.hostId },
        leading ? 'leading: this replica now places jobs and watches hosts' : 'no longer leading',
      );
      controllerRef.current?.kick();
    },
    config.cluster.role !== 'host',
    undefined,
    logger.child({ component: 'leader' }),
  );
  const pools: VmPool[] = [];
  const poolStatus = (): PoolStatus[] => controllerRef.current?.poolStatus() ?? [];
  const host: HostView = {
    capacity,
    used: () => controllerRef.current?.used() ?? { cpus: 0, memoryMib: 0 },
    vms: () => [
      ...(controllerRef.current?.jobVms() ?? []),
      ...poolStatus().flatMap((p) => (['idle', 'starting', 'busy'] as const).map((state) => ({ state, pool: p.name, count: p[state] }))),
    ],
    pools: poolStatus,
    activeJobs: () => controllerRef.current?.activeJobs ?? 0,
  };
  const metrics = new HearthMetrics(ledger, host);
  const logs = new JobLogs(ledger, { maxLinesPerJob: config.log.jobMaxLines, retentionDays: config.log.jobRetentionDays, secrets: serveSecrets(config) });
  const shutdown = new AbortController();
  const { forges, gitlab } = createForges(config, logger, metrics, shutdown.signal);
  choices.push(
    forges.size > 0 ? `forges: ${[...forges.keys()].join(', ')}` : 'forges: none (set github.token or github.app, or gitlab.token, to launch runners)',
  );
  // Admission asks the drivers that could run a job (this host's, and with scale-out the registered hosts') before any forge registration.
  const admission = new DriverAdmission(config.cluster.role === 'controller' ? undefined : { name: driver.name, capabilities: driver.capabilities });
  const refreshAdmission = (): Promise<void> =>
    ledger.liveHosts(config.cluster.hostTimeoutSeconds * 1000).then(
      (hosts) => admission.update(hosts),
      (error: unknown) => logger.warn({ err: error }, 'could not read the registered hosts for admission; keeping the last known drivers'),
    );
  const admissionTimer =
    target.kind === 'postgres' || config.cluster.role === 'controller'
      ? setInterval(() => void refreshAdmission(), config.cluster.heartbeatSeconds * 1000)
      : undefined;
  admissionTimer?.unref();
  const limits = {
    maxCpus: config.runners.maxCpus,
    maxMemoryMib: config.runners.maxMemoryMib,
    images: [...new Set([config.runners.image, 'minimal', 'debian', ...config.pools.map((p) => p.image)])],
    get drivers() {
      return admission.drivers;
    },
  };
  for (const pool of config.pools) {
    // A pool of a size this host's driver cannot boot would fail every boot: refused here, with the sizes that would do.
    const unbootable = config.cluster.role === 'controller' ? undefined : shapeProblem(pool, driver.capabilities, driver.name);
    if (unbootable)
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: `pools.${pool.name}.${unbootable.cpus ? 'cpus' : 'memoryMib'}`,
        reason: unbootable.reason,
        hint: unbootable.cpus ? `set it to ${unbootable.cpus.join(' or ')}` : `set it to ${unbootable.memoryMib ?? VM_BOUNDS.memoryMib.min}`,
      });
    await loadImage(paths.cache, pool.image); // a pool of an image never built fails here, with the build command
    choices.push(
      `pool ${pool.name}: ${pool.mode}, ${pool.cpus} vCPU, ${pool.memoryMib} MiB, ${pool.image}, ${pool.autoscale ? `idle ${pool.minIdle}-${pool.maxIdle} following demand` : `${pool.minIdle} idle`}, at most ${pool.maxSize}`,
    );
  }
  const defaultShape = { cpus: 2, memoryMib: 2048, image: config.runners.image };
  const controller = new RunnerController(
    ledger,
    driver,
    forges,
    {
      limits,
      defaultShape,
      capacity,
      maxConcurrent: config.runners.maxConcurrent,
      network: config.runners.network,
      jobTimeoutMinutes: config.runners.jobTimeoutMinutes,
      intervalSeconds: config.reconcile.intervalSeconds,
      stuckAfterSeconds: config.reconcile.stuckAfterSeconds,
      maxAttempts: config.reconcile.maxAttempts,
      pools,
      poolConfigs: config.pools,
      shutdown: shutdown.signal,
      cluster: {
        role: config.cluster.role,
        hostId: config.cluster.hostId,
        placement: config.cluster.placement,
        heartbeatSeconds: config.cluster.heartbeatSeconds,
        hostTimeoutSeconds: config.cluster.hostTimeoutSeconds,
        leader,
        describeHost: () => describeHost(config, paths, driver, capacity, limits.images),
      },
    },
    logger.child({ component: 'controller' }),
    metrics.observer(),
    logs,
  );
  controllerRef.current = controller;
  // Pools run where VMs run; a controller only needs their shapes.
  for (const pool of config.cluster.role === 'controller' ? [] : config.pools) {
    pools.push(
      new VmPool(
        pool,
        driver,
        paths.cache,
        paths.data,
        config.runners.network,
        logger.child({ pool: pool.name }),
        (shape) => controller.roomFor(shape),
        metrics.poolObserver(),
      ),
    );
  }

  const app = await buildServer({
    config,
    logger,
    metrics,
    ledger,
    driver,
    limits,
    defaultShape,
    poolConfigs: config.pools,
    gitlab,
    onChange: () => {
      controller.kick();
      // Other replicas (the leader, which places jobs) hear of it too.
      void ledger
        .notify('hearth_jobs')
        .catch((error: unknown) => logger.warn({ err: error }, 'could not wake the other replicas; the leader finds the job on its next pass'));
    },
    pools: poolStatus,
    logs,
    host: { name: hostname(), driver: driver.name, view: host },
    secrets: {
      github: config.github.webhookSecret,
      gitlabTokens: config.gitlab.webhookToken ? [config.gitlab.webhookToken] : [],
      gitlabSigning: config.gitlab.signingSecret,
    },
    ready: async () => {
      const checks: Record<string, string> = {};
      let ok = true;
      try {
        await ledger.countByState();
        checks.store = 'ok';
      } catch (error) {
        ok = false;
        checks.store = `unreachable: ${(error as Error).message}`;
      }
      try {
        await driver.version?.();
        await loadImage(paths.cache, config.runners.image);
        checks.driver = 'ok';
      } catch (error) {
        ok = false;
        checks.driver = (error as Error).message;
      }
      return { ok, checks };
    },
  });
  const address = await app.listen({ host: config.server.host, port: config.server.port });
  ledger.subscribe('hearth_jobs', () => controller.kick());
  ledger.subscribe('hearth_placed', (hosts) => {
    if (hosts === '' || hosts.split(',').includes(config.cluster.hostId)) controller.kick();
  });
  leader.start();
  controller.start();
  if (admissionTimer) await refreshAdmission();
  return {
    app,
    ledger,
    controller,
    driver,
    url: address,
    choices,
    async close(reason: string) {
      clearInterval(admissionTimer);
      await app.close();
      shutdown.abort(new Error(`hearth serve is stopping: ${reason}`));
      await controller.stop(reason);
      await leader.stop();
      await logs.flush();
      await ledger.close();
    },
  };
}
