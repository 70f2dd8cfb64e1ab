// Webhook delivery: one queue per simulator, so hooks reach Hearth one at a
// time in the order the events happened, unless a fault says otherwise.
import type { DeliveryRecord, FaultSettings, SimForge } from './types.ts';

/** Forges give up on a receiver after about 10 s; so does the sim. */
const SEND_TIMEOUT_MS = 10_000;

interface Outgoing {
  readonly record: DeliveryRecord;
  readonly body: string;
  readonly headers: Record<string, string>;
}

export interface NewDelivery {
  forge: SimForge;
  id: string;
  event: string;
  action: string;
  jobId: number;
  body: string;
  headers: Record<string, string>;
}

export class Deliverer {
  readonly records: DeliveryRecord[] = [];
  private readonly byId = new Map<string, Outgoing>();
  private held: Outgoing[] = [];
  private chain: Promise<void> = Promise.resolve();
  private readonly targets: { github?: string; gitlab?: string } = {};

  constructor(
    private readonly faults: () => FaultSettings,
    private readonly random: () => number,
  ) {}

  setTargets(t: { github?: string; gitlab?: string }): void {
    if (t.github !== undefined) this.targets.github = t.github;
    if (t.gitlab !== undefined) this.targets.gitlab = t.gitlab;
  }

  /**
   * Records a delivery and decides its fate now (drop, hold or send), so the
   * decision sequence follows event order whatever the receiver does. Resolves
   * once it was sent, dropped or held.
   */
  enqueue(d: NewDelivery): Promise<void> {
    const faults = this.faults();
    const record: DeliveryRecord = { forge: d.forge, id: d.id, event: d.event, action: d.action, jobId: d.jobId, dropped: false, held: false, responses: [] };
    const outgoing: Outgoing = { record, body: d.body, headers: d.headers };
    this.records.push(record);
    this.byId.set(d.id, outgoing);
    // Draw for every delivery, even at rate 0, so changing dropRate mid-test
    // does not shift later decisions.
    const roll = this.random();
    if (faults.dropRate > 0 && roll < faults.dropRate) {
      record.dropped = true;
      return Promise.resolve();
    }
    if (faults.reorder) {
      record.held = true;
      this.held.push(outgoing);
      return Promise.resolve();
    }
    return this.serially(async () => {
      await this.send(outgoing);
      if (faults.duplicate) await this.send(outgoing);
    });
  }

  /** Sends every held delivery, newest first. */
  flushHeld(): Promise<void> {
    const batch = this.held.reverse();
    this.held = [];
    const duplicate = this.faults().duplicate;
    return this.serially(async () => {
      for (const outgoing of batch) {
        outgoing.record.held = false;
        await this.send(outgoing);
        if (duplicate) await this.send(outgoing);
      }
    });
  }

  /** Sends a recorded delivery again, byte for byte, as a manual redelivery does. */
  async redeliver(id: string): Promise<number> {
    const outgoing = this.byId.get(id);
    if (!outgoing) throw new Error(`no delivery with id ${id}`);
    let status = 0;
    await this.serially(async () => {
      status = await this.send(outgoing);
    });
    return status;
  }

  /** Posts arbitrary bytes to a forge's target, outside the queue and the record. */
  async sendRaw(forge: SimForge, body: Buffer | string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
    const target = this.targets[forge];
    if (!target) throw new Error(`no ${forge} webhook target set (call setWebhookTargets first)`);
    const payload = typeof body === 'string' ? body : new Uint8Array(body);
    const response = await fetch(target, { method: 'POST', headers, body: payload, signal: AbortSignal.timeout(SEND_TIMEOUT_MS) });
    return { status: response.status, body: await response.text() };
  }

  /** Waits for every delivery queued so far. */
  idle(): Promise<void> {
    return this.serially(async () => {});
  }

  private serially(work: () => Promise<void>): Promise<void> {
    const next = this.chain.then(work);
    // A failure must not wedge the queue for later deliveries.
    this.chain = next.catch(() => {});
    return next;
  }

  private async send(outgoing: Outgoing): Promise<number> {
    const target = this.targets[outgoing.record.forge];
    // No receiver configured: nothing to answer, like a hook with no URL.
    if (!target) return 0;
    let status: number;
    try {
      const response = await fetch(target, { method: 'POST', headers: outgoing.headers, body: outgoing.body, signal: AbortSignal.timeout(SEND_TIMEOUT_MS) });
      await response.arrayBuffer();
      status = response.status;
    } catch {
      // Refused, reset or over the time limit: recorded as 0, as no status came back.
      status = 0;
    }
    outgoing.record.responses.push(status);
    return status;
  }
}
