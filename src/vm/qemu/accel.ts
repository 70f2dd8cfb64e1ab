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
 * KVM or TCG. `/dev/kvm` can exist and still hang guests, so the only honest
 * test is a real short boot under KVM with a time limit. Its verdict is kept
 * per host boot (a reboot or a new kernel module may change it).
 */
export async function decideAccel(options: {
  cacheDir: string;
  override?: string | undefined;
  /** Boots a guest under KVM; resolves whether the agent answered in time. */
  probe: () => Promise<{ usable: boolean; reason: string }>;
  fresh?: boolean;
}): Promise<AccelDecision> {
  if (options.override === 'tcg' || options.override === 'kvm') return { accel: options.override, reason: 'set by HEARTH_ACCEL' };
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: '/dev/kvm is missing or not writable by this user' };
  }
  const file = join(options.cacheDir, 'kvm-probe.json');
  const id = await bootId();
  if (!options.fresh) {
    try {
      const cached = JSON.parse(await readFile(file, 'utf8')) as ProbeRecord;
      if (cached.bootId === id) return { accel: cached.usable ? 'kvm' : 'tcg', reason: `${cached.reason} (probed ${cached.probedAt})` };
    } catch {
      // no verdict for this boot yet
    }
  }
  const result = await options.probe();
  const record: ProbeRecord = { bootId: id, usable: result.usable, reason: result.reason, probedAt: new Date().toISOString() };
  await mkdir(options.cacheDir, { recursive: true });
  await writeFile(file, JSON.stringify(record, null, 2) + '\n');
  return { accel: result.usable ? 'kvm' : 'tcg', reason: result.reason };
}
