// Every fault message the fake answers with, in one place. Wording follows
// Firecracker's own errors where we know them, so a driver that surfaces
// `fault_message` shows the same text against the fake and the real thing.

export const Faults = {
  invalidPathMethod: (method: string, path: string) => `Invalid request method and/or path: ${method} ${path}.`,
  emptyBody: (method: string) => `Empty ${method} request.`,
  unexpectedBody: (method: string) => `${method} request cannot have a body.`,
  deserialize: (detail: string) => `An error occurred when deserializing the json body of a request: ${detail}.`,
  idMismatch: () => 'The id from the path does not match the id from the body!',

  afterStart: () => 'The requested operation is not supported after starting the microVM.',
  beforeStart: () => 'The requested operation is not supported before starting the microVM.',
  missingKernel: () => 'Cannot start microvm without kernel configuration.',
  hostFileMissing: (what: string, path: string) => `${what} cannot be opened: ${path}: No such file or directory (os error 2)`,
  vsockBind: (path: string, reason: string) => `Cannot create backend for vsock device: Error binding to the host-side Unix socket ${path}: ${reason}`,
  duplicateRoot: () => 'A root block device already exists!',
  unknownInterface: (id: string) => `Invalid network interface id: ${id}`,
  mmdsInterfaces: (id: string) => `The MMDS could not be configured to forward IPv4 packets on interface ${id}: no such network interface.`,
  noBalloon: () => 'Invalid request: no balloon device configured.',
  notConfigured: (what: string) => `${what} is not configured.`,

  snapshotNeedsPause: () => 'Cannot create a snapshot: the microVM must be paused first.',
  diffNeedsDirtyPages: () => 'Diff snapshots are not allowed on uVMs with dirty page tracking disabled.',
  loadNotAllowed: () => 'Loading a microVM snapshot not allowed after configuring boot-specific resources.',
  loadFailed: (detail: string) => `Load snapshot error: ${detail}`,
  snapshotIo: (path: string, reason: string) => `Cannot write snapshot file ${path}: ${reason}`,
} as const;
