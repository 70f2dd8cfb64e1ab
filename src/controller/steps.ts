import { isHearthError } from '../errors.ts';
import type { Logger } from '../log.ts';

/**
 * One named step of the reconcile loop, as fastify names its hooks and
 * firecracker-go-sdk its handler steps.
 * - role host: runs where VMs run; leader: on the replica holding the leadership (checked per step: it can move).
 * - cadence every: on each pass, kicks included; periodic: sweeps that read the world (the forge API,
 *   every VM) at most once per interval, so a busy host's kicks do not turn into API calls and full scans.
 */
export interface Step {
  readonly name: string;
  readonly role: 'host' | 'leader';
  readonly cadence: 'every' | 'periodic';
  readonly run: () => Promise<void>;
}

export interface StepLoopOptions {
  readonly intervalMs: number;
  /** Whether this process takes the role's steps now. */
  readonly takes: (role: Step['role']) => boolean;
  readonly logger: Logger;
  /** Before each pass, and after a step failed (the leader's watch restarts). */
  readonly beforePass?: () => void;
  readonly onStepFailed?: (step: string) => void;
  readonly reconciled?: (step: string, ok: boolean) => void;
}

/**
 * Runs the step table: a pass runs every step this process takes, in order,
 * each independent of the others (one failing, a forge down, does not stop the
 * rest). Passes never overlap; a kick during one runs another after it.
 */
export class StepLoop {
  private readonly lastRun = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly steps: readonly Step[],
    private readonly options: StepLoopOptions,
  ) {}

  start(): void {
    this.stopped = false;
    this.kick();
    this.timer = setInterval(() => this.kick(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Asks for a pass soon. */
  kick(): void {
    if (this.stopped) return;
    if (this.pass) {
      this.again = true;
      return;
    }
    this.pass = this.runPass()
      .catch((error: unknown) => this.options.logger.error({ err: error }, 'reconcile pass failed'))
      .finally(() => {
        this.pass = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Another pass right after this one (a step found more to do). */
  runAgain(): void {
    this.again = true;
  }

  /** The periodic step `name` runs on the next pass, whatever its interval says. */
  rerun(name: string): void {
    this.lastRun.delete(name);
  }

  /** Waits for the current pass (tests and shutdown). */
  async settle(): Promise<void> {
    while (this.pass) await this.pass;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.settle();
  }

  /** One full pass, now (tests call it directly). */
  async runPass(): Promise<void> {
    this.options.beforePass?.();
    for (const step of this.steps) {
      if (this.stopped) return;
      if (!this.options.takes(step.role)) continue;
      if (step.cadence === 'periodic') {
        if (Date.now() - (this.lastRun.get(step.name) ?? 0) < this.options.intervalMs) continue;
        this.lastRun.set(step.name, Date.now());
      }
      try {
        await step.run();
        this.options.reconciled?.(step.name, true);
      } catch (error) {
        this.options.onStepFailed?.(step.name);
        this.options.reconciled?.(step.name, false);
        this.options.logger.warn(
          { step: step.name, err: isHearthError(error) ? { message: error.message, fix: error.fix } : error },
          'reconcile step failed; the next pass retries',
        );
      }
    }
  }
}
