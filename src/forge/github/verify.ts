import { createHmac } from 'node:crypto';
import { constantTimeEqual } from '../constant-time.ts';
import { verdictOf, type Verification, type WebhookVerdict } from '../webhook.ts';

/**
 * Checks `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`
 * against each configured secret in turn, so a secret can be rotated by
 * listing the new one first and the old one after it. Reasons never contain
 * the signature or a secret.
 */
export function verifyGithubSignature(rawBody: Buffer, header: string | undefined, secrets: readonly string[]): Verification {
  if (secrets.length === 0) return { ok: false, reason: 'no webhook secret is configured' };
  if (!header) return { ok: false, reason: 'missing X-Hub-Signature-256 header' };
  if (!/^sha256=[0-9a-f]{64}$/.test(header)) return { ok: false, reason: 'X-Hub-Signature-256 is not sha256=<64 hex digits>' };
  for (const [index, secret] of secrets.entries()) {
    const expected = `sha256=${createHmac('sha256', secret).update(rawBody).digest('hex')}`;
    if (constantTimeEqual(expected, header)) return { ok: true, secretIndex: index };
  }
  return { ok: false, reason: 'signature does not match any configured secret' };
}

/**
 * GitHub's verification policy: with no secret configured GitHub webhooks are
 * off (404, so a probe learns nothing about secrets); otherwise the signature
 * must match one of them (401 when it does not).
 */
export function verifyGithubDelivery(rawBody: Buffer, signature: string | undefined, secrets: readonly string[]): WebhookVerdict {
  if (secrets.length === 0) return { ok: false, status: 404, reason: 'GitHub webhooks are not configured (set github.webhookSecret)' };
  return verdictOf(verifyGithubSignature(rawBody, signature, secrets));
}
