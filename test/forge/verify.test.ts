import assert from 'node:assert/strict';
import { it } from 'node:test';
import { verifyGithubSignature } from '../../src/forge/github/verify.ts';
import { verifyGitlabToken, verifyStandardWebhook } from '../../src/forge/gitlab/verify.ts';

// The test vector from GitHub's webhook documentation.
const GITHUB_SECRET = "It's a Secret to Everybody";
const GITHUB_SIGNATURE = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';

it('verifies GitHub signatures over the raw body, with rotation and precise reasons', () => {
  const body = Buffer.from('Hello, World!');
  assert.deepEqual(verifyGithubSignature(body, GITHUB_SIGNATURE, [GITHUB_SECRET]), { ok: true, secretIndex: 0 });
  assert.deepEqual(verifyGithubSignature(body, GITHUB_SIGNATURE, ['new-secret', GITHUB_SECRET]), { ok: true, secretIndex: 1 });
  assert.deepEqual(verifyGithubSignature(Buffer.from('Hello, World?'), GITHUB_SIGNATURE, [GITHUB_SECRET]), {
    ok: false,
    reason: 'signature does not match any configured secret',
  });
  assert.deepEqual(verifyGithubSignature(body, undefined, [GITHUB_SECRET]), { ok: false, reason: 'missing X-Hub-Signature-256 header' });
  assert.equal(verifyGithubSignature(body, 'sha1=abc', [GITHUB_SECRET]).ok, false);
  assert.equal(verifyGithubSignature(body, GITHUB_SIGNATURE, []).ok, false);
  const reason = verifyGithubSignature(body, GITHUB_SIGNATURE.replace('7', '8'), [GITHUB_SECRET]);
  assert.ok(!reason.ok && !reason.reason.includes('757107') && !reason.reason.includes(GITHUB_SECRET), 'reasons must not leak signatures or secrets');
});

it('compares GitLab tokens exactly, whatever their length', () => {
  assert.deepEqual(verifyGitlabToken('s3cret', ['old', 's3cret']), { ok: true, secretIndex: 1 });
  assert.equal(verifyGitlabToken('s3cre', ['s3cret']).ok, false);
  assert.equal(verifyGitlabToken('s3cret ', ['s3cret']).ok, false);
  assert.equal(verifyGitlabToken(undefined, ['s3cret']).ok, false);
});

// The example from the Standard Webhooks specification.
const SW = { id: 'msg_p5jXN8AQM9LWM0D4loKWxJek', timestamp: '1614265330', signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' };
const SW_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const SW_BODY = Buffer.from('{"test": 2432232314}');

it('verifies Standard Webhooks signatures and refuses stale or altered ones', () => {
  assert.deepEqual(verifyStandardWebhook(SW_BODY, { ...SW, signature: `v1,bm90LWl0 ${SW.signature}` }, [SW_SECRET], 1614265330), { ok: true, secretIndex: 0 });
  assert.equal(verifyStandardWebhook(Buffer.from('{"test": 1}'), SW, [SW_SECRET], 1614265330).ok, false);
  assert.deepEqual(verifyStandardWebhook(SW_BODY, SW, [SW_SECRET], 1614265330 + 301), { ok: false, reason: 'webhook-timestamp is more than 300 s from now' });
  assert.equal(verifyStandardWebhook(SW_BODY, { ...SW, id: 'msg_other' }, [SW_SECRET], 1614265330).ok, false);
  assert.equal(verifyStandardWebhook(SW_BODY, { ...SW, signature: undefined }, [SW_SECRET], 1614265330).ok, false);
});
