import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ConsoleOutput } from '../../../src/workflow/runner/console-output.ts';
import { JobLog } from '../../../src/workflow/runner/job-log.ts';

function fakeStream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
  const stream = {
    isTTY,
    columns: 40,
    text: '',
    write(chunk: string) {
      stream.text += chunk;
      return true;
    },
  };
  return stream as unknown as NodeJS.WriteStream & { text: string };
}

it('keeps a status line under the output on a terminal, and writes plain lines elsewhere', () => {
  const saved = process.env.CI;
  delete process.env.CI;
  try {
    const tty = fakeStream(true);
    const out = new ConsoleOutput(tty);
    out.setStatus(['build', 'test'], 1, 3);
    out.line('[build] hello');
    assert.equal(tty.text, '\r\x1b[K[1/3 done] running: build, test\r\x1b[K[build] hello\n[1/3 done] running: build, test');
    const pipe = fakeStream(false);
    const plain = new ConsoleOutput(pipe);
    plain.setStatus(['build'], 0, 1);
    plain.line('[build] hello');
    assert.equal(pipe.text, '[build] hello\n');
  } finally {
    if (saved !== undefined) process.env.CI = saved;
  }
});

it('prefixes job output line by line, across chunk boundaries, with secrets masked', () => {
  const lines: string[] = [];
  const log = new JobLog('job', (l) => lines.push(l), ['hunter2']);
  log.chunk('stdout', Buffer.from('one\ntw'));
  log.chunk('stdout', Buffer.from('o hunter2\nthr'));
  log.chunk('stderr', Buffer.from('err\n'));
  log.flush();
  assert.deepEqual(lines, ['[job] one', '[job] two ***', '[job] err', '[job] thr']);
});
