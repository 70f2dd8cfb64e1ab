import type { DriverCapabilities } from '../vm/driver.ts';
import { toHost, type Host } from './job.ts';
import { selectCommittedByHost, selectHosts, setHostState, touchHost, upsertHost } from './plans.ts';
import { TRANSITIONAL } from './states.ts';
import type { LedgerStore } from './store.ts';

/** A VM host as it registers itself. */
export interface HostInfo {
  readonly id: string;
  readonly cpus: number;
  readonly memoryMib: number;
  readonly diskGib: number;
  readonly drivers: readonly string[];
  readonly images: readonly string[];
  readonly labels: readonly string[];
  /** What its driver can boot (VmDriver.capabilities), for admission. */
  readonly capabilities?: DriverCapabilities;
}

/** VM hosts: registration, heartbeats (each host's lease on its jobs), and what is committed on each. */
export class HostOperations {
  constructor(private readonly store: LedgerStore) {}

  async registerHost(host: HostInfo): Promise<void> {
    const at = this.store.now();
    await upsertHost(this.store.db, {
      id: host.id,
      cpus: host.cpus,
      memory_mib: host.memoryMib,
      disk_gib: host.diskGib,
      drivers: JSON.stringify(host.drivers),
      images: JSON.stringify(host.images),
      labels: JSON.stringify(host.labels),
      capabilities: host.capabilities ? JSON.stringify(host.capabilities) : null,
      pool_cpus: 0,
      pool_memory_mib: 0,
      state: 'up',
      started_at: at,
      heartbeat_at: at,
    });
  }

  /** A host's heartbeat: its lease on every job placed on it. Returns the state it was in before. */
  heartbeatHost(id: string, pool: { cpus: number; memoryMib: number }): Promise<string | undefined> {
    return touchHost(this.store.db, id, this.store.now(), pool);
  }

  /** Marks a host lost if its heartbeat is still older than `timeoutMs` (a late heartbeat wins). */
  markHostLost(id: string, timeoutMs: number): Promise<boolean> {
    return setHostState(this.store.db, id, 'lost', this.store.ago(timeoutMs));
  }

  markHostLeft(id: string): Promise<boolean> {
    return setHostState(this.store.db, id, 'left');
  }

  async hosts(): Promise<Host[]> {
    return (await selectHosts(this.store.db)).map(toHost);
  }

  /** Hosts `up` whose heartbeat is within `timeoutMs`. */
  async liveHosts(timeoutMs: number): Promise<Host[]> {
    const since = this.store.ago(timeoutMs);
    return (await this.hosts()).filter((h) => h.state === 'up' && h.heartbeat_at >= since);
  }

  async committedByHost(): Promise<Map<string, { cpus: number; memoryMib: number }>> {
    const rows = await selectCommittedByHost(this.store.db, TRANSITIONAL);
    return new Map(rows.map((r) => [r.host as string, { cpus: Number(r.cpus ?? 0), memoryMib: Number(r.memory_mib ?? 0) }]));
  }
}
