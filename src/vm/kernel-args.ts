/**
 * The guest kernel command line every driver shares: what the Hearth images'
 * kernel needs to boot quickly, and the `hearth.*` arguments the guest agent
 * reads (src/guest/agent/hearth-agent.c). Each VMM adds only how its agent is
 * reached (QEMU: a virtio-serial port; Firecracker: a vsock port).
 */

/** quiet: the serial console is slow under TCG. cryptomgr.notests: boot-time self-tests cost ~0.2 s. */
export const BASE_KERNEL_ARGS = ['console=ttyS0', 'quiet', 'panic=-1', 'cryptomgr.notests', 'audit=0'];

/**
 * Under TCG, Debian's cloud kernel hangs at TSC calibration in about half the
 * boots unless told the TSC frequency; these values made 10 of 10 boots work.
 */
export const TCG_KERNEL_ARGS = ['tsc_early_khz=2000000', 'lpj=4000000'];

/** The base arguments, plus the TCG ones when the guest runs without KVM. */
export function baseKernelArgs(accel: 'kvm' | 'tcg'): string[] {
  return [...BASE_KERNEL_ARGS, ...(accel === 'tcg' ? TCG_KERNEL_ARGS : [])];
}

/**
 * The disks' roles, found by the agent through their ext4 labels: `root` means
 * switch to the root disk (a rootfs image), `source` means mount the job's
 * working tree at /mnt/hearth-src.
 */
export function diskRoleArgs(disks: { readonly root: boolean; readonly source: boolean }): string[] {
  return [...(disks.root ? ['hearth.root=disk'] : []), ...(disks.source ? ['hearth.src=disk'] : [])];
}
