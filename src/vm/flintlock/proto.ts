import { fileURLToPath } from 'node:url';
import { loadSync, type MethodDefinition, type ServiceDefinition } from '@grpc/proto-loader';

/**
 * Flintlock's MicroVM service as loaded from ./proto, shared by the client and
 * the test fake so both speak the same wire format. The Proto* interfaces
 * below are the messages as @grpc/proto-loader hands them over with
 * LOADER_OPTIONS: proto field names, enums as strings, int64 as strings,
 * unset message fields as null and unset `optional` scalars as undefined.
 */

export const SERVICE_NAME = 'microvm.services.api.v1alpha1.MicroVM';

const PROTO_DIR = fileURLToPath(new URL('./proto/', import.meta.url));

const LOADER_OPTIONS = { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true, oneofs: false };

export type ProtoMicroVmState = 'PENDING' | 'CREATED' | 'FAILED' | 'DELETING';

export interface ProtoTimestamp {
  seconds: string | number;
  nanos: number;
}

export interface ProtoKernel {
  image: string;
  cmdline?: Record<string, string>;
  filename?: string;
  add_network_config?: boolean;
}

export interface ProtoInitrd {
  image: string;
  filename?: string;
}

export interface ProtoVolumeSource {
  container_source?: string;
  virtiofs_source?: string;
}

export interface ProtoVolume {
  id: string;
  is_read_only?: boolean;
  mount_point?: string;
  source?: ProtoVolumeSource | null;
  partition_id?: string;
  size_in_mb?: number;
}

export interface ProtoStaticAddress {
  address: string;
  gateway?: string;
  nameservers?: string[];
}

export interface ProtoNetworkInterface {
  device_id: string;
  type?: 'MACVTAP' | 'TAP';
  guest_mac?: string;
  address?: ProtoStaticAddress | null;
  overrides?: { bridge_name?: string } | null;
}

export interface ProtoMicroVmSpec {
  id: string;
  namespace: string;
  labels?: Record<string, string>;
  vcpu: number;
  memory_in_mb: number;
  kernel?: ProtoKernel | null;
  initrd?: ProtoInitrd | null;
  root_volume?: ProtoVolume | null;
  additional_volumes?: ProtoVolume[];
  interfaces?: ProtoNetworkInterface[];
  metadata?: Record<string, string>;
  created_at?: ProtoTimestamp | null;
  updated_at?: ProtoTimestamp | null;
  deleted_at?: ProtoTimestamp | null;
  uid?: string;
  provider?: string;
  allow_guest_agent?: boolean;
}

export interface ProtoMount {
  type: 'DEV' | 'HOSTPATH';
  source: string;
}

export interface ProtoMicroVmStatus {
  state: ProtoMicroVmState;
  volumes?: Record<string, { mount?: ProtoMount | null }>;
  kernel_mount?: ProtoMount | null;
  initrd_mount?: ProtoMount | null;
  network_interfaces?: Record<string, { host_device_name: string; index: number; mac_address: string }>;
  retry?: number;
  vsock_path?: string;
}

export interface ProtoMicroVm {
  version: number;
  spec?: ProtoMicroVmSpec | null;
  status?: ProtoMicroVmStatus | null;
}

export interface ProtoAny {
  type_url: string;
  value: Buffer;
}

export interface CreateMicroVmRequest {
  microvm?: ProtoMicroVmSpec | null;
  metadata?: Record<string, ProtoAny>;
}

export interface UidRequest {
  uid: string;
}

export interface ListMicroVmsRequest {
  namespace: string;
  name?: string;
}

export interface MicroVmResponse {
  microvm?: ProtoMicroVm | null;
}

export interface ListMicroVmsResponse {
  microvm: ProtoMicroVm[];
}

/** Request and response types of each method, so callers stay typed past the loader's `object`. */
export interface MicroVmMethods {
  CreateMicroVM: MethodDefinition<CreateMicroVmRequest, MicroVmResponse>;
  DeleteMicroVM: MethodDefinition<UidRequest, Record<string, never>>;
  GetMicroVM: MethodDefinition<UidRequest, MicroVmResponse>;
  ListMicroVMs: MethodDefinition<ListMicroVmsRequest, ListMicroVmsResponse>;
  ListMicroVMsStream: MethodDefinition<ListMicroVmsRequest, MicroVmResponse>;
}

let loaded: MicroVmMethods | undefined;

/** Parses the protos once per process; a missing or broken .proto fails here, at first use. */
export function microVmService(): MicroVmMethods {
  if (!loaded) {
    const definition = loadSync('services/microvm/v1alpha1/microvms.proto', LOADER_OPTIONS);
    // The loader types every method as MethodDefinition<object, object>; the shapes above are what it produces.
    loaded = definition[SERVICE_NAME] as ServiceDefinition as unknown as MicroVmMethods;
  }
  return loaded;
}
