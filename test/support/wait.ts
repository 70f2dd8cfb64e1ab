// The one way tests wait: poll a condition until it holds, or fail saying what was awaited
// and what was last seen. Never a fixed sleep before an assertion.
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** What is awaited, as the failure message names it ("the job to be released"). */
  readonly what: string;
  /** Give up after this many milliseconds (default 30 s). */
  readonly timeout?: number;
  /** Time between two checks (default 50 ms). */
  readonly interval?: number;
  /** Added to the failure message: the state that was last seen, log lines, ... */
  readonly detail?: () => string | Promise<string>;
}

/** A condition holds when it returns anything but undefined, null or false; waitFor returns that value. */
type Held<T> = Exclude<T, undefined | null | false>;

/**
 * Checks `condition` until it holds and returns what it returned. The condition
 * is checked once more at the deadline, so a slow check cannot lose the race;
 * an error it throws fails the wait at once.
 */
export async function waitFor<T>(condition: () => T | Promise<T>, options: WaitOptions): Promise<Held<T>> {
  const timeout = options.timeout ?? 30_000;
  const interval = options.interval ?? 50;
  const deadline = Date.now() + timeout;
  for (;;) {
    const expired = Date.now() >= deadline;
    const value = await condition();
    if (value !== undefined && value !== null && value !== false) return value as Held<T>;
    if (expired) {
      const detail = options.detail ? await options.detail() : '';
      throw new Error(`timed out after ${timeout} ms waiting for ${options.what}${detail ? `\n${detail}` : ''}`);
    }
    await sleep(Math.min(interval, Math.max(1, deadline - Date.now())));
  }
}
