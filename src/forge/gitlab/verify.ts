import { createHmac } from 'node:crypto';
import { constantTimeEqual } from '../constant-time.ts';
import { verdictOf, type Verification, type WebhookVerdict } from '../webhook.ts';

/** `X-Gitlab-Token` carries the secret itself: compared in constant time against each configured token. */
export function verifyGitlabToken(header: string | undefined, tokens: readonly string[]): Verification {
  if (tokens.length === 0) return { ok: false, reason: 'no webhook token is configured' };
  if (!header) return { ok: false, reason: 'missing X-Gitlab-Token header' };
  for (const [index, token] of tokens.entries()) if (constantTimeEqual(token, header)) return { ok: true, secretIndex: index };
  return { ok: false, reason: 'X-Gitlab-Token does not match any configured token' };
}

/** How far a signed webhook's timestamp may be from now, either way, before it counts as a replay. */
export const STANDARD_WEBHOOK_TOLERANCE_SECONDS = 300;

/**
 * Standard Webhooks signatures (newer GitLab): `webhook-signature` holds one or
 * more space-separated `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`; the
 * key is the base64 part of a `whsec_…` secret.
 */
export function verifyStandardWebhook(
  rawBody: Buffer,
  headers: { id?: string | undefined; timestamp?: string | undefined; signature?: string | undefined },
  secrets: readonly string[],
  nowSeconds: number = Math.floor(Date.now() / 1000),
): Verification {
  if (secrets.length === 0) return { ok: false, reason: 'no signing secret is configured' };
  if (!headers.id || !headers.timestamp || !headers.signature)
    return { ok: false, reason: 'missing webhook-id, webhook-timestamp or webhook-signature header' };
  const timestamp = Number(headers.timestamp);
  if (!/^\d+$/.test(headers.timestamp)) return { ok: false, reason: 'webhook-timestamp is not a whole number of seconds' };
  if (Math.abs(nowSeconds - timestamp) > STANDARD_WEBHOOK_TOLERANCE_SECONDS)
    return { ok: false, reason: `webhook-timestamp is more than ${STANDARD_WEBHOOK_TOLERANCE_SECONDS} s from now` };
  const offered = headers.signature
    .split(' ')
    .filter((s) => s.startsWith('v1,'))
    .map((s) => s.slice(3));
  if (offered.length === 0) return { ok: false, reason: 'webhook-signature has no v1 signature' };
  const content = Buffer.concat([Buffer.from(`${headers.id}.${headers.timestamp}.`), rawBody]);
  for (const [index, secret] of secrets.entries()) {
    const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
    const expected = createHmac('sha256', key).update(content).digest('base64');
    if (offered.some((sig) => constantTimeEqual(expected, sig))) return { ok: true, secretIndex: index };
  }
  return { ok: false, reason: 'webhook-signature does not match any configured secret' };
}

/** What a GitLab delivery carries to prove itself: a token, or a Standard Webhooks signature. */
export interface GitlabCredentials {
  readonly token: string | undefined;
  readonly id: string | undefined;
  readonly timestamp: string | undefined;
  readonly signature: string | undefined;
}

/**
 * GitLab's verification policy. A signed delivery is checked against the
 * signing secrets when any is configured; otherwise the X-Gitlab-Token is
 * compared. With signing secrets but no tokens an unsigned delivery is refused
 * (401); with neither configured GitLab webhooks are off (404).
 */
export function verifyGitlabDelivery(
  rawBody: Buffer,
  given: GitlabCredentials,
  secrets: { readonly tokens: readonly string[]; readonly signing: readonly string[] },
  nowSeconds?: number,
): WebhookVerdict {
  if (given.signature !== undefined && secrets.signing.length > 0) return verdictOf(verifyStandardWebhook(rawBody, given, secrets.signing, nowSeconds));
  if (secrets.tokens.length === 0) {
    return secrets.signing.length > 0
      ? { ok: false, status: 401, reason: 'missing webhook-signature header' }
      : { ok: false, status: 404, reason: 'GitLab webhooks are not configured (set gitlab.webhookToken or gitlab.signingSecret)' };
  }
  return verdictOf(verifyGitlabToken(given.token, secrets.tokens));
}
