// Public shapes of the forge simulator. The sim's own records extend these
// with bookkeeping fields; tests only see what is declared here.

export interface ForgeSimulatorOptions {
  /** HMAC secret for X-Hub-Signature-256. */
  githubWebhookSecret: string;
  /** Sent as X-Gitlab-Token on every Job Hook. */
  gitlabWebhookToken: string;
  /** The PAT the sim accepts (`Authorization: Bearer X` or `token X`). */
  githubToken: string;
  /** Accepted in the PRIVATE-TOKEN header. */
  gitlabToken: string;
  /** With the two below: POST /app/installations/:id/access_tokens checks an RS256 JWT and issues ghs_ tokens. */
  githubAppId?: string;
  githubAppPublicKeyPem?: string;
  githubInstallationId?: string;
  /** How long a job "runs" once a runner took it (default 500). */
  jobDurationMs?: number;
  /** PRNG seed for drop decisions, so fault tests are deterministic. */
  seed?: number;
  /** The address a QEMU user-net guest uses to reach this server (default 10.0.2.2). */
  guestHost?: string;
}

export type SimForge = 'github' | 'gitlab';

export interface FaultSettings {
  /** 0..1: share of deliveries recorded as dropped and never sent. */
  dropRate: number;
  /** Send each delivery twice with the same delivery id / Idempotency-Key. */
  duplicate: boolean;
  /** Hold deliveries; flushHeld() sends them newest first. */
  reorder: boolean;
}

export interface ApiFailureRule {
  status: 500 | 502 | 503 | 429 | 403;
  count: number;
  retryAfterSeconds?: number;
  /** Tested against the request path without the query string; absent = every API request. */
  path?: RegExp;
  /** For 403: GitHub's secondary rate limit (Retry-After) instead of the primary one (x-ratelimit-*). */
  secondaryRateLimit?: boolean;
}

export interface ApiLogEntry {
  at: number;
  method: string;
  path: string;
  status: number;
  forge: SimForge | 'runner';
}

export interface DeliveryRecord {
  forge: SimForge;
  id: string;
  event: string;
  action: string;
  jobId: number;
  dropped: boolean;
  held: boolean;
  /** One HTTP status per send; 0 when the receiver could not be reached or took over 10 s. */
  responses: number[];
}

export interface GithubSimJob {
  id: number;
  runId: number;
  repo: string;
  name: string;
  labels: string[];
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
  runnerId: number | null;
  runnerName: string | null;
}

export interface GithubSimRunner {
  id: number;
  name: string;
  labels: string[];
  /** 'repo:owner/name' or 'org:name'. */
  scope: string;
  status: 'online' | 'offline';
  busy: boolean;
  jitConfig: string;
  credentialsSeenInGuest: boolean;
}

export interface GitlabSimJob {
  id: number;
  projectId: number;
  name: string;
  tags: string[];
  status: 'pending' | 'running' | 'success' | 'failed' | 'canceled';
  runnerId: number | null;
}

export interface GitlabSimRunner {
  id: number;
  /** glrt-... */
  token: string;
  description: string;
  tags: string[];
  runnerType: 'project_type' | 'group_type' | 'instance_type';
  projectId: number | null;
  groupId: number | null;
  credentialsSeenInGuest: boolean;
}
