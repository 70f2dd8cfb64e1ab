// A VM driver for load and failure tests: no VMM, no image. A "VM" is a record
// in memory plus one registry file on disk, and its "guest" runs the two runner
// stand-ins (forge-sim/stand-ins/) re-told with fetch, so a job goes through
// the forge simulator exactly as it would from a real VM, hundreds at a time.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { HearthError } from '../../src/errors.ts';
import type { OutputSink } from '../../src/guest/channel.ts';
import type { Logger } from '../../src/log.ts';
import { validateVmSpec } from '../../src/vm/agent-vm.ts';
import { VM_BOUNDS } from '../../src/vm/bounds.ts';
import type { DriverCapabilities, ExecRequest, ExecResult, SnapshotInfo, Vm, VmRecord, VmSpec } from '../../src/vm/driver.ts';
import type { HostDriver } from '../../src/vm/host-driver.ts';
import { isSameProcess, processStartTime, type RegistryEntry } from '../../src/vm/registry.ts';

export const FAKE_DRIVER_NAME = 'fake';
const DEFAULT_BOOT_DELAY_MS = 20;
/** The stand-ins poll once a second. */
const DEFAULT_POLL_MS = 1000;

export interface FakeDriverOptions {
  /** Registry files go to `<runtimeDir>/fake-vms/<vmId>.json`. */
  readonly runtimeDir: string;
  /** How long boot() takes (default 20 ms). */
  readonly bootDelayMs?: number;
  /** Maps a URL the guest would call (the sim's guestUrl, 10.0.2.2) to one this process can reach (the sim's url). */
  readonly rewriteUrl?: (url: string) => string;
  /** Pause between a runner's polls for work (default 1000 ms, as in the stand-ins). The stand-ins count polls, so their limits (120 tries, --wait-timeout) shrink with it. */
  readonly pollIntervalMs?: number;
  readonly logger?: Logger;
  /** What it claims it can do (default FAKE_CAPABILITIES); FIRECRACKER_CAPABILITIES makes it stand in for Firecracker at admission. */
  readonly capabilities?: DriverCapabilities;
  /** The driver name it reports (default `fake`), e.g. `firecracker` with Firecracker's capabilities. */
  readonly name?: string;
}

/** Any size Hearth allows, no snapshots (see FakeDriverUnsupportedError), user-mode networking, images from the cache. */
export const FAKE_CAPABILITIES: DriverCapabilities = {
  ...VM_BOUNDS,
  snapshots: false,
  sourceDirectory: true,
  networking: ['none', 'user'],
  images: { kind: 'cache' },
  accel: ['tcg'],
};

/** Raised by snapshot and restore: the fake has no memory to save. */
export class FakeDriverUnsupportedError extends Error {
  constructor(readonly operation: 'snapshot' | 'restore') {
    super(`${operation} is not supported by the fake driver (use the qemu driver for snapshot pools)`);
    this.name = 'FakeDriverUnsupportedError';
  }
}

interface FakeVm {
  readonly vm: Vm;
  /** Aborted when the VM is destroyed: whatever its guest was doing stops. */
  readonly gone: AbortController;
  destroying?: Promise<void>;
}

/** Every fake VM recorded under `runtimeDir`, whichever process started it. */
export async function listFakeVms(runtimeDir: string): Promise<VmRecord[]> {
  const dir = registryDir(runtimeDir);
  const names = await readdir(dir).catch(() => [] as string[]);
  const records: VmRecord[] = [];
  for (const name of names) {
    if (name.startsWith('.') || !name.endsWith('.json')) continue;
    const entry = await readFile(join(dir, name), 'utf8').then(
      (text) => JSON.parse(text) as RegistryEntry,
      () => undefined,
    );
    if (!entry) continue;
    const { pidStart: _p, ownerStart, ...rest } = entry;
    // The fake's "VMM" is the process that started it: both live and die together.
    const ownerAlive = isSameProcess(entry.ownerPid, ownerStart);
    records.push({ ...rest, runtimeDir: dir, alive: ownerAlive, leaked: !ownerAlive });
  }
  return records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

function registryDir(runtimeDir: string): string {
  return join(runtimeDir, 'fake-vms');
}

export class FakeDriver implements HostDriver {
  readonly name: string;
  readonly capabilities: DriverCapabilities;
  private readonly vms = new Map<string, FakeVm>();
  private readonly dir: string;
  private readonly ownerStart: string;

  constructor(private readonly options: FakeDriverOptions) {
    this.name = options.name ?? FAKE_DRIVER_NAME;
    this.capabilities = options.capabilities ?? FAKE_CAPABILITIES;
    this.dir = registryDir(options.runtimeDir);
    this.ownerStart = processStartTime(process.pid) ?? '';
  }

  async boot(spec: VmSpec): Promise<Vm> {
    validateVmSpec(spec, this.capabilities, this.name);
    const started = performance.now();
    const id = `vm-${randomBytes(6).toString('hex')}`;
    const live: FakeVm = { vm: { id, spec, accel: 'tcg', origin: { kind: 'cold' }, startMs: 0, state: 'booting' }, gone: new AbortController() };
    this.vms.set(id, live);
    // Registered before it "runs", like the real drivers: a kill -9 from here on leaves a leak to find.
    const entry: RegistryEntry = {
      id,
      driver: this.name,
      pid: process.pid,
      pidStart: this.ownerStart,
      ownerPid: process.pid,
      ownerStart: this.ownerStart,
      image: spec.image,
      cpus: spec.cpus,
      memoryMib: spec.memoryMib,
      network: spec.network,
      accel: 'tcg',
      createdAt: new Date().toISOString(),
    };
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFile(join(this.dir, `.${id}.json.tmp`), JSON.stringify(entry, null, 2) + '\n');
      await rename(join(this.dir, `.${id}.json.tmp`), join(this.dir, `${id}.json`));
      await sleep(this.options.bootDelayMs ?? DEFAULT_BOOT_DELAY_MS, undefined, { signal: live.gone.signal });
    } catch (error) {
      // A failed boot cleans up after itself.
      await this.destroy(id);
      const reason = live.gone.signal.aborted ? 'destroyed while booting' : (error as Error).message;
      throw new HearthError('HEARTH_ERR_VM_BOOT', { vmId: id, reason, consoleLog: 'the fake driver has no console' }, { cause: error });
    }
    live.vm.startMs = performance.now() - started;
    live.vm.state = 'ready';
    this.options.logger?.debug({ vmId: id, image: spec.image }, 'fake vm booted');
    return live.vm;
  }

  restore(_snapshotName: string): Promise<Vm> {
    return Promise.reject(new FakeDriverUnsupportedError('restore'));
  }

  snapshot(_vmId: string, _snapshotName: string): Promise<SnapshotInfo> {
    return Promise.reject(new FakeDriverUnsupportedError('snapshot'));
  }

  /**
   * Runs the GitHub or GitLab runner stand-in (recognised by argv[0], as the
   * image installs them), or one of `true`, `false`, `echo`, `sleep`. Anything
   * else exits 127 like a missing program. A timeout or a destroy rejects at once.
   */
  async exec(vmId: string, request: ExecRequest, sink: OutputSink = {}): Promise<ExecResult> {
    const live = this.require(vmId, 'exec');
    if (request.argv.length === 0)
      throw new HearthError('HEARTH_ERR_BAD_OPTION', {
        option: 'command',
        reason: 'is empty',
        hint: 'give a command after --, e.g. hearth vm run -- uname -a',
      });
    live.vm.state = 'running';
    const started = performance.now();
    const timeoutSeconds = request.timeoutSeconds ?? 0;
    let timedOut = false;
    const timer =
      timeoutSeconds > 0
        ? setTimeout(() => {
            timedOut = true;
            void this.destroy(vmId);
          }, timeoutSeconds * 1000)
        : undefined;
    const guest = new Guest(live.gone.signal, sink, started, this.options.rewriteUrl ?? ((url) => url), this.options.pollIntervalMs ?? DEFAULT_POLL_MS);
    // However the command is written, a destroyed VM's exec must not outlive it.
    let onGone = (): void => {};
    const vmGone = new Promise<never>((_resolve, reject) => {
      onGone = () => reject(new Error('destroyed'));
      live.gone.signal.addEventListener('abort', onGone, { once: true });
    });
    try {
      const exitCode = await Promise.race([runCommand(guest, request.argv), vmGone]);
      return { exitCode, signal: 0, durationMs: performance.now() - started };
    } catch (error) {
      if (timedOut) {
        await live.destroying;
        throw new HearthError('HEARTH_ERR_EXEC_TIMEOUT', { vmId, timeoutSeconds }, { cause: error });
      }
      if (live.gone.signal.aborted)
        throw new HearthError('HEARTH_ERR_VM_GONE', { vmId, reason: 'the agent connection closed (the VM stopped)' }, { cause: error });
      throw error;
    } finally {
      clearTimeout(timer);
      live.gone.signal.removeEventListener('abort', onGone);
      vmGone.catch(() => {});
      if (live.vm.state === 'running') live.vm.state = 'ready';
    }
  }

  /** Idempotent; also removes the record of a VM another (dead) process started, as `hearth vm gc` does. */
  destroy(vmId: string): Promise<void> {
    const live = this.vms.get(vmId);
    if (live?.destroying) return live.destroying;
    const work = (async () => {
      if (live) {
        live.vm.state = 'destroying';
        live.gone.abort();
      }
      await rm(join(this.dir, `${vmId}.json`), { force: true });
      if (live) {
        live.vm.state = 'destroyed';
        this.vms.delete(vmId);
        this.options.logger?.debug({ vmId }, 'fake vm destroyed');
      }
    })();
    if (live) live.destroying = work;
    return work;
  }

  list(): Promise<VmRecord[]> {
    return listFakeVms(this.options.runtimeDir);
  }

  isAlive(vmId: string): boolean {
    return this.vms.get(vmId)?.vm.state === 'ready';
  }

  async destroyAll(): Promise<void> {
    await Promise.all([...this.vms.keys()].map((id) => this.destroy(id)));
  }

  /** VMs this process holds, for tests that count them. */
  get liveCount(): number {
    return this.vms.size;
  }

  private require(vmId: string, action: string): FakeVm {
    const live = this.vms.get(vmId);
    if (!live) throw new HearthError('HEARTH_ERR_VM_GONE', { vmId, reason: 'this process does not own a live VM with that id' });
    if (live.vm.state !== 'ready') {
      throw new HearthError('HEARTH_ERR_VM_STATE', {
        vmId,
        action,
        state: live.vm.state,
        hint: live.vm.state === 'running' ? 'wait for the running command to finish' : 'start a new VM',
      });
    }
    return live;
  }
}

// ---- the guest -------------------------------------------------------------

/** What a stand-in script can do in the guest: print, wait, and `timeout N wget -q -O -`. */
class Guest {
  constructor(
    readonly gone: AbortSignal,
    private readonly sink: OutputSink,
    private readonly started: number,
    private readonly rewriteUrl: (url: string) => string,
    readonly pollMs: number,
  ) {}

  stdout(line: string): void {
    this.sink.stdout?.(Buffer.from(`${line}\n`), this.offsetUs());
  }

  stderr(line: string): void {
    this.sink.stderr?.(Buffer.from(`${line}\n`), this.offsetUs());
  }

  /** `echo …>&2; exit 1`. */
  fail(line: string): number {
    this.stderr(line);
    return 1;
  }

  sleep(ms: number): Promise<void> {
    return sleep(ms, undefined, { signal: this.gone });
  }

  /**
   * busybox `timeout S wget -q -O - [--header H] --post-data BODY URL`: the body
   * on a 2xx answer (empty for 204, with trailing newlines cut as `$(…)` does),
   * undefined when wget would fail (refused, timed out, 4xx/5xx). The VM going
   * away is not a wget failure: it rejects.
   */
  async post(url: string, body: string, headers: Record<string, string>, timeoutSeconds: number): Promise<string | undefined> {
    try {
      const response = await fetch(this.rewriteUrl(url), {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.any([this.gone, AbortSignal.timeout(timeoutSeconds * 1000)]),
      });
      const text = await response.text();
      return response.ok ? text.replace(/\n+$/, '') : undefined;
    } catch (error) {
      if (this.gone.aborted) throw error;
      return undefined;
    }
  }

  private offsetUs(): bigint {
    return BigInt(Math.round((performance.now() - this.started) * 1000));
  }
}

async function runCommand(guest: Guest, argv: readonly string[]): Promise<number> {
  const [program = '', ...args] = argv;
  const name = basename(program);
  if (name === 'run.sh') return githubRunSh(guest, args);
  if (name === 'gitlab-runner') return gitlabRunner(guest, args);
  if (name === 'true') return 0;
  if (name === 'false') return 1;
  if (name === 'echo') {
    guest.stdout(args.join(' '));
    return 0;
  }
  if (name === 'sleep' && args.length === 1 && /^\d+(\.\d+)?$/.test(args[0]!)) {
    await guest.sleep(Number(args[0]) * 1000);
    return 0;
  }
  guest.stderr(`sh: ${program}: not found`);
  return 127;
}

/** forge-sim/stand-ins/github-run.sh, line for line. */
async function githubRunSh(guest: Guest, args: readonly string[]): Promise<number> {
  const say = (line: string): void => guest.stdout(`run.sh stand-in: ${line}`);
  const fail = (line: string): number => guest.fail(`run.sh stand-in: ${line}`);
  const usage = (): number => {
    guest.stderr('usage: run.sh --jitconfig <encoded>');
    return 2;
  };
  let config = '';
  for (let i = 0; i < args.length;) {
    if (args[i] !== '--jitconfig') {
      guest.stderr(`run.sh stand-in: unknown option ${args[i]}`);
      return usage();
    }
    if (i + 1 >= args.length) return usage();
    config = args[i + 1]!;
    i += 2;
  }
  if (!config) return usage();

  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(config.replace(/\s/g, ''))) return fail('the JIT config is not base64');
  const decoded = Buffer.from(config, 'base64').toString('utf8');
  // The stand-in reads the fields with sed, not a JSON parser: so does this.
  const callback = /^.*"callbackUrl":"([^"]*)"/s.exec(decoded)?.[1] ?? '';
  const name = /^.*"name":"([^"]*)"/s.exec(decoded)?.[1] ?? '';
  if (!callback) return fail('the JIT config names no callbackUrl');
  // The config is the credential: it travels in the body, never on a line of output.
  const post = (timeoutSeconds: number, step: string): Promise<string | undefined> =>
    guest.post(`${callback}/${step}`, config, { 'Content-Type': 'text/plain' }, timeoutSeconds);

  say(`runner ${name} connecting to ${callback}`);
  let tries = 0;
  let job: string;
  for (;;) {
    const answer = await post(30, 'start');
    if (answer === undefined) return fail('the forge refused the runner or could not be reached');
    job = answer;
    if (job) break;
    tries += 1;
    if (tries >= 120) return fail('no job assigned within 120 s');
    await guest.sleep(guest.pollMs);
  }
  say(`took job ${job}`);

  const result = await post(3600, 'finish');
  if (result === undefined) return fail('could not report the job as finished');
  if (result.includes('"conclusion":"cancelled"')) return fail(`job was cancelled: ${result}`);
  if (result.includes('"conclusion":"success"')) {
    say(`job finished: ${result}`);
    return 0;
  }
  return fail(`unexpected answer: ${result}`);
}

/** forge-sim/stand-ins/gitlab-runner (`run-single`), line for line. */
async function gitlabRunner(guest: Guest, argv: readonly string[]): Promise<number> {
  const say = (line: string): void => guest.stdout(`gitlab-runner stand-in: ${line}`);
  const fail = (line: string): number => guest.fail(`gitlab-runner stand-in: ${line}`);
  const usage = (): number => {
    guest.stderr('usage: gitlab-runner run-single --url URL --token glrt-... --executor shell --max-builds 1 --wait-timeout S');
    return 2;
  };
  if (argv[0] !== 'run-single') return usage();
  const options: Record<string, string> = { '--url': '', '--token': '', '--executor': '', '--max-builds': '', '--wait-timeout': '' };
  const args = argv.slice(1);
  for (let i = 0; i < args.length;) {
    const arg = args[i]!;
    let opt: string;
    let val: string;
    // Both `--opt value` and `--opt=value`, as the real CLI takes.
    if (arg.startsWith('--') && arg.includes('=')) {
      opt = arg.slice(0, arg.indexOf('='));
      val = arg.slice(arg.indexOf('=') + 1);
      i += 1;
    } else if (arg.startsWith('--')) {
      if (i + 1 >= args.length) return usage();
      opt = arg;
      val = args[i + 1]!;
      i += 2;
    } else {
      guest.stderr(`gitlab-runner stand-in: unexpected argument ${arg}`);
      return usage();
    }
    if (!(opt in options)) {
      guest.stderr(`gitlab-runner stand-in: unknown option ${opt}`);
      return usage();
    }
    options[opt] = opt === '--url' ? val.replace(/\/$/, '') : val;
  }
  const url = options['--url']!;
  const token = options['--token']!;
  const maxBuilds = options['--max-builds']!;
  let waitTimeout = options['--wait-timeout']!;
  if (!url || !token) return usage();
  if (options['--executor'] !== 'shell') {
    guest.stderr('gitlab-runner stand-in: only --executor shell is stood in');
    return 2;
  }
  if (maxBuilds !== '' && maxBuilds !== '1') {
    guest.stderr('gitlab-runner stand-in: only --max-builds 1 is stood in');
    return 2;
  }
  if (waitTimeout === '') waitTimeout = '60';
  else if (!/^\d+$/.test(waitTimeout)) {
    guest.stderr('gitlab-runner stand-in: --wait-timeout must be whole seconds');
    return 2;
  }
  const api = (path: string, body: string, headers: Record<string, string> = {}): Promise<string | undefined> =>
    guest.post(`${url}${path}`, body, { 'Content-Type': 'application/json', ...headers }, 30);

  say(`asking ${url} for a job (up to ${waitTimeout} s)`);
  let waited = 0;
  let job: string;
  for (;;) {
    const answer = await api('/api/v4/jobs/request', `{"token":"${token}"}`);
    if (answer === undefined) return fail('the job request failed (bad token or forge unreachable)');
    job = answer;
    if (job) break;
    waited += 1;
    if (waited >= Number(waitTimeout)) {
      say('no job within the wait timeout');
      return 0;
    }
    await guest.sleep(guest.pollMs);
  }

  const match = /^\{"id":([0-9]*),"token":"([^"]*)"/.exec(job);
  const id = match?.[1] ?? '';
  const jobToken = match?.[2] ?? '';
  if (!id || !jobToken) return fail('could not read the job id and token');
  say(`running job ${id}`);

  // busybox wget can only POST: the sim takes the override as a PUT.
  const result = await api(`/api/v4/jobs/${id}`, `{"token":"${jobToken}","state":"success"}`, { 'X-HTTP-Method-Override': 'PUT' });
  if (result === undefined) return fail(`could not report job ${id}`);
  if (result.includes('"status":"canceled"')) say(`job ${id} was canceled`);
  else say(`job ${id} finished: ${result}`);
  return 0;
}
