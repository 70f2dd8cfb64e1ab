import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { createConnection } from 'node:net';

/** A Firecracker API error: the request, the status and Firecracker's own `fault_message`. */
export class FirecrackerApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly fault: string,
  ) {
    super(`Firecracker API ${method} ${path} answered ${status}: ${fault}`);
    this.name = 'FirecrackerApiError';
  }
}

/**
 * The Firecracker REST API on one VMM's Unix socket: JSON in, 204 (or JSON) out.
 * One request at a time, as the VMM's API thread serves them.
 */
export class FirecrackerApi {
  constructor(readonly socketPath: string) {}

  /** Waits until the VMM accepts connections on its API socket (the file exists a moment before it listens). */
  async ready(deadline: number): Promise<void> {
    for (;;) {
      const accepted = await new Promise<boolean>((resolve) => {
        const socket = createConnection(this.socketPath);
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
      if (accepted) return;
      if (Date.now() > deadline) throw new Error(`the Firecracker API socket ${this.socketPath} did not accept connections`);
      await sleep(5);
    }
  }

  call(method: 'GET' | 'PUT' | 'PATCH', path: string, body?: unknown): Promise<unknown> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          agent: false,
          method,
          path,
          headers: { accept: 'application/json', ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = text;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve(parsed);
            else
              reject(
                new FirecrackerApiError(
                  method,
                  path,
                  status,
                  typeof parsed === 'object' && parsed !== null && 'fault_message' in parsed
                    ? String((parsed as { fault_message: unknown }).fault_message)
                    : text.slice(0, 300),
                ),
              );
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  put(path: string, body: unknown): Promise<unknown> {
    return this.call('PUT', path, body);
  }

  patch(path: string, body: unknown): Promise<unknown> {
    return this.call('PATCH', path, body);
  }
}
