import assert from 'node:assert/strict';
import { it } from 'node:test';
import { parseFileCommand } from '../../src/workflow/runner/file-commands.ts';

it('parses name=value and heredoc values as the runner does', () => {
  const text = 'a=1\nb=x=y\nmulti<<EOF\nline 1\nline 2\nEOF\nempty=\n';
  assert.deepEqual(parseFileCommand(text, 'GITHUB_OUTPUT'), { a: '1', b: 'x=y', multi: 'line 1\nline 2', empty: '' });
});

it('names the file and the problem for malformed input', () => {
  assert.throws(() => parseFileCommand('x<<END\nno end\n', 'GITHUB_ENV'), /GITHUB_ENV: no closing line "END" for x/);
  assert.throws(() => parseFileCommand('garbage\n', 'GITHUB_OUTPUT'), /neither name=value/);
});
