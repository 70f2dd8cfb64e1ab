import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { GITHUB_HEADERS, githubWebhookAdapter } from '../../src/forge/github/webhook.ts';
import { GITLAB_HEADERS, gitlabWebhookAdapter } from '../../src/forge/gitlab/webhook.ts';
import { WebhookRejection } from '../../src/forge/webhook.ts';

// The forges' adapters without HTTP: the headers they read, the policy they apply, the deliveries they parse.

const BODY = Buffer.from(
  JSON.stringify({ action: 'queued', workflow_job: { id: 42, labels: ['hearth'], name: 'build' }, repository: { full_name: 'octo/app' } }),
);

function githubHeaders(body: Buffer, secret: string): Record<string, string> {
  return {
    [GITHUB_HEADERS.delivery]: 'd-1',
    [GITHUB_HEADERS.event]: 'workflow_job',
    [GITHUB_HEADERS.signature]: `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
  };
}

describe('GitHub webhook adapter', () => {
  it('names the headers GitHub sends', () => {
    assert.deepEqual(GITHUB_HEADERS, { delivery: 'x-github-delivery', event: 'x-github-event', signature: 'x-hub-signature-256' });
    assert.equal(githubWebhookAdapter(['s']).deliveryIdOf({ 'x-github-delivery': 'abc' }), 'abc');
  });

  it('is off (404) without a secret, and refuses a bad or missing signature with 401', () => {
    assert.deepEqual(githubWebhookAdapter([]).verify(githubHeaders(BODY, 's'), BODY), {
      ok: false,
      status: 404,
      reason: 'GitHub webhooks are not configured (set github.webhookSecret)',
    });
    const adapter = githubWebhookAdapter(['current', 'previous']);
    assert.deepEqual(adapter.verify(githubHeaders(BODY, 'previous'), BODY), { ok: true, secretIndex: 1 });
    assert.deepEqual(adapter.verify(githubHeaders(BODY, 'wrong'), BODY), { ok: false, status: 401, reason: 'signature does not match any configured secret' });
    const { [GITHUB_HEADERS.signature]: _signature, ...unsigned } = githubHeaders(BODY, 'current');
    assert.deepEqual(adapter.verify(unsigned, BODY), { ok: false, status: 401, reason: 'missing X-Hub-Signature-256 header' });
    // The signature covers the exact bytes: one changed byte fails.
    assert.equal(adapter.verify(githubHeaders(BODY, 'current'), Buffer.from(BODY.toString().replace('42', '43'))).ok, false);
  });

  it('parses a verified delivery into a job event, and a malformed one into a 400', () => {
    const adapter = githubWebhookAdapter(['current']);
    const delivery = adapter.parse(githubHeaders(BODY, 'current'), BODY);
    assert.equal(delivery.deliveryId, 'd-1');
    assert.equal(delivery.payload.kind, 'job');
    assert.throws(
      () => adapter.parse({ ...githubHeaders(BODY, 'current'), [GITHUB_HEADERS.delivery]: 'not valid!' }, BODY),
      (error) => error instanceof WebhookRejection && error.status === 400 && /X-GitHub-Delivery/.test(error.message),
    );
  });
});

const GITLAB_BODY = Buffer.from(JSON.stringify({ object_kind: 'build', build_id: 7, project_id: 9, build_status: 'pending' }));
const SIGNING = `whsec_${Buffer.from('gitlab-signing-key').toString('base64')}`;
const NOW = 1_700_000_000;

function signedHeaders(body: Buffer, secret: string, timestamp = NOW): Record<string, string> {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const signature = createHmac('sha256', key).update(`msg_1.${timestamp}.${body.toString()}`).digest('base64');
  return {
    [GITLAB_HEADERS.event]: 'Job Hook',
    [GITLAB_HEADERS.webhookId]: 'msg_1',
    [GITLAB_HEADERS.webhookTimestamp]: String(timestamp),
    [GITLAB_HEADERS.webhookSignature]: `v1,${signature}`,
  };
}

describe('GitLab webhook adapter', () => {
  it('takes the delivery id from Idempotency-Key, else the event UUID, else the signed message id', () => {
    const adapter = gitlabWebhookAdapter({ tokens: ['t'], signing: [] });
    assert.equal(adapter.deliveryIdOf({ 'idempotency-key': 'k', 'x-gitlab-event-uuid': 'u' }), 'k');
    assert.equal(adapter.deliveryIdOf({ 'x-gitlab-event-uuid': 'u', 'webhook-id': 'w' }), 'u');
    assert.equal(adapter.deliveryIdOf({ 'webhook-id': 'w' }), 'w');
  });

  it('is off (404) with neither a token nor a signing secret', () => {
    assert.deepEqual(gitlabWebhookAdapter({ tokens: [], signing: [] }).verify({ [GITLAB_HEADERS.token]: 'x' }, GITLAB_BODY), {
      ok: false,
      status: 404,
      reason: 'GitLab webhooks are not configured (set gitlab.webhookToken or gitlab.signingSecret)',
    });
  });

  it('compares the secret token, with rotation', () => {
    const adapter = gitlabWebhookAdapter({ tokens: ['new-token', 'old-token'], signing: [] });
    assert.deepEqual(adapter.verify({ [GITLAB_HEADERS.token]: 'old-token' }, GITLAB_BODY), { ok: true, secretIndex: 1 });
    assert.deepEqual(adapter.verify({ [GITLAB_HEADERS.token]: 'guess' }, GITLAB_BODY), {
      ok: false,
      status: 401,
      reason: 'X-Gitlab-Token does not match any configured token',
    });
    assert.deepEqual(adapter.verify({}, GITLAB_BODY), { ok: false, status: 401, reason: 'missing X-Gitlab-Token header' });
  });

  it('checks a signed delivery against the signing secrets, and needs a signature when only those are set', () => {
    const adapter = gitlabWebhookAdapter({ tokens: [], signing: [SIGNING] });
    assert.deepEqual(adapter.verify(signedHeaders(GITLAB_BODY, SIGNING), GITLAB_BODY, NOW), { ok: true, secretIndex: 0 });
    assert.deepEqual(adapter.verify(signedHeaders(GITLAB_BODY, SIGNING, NOW - 301), GITLAB_BODY, NOW), {
      ok: false,
      status: 401,
      reason: 'webhook-timestamp is more than 300 s from now',
    });
    assert.equal(adapter.verify(signedHeaders(GITLAB_BODY, SIGNING), Buffer.from('{}'), NOW).ok, false);
    assert.deepEqual(adapter.verify({ [GITLAB_HEADERS.token]: 'a-token' }, GITLAB_BODY, NOW), {
      ok: false,
      status: 401,
      reason: 'missing webhook-signature header',
    });
  });

  it('falls back to the token for an unsigned delivery when both are configured, and ignores a signature when no signing secret is', () => {
    const both = gitlabWebhookAdapter({ tokens: ['tok'], signing: [SIGNING] });
    assert.deepEqual(both.verify({ [GITLAB_HEADERS.token]: 'tok' }, GITLAB_BODY, NOW), { ok: true, secretIndex: 0 });
    const tokensOnly = gitlabWebhookAdapter({ tokens: ['tok'], signing: [] });
    assert.deepEqual(tokensOnly.verify({ ...signedHeaders(GITLAB_BODY, SIGNING), [GITLAB_HEADERS.token]: 'tok' }, GITLAB_BODY, NOW), {
      ok: true,
      secretIndex: 0,
    });
  });

  it('parses a Job Hook whose labels are not known yet', () => {
    const delivery = gitlabWebhookAdapter({ tokens: ['tok'], signing: [] }).parse(
      { [GITLAB_HEADERS.event]: 'Job Hook', [GITLAB_HEADERS.idempotencyKey]: 'key-1' },
      GITLAB_BODY,
    );
    assert.equal(delivery.deliveryId, 'key-1');
    assert.ok(delivery.payload.kind === 'job' && !delivery.payload.labelsKnown && delivery.payload.job.forgeJobId === '7');
  });
});
