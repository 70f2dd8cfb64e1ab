import { setTimeout as sleep } from 'node:timers/promises';
import { Client, credentials, Metadata, type MethodDefinition, type ServiceError } from '@grpc/grpc-js';
import { fromProtoMicroVm, packString, toProtoSpec } from './convert.ts';
import { FlintlockError, fromGrpcError } from './errors.ts';
import { microVmService, type MicroVmResponse, type ProtoMicroVm } from './proto.ts';
import type { FlintlockMicroVm, FlintlockMicroVmSpec } from './types.ts';

export const DEFAULT_FLINTLOCK_ENDPOINT = 'localhost:9090';

/** flintlockd answers in milliseconds; a call this slow means it is stuck, not busy. */
const DEFAULT_CALL_TIMEOUT_MS = 30_000;
const POLL_INTERVAL_MS = 500;

export interface FlintlockConnectOptions {
  /** TLS with the system's roots; flintlockd serves plaintext unless started with --tls-*. */
  readonly tls?: boolean;
  /** Deadline of each RPC. */
  readonly callTimeoutMs?: number;
  /** Sleep between GetMicroVM calls in waitForState and waitForDeletion. */
  readonly pollIntervalMs?: number;
}

/**
 * Hearth's side of flintlockd's MicroVM service (v1alpha1). Every failure is
 * a FlintlockError naming the call, the uid, the gRPC code and what to do.
 */
export class FlintlockClient {
  readonly endpoint: string;
  readonly #client: Client;
  readonly #callTimeoutMs: number;
  readonly #pollIntervalMs: number;

  private constructor(endpoint: string, options: FlintlockConnectOptions) {
    this.endpoint = endpoint;
    this.#client = new Client(endpoint, options.tls ? credentials.createSsl() : credentials.createInsecure());
    this.#callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#pollIntervalMs = options.pollIntervalMs ?? POLL_INTERVAL_MS;
  }

  /**
   * A client for flintlockd at `host:port`. The connection is made lazily, as
   * gRPC does, so an unreachable endpoint shows up as an `unreachable`
   * FlintlockError on the first call rather than here.
   */
  static connect(endpoint: string = DEFAULT_FLINTLOCK_ENDPOINT, options: FlintlockConnectOptions = {}): FlintlockClient {
    return new FlintlockClient(endpoint, options);
  }

  /**
   * Asks flintlockd to create a microVM and returns it as stored, normally
   * PENDING; use waitForState to see it CREATED. `metadata` is the request's
   * own metadata map (each value sent as a google.protobuf.StringValue), not
   * the cloud-init documents, which belong in spec.metadata.
   */
  async createMicroVm(spec: FlintlockMicroVmSpec, metadata: Readonly<Record<string, string>> = {}): Promise<FlintlockMicroVm> {
    const request = { microvm: toProtoSpec(spec), metadata: Object.fromEntries(Object.entries(metadata).map(([key, value]) => [key, packString(value)])) };
    const response = await this.#call(microVmService().CreateMicroVM, request, { operation: 'CreateMicroVM' });
    return this.#microVmOf(response, 'CreateMicroVM');
  }

  async getMicroVm(uid: string): Promise<FlintlockMicroVm> {
    const response = await this.#call(microVmService().GetMicroVM, { uid }, { operation: 'GetMicroVM', uid });
    return this.#microVmOf(response, 'GetMicroVM', uid);
  }

  /**
   * Marks the microVM for deletion; flintlockd then tears it down in the
   * background (state DELETING) and forgets it. A uid flintlockd does not
   * know fails with reason `not-found`, which callers wanting an idempotent
   * delete can treat as done.
   */
  async deleteMicroVm(uid: string): Promise<void> {
    await this.#call(microVmService().DeleteMicroVM, { uid }, { operation: 'DeleteMicroVM', uid });
  }

  /** The microVMs in `namespace` (all namespaces when empty), optionally only those whose id is `name`. */
  async listMicroVms(namespace: string, name?: string): Promise<FlintlockMicroVm[]> {
    const request = name === undefined ? { namespace } : { namespace, name };
    const response = await this.#call(microVmService().ListMicroVMs, request, { operation: 'ListMicroVMs' });
    return response.microvm.map(fromProtoMicroVm);
  }

  /**
   * Polls GetMicroVM until the microVM reaches `state`. Fails with reason
   * `failed` when flintlockd gives up on it, and `timeout` when `timeoutMs`
   * passes first.
   */
  async waitForState(uid: string, state: 'CREATED', timeoutMs: number): Promise<FlintlockMicroVm> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const vm = await this.getMicroVm(uid);
      if (vm.status.state === state) return vm;
      const context = { operation: 'waitForState', endpoint: this.endpoint, uid };
      // The API has no failure message; the retry count is all flintlockd tells.
      if (vm.status.state === 'FAILED')
        throw new FlintlockError('failed', { ...context, details: `state FAILED after ${vm.status.retry} reconcile attempt(s)` });
      if (vm.status.state === 'DELETING') throw new FlintlockError('other', { ...context, details: `microVM is being deleted, it will not become ${state}` });
      const left = deadline - Date.now();
      if (left <= 0) throw new FlintlockError('timeout', { ...context, details: `still ${vm.status.state} after ${timeoutMs} ms, waiting for ${state}` });
      await sleep(Math.min(this.#pollIntervalMs, left));
    }
  }

  /** Polls GetMicroVM until flintlockd no longer knows the uid, i.e. the delete has been carried out. */
  async waitForDeletion(uid: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let vm: FlintlockMicroVm;
      try {
        vm = await this.getMicroVm(uid);
      } catch (error) {
        if (error instanceof FlintlockError && error.reason === 'not-found') return;
        throw error;
      }
      const left = deadline - Date.now();
      if (left <= 0)
        throw new FlintlockError('timeout', {
          operation: 'waitForDeletion',
          endpoint: this.endpoint,
          uid,
          details: `still ${vm.status.state} after ${timeoutMs} ms`,
        });
      await sleep(Math.min(this.#pollIntervalMs, left));
    }
  }

  close(): void {
    this.#client.close();
  }

  #call<Req, Res>(method: MethodDefinition<Req, Res>, request: Req, context: { operation: string; uid?: string }): Promise<Res> {
    return new Promise((resolve, reject) => {
      const options = { deadline: Date.now() + this.#callTimeoutMs };
      this.#client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        new Metadata(),
        options,
        (error: ServiceError | null, response?: Res) => {
          if (error) reject(fromGrpcError(error, { ...context, endpoint: this.endpoint }));
          else if (response === undefined) reject(new FlintlockError('other', { ...context, endpoint: this.endpoint, details: 'empty response' }));
          else resolve(response);
        },
      );
    });
  }

  #microVmOf(response: MicroVmResponse, operation: string, uid?: string): FlintlockMicroVm {
    const vm: ProtoMicroVm | null | undefined = response.microvm;
    if (!vm)
      throw new FlintlockError('other', { operation, endpoint: this.endpoint, ...(uid !== undefined && { uid }), details: 'the response carries no microvm' });
    return fromProtoMicroVm(vm);
  }
}
