// The part of Firecracker's REST API (its OpenAPI/Swagger 2.0 description) that Hearth's
// driver calls, plus the few read and logger endpoints the fake's own tests use: for each
// endpoint its method, path, operationId and body, and the body schemas. Written here so the
// fake validates requests without anything outside the repository; `npm run conformance`
// (test/conformance/firecracker-api.conformance.ts) compares every entry with the official
// spec and fails on any disagreement. Descriptions, examples and defaults are left out: they
// do not change what a request may contain.

export type SchemaNode = Record<string, unknown>;

export interface ApiParameter {
  readonly name: string;
  readonly in: 'path' | 'body';
  readonly required?: boolean;
  readonly type?: string;
  readonly schema?: SchemaNode;
}

export interface ApiOperation {
  readonly operationId: string;
  readonly parameters?: readonly ApiParameter[];
}

export interface ApiDocument {
  readonly info: { readonly version: string };
  readonly paths: Readonly<Record<string, Readonly<Record<string, ApiOperation>>>>;
  readonly definitions: Readonly<Record<string, SchemaNode>>;
}

/** A JSON body of the named definition; Swagger's `required` on the body parameter as the spec gives it (absent means not required). */
function body(definition: string, required: boolean | undefined, name = 'body'): ApiParameter {
  return { name, in: 'body', ...(required !== undefined ? { required } : {}), schema: { $ref: `#/definitions/${definition}` } };
}

function pathParam(name: string): ApiParameter {
  return { name, in: 'path', required: true, type: 'string' };
}

const string = { type: 'string' };
const boolean = { type: 'boolean' };
const integer = { type: 'integer' };
const ref = (definition: string): SchemaNode => ({ $ref: `#/definitions/${definition}` });
const int64 = { type: 'integer', format: 'int64', minimum: 0 };

/** MmdsConfig.ipv4_address: a link-local 169.254.x.y address (the spec puts this regular expression in `format`). */
const LINK_LOCAL_FORMAT = '169.254.([1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-4]).([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])';

export const FIRECRACKER_API: ApiDocument = {
  // The spec version these facts were checked against.
  info: { version: '1.16.1' },
  paths: {
    // Read by the fake's tests only.
    '/': { get: { operationId: 'describeInstance' } },
    '/vm/config': { get: { operationId: 'getExportVmConfig' } },
    '/logger': { put: { operationId: 'putLogger', parameters: [body('Logger', true)] } },
    // Called by src/vm/firecracker/driver.ts.
    '/actions': { put: { operationId: 'createSyncAction', parameters: [body('InstanceActionInfo', true, 'info')] } },
    '/boot-source': { put: { operationId: 'putGuestBootSource', parameters: [body('BootSource', true)] } },
    '/machine-config': {
      get: { operationId: 'getMachineConfiguration' },
      put: { operationId: 'putMachineConfiguration', parameters: [body('MachineConfiguration', undefined)] },
      patch: { operationId: 'patchMachineConfiguration', parameters: [body('MachineConfiguration', undefined)] },
    },
    '/drives/{drive_id}': {
      put: { operationId: 'putGuestDriveByID', parameters: [pathParam('drive_id'), body('Drive', true)] },
      patch: { operationId: 'patchGuestDriveByID', parameters: [pathParam('drive_id'), body('PartialDrive', true)] },
    },
    '/network-interfaces/{iface_id}': {
      put: { operationId: 'putGuestNetworkInterfaceByID', parameters: [pathParam('iface_id'), body('NetworkInterface', true)] },
    },
    // GET /mmds is read by test/vm/firecracker.test.ts to see what the driver stored.
    '/mmds': { put: { operationId: 'putMmds', parameters: [body('MmdsContentsObject', undefined)] }, get: { operationId: 'getMmds' } },
    '/mmds/config': { put: { operationId: 'putMmdsConfig', parameters: [body('MmdsConfig', true)] } },
    '/vsock': { put: { operationId: 'putGuestVsock', parameters: [body('Vsock', true)] } },
    '/vm': { patch: { operationId: 'patchVm', parameters: [body('Vm', true)] } },
    '/snapshot/create': { put: { operationId: 'createSnapshot', parameters: [body('SnapshotCreateParams', true)] } },
    '/snapshot/load': { put: { operationId: 'loadSnapshot', parameters: [body('SnapshotLoadParams', true)] } },
  },
  definitions: {
    InstanceActionInfo: {
      type: 'object',
      required: ['action_type'],
      properties: { action_type: { type: 'string', enum: ['FlushMetrics', 'InstanceStart', 'SendCtrlAltDel'] } },
    },
    BootSource: { type: 'object', required: ['kernel_image_path'], properties: { boot_args: string, initrd_path: string, kernel_image_path: string } },
    CpuTemplate: { type: 'string', enum: ['C3', 'T2', 'T2S', 'T2CL', 'T2A', 'V1N1', 'None'] },
    MachineConfiguration: {
      type: 'object',
      required: ['mem_size_mib', 'vcpu_count'],
      properties: {
        cpu_template: ref('CpuTemplate'),
        smt: boolean,
        mem_size_mib: integer,
        track_dirty_pages: boolean,
        vcpu_count: { type: 'integer', minimum: 1, maximum: 32 },
        huge_pages: { type: 'string', enum: ['None', '2M'] },
      },
    },
    Drive: {
      type: 'object',
      required: ['drive_id', 'is_root_device'],
      properties: {
        drive_id: string,
        partuuid: string,
        is_root_device: boolean,
        cache_type: { type: 'string', enum: ['Unsafe', 'Writeback'] },
        is_read_only: boolean,
        path_on_host: string,
        rate_limiter: ref('RateLimiter'),
        io_engine: { type: 'string', enum: ['Sync', 'Async'] },
        socket: string,
      },
    },
    PartialDrive: { type: 'object', required: ['drive_id'], properties: { drive_id: string, path_on_host: string, rate_limiter: ref('RateLimiter') } },
    RateLimiter: { type: 'object', properties: { bandwidth: ref('TokenBucket'), ops: ref('TokenBucket') } },
    TokenBucket: { type: 'object', required: ['refill_time', 'size'], properties: { one_time_burst: int64, refill_time: int64, size: int64 } },
    NetworkInterface: {
      type: 'object',
      required: ['host_dev_name', 'iface_id'],
      properties: {
        guest_mac: string,
        host_dev_name: string,
        iface_id: string,
        mtu: { type: 'integer', minimum: 68, maximum: 65535 },
        rx_rate_limiter: ref('RateLimiter'),
        tx_rate_limiter: ref('RateLimiter'),
      },
    },
    MmdsConfig: {
      type: 'object',
      required: ['network_interfaces'],
      properties: {
        version: { type: 'string', enum: ['V1', 'V2'] },
        network_interfaces: { type: 'array', items: string },
        ipv4_address: { type: 'string', format: LINK_LOCAL_FORMAT },
        imds_compat: boolean,
      },
    },
    MmdsContentsObject: { type: 'object', additionalProperties: true },
    Vsock: {
      type: 'object',
      required: ['guest_cid', 'uds_path'],
      properties: { guest_cid: { type: 'integer', minimum: 3 }, uds_path: string, vsock_id: string },
    },
    Vm: { type: 'object', required: ['state'], properties: { state: { type: 'string', enum: ['Paused', 'Resumed'] } } },
    SnapshotCreateParams: {
      type: 'object',
      required: ['mem_file_path', 'snapshot_path'],
      properties: { mem_file_path: string, snapshot_path: string, snapshot_type: { type: 'string', enum: ['Full', 'Diff'] } },
    },
    SnapshotLoadParams: {
      type: 'object',
      required: ['snapshot_path'],
      properties: {
        enable_diff_snapshots: boolean,
        track_dirty_pages: boolean,
        mem_file_path: string,
        mem_backend: ref('MemoryBackend'),
        snapshot_path: string,
        resume_vm: boolean,
        network_overrides: { type: 'array', items: ref('NetworkOverride') },
        vsock_override: ref('VsockOverride'),
        clock_realtime: boolean,
      },
    },
    MemoryBackend: {
      type: 'object',
      required: ['backend_type', 'backend_path'],
      properties: { backend_type: { type: 'string', enum: ['File', 'Uffd'] }, backend_path: string },
    },
    NetworkOverride: { type: 'object', required: ['iface_id', 'host_dev_name'], properties: { iface_id: string, host_dev_name: string } },
    VsockOverride: { type: 'object', required: ['uds_path'], properties: { uds_path: string } },
    Logger: {
      type: 'object',
      properties: {
        level: { type: 'string', enum: ['Error', 'Warning', 'Info', 'Debug', 'Trace', 'Off'] },
        log_path: string,
        show_level: boolean,
        show_log_origin: boolean,
        module: string,
      },
    },
  },
};
