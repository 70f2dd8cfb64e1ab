// A socket-level stand-in for the Firecracker API: HTTP/1.1 on a Unix socket,
// every request checked against the official spec (spec.ts) before the VMM
// model (vmm.ts) sees it.
import { rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ExecMessage, IdentityMessage } from '../../../src/guest/protocol.ts';
import { Faults } from './faults.ts';
import { validateRequest } from './spec.ts';
import { FakeVmm, type Reply, type VmState } from './vmm.ts';

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly body: unknown;
  readonly status: number;
}

export interface RejectedRequest extends RecordedRequest {
  readonly fault: string;
}

/** One line of the request log: every request, `valid` telling whether the spec accepted it. */
export interface RequestLogEntry extends RecordedRequest {
  readonly valid: boolean;
  readonly fault?: string;
}

export interface FakeFirecrackerOptions {
  /** Emulate the Hearth guest agent behind the vsock device. */
  readonly vsockAgent?: boolean;
  /** The guest port the agent listens on; any port when unset. */
  readonly agentPort?: number;
  /** Instance id reported by GET / (Firecracker's `--id`). */
  readonly id?: string;
  /** Check that kernel, initrd and drive files exist (default true). */
  readonly checkHostPaths?: boolean;
  /** Started by the jailer: the chroot that every API path is read inside of. */
  readonly root?: string;
  readonly onRequest?: (entry: RequestLogEntry) => void;
  /** Hears each IDENTITY the emulated agent applies (new hostname, machine-id, and eth0 for a networked clone). */
  readonly onIdentity?: (identity: IdentityMessage) => void;
  /** The emulated agent's HELLO flags; 0 plays an agent from before the IDENTITY network extension. */
  readonly agentHelloFlags?: number;
}

// Firecracker's default when started without --id.
const DEFAULT_ID = 'anonymous-instance';

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, reply: Reply): void {
  if (reply.body === undefined) {
    res.writeHead(reply.status).end();
    return;
  }
  const json = JSON.stringify(reply.body);
  res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
}

export class FakeFirecracker {
  /** Requests the spec accepted, with the status the VMM answered (a state refusal is still 400). */
  readonly requests: RecordedRequest[] = [];
  /** Requests the spec itself refused: a driver under test should leave this empty. */
  readonly rejected: RejectedRequest[] = [];
  private readonly vmm: FakeVmm;
  /** Firecracker's API thread takes one request at a time; so does the fake. */
  private queue: Promise<void> = Promise.resolve();

  private constructor(
    readonly apiSocketPath: string,
    private readonly server: Server,
    private readonly options: FakeFirecrackerOptions,
  ) {
    this.vmm = new FakeVmm({
      id: options.id ?? DEFAULT_ID,
      vsockAgent: options.vsockAgent ?? false,
      agentPort: options.agentPort,
      checkHostPaths: options.checkHostPaths ?? true,
      root: options.root,
      onIdentity: options.onIdentity,
      agentHelloFlags: options.agentHelloFlags,
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.queue = this.queue
        .then(() => this.serve(req, res))
        .catch(() => {
          res.destroy();
        });
    });
  }

  static start(apiSocketPath: string, options: FakeFirecrackerOptions = {}): Promise<FakeFirecracker> {
    const server = createServer();
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(apiSocketPath, () => {
        server.off('error', reject);
        resolve(new FakeFirecracker(apiSocketPath, server, options));
      });
    });
  }

  get state(): VmState {
    return this.vmm.state;
  }

  /** Every EXEC the emulated agent received, in order. */
  get execs(): readonly ExecMessage[] {
    return this.vmm.execs;
  }

  /** Every IDENTITY the emulated agent applied, in order. */
  get identities(): readonly IdentityMessage[] {
    return this.vmm.identities;
  }

  /** Frames the paused guest received and holds until it is resumed (0 without a vsock device). */
  get parkedGuestWork(): number {
    return this.vmm.vsock?.parkedWork ?? 0;
  }

  /** The vsock device's Unix socket, once PUT /vsock (or a snapshot load) bound it. */
  get vsockPath(): string | undefined {
    return this.vmm.vsock?.udsPath;
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const text = await readBody(req);
    let body: unknown = text;
    let valid = false;
    let reply: Reply;
    try {
      body = text.trim() === '' ? undefined : JSON.parse(text);
      const validation = validateRequest(method, path, body);
      valid = validation.ok;
      reply = validation.ok
        ? await this.vmm.handle(validation.operation, validation.params, body)
        : { status: validation.status, body: { fault_message: validation.fault } };
    } catch (error) {
      // Only JSON.parse runs before validation; anything later is a bug in the fake.
      const unparsable = error instanceof SyntaxError && !valid;
      reply = {
        status: unparsable ? 400 : 500,
        body: { fault_message: unparsable ? Faults.deserialize(error.message) : `fake firecracker: ${String(error)}` },
      };
    }

    const fault = reply.status >= 400 ? (reply.body as { fault_message: string }).fault_message : undefined;
    const entry: RecordedRequest = { method, path, body, status: reply.status };
    if (valid) this.requests.push(entry);
    else this.rejected.push({ ...entry, fault: fault as string });
    this.options.onRequest?.({ ...entry, valid, ...(fault === undefined ? {} : { fault }) });
    send(res, reply);
  }

  /** Stops serving, closes the vsock device, and removes the API socket. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await this.vmm.shutdown();
    rmSync(this.apiSocketPath, { force: true });
  }
}
