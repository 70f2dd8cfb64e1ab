import type { OutputSink } from '../../../src/guest/channel.ts';
import type { DriverCapabilities, ExecRequest, ExecResult, SnapshotInfo, Vm, VmDriver, VmRecord, VmSpec } from '../../../src/vm/driver.ts';
import { FAKE_CAPABILITIES } from '../../support/fake-driver.ts';

/** What one script run does in the fake guest. */
export interface FakeScriptResult {
  readonly exitCode?: number;
  readonly stdout?: string;
  /** How long the command ran, as the driver reports it (default 1 ms). */
  readonly durationMs?: number;
  /** What the step leaves in its $GITHUB_OUTPUT / $GITHUB_ENV / $GITHUB_PATH / $GITHUB_STEP_SUMMARY files. */
  readonly files?: { readonly output?: string; readonly env?: string; readonly path?: string; readonly summary?: string };
  /** Thrown from exec instead of an exit status (e.g. the host-side timeout). */
  readonly throws?: Error;
}

/** One script as the job runner asked the guest to run it. */
export interface FakeScriptCall {
  readonly script: string;
  /** The `sh -c` command that runs the script file (shell template, `timeout -s KILL N`). */
  readonly command: string;
  readonly request: ExecRequest;
}

const SCRIPT = /\/tmp\/hearth\/scripts\/script-\d+\.(sh|py)/;
const FILES_DIR = /mkdir -p (\/tmp\/hearth\/files\/\d+) /;

/**
 * A VmDriver without VMs for unit tests of the job runners: it keeps the
 * files the runner writes (per VM), hands each script run to `onScript`, and answers
 * the runner's read-back of the GitHub file commands from what `onScript`
 * said the step wrote. Every request is recorded.
 */
export class FakeGuest implements VmDriver {
  readonly name = 'fake';
  readonly capabilities: DriverCapabilities = FAKE_CAPABILITIES;
  readonly boots: VmSpec[] = [];
  readonly requests: ExecRequest[] = [];
  readonly scripts: FakeScriptCall[] = [];
  readonly destroyed: string[] = [];
  private readonly files = new Map<string, string>();
  private readonly stepFiles = new Map<string, NonNullable<FakeScriptResult['files']>>();
  private readonly filesDir = new Map<string, string>();

  constructor(private readonly onScript: (call: FakeScriptCall) => FakeScriptResult | Promise<FakeScriptResult> = () => ({})) {}

  async boot(spec: VmSpec): Promise<Vm> {
    this.boots.push(spec);
    return { id: `fake-${this.boots.length}`, spec, accel: 'tcg', origin: { kind: 'cold' }, startMs: 1, state: 'ready' };
  }

  async exec(vmId: string, request: ExecRequest, sink: OutputSink = {}): Promise<ExecResult> {
    this.requests.push(request);
    const [, , command = '', , content, path] = request.argv;
    const done = (exitCode: number, stdout = '', durationMs = 1): ExecResult => {
      if (stdout) sink.stdout?.(Buffer.from(stdout), 0n);
      return { exitCode, signal: 0, durationMs };
    };
    if (command.startsWith('mkdir -p "$(dirname "$2")"') && content !== undefined && path !== undefined) {
      this.files.set(`${vmId}:${path}`, content);
      const dir = FILES_DIR.exec(command)?.[1];
      if (dir) this.filesDir.set(vmId, dir);
      return done(0);
    }
    if (command.startsWith('exec ')) {
      const file = SCRIPT.exec(command)?.[0] ?? '';
      const call = { script: this.files.get(`${vmId}:${file}`) ?? '', command, request };
      this.scripts.push(call);
      const result = await this.onScript(call);
      if (result.throws) throw result.throws;
      if (result.files) this.stepFiles.set(`${vmId}:${this.filesDir.get(vmId) ?? ''}`, result.files);
      return done(result.exitCode ?? 0, result.stdout, result.durationMs);
    }
    if (command.startsWith('cat /tmp/hearth/files/')) {
      const dir = /^cat (\S+)\/output/.exec(command)?.[1] ?? '';
      const f = this.stepFiles.get(`${vmId}:${dir}`) ?? {};
      return done(0, [f.output ?? '', f.env ?? '', f.path ?? '', f.summary ?? ''].join('\0'));
    }
    return done(0);
  }

  async destroy(vmId: string): Promise<void> {
    this.destroyed.push(vmId);
  }

  restore(): Promise<Vm> {
    return Promise.reject(new Error('the fake guest has no snapshots'));
  }

  snapshot(): Promise<SnapshotInfo> {
    return Promise.reject(new Error('the fake guest has no snapshots'));
  }

  async list(): Promise<VmRecord[]> {
    return [];
  }
}
