import { createHmac } from 'node:crypto';
import { constantTimeEqual } from '../constant-time.ts';
import type { Verification } from '../github/verify.ts';

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
  if (!headers.id || !headers.timestamp || !headers.signature) return { ok: false, reason: 'missing webhook-id, webhook-timestamp or webhook-signature header' };
  const timestamp = Number(headers.timestamp);
  if (!/^\d+$/.test(headers.timestamp)) return { ok: false, reason: 'webhook-timestamp is not a whole number of seconds' };
  if (Math.abs(nowSeconds - timestamp) > STANDARD_WEBHOOK_TOLERANCE_SECONDS) return { ok: false, reason: `webhook-timestamp is more than ${STANDARD_WEBHOOK_TOLERANCE_SECONDS} s from now` };
  const offered = headers.signature.split(' ').filter((s) => s.startsWith('v1,')).map((s) => s.slice(3));
  if (offered.length === 0) return { ok: false, reason: 'webhook-signature has no v1 signature' };
  const content = Buffer.concat([Buffer.from(`${headers.id}.${headers.timestamp}.`), rawBody]);
  for (const [index, secret] of secrets.entries()) {
    const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
    const expected = createHmac('sha256', key).update(content).digest('base64');
    if (offered.some((sig) => constantTimeEqual(expected, sig))) return { ok: true, secretIndex: index };
  }
  return { ok: false, reason: 'webhook-signature does not match any configured secret' };
}
