/**
 * Demand for one pool as an exponentially weighted arrival rate: each arrival
 * adds 1/window, and the rate decays with time constant `window`. The idle
 * target is what covers the arrivals expected while one replacement VM starts,
 * rounded up, between the configured floor and ceiling.
 */
export class DemandEstimator {
  private rate = 0; // arrivals per second
  private at: number;

  constructor(
    private readonly windowSeconds: number,
    now: number = Date.now(),
  ) {
    this.at = now;
  }

  private decay(now: number): void {
    const elapsed = Math.max(0, (now - this.at) / 1000);
    this.rate *= Math.exp(-elapsed / this.windowSeconds);
    this.at = now;
  }

  record(now: number = Date.now()): void {
    this.decay(now);
    this.rate += 1 / this.windowSeconds;
  }

  perSecond(now: number = Date.now()): number {
    this.decay(now);
    return this.rate;
  }

  /** Idle VMs to keep so that arrivals during one refill (`startSeconds`) find one ready. */
  idleTarget(startSeconds: number, floor: number, ceiling: number, now: number = Date.now()): number {
    const expected = this.perSecond(now) * Math.max(1, startSeconds);
    // A tenth of an expected arrival is noise, not a reason to keep a VM running.
    return Math.min(ceiling, Math.max(floor, Math.ceil(expected - 0.1)));
  }
}
