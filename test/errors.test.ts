import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { it } from 'node:test';
import { ERRORS, HearthError } from '../src/errors.ts';

it('every error code is documented in docs/errors.md, and nothing else is', async () => {
  const doc = await readFile(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const documented = [...doc.matchAll(/^### (HEARTH_ERR_\w+)/gm)].map((m) => m[1]);
  assert.deepEqual([...documented].sort(), Object.keys(ERRORS).sort());
});

it('fills message and fix from context, leaving unknown fields visible', () => {
  const error = new HearthError('HEARTH_ERR_IMAGE_NOT_BUILT', { image: 'minimal', command: 'hearth image build minimal' });
  assert.equal(error.message, 'image "minimal" is not built');
  assert.equal(error.fix, 'build it: hearth image build minimal');
  assert.match(new HearthError('HEARTH_ERR_IMAGE_NOT_BUILT').message, /\{image\}/);
});
