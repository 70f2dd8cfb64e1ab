/**
 * GitLab's `rules:if` / `only:variables` expression language: `$VAR`,
 * `"string"`, `'string'`, `/regex/flags`, `null`, `==`, `!=`, `=~`, `!~`,
 * `&&`, `||` and parentheses. A bare `$VAR` is true when the variable is set
 * and not empty.
 */
type Token =
  | { kind: 'var'; name: string }
  | { kind: 'string'; value: string }
  | { kind: 'regex'; source: string; flags: string }
  | { kind: 'null' }
  | { kind: 'op'; op: '==' | '!=' | '=~' | '!~' | '&&' | '||' | '(' | ')' };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const two = text.slice(i, i + 2);
    if (['==', '!=', '=~', '!~', '&&', '||'].includes(two)) {
      tokens.push({ kind: 'op', op: two as '==' });
      i += 2;
      continue;
    }
    if (c === '(' || c === ')') {
      tokens.push({ kind: 'op', op: c });
      i++;
      continue;
    }
    if (c === '$') {
      const m = /^\$(\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/.exec(text.slice(i));
      if (!m) throw new Error(`bad variable at "${text.slice(i, i + 10)}"`);
      tokens.push({ kind: 'var', name: m[2] ?? m[3]! });
      i += m[0].length;
      continue;
    }
    if (c === '"' || c === "'") {
      const end = text.indexOf(c, i + 1);
      if (end < 0) throw new Error(`unterminated string starting at "${text.slice(i, i + 10)}"`);
      tokens.push({ kind: 'string', value: text.slice(i + 1, end) });
      i = end + 1;
      continue;
    }
    if (c === '/') {
      let j = i + 1;
      while (j < text.length && text[j] !== '/') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) throw new Error(`unterminated regex starting at "${text.slice(i, i + 10)}"`);
      const flags = /^[a-z]*/.exec(text.slice(j + 1))![0];
      tokens.push({ kind: 'regex', source: text.slice(i + 1, j), flags });
      i = j + 1 + flags.length;
      continue;
    }
    if (text.startsWith('null', i)) {
      tokens.push({ kind: 'null' });
      i += 4;
      continue;
    }
    throw new Error(`unexpected "${text.slice(i, i + 10)}"`);
  }
  return tokens;
}

type Value = string | null | RegExp;

/** Evaluates a rules:if expression against variables; throws with the reason on a syntax error. */
export function evaluateRuleIf(expression: string, variables: Readonly<Record<string, string>>): boolean {
  const tokens = tokenize(expression);
  let pos = 0;
  const peek = (): Token | undefined => tokens[pos];
  const isOp = (op: string): boolean => {
    const t = peek();
    return t?.kind === 'op' && t.op === op;
  };
  const value = (t: Token): Value => {
    switch (t.kind) {
      case 'var':
        return variables[t.name] ?? null;
      case 'string':
        return t.value;
      case 'regex':
        return new RegExp(t.source, t.flags.replace(/[^gimsuy]/g, ''));
      case 'null':
        return null;
      default:
        throw new Error(`unexpected "${t.op}"`);
    }
  };
  const toRegex = (v: Value): RegExp | null => {
    if (v instanceof RegExp) return v;
    if (typeof v === 'string') {
      const m = /^\/(.*)\/([a-z]*)$/s.exec(v);
      if (m) return new RegExp(m[1]!, m[2]!.replace(/[^gimsuy]/g, ''));
    }
    return null;
  };
  const primary = (): boolean => {
    if (isOp('(')) {
      pos++;
      const inner = or();
      if (!isOp(')')) throw new Error('missing )');
      pos++;
      return inner;
    }
    const left = peek();
    if (!left || left.kind === 'op') throw new Error('expected a variable or value');
    pos++;
    const op = peek();
    if (op?.kind === 'op' && ['==', '!=', '=~', '!~'].includes(op.op)) {
      pos++;
      const right = peek();
      if (!right || right.kind === 'op') throw new Error(`expected a value after ${op.op}`);
      pos++;
      const l = value(left);
      const r = value(right);
      if (op.op === '==' || op.op === '!=') {
        const equal = (l instanceof RegExp ? String(l) : l) === (r instanceof RegExp ? String(r) : r);
        return op.op === '==' ? equal : !equal;
      }
      const regex = toRegex(r);
      if (!regex) throw new Error(`the right side of ${op.op} must be a /regex/`);
      const matched = typeof l === 'string' && regex.test(l);
      return op.op === '=~' ? matched : !matched;
    }
    const v = value(left);
    return typeof v === 'string' ? v !== '' : v !== null;
  };
  const and = (): boolean => {
    let result = primary();
    while (isOp('&&')) {
      pos++;
      const right = primary();
      result = result && right;
    }
    return result;
  };
  const or = (): boolean => {
    let result = and();
    while (isOp('||')) {
      pos++;
      const right = and();
      result = result || right;
    }
    return result;
  };
  const result = or();
  if (pos !== tokens.length) throw new Error(`unexpected "${JSON.stringify(tokens[pos])}" after the expression`);
  return result;
}

/** GitLab durations: "3600" (seconds), "1h 30m", "2 hours", "90 minutes", "1d". Returns minutes. */
export function parseDurationMinutes(text: string): number | undefined {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Math.max(1, Math.ceil(Number(trimmed) / 60));
  const units: Record<string, number> = {
    s: 1 / 60,
    sec: 1 / 60,
    secs: 1 / 60,
    second: 1 / 60,
    seconds: 1 / 60,
    m: 1,
    min: 1,
    mins: 1,
    minute: 1,
    minutes: 1,
    h: 60,
    hr: 60,
    hrs: 60,
    hour: 60,
    hours: 60,
    d: 1440,
    day: 1440,
    days: 1440,
    w: 10080,
    week: 10080,
    weeks: 10080,
  };
  let total = 0;
  let rest = trimmed.toLowerCase();
  const part = /^(\d+(?:\.\d+)?)\s*([a-z]+)\s*(and\s+)?/;
  if (!rest) return undefined;
  while (rest) {
    const m = part.exec(rest);
    if (!m || units[m[2]!] === undefined) return undefined;
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length).trim();
  }
  return Math.max(1, Math.ceil(total));
}
