import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { HearthError } from '../errors.ts';
import type { Logger } from '../log.ts';

/**
 * The host end of connect-back: VMs that Hearth cannot reach (a flintlockd
 * host's) dial in here, and each connection that presents the token of a VM
 * Hearth is waiting for becomes that VM's agent stream. The handshake is
 * documented in ./protocol.ts.
 */
export const CONNECT_MAGIC = 'HEARTH-CONNECT';
export const CONNECT_VERSION = 1;
/** Longer than any valid hello line ("HEARTH-CONNECT 1 " + a 256-byte token). */
const MAX_HELLO_BYTES = 320;
const DEFAULT_HELLO_TIMEOUT_MS = 10_000;
/** Connections still in their handshake; more are closed at once (a flood, not guests). */
const MAX_HANDSHAKES = 256;

export interface ConnectListenerOptions {
  /** host:port to listen on ("0.0.0.0:7071", "[::]:7071"); port 0 picks a free port. */
  readonly listen: string;
  readonly logger: Logger;
  /** A connection has this long to send its hello line. */
  readonly helloTimeoutMs?: number;
}

export interface ExpectOptions {
  /** How long the VM's agent has to connect. */
  readonly timeoutMs: number;
  /** The URL the VM was told to dial, for the error when it never does. */
  readonly advertisedUrl: string;
}

/** One VM the listener waits for. */
export interface AgentExpectation {
  readonly vmId: string;
  /** The VM's secret: goes to the guest only (cloud-init user-data), never into a log, label or cmdline. */
  readonly token: string;
  /**
   * The authenticated socket, paused at the agent's first frame (wrap it with
   * AgentChannel.fromSocket); rejects with HEARTH_ERR_AGENT_NO_CONNECT when the
   * timeout passes, or with the reason given to cancel().
   */
  readonly connected: Promise<Socket>;
  /** Stops waiting; a later connection with this token is refused. */
  cancel(reason?: Error): void;
}

interface Pending {
  readonly vmId: string;
  readonly digest: Buffer;
  readonly resolve: (socket: Socket) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** Splits "host:port" or "[v6]:port"; the host must be an IP address (guests cannot resolve names). */
export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2] ?? '';
  const port = Number(match?.[3]);
  if (!match || isIP(host) === 0 || port > 65535) {
    throw new HearthError('HEARTH_ERR_BAD_OPTION', {
      option: what,
      reason: `"${value}" is not IP:PORT`,
      hint: 'give an address and a port, e.g. 0.0.0.0:7071 or [::]:7071',
    });
  }
  return { host, port };
}

/**
 * The URL a guest dials: tcp://IPV4:PORT or tcp://[IPV6]:PORT. The agent is a
 * static binary without a resolver, so the host must be an address.
 */
export function parseAgentUrl(url: string): { host: string; port: number } {
  const match = /^tcp:\/\/(?:\[([0-9a-fA-F:.]+)\]|([^:/[\]]+)):(\d{1,5})\/?$/.exec(url);
  const host = match?.[1] ?? match?.[2] ?? '';
  const port = Number(match?.[3]);
  if (!match || isIP(host) === 0 || port < 1 || port > 65535) {
    throw new HearthError('HEARTH_ERR_BAD_OPTION', {
      option: 'agent advertised URL',
      reason: `"${url}" is not tcp://IP:PORT`,
      hint: "give this host's address as the guests see it, e.g. tcp://10.0.0.1:7071 (an IP address: the guest agent does not resolve names)",
    });
  }
  if (host === '0.0.0.0' || host === '::') {
    throw new HearthError('HEARTH_ERR_BAD_OPTION', {
      option: 'agent advertised URL',
      reason: `"${url}" names no host a guest can dial`,
      hint: "advertise this host's address on the VM network, e.g. tcp://10.0.0.1:7071",
    });
  }
  return { host, port };
}

function digestOf(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class AgentConnectListener {
  readonly #server: Server;
  readonly #log: Logger;
  readonly #helloTimeoutMs: number;
  readonly #pending = new Map<string, Pending>();
  readonly #handshakes = new Set<Socket>();
  readonly host: string;
  readonly port: number;

  private constructor(server: Server, host: string, port: number, options: ConnectListenerOptions) {
    this.#server = server;
    this.host = host;
    this.port = port;
    this.#log = options.logger.child({ component: 'agent-listener' });
    this.#helloTimeoutMs = options.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS;
    server.on('connection', (socket) => this.#handshake(socket));
  }

  /** Binds and listens; fails with HEARTH_ERR_BAD_OPTION when the address is taken or not local. */
  static async listen(options: ConnectListenerOptions): Promise<AgentConnectListener> {
    const { host, port } = parseHostPort(options.listen, 'agent listen address');
    const server = createServer({ pauseOnConnect: false });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => {
        reject(
          new HearthError(
            'HEARTH_ERR_BAD_OPTION',
            {
              option: 'agent listen address',
              reason: `cannot listen on ${options.listen}: ${error.code ?? error.message}`,
              hint: 'pick a free port on an address of this host, e.g. 0.0.0.0:7071',
            },
            { cause: error },
          ),
        );
      });
      server.listen(port, host, () => resolve());
    });
    const address = server.address();
    const bound = typeof address === 'object' && address ? address.port : port;
    return new AgentConnectListener(server, host, bound, options);
  }

  /** host:port as bound (the real port when 0 was asked for). */
  get address(): string {
    return isIP(this.host) === 6 ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /** Starts waiting for one VM's agent, with a fresh random token. */
  expect(vmId: string, options: ExpectOptions): AgentExpectation {
    if (this.#pending.has(vmId)) throw new Error(`already waiting for the agent of ${vmId}`);
    const token = randomBytes(32).toString('base64url');
    let settle: { resolve: (socket: Socket) => void; reject: (error: Error) => void } | undefined;
    const connected = new Promise<Socket>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // A caller that gives up early (a failed create) may never await it.
    connected.catch(() => {});
    const timer = setTimeout(() => {
      this.#drop(vmId)?.reject(
        new HearthError('HEARTH_ERR_AGENT_NO_CONNECT', {
          vmId,
          url: options.advertisedUrl,
          listen: this.address,
          seconds: Math.round(options.timeoutMs / 100) / 10,
        }),
      );
    }, options.timeoutMs);
    timer.unref();
    this.#pending.set(vmId, { vmId, digest: digestOf(token), resolve: settle!.resolve, reject: settle!.reject, timer });
    return {
      vmId,
      token,
      connected,
      cancel: (reason) => this.#drop(vmId)?.reject(reason ?? new Error(`stopped waiting for the agent of ${vmId}`)),
    };
  }

  /** VMs whose agents have not connected yet. */
  get waiting(): readonly string[] {
    return [...this.#pending.keys()];
  }

  async close(): Promise<void> {
    for (const vmId of [...this.#pending.keys()]) this.#drop(vmId)?.reject(new Error('the agent listener closed'));
    for (const socket of this.#handshakes) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #drop(vmId: string): Pending | undefined {
    const pending = this.#pending.get(vmId);
    if (!pending) return undefined;
    clearTimeout(pending.timer);
    this.#pending.delete(vmId);
    return pending;
  }

  /** Reads the hello line, then hands the socket over or refuses it. */
  #handshake(socket: Socket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.#handshakes.size >= MAX_HANDSHAKES) {
      this.#log.warn({ remote }, 'agent connection refused: too many handshakes in progress');
      socket.destroy();
      return;
    }
    this.#handshakes.add(socket);
    let seen = Buffer.alloc(0);
    const finish = (): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      this.#handshakes.delete(socket);
    };
    const refuse = (reason: string, answer: string): void => {
      finish();
      this.#log.warn({ remote }, `agent connection refused: ${reason}`);
      socket.end(`DENIED ${answer}\n`, () => socket.destroy());
    };
    const timer = setTimeout(() => refuse(`no hello within ${this.#helloTimeoutMs} ms`, 'timeout'), this.#helloTimeoutMs);
    timer.unref();
    socket.on('error', (error) => this.#log.debug({ remote, error: error.message }, 'agent connection error'));
    socket.once('close', () => finish());
    const onData = (chunk: Buffer): void => {
      seen = Buffer.concat([seen, chunk]);
      const end = seen.indexOf(0x0a);
      if (end < 0) {
        if (seen.length > MAX_HELLO_BYTES) refuse('no hello line', 'bad-hello');
        return;
      }
      const line = seen.subarray(0, end).toString('latin1');
      const rest = seen.subarray(end + 1);
      seen = Buffer.alloc(0);
      const match = /^(\S+) (\d+) ([\x21-\x7e]{1,256})$/.exec(line);
      if (!match || match[1] !== CONNECT_MAGIC) return refuse('not a hearth-agent hello', 'bad-hello');
      if (Number(match[2]) !== CONNECT_VERSION) return refuse(`handshake version ${match[2]}, this host speaks ${CONNECT_VERSION}`, 'version');
      const pending = this.#match(match[3]!);
      if (!pending) return refuse('unknown token', 'unknown-token');
      finish();
      this.#drop(pending.vmId);
      socket.pause();
      if (rest.length > 0) socket.unshift(rest);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 15_000);
      socket.write('OK\n');
      this.#log.info({ vmId: pending.vmId, remote }, 'agent connected');
      pending.resolve(socket);
    };
    socket.on('data', onData);
  }

  /** The VM whose token this is; every pending token is compared, in constant time, whatever matches. */
  #match(token: string): Pending | undefined {
    const digest = digestOf(token);
    let found: Pending | undefined;
    for (const pending of this.#pending.values()) {
      if (timingSafeEqual(digest, pending.digest) && !found) found = pending;
    }
    return found;
  }
}
