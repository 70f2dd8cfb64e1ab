// Request validation built from the Firecracker API schema written in api-schema.ts (the
// endpoints Hearth uses, in the shape of Firecracker's own OpenAPI file, which `npm run
// conformance` compares it with), so the fake rejects exactly what the spec says is wrong
// and nothing we made up. A few rules the spec states only in prose are added below, each named.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { FIRECRACKER_API, type ApiDocument, type SchemaNode } from './api-schema.ts';
import { Faults } from './faults.ts';

export type Validation = { ok: true; operation: string; params: Record<string, string> } | { ok: false; status: 400 | 404 | 405; fault: string };

interface Operation {
  readonly id: string;
  readonly method: string;
  readonly template: string;
  readonly pattern: RegExp;
  readonly pathParams: readonly string[];
  /** Body property names of the schema, used to tie `{drive_id}` to `body.drive_id`. */
  readonly bodyProperties: ReadonlySet<string>;
  readonly body: { readonly required: boolean; readonly validate: ValidateFunction } | undefined;
}

const HTTP_METHODS = new Set(['get', 'put', 'patch', 'post', 'delete']);

/**
 * PATCH /machine-config takes "a subset of Machine Configuration Parameters" but
 * the spec reuses the full schema, whose `required` would refuse every subset.
 */
const PARTIAL_BODIES = new Set(['patchMachineConfiguration']);

/**
 * Firecracker's serde structs use `deny_unknown_fields`, which the spec leaves
 * unsaid: without this a typo such as `mem_size_mb` would pass the fake and
 * fail the real VMM. Objects that declare `additionalProperties` keep it.
 */
function closeObjects(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(closeObjects);
  if (node === null || typeof node !== 'object') return node;
  const out: SchemaNode = {};
  for (const [key, value] of Object.entries(node)) out[key] = closeObjects(value);
  if (out.type === 'object' && out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

function collectFormats(node: unknown, into: Set<string>): Set<string> {
  if (Array.isArray(node)) node.forEach((n) => collectFormats(n, into));
  else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'format' && typeof value === 'string') into.add(value);
      else collectFormats(value, into);
    }
  }
  return into;
}

function buildAjv(definitions: Readonly<Record<string, SchemaNode>>): Ajv {
  const ajv = new Ajv({ strict: false, allErrors: false });
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
  // Swagger's `format` is free text; this spec puts a regular expression in it
  // (MmdsConfig.ipv4_address), so any other format is read as an anchored pattern.
  for (const format of collectFormats(definitions, new Set())) {
    if (format !== 'int32' && format !== 'int64') ajv.addFormat(format, new RegExp(`^(?:${format})$`));
  }
  ajv.addSchema({ $id: 'firecracker', definitions: closeObjects(definitions) });
  return ajv;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
}

function compile(doc: ApiDocument): Operation[] {
  const ajv = buildAjv(doc.definitions);
  const operations: Operation[] = [];
  for (const [template, methods] of Object.entries(doc.paths)) {
    const pathParams = [...template.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string);
    const pattern = new RegExp(`^${escapeRegExp(template).replace(/\{\w+\}/g, '([^/]+)')}$`);
    for (const [method, op] of Object.entries(methods)) {
      if (!HTTP_METHODS.has(method)) continue;
      const bodyParam = op.parameters?.find((p) => p.in === 'body');
      let body: Operation['body'];
      let bodyProperties = new Set<string>();
      if (bodyParam?.schema) {
        const ref = bodyParam.schema.$ref;
        const definition = typeof ref === 'string' ? doc.definitions[ref.replace('#/definitions/', '')] : bodyParam.schema;
        let schema = rewriteRefs(bodyParam.schema);
        if (PARTIAL_BODIES.has(op.operationId) && definition) {
          const { required: _required, ...partial } = definition;
          schema = rewriteRefs(closeObjects(partial) as SchemaNode);
        }
        bodyProperties = new Set(Object.keys((definition?.properties as SchemaNode | undefined) ?? {}));
        // Swagger defaults `required` to false, but Firecracker refuses an empty
        // PUT /machine-config all the same; only an explicit `false` makes it optional.
        body = { required: bodyParam.required !== false, validate: ajv.compile(schema) };
      }
      operations.push({ id: op.operationId, method: method.toUpperCase(), template, pattern, pathParams, bodyProperties, body });
    }
  }
  return operations;
}

/** Points the spec's local `#/definitions/X` at the schema registered under id `firecracker`. */
function rewriteRefs(node: SchemaNode): SchemaNode {
  return JSON.parse(JSON.stringify(node).replaceAll('"#/definitions/', '"firecracker#/definitions/')) as SchemaNode;
}

let cached: { version: string; operations: Operation[] } | undefined;

function loaded(): { version: string; operations: Operation[] } {
  if (!cached) {
    cached = { version: FIRECRACKER_API.info.version, operations: compile(FIRECRACKER_API) };
  }
  return cached;
}

/** The API version the schema was checked against (the official spec's `info.version`). */
export function specVersion(): string {
  return loaded().version;
}

/** Every `METHOD /template` the schema defines, for coverage checks. */
export function specOperations(): { method: string; path: string; operation: string }[] {
  return loaded().operations.map((op) => ({ method: op.method, path: op.template, operation: op.id }));
}

function fieldPath(error: ErrorObject, extra?: string): string {
  const parts = error.instancePath.split('/').filter(Boolean);
  if (extra) parts.push(extra);
  return parts.join('.');
}

/** Names the offending field the way serde would, so a test can match on it. */
function describe(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return `missing field \`${fieldPath(error, String(params.missingProperty))}\``;
    case 'additionalProperties':
      return `unknown field \`${fieldPath(error, String(params.additionalProperty))}\``;
    case 'enum':
      return `unknown variant for field \`${fieldPath(error)}\`, expected one of ${(params.allowedValues as unknown[]).map((v) => `\`${String(v)}\``).join(', ')}`;
    case 'type':
      return error.instancePath ? `invalid type for field \`${fieldPath(error)}\`: ${error.message}` : `invalid type: the body ${error.message}`;
    default:
      return error.instancePath ? `invalid value for field \`${fieldPath(error)}\`: ${error.message}` : `invalid body: ${error.message}`;
  }
}

type ProseRule = (body: Record<string, unknown>) => string | undefined;

/** Rules the spec gives in descriptions rather than in the schema, keyed by operationId. */
const PROSE_RULES: Record<string, ProseRule[]> = {
  // Drive: is_read_only and path_on_host are "required for virtio-block config",
  // i.e. whenever no vhost-user `socket` is given.
  putGuestDriveByID: [
    (b) => (b.socket === undefined && b.path_on_host === undefined ? 'missing field `path_on_host` (required for virtio-block drives)' : undefined),
    (b) => (b.socket === undefined && b.is_read_only === undefined ? 'missing field `is_read_only` (required for virtio-block drives)' : undefined),
  ],
  // MachineConfiguration: "With SMT enabled, the vCPU count is required to be either 1 or an even number".
  putMachineConfiguration: [smtVcpus],
  patchMachineConfiguration: [smtVcpus],
  // SnapshotLoadParams: "Exactly one of the two `mem_*` fields must be present".
  loadSnapshot: [
    (b) => ((b.mem_backend === undefined) === (b.mem_file_path === undefined) ? 'exactly one of `mem_backend` and `mem_file_path` must be present' : undefined),
  ],
};

function smtVcpus(b: Record<string, unknown>): string | undefined {
  const vcpus = b.vcpu_count;
  if (b.smt === true && typeof vcpus === 'number' && vcpus !== 1 && vcpus % 2 !== 0)
    return 'invalid value for field `vcpu_count`: with smt enabled it must be 1 or even';
  return undefined;
}

/**
 * Checks one request against the spec. `body` is the parsed JSON, or
 * undefined when the request had none.
 */
export function validateRequest(method: string, path: string, body: unknown): Validation {
  const verb = method.toUpperCase();
  const bare = path.split('?')[0] ?? path;
  const onPath = loaded().operations.filter((op) => op.pattern.test(bare));
  if (onPath.length === 0) return { ok: false, status: 404, fault: Faults.invalidPathMethod(verb, bare) };
  const op = onPath.find((o) => o.method === verb);
  if (!op) return { ok: false, status: 405, fault: Faults.invalidPathMethod(verb, bare) };

  const match = op.pattern.exec(bare) as RegExpExecArray;
  const params: Record<string, string> = {};
  op.pathParams.forEach((name, i) => {
    params[name] = decodeURIComponent(match[i + 1] as string);
  });

  if (body === undefined) {
    if (op.body?.required) return { ok: false, status: 400, fault: Faults.emptyBody(verb) };
    return { ok: true, operation: op.id, params };
  }
  if (!op.body) return { ok: false, status: 400, fault: Faults.unexpectedBody(verb) };
  if (!op.body.validate(body)) {
    const first = op.body.validate.errors?.[0];
    return { ok: false, status: 400, fault: Faults.deserialize(first ? describe(first) : 'invalid body') };
  }

  const fields = body as Record<string, unknown>;
  for (const rule of PROSE_RULES[op.id] ?? []) {
    const problem = rule(fields);
    if (problem) return { ok: false, status: 400, fault: Faults.deserialize(problem) };
  }
  // Where a path parameter names a body field too ({drive_id} and drive_id), they must agree.
  for (const name of op.pathParams) {
    if (op.bodyProperties.has(name) && fields[name] !== params[name]) return { ok: false, status: 400, fault: Faults.idMismatch() };
  }
  return { ok: true, operation: op.id, params };
}
