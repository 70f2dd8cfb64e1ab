import type { ForgeJob, ForgeKind } from './forge.ts';

/** Where a forge says a job is, from a webhook, normalised across forges. */
export type JobPhase = 'queued' | 'running' | 'finished' | 'cancelled' | 'other';

export interface JobEvent {
  readonly kind: 'job';
  readonly job: ForgeJob;
  readonly phase: JobPhase;
  /** The forge's own word: GitHub's action/conclusion, GitLab's build_status. */
  readonly detail: string;
  readonly runnerName: string | null;
  /** GitLab's hook has no tags: they must be fetched before ownership is known. */
  readonly labelsKnown: boolean;
  /** For a finished job: the forge's verdict (success, failure, failed, cancelled, ...). */
  readonly conclusion?: string | undefined;
  /** For a failed job: the step that failed (GitHub) or the failure reason (GitLab). */
  readonly failedStep?: string | undefined;
}

export type WebhookPayload = JobEvent | { readonly kind: 'ping' } | { readonly kind: 'ignored'; readonly reason: string };

export interface WebhookDelivery {
  readonly forge: ForgeKind;
  /** X-GitHub-Delivery, or GitLab's Idempotency-Key: equal on a redelivery. */
  readonly deliveryId: string;
  readonly event: string;
  readonly payload: WebhookPayload;
}

/** A delivery Hearth refuses, with the HTTP status to answer and a reason safe to log. */
export class WebhookRejection extends Error {
  constructor(
    readonly status: number,
    reason: string,
  ) {
    super(reason);
    this.name = 'WebhookRejection';
  }
}

export type Headers = Record<string, string | string[] | undefined>;

/** What one check of a delivery against the configured secrets found: the secret that matched, or why none did (naming no secret). */
export type Verification = { readonly ok: true; readonly secretIndex: number } | { readonly ok: false; readonly reason: string };

/** What a forge's verification decided: the secret that matched, or the HTTP status to refuse with and a reason naming no secret. */
export type WebhookVerdict = { readonly ok: true; readonly secretIndex: number } | { readonly ok: false; readonly status: 401 | 404; readonly reason: string };

/** A check's result as the verdict: a delivery that fails it is refused with 401. */
export function verdictOf(result: Verification): WebhookVerdict {
  return result.ok ? result : { ok: false, status: 401, reason: result.reason };
}

/**
 * One forge's side of webhook ingestion, free of HTTP: which headers it reads,
 * how a delivery is verified over its raw bytes, and how a verified one is
 * read. server/webhooks.ts mounts each forge's adapter at /webhooks/FORGE and does the HTTP.
 */
export interface ForgeWebhookAdapter {
  readonly forge: ForgeKind;
  /** The delivery's id as the forge names it, for logging a refused delivery; unverified, so only a hint. */
  deliveryIdOf(headers: Headers): string | undefined;
  /** Checks the raw body against the configured secrets; `nowSeconds` for signatures that carry a timestamp. */
  verify(headers: Headers, raw: Buffer, nowSeconds?: number): WebhookVerdict;
  /** Reads a verified delivery; throws WebhookRejection (400) naming a malformed field. */
  parse(headers: Headers, raw: Buffer): WebhookDelivery;
}

export function header(headers: Headers, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** JSON object from a raw body, or a 400 that says what is wrong. */
export function parseJsonObject(raw: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new WebhookRejection(400, 'body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new WebhookRejection(400, 'body is not a JSON object');
  return value as Record<string, unknown>;
}

export function field<T>(object: Record<string, unknown>, key: string, check: (v: unknown) => v is T, what: string): T {
  const value = object[key];
  if (!check(value)) throw new WebhookRejection(400, `${what}.${key} is missing or not ${check.name.replace(/^is/, '').toLowerCase() || 'valid'}`);
  return value;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
export function isString(v: unknown): v is string {
  return typeof v === 'string';
}
export function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}
export function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.length <= 100 && v.every((x) => typeof x === 'string' && x.length <= 256);
}
