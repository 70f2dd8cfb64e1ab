// Several Hearth replicas on one machine, each its own process (replica-main.ts),
// for scale-out and failure tests: start, stop, kill -9 and restart them by name.
// Each replica has its own data and runtime directories under one temp root
// (kept across restarts, so a restarted host finds what its killed self left)
// and its stderr (pino JSON) in <root>/<name>.log.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ServeConfig } from '../../src/config/serve-config.ts';
import { resolvePaths, type HearthPaths } from '../../src/config/paths.ts';
import type { Capacity } from '../../src/scheduler/capacity.ts';
import type { VmRecord } from '../../src/vm/driver.ts';
import { listFakeVms } from './fake-driver.ts';
import type { ForgeSimulator } from './forge-sim/index.ts';

export const REPLICA_MAIN: string = join(import.meta.dirname, 'replica-main.ts');
const REPO_ROOT = join(import.meta.dirname, '..', '..');
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

/** Run VMs with the fake driver; guest URLs starting with `rewriteFrom` are called at `rewriteTo` instead. */
export interface FakeDriverSettings {
  readonly rewriteFrom: string;
  readonly rewriteTo: string;
  readonly bootDelayMs?: number;
  readonly pollIntervalMs?: number;
}

/** What replica-main.ts reads from $HEARTH_REPLICA: a ServeConfig and a few extras. */
export type ReplicaConfig = ServeConfig & {
  fakeDriver?: FakeDriverSettings;
  /** Default: from HEARTH_*_DIR as `hearth` resolves them; Cluster sets the replica's own. */
  paths?: HearthPaths;
  capacity?: Capacity;
  /** Bound to every log line as `replica`. */
  name?: string;
};

/** Fake-driver settings that point guests at the simulator's host address. */
export function fakeDriverFor(sim: ForgeSimulator, options: { bootDelayMs?: number; pollIntervalMs?: number } = {}): FakeDriverSettings {
  return { rewriteFrom: sim.guestUrl, rewriteTo: sim.url, ...options };
}

export interface ReplicaExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Replica {
  readonly name: string;
  readonly url: string;
  readonly pid: number;
  readonly paths: HearthPaths;
  readonly logFile: string;
  /** Resolves when the process has ended, however it ended. */
  readonly exited: Promise<ReplicaExit>;
  readonly running: boolean;
  /** SIGKILL: no shutdown at all, VMs and claims left behind. Resolves once it is gone. */
  kill9(): Promise<void>;
  /** SIGTERM and wait (SIGKILL after 30 s). */
  stop(): Promise<ReplicaExit>;
  /** The last lines of its stderr, across its restarts. */
  logTail(lines?: number): string;
}

export class Cluster {
  private readonly latest = new Map<string, Replica>();
  private readonly configs = new Map<string, ReplicaConfig>();
  private readonly children = new Set<ChildProcess>();
  private readonly onExit = (): void => {
    for (const child of this.children) child.kill('SIGKILL');
  };

  private constructor(readonly root: string) {
    process.once('exit', this.onExit);
  }

  static async create(): Promise<Cluster> {
    return new Cluster(await mkdtemp(join(tmpdir(), 'hearth-cluster-')));
  }

  /** The replica's own data and runtime directories; the image cache is shared. */
  pathsFor(name: string): HearthPaths {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`replica names are letters, digits, '.', '_' and '-': ${JSON.stringify(name)}`);
    return { cache: resolvePaths().cache, data: join(this.root, name, 'data'), runtime: join(this.root, name, 'run') };
  }

  /**
   * Starts `name` and resolves once it listens; rejects with its log tail if it
   * exits or takes over 60 s. A cluster.hostId left at the default (this
   * machine's hostname) becomes `name`, so hosts on one machine stay apart.
   */
  async startReplica(name: string, config: ReplicaConfig): Promise<Replica> {
    if (this.latest.get(name)?.running) throw new Error(`replica ${name} is already running (pid ${this.latest.get(name)!.pid})`);
    const paths = config.paths ?? this.pathsFor(name);
    await mkdir(paths.data, { recursive: true });
    await mkdir(paths.runtime, { recursive: true });
    // Replicas share this machine's hostname, the default host id: each host gets its name instead.
    const cluster = config.cluster.hostId === hostname() ? { ...config.cluster, hostId: name } : config.cluster;
    const full: ReplicaConfig = { ...config, cluster, paths, name };
    this.configs.set(name, full);
    const replica = await this.spawn(name, full);
    this.latest.set(name, replica);
    return replica;
  }

  /** Starts `name` again with its last config and directories (on a new port if it asked for port 0); stops it first if it still runs. */
  async restart(name: string): Promise<Replica> {
    const config = this.configs.get(name);
    if (!config) throw new Error(`no replica ${name} was started`);
    const previous = this.latest.get(name);
    if (previous?.running) await previous.stop();
    return this.startReplica(name, config);
  }

  replica(name: string): Replica | undefined {
    return this.latest.get(name);
  }

  /** The replicas now running, optionally only those named. */
  running(names?: readonly string[]): Replica[] {
    return [...this.latest.values()].filter((r) => r.running && (!names || names.includes(r.name)));
  }

  /** Fake VMs recorded in the runtime directories of every replica (or those named), leaked ones included. */
  async fakeVms(names?: readonly string[]): Promise<(VmRecord & { replica: string })[]> {
    const found: (VmRecord & { replica: string })[] = [];
    for (const [name, config] of this.configs) {
      if (names && !names.includes(name)) continue;
      for (const record of await listFakeVms(config.paths!.runtime)) found.push({ ...record, replica: name });
    }
    return found;
  }

  /** Kills whatever still runs; removes the directories unless `keep` (say, when a test failed). */
  async close(options: { keep?: boolean } = {}): Promise<void> {
    await Promise.all([...this.latest.values()].filter((r) => r.running).map((r) => r.kill9()));
    process.removeListener('exit', this.onExit);
    if (!options.keep) await rm(this.root, { recursive: true, force: true });
  }

  private async spawn(name: string, config: ReplicaConfig): Promise<Replica> {
    const logFile = join(this.root, `${name}.log`);
    const log = openSync(logFile, 'a');
    writeSync(log, `--- replica ${name} starting at ${new Date().toISOString()} ---\n`);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, ['--import', 'tsx', REPLICA_MAIN], {
        cwd: REPO_ROOT,
        env: { ...process.env, HEARTH_REPLICA: JSON.stringify(config) },
        stdio: ['ignore', 'pipe', log],
      });
    } finally {
      closeSync(log);
    }
    this.children.add(child);
    const exited = new Promise<ReplicaExit>((resolve) => {
      child.once('exit', (code, signal) => {
        this.children.delete(child);
        resolve({ code, signal });
      });
    });
    const logTail = (lines = 40): string => {
      try {
        return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    };

    const ready = await new Promise<{ url: string; pid: number }>((resolve, reject) => {
      let settled = false;
      const fail = (why: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new Error(`replica ${name} ${why}; the end of ${logFile}:\n${logTail()}`));
      };
      const timer = setTimeout(() => fail(`did not listen within ${READY_TIMEOUT_MS / 1000} s`), READY_TIMEOUT_MS);
      child.once('error', (error) => fail(`could not be started: ${error.message}`));
      void exited.then((how) => fail(`exited before listening (code ${how.code}, signal ${how.signal})`));
      // Anything else on stdout goes to the log, in case some code prints there.
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!settled) {
          try {
            const message = JSON.parse(line) as { ready?: boolean; url?: string; pid?: number };
            if (message.ready === true && typeof message.url === 'string') {
              settled = true;
              clearTimeout(timer);
              resolve({ url: message.url, pid: message.pid ?? child.pid! });
              return;
            }
          } catch {
            // not the ready line
          }
        }
        appendFileSync(logFile, `${line}\n`);
      });
    });

    const replica: Replica = {
      name,
      url: ready.url,
      pid: ready.pid,
      paths: config.paths!,
      logFile,
      exited,
      get running() {
        return child.exitCode === null && child.signalCode === null;
      },
      async kill9() {
        if (replica.running) child.kill('SIGKILL');
        await exited;
      },
      async stop() {
        if (replica.running) child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        const how = await exited;
        clearTimeout(timer);
        return how;
      },
      logTail,
    };
    return replica;
  }
}
