import { access, constants, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export type Accel = 'kvm' | 'tcg';

export interface AccelDecision {
  readonly accel: Accel;
  readonly reason: string;
}

interface ProbeRecord {
  readonly bootId: string;
  readonly usable: boolean;
  readonly reason: string;
  readonly probedAt: string;
}

async function bootId(): Promise<string> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  } catch {
    return 'unknown';
  }
}

/**
 * Why a KVM probe boot failed, as its verdict says it: a guest that stopped early (QEMU exited, e.g.
 * KVM refused the vCPU) is told apart from one that hung until the boot timeout. `detail` is the boot
 * error's first line, e.g. "QEMU exited during boot (1)".
 */
export function kvmProbeFailure(elapsedMs: number, timeoutMs: number, detail: string): string {
  const elapsed = Math.round(elapsedMs);
  if (elapsedMs < timeoutMs) return `a KVM guest stopped after ${elapsed} ms without answering (${detail}); using TCG`;
  return `a KVM guest did not answer within ${timeoutMs / 1000} s (${detail}); using TCG`;
}

/** How long decideAccel waits for a probe that neither answers nor fails (the probe's own boot timeout should fire first). */
export const PROBE_BACKSTOP_MS = 30_000;

/**
 * KVM or TCG. `/dev/kvm` can exist and still hang guests, so the only honest
 * test is a real short boot under KVM with a time limit. Its verdict is kept
 * per host boot (a reboot or a new kernel module may change it).
 */
export async function decideAccel(options: {
  cacheDir: string;
  override?: string | undefined;
  /** Boots a guest under KVM; resolves whether the agent answered in time. */
  probe: () => Promise<{ usable: boolean; reason: string }>;
  /** Ignore the cached verdict and probe again (`hearth doctor --reprobe`). */
  fresh?: boolean;
  /** A probe still pending after this long counts as a hang: TCG (default PROBE_BACKSTOP_MS). */
  probeTimeoutMs?: number;
  /** The KVM device (default /dev/kvm); tests point it elsewhere. */
  kvmDevice?: string;
  /** This host boot's id (default: /proc/sys/kernel/random/boot_id); the cache is per boot. */
  bootId?: () => Promise<string>;
}): Promise<AccelDecision> {
  if (options.override === 'tcg' || options.override === 'kvm') return { accel: options.override, reason: 'set by HEARTH_ACCEL' };
  const device = options.kvmDevice ?? '/dev/kvm';
  try {
    await access(device, constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: `${device} is missing or not writable by this user` };
  }
  const file = join(options.cacheDir, 'kvm-probe.json');
  const id = await (options.bootId ?? bootId)();
  if (!options.fresh) {
    try {
      const cached = JSON.parse(await readFile(file, 'utf8')) as ProbeRecord;
      if (cached.bootId === id) return { accel: cached.usable ? 'kvm' : 'tcg', reason: `${cached.reason} (probed ${cached.probedAt})` };
    } catch {
      // no verdict for this boot yet
    }
  }
  let result: { usable: boolean; reason: string };
  try {
    result = await withBackstop(options.probe(), options.probeTimeoutMs ?? PROBE_BACKSTOP_MS);
  } catch (error) {
    // The probe could not boot at all (no `minimal` image yet, say): that says nothing about KVM,
    // so TCG for now, and no verdict is kept: the next start probes again.
    const detail = ((error as Error).message ?? String(error)).split('\n')[0];
    return { accel: 'tcg', reason: `the KVM probe could not run (${detail}); using TCG; the next start probes again` };
  }
  const record: ProbeRecord = { bootId: id, usable: result.usable, reason: result.reason, probedAt: new Date().toISOString() };
  await mkdir(options.cacheDir, { recursive: true });
  await writeFile(file, JSON.stringify(record, null, 2) + '\n');
  return { accel: result.usable ? 'kvm' : 'tcg', reason: result.reason };
}

/** The probe's verdict, or "unusable" when it has not answered within `ms` (a guest hung under KVM). */
async function withBackstop(probe: Promise<{ usable: boolean; reason: string }>, ms: number): Promise<{ usable: boolean; reason: string }> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<{ usable: boolean; reason: string }>((resolve) => {
    timer = setTimeout(() => resolve({ usable: false, reason: `the KVM probe did not finish within ${ms / 1000} s (a guest hung under KVM); using TCG` }), ms);
  });
  // A probe that fails after the backstop has already answered "unusable": its error changes nothing.
  probe.catch(() => undefined);
  try {
    return await Promise.race([probe, hang]);
  } finally {
    clearTimeout(timer);
  }
}
