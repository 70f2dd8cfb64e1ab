import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * The README and the pages under docs/ link to each other and into the tree. A
 * moved or renamed file must not leave a dead link behind, and the README stays
 * a short page for users (the rest lives in docs/ and CONTRIBUTING.md).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const README_MAX_LINES = 250;

interface Link {
  readonly file: string;
  readonly line: number;
  readonly target: string;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutCode(markdown, true).split('\n')) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const text = heading[1]!.replace(/`/g, '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

/** Blanks fenced code blocks and, unless asked to keep it, inline code (keeping line numbers): brackets there are not links. */
function withoutCode(markdown: string, keepInline = false): string {
  let fenced = false;
  return markdown
    .split('\n')
    .map((line) => {
      if (/^\s*(```|~~~)/.test(line)) {
        fenced = !fenced;
        return '';
      }
      return fenced ? '' : keepInline ? line : line.replace(/`[^`]*`/g, '``');
    })
    .join('\n');
}

function linksOf(file: string, markdown: string): Link[] {
  const links: Link[] = [];
  withoutCode(markdown)
    .split('\n')
    .forEach((line, index) => {
      for (const match of line.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) links.push({ file, line: index + 1, target: match[1]! });
      const reference = /^\s*\[[^\]]+\]:\s*<?(\S+?)>?(\s+"[^"]*")?\s*$/.exec(line);
      if (reference) links.push({ file, line: index + 1, target: reference[1]! });
    });
  return links;
}

/** What is wrong with one relative link, or undefined when it resolves (file, directory, heading). */
function brokenReason(link: Link, read: (path: string) => string | undefined): string | undefined {
  const { target } = link;
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto:, ...
  const hash = target.indexOf('#');
  const pathPart = decodeURIComponent(hash >= 0 ? target.slice(0, hash) : target);
  const anchor = hash >= 0 ? decodeURIComponent(target.slice(hash + 1)) : undefined;
  if (pathPart.startsWith('/')) return 'is absolute: use a path relative to the page, so it works in a clone and on the forge';
  const path = pathPart === '' ? link.file : resolve(dirname(link.file), pathPart);
  if (relative(ROOT, path).startsWith('..')) return 'points outside the repository';
  const content = read(path);
  if (content === undefined) return `${relative(ROOT, path)} does not exist`;
  if (anchor === undefined || anchor === '') return undefined;
  if (!path.endsWith('.md')) return `#${anchor} on a file that is not Markdown`;
  if (!anchorsOf(content).has(anchor)) return `${relative(ROOT, path)} has no heading #${anchor}`;
  return undefined;
}

function readFromDisk(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  return statSync(path).isDirectory() ? '' : readFileSync(path, 'utf8');
}

function pages(): string[] {
  const docs = join(ROOT, 'docs');
  return [join(ROOT, 'README.md'), join(ROOT, 'CONTRIBUTING.md'), ...readdirSync(docs).filter((name) => name.endsWith('.md')).map((name) => join(docs, name))];
}

describe('documentation links', () => {
  it('every relative link in README.md, CONTRIBUTING.md and docs/*.md resolves, headings included', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const page of pages()) {
      for (const link of linksOf(page, readFileSync(page, 'utf8'))) {
        checked++;
        const reason = brokenReason(link, readFromDisk);
        if (reason) broken.push(`${relative(ROOT, link.file)}:${link.line}: ${link.target} ${reason}`);
      }
    }
    assert.ok(checked > 20, `only ${checked} links found: is the link pattern still right?`);
    assert.deepEqual(broken, []);
  });

  it(`README.md is at most ${README_MAX_LINES} lines (the rest belongs in docs/ or CONTRIBUTING.md)`, () => {
    const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').trimEnd().split('\n').length;
    assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines; move detail into docs/`);
  });

  it('the checker itself catches a missing file, a missing heading and an absolute path, and ignores code', () => {
    const page = join(ROOT, 'docs', 'example.md');
    const files = new Map([
      [page, '# Title\n\n## Set-up: the `serve` command\n'],
      [join(ROOT, 'docs', 'other.md'), '# Other\n'],
    ]);
    const read = (path: string): string | undefined => files.get(path);
    const markdown = [
      '[ok](other.md) [ok anchor](#set-up-the-serve-command) [web](https://example.org/x)',
      '[missing](gone.md) [bad anchor](other.md#nowhere) ![img](/abs.png)',
      '`[not a link](nowhere.md)`',
      '```',
      '[in code](nowhere.md)',
      '```',
      '[outside](../../elsewhere.md)',
    ].join('\n');
    const reasons = linksOf(page, markdown).map((link) => [link.target, brokenReason(link, read)]);
    assert.deepEqual(reasons, [
      ['other.md', undefined],
      ['#set-up-the-serve-command', undefined],
      ['https://example.org/x', undefined],
      ['gone.md', 'docs/gone.md does not exist'],
      ['other.md#nowhere', 'docs/other.md has no heading #nowhere'],
      ['/abs.png', 'is absolute: use a path relative to the page, so it works in a clone and on the forge'],
      ['../../elsewhere.md', 'points outside the repository'],
    ]);
  });
});
