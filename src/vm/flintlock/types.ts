/**
 * Flintlock's microVM model in Hearth's camelCase. Every field here has a
 * counterpart in proto/types/microvm.proto (convert.ts does the mapping); none
 * is made up, so what Hearth can ask for is exactly what flintlockd accepts.
 */

/**
 * A microVM's state as flintlockd reports it:
 * - PENDING: the spec is stored, flintlockd is still reconciling it
 * - CREATED: the VM exists and was started
 * - FAILED: reconciliation gave up (status.retry says how often it tried)
 * - DELETING: deletion was asked for; the VM disappears once reconciled
 */
export type FlintlockMicroVmState = 'PENDING' | 'CREATED' | 'FAILED' | 'DELETING';

export interface FlintlockKernel {
  /** Container image holding the kernel. */
  readonly image: string;
  /** Extra kernel arguments on top of the provider's own. Never put secrets here: the host's process list shows them. */
  readonly cmdline?: Readonly<Record<string, string>>;
  /** Kernel file inside the image. */
  readonly filename?: string;
  readonly addNetworkConfig?: boolean;
}

export interface FlintlockInitrd {
  readonly image: string;
  /** flintlockd defaults it to "initrd". */
  readonly filename?: string;
}

export interface FlintlockVolume {
  readonly id: string;
  readonly isReadOnly?: boolean;
  /** Additional volumes only; cloud-init mounts them. */
  readonly mountPoint?: string;
  readonly source: { readonly containerSource?: string; readonly virtiofsSource?: string };
  readonly partitionId?: string;
  readonly sizeInMb?: number;
}

export interface FlintlockNetworkInterface {
  /** Host-side id; guest device names follow list order (eth1, eth2, ...). */
  readonly deviceId: string;
  readonly type: 'MACVTAP' | 'TAP';
  readonly guestMac?: string;
  /** Static CIDR address; DHCP when unset. */
  readonly address?: { readonly address: string; readonly gateway?: string; readonly nameservers?: readonly string[] };
  readonly overrides?: { readonly bridgeName?: string };
}

/** What Hearth asks flintlockd to create. */
export interface FlintlockMicroVmSpec {
  readonly id: string;
  readonly namespace: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly vcpu: number;
  readonly memoryInMb: number;
  readonly kernel: FlintlockKernel;
  readonly initrd?: FlintlockInitrd;
  readonly rootVolume: FlintlockVolume;
  readonly additionalVolumes?: readonly FlintlockVolume[];
  readonly interfaces?: readonly FlintlockNetworkInterface[];
  /** Cloud-init documents by name (meta-data, user-data, ...), each base64; see cloud-init.ts. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** flintlockd's default provider when unset. */
  readonly provider?: string;
  readonly allowGuestAgent?: boolean;
}

export interface FlintlockMount {
  readonly type: 'DEV' | 'HOSTPATH';
  readonly source: string;
}

export interface FlintlockMicroVmStatus {
  readonly state: FlintlockMicroVmState;
  readonly volumes: Readonly<Record<string, { readonly mount?: FlintlockMount }>>;
  readonly kernelMount?: FlintlockMount;
  readonly initrdMount?: FlintlockMount;
  readonly networkInterfaces: Readonly<Record<string, { readonly hostDeviceName: string; readonly index: number; readonly macAddress: string }>>;
  /** Reconcile attempts so far; the only failure detail the API carries. */
  readonly retry: number;
  /** Host socket of the guest-agent vsock; empty unless allowGuestAgent. */
  readonly vsockPath: string;
}

/** A microVM as flintlockd reports it. `uid` and the timestamps are flintlockd's (spec.uid, spec.*_at). */
export interface FlintlockMicroVm {
  readonly uid: string;
  readonly version: number;
  readonly spec: FlintlockMicroVmSpec;
  readonly createdAt?: Date;
  readonly updatedAt?: Date;
  readonly deletedAt?: Date;
  readonly status: FlintlockMicroVmStatus;
}
