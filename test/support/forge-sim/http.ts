// The small HTTP vocabulary both forges share: a parsed request, a reply,
// a route table entry, body parsing and page slicing.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

export interface RequestContext {
  /** After X-HTTP-Method-Override, which busybox wget needs to send a PUT. */
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface Reply {
  status: number;
  json?: unknown;
  text?: string;
  headers?: Record<string, string>;
}

export interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  handle(ctx: RequestContext, params: string[]): Reply | Promise<Reply>;
}

/** Finds the route for a request; `undefined` means no such path or method (both forges answer 404). */
export function matchRoute(routes: readonly Route[], ctx: RequestContext): { route: Route; params: string[] } | undefined {
  for (const route of routes) {
    if (route.method !== ctx.method) continue;
    const match = route.pattern.exec(ctx.path);
    if (match) return { route, params: match.slice(1).map((p) => decodeURIComponent(p ?? '')) };
  }
  return undefined;
}

export const MAX_BODY_BYTES = 1024 * 1024;

export class BodyTooLarge extends Error {}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    // Keep draining so the client sees our 413 instead of a reset.
    if (size <= MAX_BODY_BYTES) chunks.push(chunk as Buffer);
  }
  if (size > MAX_BODY_BYTES) throw new BodyTooLarge(`body over ${MAX_BODY_BYTES} bytes`);
  return Buffer.concat(chunks);
}

export type BodyFields = Record<string, unknown>;

/**
 * Reads a JSON object or a urlencoded form (GitLab takes both). Form keys
 * ending in `[]` collect into arrays, like Rails params. Returns a string
 * describing the problem when the body is neither.
 */
export function parseBody(ctx: RequestContext): BodyFields | string {
  const text = ctx.body.toString('utf8');
  const type = String(ctx.headers['content-type'] ?? '');
  if (type.includes('application/x-www-form-urlencoded')) {
    const fields: BodyFields = {};
    for (const [rawKey, value] of new URLSearchParams(text)) {
      if (rawKey.endsWith('[]')) {
        const key = rawKey.slice(0, -2);
        const list = Array.isArray(fields[key]) ? (fields[key] as unknown[]) : [];
        list.push(value);
        fields[key] = list;
      } else {
        fields[rawKey] = value;
      }
    }
    return fields;
  }
  if (text.trim() === '') return {};
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'body is not a JSON object';
    return value as BodyFields;
  } catch {
    return 'body is not valid JSON';
  }
}

export interface Page<T> {
  items: T[];
  page: number;
  perPage: number;
  total: number;
  totalPages: number;
}

/** Slices one page; both forges cap per_page at 100 and count pages from 1. */
export function paginate<T>(items: readonly T[], query: URLSearchParams, defaultPerPage: number): Page<T> {
  const perPage = Math.min(100, Math.max(1, Number.parseInt(query.get('per_page') ?? '', 10) || defaultPerPage));
  const page = Math.max(1, Number.parseInt(query.get('page') ?? '', 10) || 1);
  const start = (page - 1) * perPage;
  return { items: items.slice(start, start + perPage), page, perPage, total: items.length, totalPages: Math.max(1, Math.ceil(items.length / perPage)) };
}

/** An RFC 8288 Link header for page navigation, which Octokit's and gitbeaker's paginators follow. */
export function linkHeader(baseUrl: string, path: string, query: URLSearchParams, page: Page<unknown>): string {
  const link = (n: number, rel: string): string => {
    const q = new URLSearchParams(query);
    q.set('page', String(n));
    q.set('per_page', String(page.perPage));
    return `<${baseUrl}${path}?${q.toString()}>; rel="${rel}"`;
  };
  const parts: string[] = [];
  if (page.page > 1) parts.push(link(page.page - 1, 'prev'));
  if (page.page < page.totalPages) parts.push(link(page.page + 1, 'next'));
  parts.push(link(1, 'first'), link(page.totalPages, 'last'));
  return parts.join(', ');
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

export function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

/** Accepts `1`, `"1"`: form bodies carry numbers as strings. */
export function toInteger(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^\d+$/.test(value)) return Number(value);
  return undefined;
}

/** A deferred the sim resolves when a job's simulated work ends, early on cancel. */
export class JobClock {
  private readonly running = new Map<number, { done: Promise<void>; finish: () => void; timer: NodeJS.Timeout }>();

  constructor(private readonly durationMs: number) {}

  start(jobId: number): void {
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const timer = setTimeout(finish, this.durationMs);
    this.running.set(jobId, { done, finish, timer });
  }

  /** Resolves at once for a job that never started. */
  done(jobId: number): Promise<void> {
    return this.running.get(jobId)?.done ?? Promise.resolve();
  }

  stop(jobId: number): void {
    const entry = this.running.get(jobId);
    if (!entry) return;
    clearTimeout(entry.timer);
    entry.finish();
  }

  stopAll(): void {
    for (const id of this.running.keys()) this.stop(id);
  }
}

/** What each forge world gets from the simulator that hosts it. */
export interface SimCore {
  /** http://127.0.0.1:PORT, for URLs inside API answers. */
  readonly url: string;
  /** The same server as a VM sees it, for URLs a guest will call. */
  readonly guestUrl: string;
  readonly clock: JobClock;
}

/** GitHub's timestamp style: ISO 8601 in UTC, whole seconds. */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
