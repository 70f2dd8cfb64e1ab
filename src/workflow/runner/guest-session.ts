import type { VmDriver } from '../../vm/driver.ts';
import type { JobLog } from './job-log.ts';

export interface ScriptRun {
  readonly script: string;
  /** The shell as GitHub spells it: bash, sh, python, or a template with {0}. */
  readonly shell: string;
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly timeoutSeconds?: number;
  /** Shell commands run just before, in the same round trip as writing the script (file set-up). */
  readonly setup?: string;
}

/** Shell templates as the GitHub runner defines them ({0} is the script file). */
export function shellCommand(shell: string): string {
  switch (shell) {
    case 'bash':
      return 'bash --noprofile --norc -eo pipefail {0}';
    case 'sh':
      return 'sh -e {0}';
    case 'python':
      return 'python3 {0}';
    default:
      return shell.includes('{0}') ? shell : `${shell} {0}`;
  }
}

/**
 * One job's VM, seen as a place to run scripts: each script is written to a
 * file in the guest first (scripts can be long and contain anything), then run
 * by its shell, with output streamed to the job log.
 */
export class GuestSession {
  private counter = 0;

  constructor(
    readonly driver: VmDriver,
    readonly vmId: string,
    private readonly log: JobLog,
    /** Milliseconds since epoch after which the job is out of time (VM destroyed). */
    private deadline: number,
  ) {}

  /** Gives the VM at least `seconds` more from now (GitLab's after_script has a timeout of its own). */
  extendDeadline(seconds: number): void {
    this.deadline = Math.max(this.deadline, Date.now() + seconds * 1000);
  }

  private remainingSeconds(): number {
    return Math.max(1, Math.ceil((this.deadline - Date.now()) / 1000));
  }

  /** Runs a command quietly and returns its stdout; fails on a non-zero status. */
  async capture(argv: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<string> {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const result = await this.driver.exec(
      this.vmId,
      { argv, env, cwd: '/', timeoutSeconds: this.remainingSeconds() },
      { stdout: (b) => out.push(Buffer.from(b)), stderr: (b) => err.push(Buffer.from(b)) },
    );
    if (result.exitCode !== 0) throw new Error(`${argv.join(' ')} failed (${result.exitCode}): ${Buffer.concat(err).toString('utf8').trim()}`);
    return Buffer.concat(out).toString('utf8');
  }

  async writeFile(path: string, content: string, setup = ''): Promise<void> {
    await this.capture(['sh', '-c', `mkdir -p "$(dirname "$2")" && printf %s "$1" > "$2"${setup ? ` && ${setup}` : ''}`, 'sh', content, path]);
  }

  /** Runs a script; returns its exit status (124/137 when its own timeout killed it). */
  /** Runs one script; its exit status, and how long the command ran as the driver measured it. */
  async runScript(run: ScriptRun): Promise<{ exitCode: number; durationMs: number }> {
    const file = `/tmp/hearth/scripts/script-${++this.counter}${run.shell === 'python' ? '.py' : '.sh'}`;
    // Each round trip costs a few hundred ms under TCG, so set-up rides along with the write.
    await this.writeFile(file, run.script, run.setup);
    const command = shellCommand(run.shell).replaceAll('{0}', file);
    const argv = ['sh', '-c', run.timeoutSeconds ? `exec timeout -s KILL ${run.timeoutSeconds} ${command}` : `exec ${command}`];
    const result = await this.driver.exec(
      this.vmId,
      { argv, env: run.env, cwd: run.cwd, timeoutSeconds: this.remainingSeconds() },
      { stdout: (b) => this.log.chunk('stdout', b), stderr: (b) => this.log.chunk('stderr', b) },
    );
    this.log.flush();
    return { exitCode: result.exitCode, durationMs: result.durationMs };
  }
}
