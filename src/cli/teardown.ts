import type { HostDriver } from '../vm/host-driver.ts';

const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

/**
 * On SIGINT, SIGTERM or SIGHUP, destroy every VM this process started before
 * exiting, so an interrupted run leaves no QEMU process, socket or file behind.
 * A second signal during teardown is ignored: teardown is quick and must finish.
 */
export function destroyVmsOnSignals(driver: HostDriver): () => void {
  let tearingDown = false;
  const handlers = Object.entries(SIGNAL_EXIT).map(([signal, code]) => {
    const handler = (): void => {
      if (tearingDown) return;
      tearingDown = true;
      process.stderr.write(`hearth: ${signal}: destroying VMs\n`);
      void driver.destroyAll().finally(() => process.exit(code));
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
}
