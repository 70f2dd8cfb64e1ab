// A small HTTP load balancer for scale-out tests: it spreads requests over
// replicas round-robin and, like a real one with passive health checks, moves
// on to the next replica when one refuses or drops the connection before
// answering. Replicas that were killed come back on new ports: setBackends().
import {
  Agent,
  createServer,
  request,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';

export interface LoadBalancerOptions {
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0: any free port. */
  readonly port?: number;
  /** How long a backend that failed goes to the back of the line (default 1000 ms). */
  readonly cooldownMs?: number;
  /** Request bodies up to this size are kept to replay to the next backend (default 32 MiB); past it a failure is a 502. */
  readonly replayLimitBytes?: number;
}

export interface LoadBalancerStats {
  /** Responses relayed, by backend. */
  readonly forwarded: Readonly<Record<string, number>>;
  /** Attempts that failed before an answer and moved on, by backend. */
  readonly skipped: Readonly<Record<string, number>>;
  /** Requests answered 502: every backend failed. */
  readonly failed: number;
}

// Headers about one connection, not the message: never forwarded (RFC 9110, 7.6.1).
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

/**
 * The request body as it arrives, passed on to the current attempt and kept
 * (up to a limit) until an answer commits it, so a failed attempt can be
 * replayed to the next backend from the first byte.
 */
class ReplayableBody {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private target: ClientRequest | undefined;
  replayable = true;

  constructor(
    private readonly source: IncomingMessage,
    private readonly limit: number,
  ) {
    source.on('data', (chunk: Buffer) => {
      if (this.replayable) {
        this.chunks.push(chunk);
        this.size += chunk.length;
        if (this.size > this.limit) this.commit();
      }
      const target = this.target;
      if (target && !target.write(chunk)) {
        source.pause();
        target.once('drain', () => this.target === target && source.resume());
      }
    });
    source.on('end', () => {
      this.ended = true;
      this.target?.end();
    });
  }

  attach(target: ClientRequest): void {
    this.target = target;
    for (const chunk of this.chunks) target.write(chunk);
    if (this.ended) target.end();
    else this.source.resume();
  }

  detach(): void {
    this.target = undefined;
  }

  /** An answer came (or the body outgrew the limit): no replay from here on. */
  commit(): void {
    this.replayable = false;
    this.chunks.length = 0;
  }
}

export class LoadBalancer {
  readonly url: string;
  private list: string[] = [];
  private next = 0;
  private readonly downUntil = new Map<string, number>();
  private readonly forwarded: Record<string, number> = {};
  private readonly skipped: Record<string, number> = {};
  private failed = 0;
  private readonly agent = new Agent({ keepAlive: true });

  private constructor(
    private readonly server: Server,
    address: AddressInfo,
    private readonly options: LoadBalancerOptions,
  ) {
    this.url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  }

  static async start(backends: readonly string[], options: LoadBalancerOptions = {}): Promise<LoadBalancer> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve);
    });
    const balancer = new LoadBalancer(server, server.address() as AddressInfo, options);
    balancer.setBackends(backends);
    server.on('request', (req, res) => balancer.forward(req, res));
    return balancer;
  }

  /** Replaces the backends; requests in flight finish where they are. */
  setBackends(urls: readonly string[]): void {
    this.list = urls.map((url) => url.replace(/\/+$/, ''));
    for (const url of this.downUntil.keys()) if (!this.list.includes(url)) this.downUntil.delete(url);
  }

  get backends(): readonly string[] {
    return [...this.list];
  }

  stats(): LoadBalancerStats {
    return { forwarded: { ...this.forwarded }, skipped: { ...this.skipped }, failed: this.failed };
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    this.agent.destroy();
    await closed;
  }

  /** Every backend once, round-robin from the next in turn; those that failed lately go last. */
  private order(): string[] {
    const now = Date.now();
    const healthy = this.list.filter((url) => (this.downUntil.get(url) ?? 0) <= now);
    const down = this.list.filter((url) => !healthy.includes(url));
    // The turn goes round the healthy ones only, so a dead one's share is spread evenly.
    const start = healthy.length > 0 ? this.next++ % healthy.length : 0;
    return [...healthy.slice(start), ...healthy.slice(0, start), ...down];
  }

  private forward(req: IncomingMessage, res: ServerResponse): void {
    const order = this.order();
    const body = new ReplayableBody(req, this.options.replayLimitBytes ?? 32 * 1024 * 1024);
    const errors: string[] = [];
    let current: ClientRequest | undefined;
    let clientGone = false;
    res.on('close', () => {
      if (res.writableFinished) return;
      clientGone = true;
      current?.destroy();
    });
    const headers = endToEnd(req.headers);
    const forwardedFor = [req.headers['x-forwarded-for'], req.socket.remoteAddress].filter(Boolean).join(', ');

    const attempt = (index: number): void => {
      const backend = order[index];
      if (backend === undefined || clientGone) {
        this.failed += 1;
        if (!clientGone) badGateway(res, errors);
        return;
      }
      const target = new URL(`${backend}${req.url ?? '/'}`);
      let answered = false;
      const upstream = request(target, {
        method: req.method,
        agent: this.agent,
        headers: { ...headers, host: target.host, 'x-forwarded-for': forwardedFor, 'x-forwarded-host': req.headers.host ?? '', 'x-forwarded-proto': 'http' },
      });
      current = upstream;
      upstream.on('response', (answer) => {
        answered = true;
        body.commit();
        this.forwarded[backend] = (this.forwarded[backend] ?? 0) + 1;
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.headers));
        // A backend dying mid-body cuts the client off too, as a real proxy would.
        pipeline(answer, res, () => {});
      });
      upstream.on('error', (error: NodeJS.ErrnoException) => {
        if (answered || clientGone) return;
        body.detach();
        errors.push(`${backend}: ${error.code ?? error.message}`);
        this.skipped[backend] = (this.skipped[backend] ?? 0) + 1;
        this.downUntil.set(backend, Date.now() + (this.options.cooldownMs ?? 1000));
        if (!body.replayable) {
          this.failed += 1;
          errors.push('the request body was too large to replay');
          badGateway(res, errors);
          return;
        }
        attempt(index + 1);
      });
      body.attach(upstream);
    };
    attempt(0);
  }
}

function badGateway(res: ServerResponse, errors: readonly string[]): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify({ message: errors.length > 0 ? 'no backend answered' : 'no backends configured', errors });
  res.writeHead(502, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}
