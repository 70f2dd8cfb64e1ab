import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { parse } from 'yaml';
import { FIRECRACKER_API, type ApiDocument, type SchemaNode } from '../support/firecracker-fake/api-schema.ts';
import { sharedDir } from './shared.ts';

// The official Firecracker OpenAPI file beside the repository (../shared), checked by `npm run conformance` only.
const SPEC = join(sharedDir(), 'reference', 'firecracker', 'firecracker.yaml');

/** Keys that document a schema without changing what a request may contain; the in-repo schema leaves them out. */
const DOCUMENTATION = new Set(['description', 'example', 'default', 'summary']);

function withoutDocumentation(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutDocumentation);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key]) => !DOCUMENTATION.has(key))
      .map(([key, value]) => [key, withoutDocumentation(value)]),
  );
}

function refs(node: unknown, into: Set<string>): Set<string> {
  if (Array.isArray(node)) node.forEach((n) => refs(n, into));
  else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') into.add(value.replace('#/definitions/', ''));
      else refs(value, into);
    }
  }
  return into;
}

/** How ours differs from the spec's (as assert's diff, on one line), or undefined when they agree. */
function differences(ours: unknown, theirs: unknown): string | undefined {
  try {
    assert.deepStrictEqual(ours, theirs);
    return undefined;
  } catch (error) {
    return `ours (+) and the spec (-) differ: ${(error as Error).message.replace(/\s+/g, ' ')}`;
  }
}

/** Every way the in-repo schema says something the official spec does not, one line each. */
function disagreements(official: ApiDocument, ours: ApiDocument): string[] {
  const problems: string[] = [];
  if (ours.info.version !== official.info.version)
    problems.push(`info.version: ours ${ours.info.version}, the spec ${official.info.version} (check the entries below, then update it)`);
  for (const [path, methods] of Object.entries(ours.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const theirs = official.paths[path]?.[method];
      if (!theirs) {
        problems.push(`${method.toUpperCase()} ${path}: not in the spec`);
        continue;
      }
      if (theirs.operationId !== operation.operationId)
        problems.push(`${method.toUpperCase()} ${path}: operationId ours ${operation.operationId}, the spec ${theirs.operationId}`);
      const differs = differences(operation.parameters ?? [], withoutDocumentation(theirs.parameters ?? []));
      if (differs) problems.push(`${method.toUpperCase()} ${path}: parameters ${differs}`);
    }
  }
  for (const [name, schema] of Object.entries(ours.definitions)) {
    const theirs = official.definitions[name];
    if (!theirs) {
      problems.push(`definitions.${name}: not in the spec`);
      continue;
    }
    const differs = differences(schema, withoutDocumentation(theirs));
    if (differs) problems.push(`definitions.${name}: ${differs}`);
  }
  for (const name of refs(ours.paths, refs(ours.definitions, new Set())))
    if (!(name in ours.definitions)) problems.push(`#/definitions/${name} is referenced but not defined in the schema`);
  return problems;
}

it('the Firecracker API schema in the repository agrees with the official spec', () => {
  const official = parse(readFileSync(SPEC, 'utf8')) as ApiDocument;
  assert.deepEqual(disagreements(official, FIRECRACKER_API), []);
});

it('the comparison finds a changed type, a missing required field, a wrong operationId and an unknown definition', () => {
  const official = parse(readFileSync(SPEC, 'utf8')) as ApiDocument;
  const changed = structuredClone(FIRECRACKER_API) as {
    info: { version: string };
    paths: Record<string, Record<string, { operationId: string }>>;
    definitions: Record<string, SchemaNode>;
  };
  (changed.definitions.Vsock as { properties: Record<string, SchemaNode> }).properties.guest_cid = { type: 'string' };
  changed.definitions.BootSource = { ...changed.definitions.BootSource, required: [] };
  changed.paths['/vm']!.patch!.operationId = 'pauseVm';
  changed.definitions.Made = { type: 'object' };
  const problems = disagreements(official, changed);
  assert.deepEqual(
    problems.map((p) => p.split(':')[0]),
    ['PATCH /vm', 'definitions.BootSource', 'definitions.Vsock', 'definitions.Made'],
    problems.join('\n'),
  );
});
