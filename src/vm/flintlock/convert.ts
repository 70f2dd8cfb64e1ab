import type { ProtoAny, ProtoMicroVm, ProtoMicroVmSpec, ProtoMount, ProtoNetworkInterface, ProtoTimestamp, ProtoVolume } from './proto.ts';
import type { FlintlockMicroVm, FlintlockMicroVmSpec, FlintlockMount, FlintlockNetworkInterface, FlintlockVolume } from './types.ts';

/** Hearth's camelCase spec to the proto message. uid and timestamps are left out: flintlockd assigns them. */
export function toProtoSpec(spec: FlintlockMicroVmSpec): ProtoMicroVmSpec {
  return {
    id: spec.id,
    namespace: spec.namespace,
    labels: { ...spec.labels },
    vcpu: spec.vcpu,
    memory_in_mb: spec.memoryInMb,
    kernel: {
      image: spec.kernel.image,
      cmdline: { ...spec.kernel.cmdline },
      filename: spec.kernel.filename,
      add_network_config: spec.kernel.addNetworkConfig ?? false,
    },
    initrd: spec.initrd ? { image: spec.initrd.image, filename: spec.initrd.filename } : null,
    root_volume: toProtoVolume(spec.rootVolume),
    additional_volumes: (spec.additionalVolumes ?? []).map(toProtoVolume),
    interfaces: (spec.interfaces ?? []).map(toProtoInterface),
    metadata: { ...spec.metadata },
    provider: spec.provider,
    allow_guest_agent: spec.allowGuestAgent ?? false,
  };
}

function toProtoVolume(volume: FlintlockVolume): ProtoVolume {
  return {
    id: volume.id,
    is_read_only: volume.isReadOnly ?? false,
    mount_point: volume.mountPoint,
    source: { container_source: volume.source.containerSource, virtiofs_source: volume.source.virtiofsSource },
    partition_id: volume.partitionId,
    size_in_mb: volume.sizeInMb,
  };
}

function toProtoInterface(nic: FlintlockNetworkInterface): ProtoNetworkInterface {
  return {
    device_id: nic.deviceId,
    type: nic.type,
    guest_mac: nic.guestMac,
    address: nic.address ? { address: nic.address.address, gateway: nic.address.gateway, nameservers: [...(nic.address.nameservers ?? [])] } : null,
    overrides: nic.overrides ? { bridge_name: nic.overrides.bridgeName } : null,
  };
}

/** A proto MicroVM to Hearth's model; `undefined` in, empty values out, because proto3 cannot tell unset from zero. */
export function fromProtoMicroVm(vm: ProtoMicroVm): FlintlockMicroVm {
  const spec = vm.spec;
  const status = vm.status;
  return {
    uid: spec?.uid ?? '',
    version: vm.version,
    spec: {
      id: spec?.id ?? '',
      namespace: spec?.namespace ?? '',
      labels: { ...spec?.labels },
      vcpu: spec?.vcpu ?? 0,
      memoryInMb: spec?.memory_in_mb ?? 0,
      kernel: {
        image: spec?.kernel?.image ?? '',
        cmdline: { ...spec?.kernel?.cmdline },
        ...(spec?.kernel?.filename !== undefined && { filename: spec.kernel.filename }),
        addNetworkConfig: spec?.kernel?.add_network_config ?? false,
      },
      ...(spec?.initrd && { initrd: { image: spec.initrd.image, ...(spec.initrd.filename !== undefined && { filename: spec.initrd.filename }) } }),
      rootVolume: fromProtoVolume(spec?.root_volume ?? { id: '' }),
      additionalVolumes: (spec?.additional_volumes ?? []).map(fromProtoVolume),
      interfaces: (spec?.interfaces ?? []).map(fromProtoInterface),
      metadata: { ...spec?.metadata },
      ...(spec?.provider !== undefined && { provider: spec.provider }),
      allowGuestAgent: spec?.allow_guest_agent ?? false,
    },
    ...optionalDate('createdAt', spec?.created_at),
    ...optionalDate('updatedAt', spec?.updated_at),
    ...optionalDate('deletedAt', spec?.deleted_at),
    status: {
      state: status?.state ?? 'PENDING',
      volumes: Object.fromEntries(Object.entries(status?.volumes ?? {}).map(([id, v]) => [id, v.mount ? { mount: fromProtoMount(v.mount) } : {}])),
      ...(status?.kernel_mount && { kernelMount: fromProtoMount(status.kernel_mount) }),
      ...(status?.initrd_mount && { initrdMount: fromProtoMount(status.initrd_mount) }),
      networkInterfaces: Object.fromEntries(
        Object.entries(status?.network_interfaces ?? {}).map(([id, n]) => [
          id,
          { hostDeviceName: n.host_device_name, index: n.index, macAddress: n.mac_address },
        ]),
      ),
      retry: status?.retry ?? 0,
      vsockPath: status?.vsock_path ?? '',
    },
  };
}

function fromProtoVolume(volume: ProtoVolume): FlintlockVolume {
  const source = volume.source;
  return {
    id: volume.id,
    isReadOnly: volume.is_read_only ?? false,
    ...(volume.mount_point !== undefined && { mountPoint: volume.mount_point }),
    source: {
      ...(source?.container_source !== undefined && { containerSource: source.container_source }),
      ...(source?.virtiofs_source !== undefined && { virtiofsSource: source.virtiofs_source }),
    },
    ...(volume.partition_id !== undefined && { partitionId: volume.partition_id }),
    ...(volume.size_in_mb !== undefined && { sizeInMb: volume.size_in_mb }),
  };
}

function fromProtoInterface(nic: ProtoNetworkInterface): FlintlockNetworkInterface {
  return {
    deviceId: nic.device_id,
    type: nic.type ?? 'MACVTAP',
    ...(nic.guest_mac !== undefined && { guestMac: nic.guest_mac }),
    ...(nic.address && {
      address: {
        address: nic.address.address,
        ...(nic.address.gateway !== undefined && { gateway: nic.address.gateway }),
        nameservers: nic.address.nameservers ?? [],
      },
    }),
    ...(nic.overrides && { overrides: nic.overrides.bridge_name !== undefined ? { bridgeName: nic.overrides.bridge_name } : {} }),
  };
}

function fromProtoMount(mount: ProtoMount): FlintlockMount {
  return { type: mount.type, source: mount.source };
}

function optionalDate<K extends string>(key: K, timestamp: ProtoTimestamp | null | undefined): Partial<Record<K, Date>> {
  if (!timestamp) return {};
  const ms = Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1e6);
  // flintlockd leaves unset times at zero rather than absent.
  return ms === 0 ? {} : ({ [key]: new Date(ms) } as Partial<Record<K, Date>>);
}

const STRING_VALUE_TYPE_URL = 'type.googleapis.com/google.protobuf.StringValue';

/**
 * CreateMicroVMRequest.metadata is map<string, google.protobuf.Any>; a plain
 * string travels as a packed google.protobuf.StringValue. Its encoding is one
 * length-delimited field 1 (tag 0x0a), written by hand because the protos
 * Hearth loads do not include wrappers.proto.
 */
export function packString(value: string): ProtoAny {
  const bytes = Buffer.from(value, 'utf8');
  const length: number[] = [];
  let rest = bytes.length;
  while (rest > 0x7f) {
    length.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  length.push(rest);
  return { type_url: STRING_VALUE_TYPE_URL, value: Buffer.concat([Buffer.from([0x0a, ...length]), bytes]) };
}
