import { setTimeout as sleep } from 'node:timers/promises';
import { HearthError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ForgeKind } from './forge.ts';

export interface ForgeRequest {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path under the API base URL, with its query string. */
  readonly path: string;
  readonly body?: unknown;
  /** Statuses the caller handles itself (e.g. 404 on delete); they return instead of throwing. */
  readonly accept?: readonly number[];
  /** Overrides the client's policy, e.g. one quick try on a webhook's hot path. */
  readonly retry?: RetryPolicy;
  /** Per attempt; 30 s unless given. */
  readonly timeoutMs?: number;
}

export interface ForgeResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: unknown;
}

export interface RetryPolicy {
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Aborted on shutdown: a call waiting out a rate limit gives up at once instead of holding the stop. */
  readonly signal?: AbortSignal;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 500, maxDelayMs: 60_000 };

/** Seconds from `Retry-After` (seconds or an HTTP date) or GitHub's `x-ratelimit-reset` when the limit is spent. */
export function retryAfterMs(headers: Headers, now: number = Date.now()): number | undefined {
  const value = headers.get('retry-after');
  if (value) {
    if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
    const date = Date.parse(value);
    if (!Number.isNaN(date)) return Math.max(0, date - now);
  }
  if (headers.get('x-ratelimit-remaining') === '0') {
    const reset = Number(headers.get('x-ratelimit-reset'));
    if (Number.isFinite(reset) && reset > 0) return Math.max(0, reset * 1000 - now);
  }
  return undefined;
}

function isRetryable(status: number, headers: Headers, body: unknown): boolean {
  if (status === 429 || status >= 500) return true;
  // GitHub answers a secondary rate limit with 403 and a message saying so.
  if (status === 403) {
    const message = typeof body === 'object' && body !== null && 'message' in body ? String((body as { message: unknown }).message) : '';
    return headers.get('x-ratelimit-remaining') === '0' || headers.has('retry-after') || /rate limit/i.test(message);
  }
  return false;
}

/**
 * One forge's REST client: JSON in and out, auth headers from a function (tokens
 * expire), and every 5xx, 429 and secondary rate limit retried with exponential
 * backoff and full jitter. `Retry-After` is honoured for the whole client: once
 * the forge says wait, no request of this client goes out before that time.
 */
export class ForgeHttp {
  private pausedUntil = 0;

  constructor(
    private readonly forge: ForgeKind,
    private readonly baseUrl: string,
    private readonly authHeaders: () => Promise<Record<string, string>>,
    private readonly logger: Logger,
    private readonly retry: RetryPolicy = DEFAULT_RETRY,
    /** Every answer (status 0: none), with its headers when there was one: metrics read the rate limit left. */
    private readonly onResponse: (forge: ForgeKind, status: number, headers?: Headers) => void = () => {},
  ) {}

  async request(request: ForgeRequest): Promise<ForgeResponse> {
    const url = this.baseUrl.replace(/\/+$/, '') + request.path;
    let lastReason = '';
    let lastStatus = 0;
    const policy = request.retry ?? this.retry;
    for (let attempt = 1; attempt <= policy.attempts; attempt += 1) {
      const wait = this.pausedUntil - Date.now();
      if (wait > 0) await sleep(wait, undefined, this.retry.signal ? { signal: this.retry.signal } : {});
      let response: Response;
      try {
        response = await fetch(url, {
          method: request.method,
          headers: {
            accept: 'application/json',
            'user-agent': 'hearth',
            ...(request.body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...(await this.authHeaders()),
          },
          ...(request.body !== undefined ? { body: JSON.stringify(request.body) } : {}),
          // Only the timeout: a call in flight ends within it; shutdown aborts the waits between calls.
          signal: AbortSignal.timeout(request.timeoutMs ?? 30_000),
        });
      } catch (error) {
        if (this.retry.signal?.aborted) throw error;
        lastReason = `network error: ${(error as Error).message}`;
        lastStatus = 0;
        this.onResponse(this.forge, 0);
        if (attempt < policy.attempts) await this.backoff(attempt, undefined, request, lastReason, policy);
        continue;
      }
      const text = await response.text();
      let body: unknown = text;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        // not JSON: keep the text for the error message
      }
      this.onResponse(this.forge, response.status, response.headers);
      if (response.ok || request.accept?.includes(response.status)) return { status: response.status, headers: response.headers, body };
      lastStatus = response.status;
      lastReason = typeof body === 'object' && body !== null && 'message' in body ? String((body as { message: unknown }).message) : String(text).slice(0, 200);
      if (!isRetryable(response.status, response.headers, body) || attempt === policy.attempts) break;
      await this.backoff(attempt, retryAfterMs(response.headers), request, `${response.status} ${lastReason}`, policy);
    }
    throw new HearthError('HEARTH_ERR_FORGE_API', {
      forge: this.forge,
      method: request.method,
      path: request.path.split('?')[0],
      status: lastStatus || 'no response',
      reason: lastReason,
      hint: hintFor(this.forge, lastStatus),
    });
  }

  private async backoff(attempt: number, retryAfter: number | undefined, request: ForgeRequest, reason: string, policy: RetryPolicy): Promise<void> {
    const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
    const jittered = Math.random() * exponential;
    const delay = Math.min(policy.maxDelayMs, Math.max(retryAfter ?? 0, jittered));
    if (retryAfter !== undefined) this.pausedUntil = Math.max(this.pausedUntil, Date.now() + retryAfter);
    this.logger.warn(
      { forge: this.forge, method: request.method, path: request.path.split('?')[0], attempt, delayMs: Math.round(delay), reason },
      'forge API call failed; retrying',
    );
    await sleep(delay, undefined, this.retry.signal ? { signal: this.retry.signal } : {});
  }
}

function hintFor(forge: ForgeKind, status: number): string {
  const token = forge === 'github' ? 'github.token or github.app' : 'gitlab.token';
  if (status === 401) return `check ${token}: the forge rejected the credentials`;
  if (status === 403)
    return `give ${token} the permission this call needs (${forge === 'github' ? 'Administration: write for runners, Actions: read for jobs' : 'the create_runner scope, and Maintainer on the project'})`;
  if (status === 404) return `check the repository, org or project in the config and that ${token} can see it`;
  if (status === 0) return `check that ${forge === 'github' ? 'github.apiUrl' : 'gitlab.url'} is reachable from this host`;
  if (status === 429 || status >= 500) return 'the forge is overloaded or rate limiting: Hearth retries on the next reconcile';
  return 'see the forge message above';
}
