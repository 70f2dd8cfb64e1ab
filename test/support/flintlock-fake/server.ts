// A stand-in for flintlockd: an in-process gRPC server built from the same
// protos as the client, with flintlockd's checks and lifecycle (PENDING, then
// CREATED; DELETING, then gone). With a guest runtime (./guest.ts), each
// CREATED microVM's guest really comes up; without one, no VMs are behind it.
import { randomBytes } from 'node:crypto';
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { ServiceDefinition } from '@grpc/proto-loader';
import type { FakeGuestRuntime } from './guest.ts';
import {
  microVmService,
  type CreateMicroVmRequest,
  type ListMicroVmsRequest,
  type ListMicroVmsResponse,
  type MicroVmResponse,
  type ProtoMicroVm,
  type ProtoMicroVmSpec,
  type ProtoMicroVmState,
  type UidRequest,
} from '../../../src/vm/flintlock/proto.ts';

/**
 * How failures are reported:
 * - flintlockd: as flintlockd really does. Only a missing spec or uid is
 *   INVALID_ARGUMENT; a failed validation or an unknown uid comes back as
 *   UNKNOWN with the wrapped Go error's text (upstream server.go returns
 *   fmt.Errorf values, which gRPC-Go sends as UNKNOWN).
 * - canonical: INVALID_ARGUMENT and NOT_FOUND, as a stricter server would.
 * Messages name the field either way; the validator's own wording is simplified.
 */
export type FakeErrorStyle = 'flintlockd' | 'canonical';

export interface FakeFlintlockOptions {
  readonly errorStyle?: FakeErrorStyle;
  /** PENDING to CREATED. */
  readonly createDelayMs?: number;
  /** DELETING to gone. */
  readonly deleteDelayMs?: number;
  /** Boots a guest for each microVM that reaches CREATED, stops it when deleted. */
  readonly guests?: FakeGuestRuntime | undefined;
}

export interface FakeRequest {
  readonly method: string;
  readonly request: unknown;
}

// The cloud-init documents flintlockd's metadata service serves.
const METADATA_KEYS = new Set(['meta-data', 'user-data', 'vendor-data', 'network-config']);

export class FakeFlintlock {
  readonly endpoint: string;
  /** Every call, in arrival order, as the server decoded it. */
  readonly requests: FakeRequest[] = [];
  /** Stored microVMs by uid, in the same shape flintlockd sends them. */
  readonly microvms = new Map<string, ProtoMicroVm>();
  readonly #server: Server;
  readonly #options: Required<Omit<FakeFlintlockOptions, 'guests'>> & Pick<FakeFlintlockOptions, 'guests'>;
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Guests that failed to boot, by uid (a broken user-data, say). */
  readonly guestErrors = new Map<string, Error>();

  private constructor(server: Server, port: number, options: Required<Omit<FakeFlintlockOptions, 'guests'>> & Pick<FakeFlintlockOptions, 'guests'>) {
    this.#server = server;
    this.endpoint = `127.0.0.1:${port}`;
    this.#options = options;
  }

  static async start(options: FakeFlintlockOptions = {}): Promise<FakeFlintlock> {
    const server = new Server();
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound)));
    });
    const fake = new FakeFlintlock(server, port, { errorStyle: 'flintlockd', createDelayMs: 300, deleteDelayMs: 300, ...options });
    server.addService(microVmService() as unknown as ServiceDefinition, fake.#handlers());
    return fake;
  }

  /** Moves a microVM to FAILED, as flintlockd does when reconciling keeps failing. */
  fail(uid: string, retries = 10): void {
    const vm = this.microvms.get(uid);
    if (vm?.status) Object.assign(vm.status, { state: 'FAILED', retry: retries });
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const uid of this.microvms.keys()) await this.#options.guests?.stop(uid);
    await new Promise<void>((resolve) => this.#server.tryShutdown(() => resolve()));
  }

  #handlers(): UntypedServiceImplementation {
    return {
      CreateMicroVM: this.#unary('CreateMicroVM', (request: CreateMicroVmRequest) => this.#create(request)),
      DeleteMicroVM: this.#unary('DeleteMicroVM', (request: UidRequest) => this.#delete(request)),
      GetMicroVM: this.#unary('GetMicroVM', (request: UidRequest) => ({ microvm: this.#find(request.uid, 'getting microvm') })),
      ListMicroVMs: this.#unary('ListMicroVMs', (request: ListMicroVmsRequest): ListMicroVmsResponse => ({ microvm: this.#list(request) })),
      ListMicroVMsStream: (call: ServerWritableStream<ListMicroVmsRequest, MicroVmResponse>) => {
        this.requests.push({ method: 'ListMicroVMsStream', request: call.request });
        if (!call.request.namespace) {
          call.emit('error', { code: status.INVALID_ARGUMENT, details: 'invalid request' });
          return;
        }
        for (const microvm of this.#list({ namespace: call.request.namespace })) call.write({ microvm });
        call.end();
      },
    };
  }

  /** Logs the request, then answers with the handler's value or the FakeRpcError it threw. */
  #unary<Req, Res>(method: string, handle: (request: Req) => Res) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      this.requests.push({ method, request: call.request });
      try {
        callback(null, handle(call.request));
      } catch (error) {
        if (!(error instanceof FakeRpcError)) throw error;
        callback({ code: error.code, details: error.message });
      }
    };
  }

  #create(request: CreateMicroVmRequest): MicroVmResponse {
    const spec = request.microvm;
    if (!spec) throw new FakeRpcError(status.INVALID_ARGUMENT, 'invalid create microvm request: MicroVMSpec required');
    const problem = specProblem(spec);
    if (problem) {
      throw this.#options.errorStyle === 'canonical'
        ? new FakeRpcError(status.INVALID_ARGUMENT, problem)
        : new FakeRpcError(status.UNKNOWN, `creating microvm: an error occurred when attempting to validate microvm spec: ${problem}`);
    }
    const uid = ulid();
    const microvm: ProtoMicroVm = {
      version: 1,
      spec: { ...structuredClone(spec), uid, created_at: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 } },
      status: { state: 'PENDING', retry: 0 },
    };
    this.microvms.set(uid, microvm);
    this.#later(this.#options.createDelayMs, () => {
      if (!this.#transition(uid, 'PENDING', 'CREATED')) return;
      this.#options.guests?.boot(uid, microvm.spec!).catch((error: unknown) => this.guestErrors.set(uid, error as Error));
    });
    return { microvm };
  }

  #delete(request: UidRequest): Record<string, never> {
    const microvm = this.#find(request.uid, 'deleting microvm');
    if (microvm.spec) microvm.spec.deleted_at = { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 };
    if (microvm.status) Object.assign(microvm.status, { state: 'DELETING', retry: 0 });
    void this.#options.guests?.stop(request.uid);
    this.#later(this.#options.deleteDelayMs, () => {
      if (this.microvms.get(request.uid)?.status?.state === 'DELETING') this.microvms.delete(request.uid);
    });
    return {};
  }

  #find(uid: string, doing: string): ProtoMicroVm {
    if (!uid) throw new FakeRpcError(status.INVALID_ARGUMENT, 'invalid request');
    const microvm = this.microvms.get(uid);
    if (microvm) return microvm;
    throw this.#options.errorStyle === 'canonical'
      ? new FakeRpcError(status.NOT_FOUND, `microvm spec ${uid} not found`)
      : new FakeRpcError(status.UNKNOWN, `${doing}: microvm spec ${uid} not found`);
  }

  /** As flintlockd's repository query: an empty namespace matches all, name matches the spec id. */
  #list(request: ListMicroVmsRequest): ProtoMicroVm[] {
    return [...this.microvms.values()].filter(
      (vm) => (!request.namespace || vm.spec?.namespace === request.namespace) && (request.name === undefined || vm.spec?.id === request.name),
    );
  }

  /** A guarded transition: a late timer changes nothing once the state moved on (FAILED, DELETING). */
  #transition(uid: string, from: ProtoMicroVmState, to: ProtoMicroVmState): boolean {
    const microvm = this.microvms.get(uid);
    if (microvm?.status?.state !== from) return false;
    microvm.status.state = to;
    microvm.version += 1;
    return true;
  }

  #later(delayMs: number, action: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      action();
    }, delayMs);
    this.#timers.add(timer);
  }
}

class FakeRpcError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

/** The first field flintlockd's validation would reject, named as in the proto, or undefined. */
function specProblem(spec: ProtoMicroVmSpec): string | undefined {
  if (!spec.id) return 'id is required';
  if (!spec.namespace) return 'namespace is required';
  if (!(spec.vcpu > 0)) return `vcpu must be greater than 0, got ${spec.vcpu}`;
  if (!(spec.memory_in_mb > 0)) return `memory_in_mb must be greater than 0, got ${spec.memory_in_mb}`;
  if (!spec.kernel) return 'kernel is required';
  if (!spec.kernel.image) return 'kernel.image is required';
  if (!spec.root_volume) return 'root_volume is required';
  if (!spec.root_volume.id) return 'root_volume.id is required';
  if (!spec.root_volume.source?.container_source) return 'root_volume.source.container_source is required';
  for (const [key, value] of Object.entries(spec.metadata ?? {})) {
    if (!METADATA_KEYS.has(key)) return `metadata key "${key}" is not one of ${[...METADATA_KEYS].join(', ')}`;
    if (Buffer.from(value, 'base64').toString('base64') !== value) return `metadata "${key}" is not base64`;
  }
  return undefined;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A ULID as flintlockd's identifier service makes: 10 characters of time, 16 of randomness, Crockford base32. */
function ulid(): string {
  let time = Date.now();
  let head = '';
  for (let i = 0; i < 10; i++) {
    head = CROCKFORD[time % 32] + head;
    time = Math.floor(time / 32);
  }
  const tail = [...randomBytes(16)].map((byte) => CROCKFORD[byte % 32]).join('');
  return head + tail;
}
