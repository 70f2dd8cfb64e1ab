/** Writes docs/configuration.md from the schema: node --import tsx scripts/config-doc.ts > docs/configuration.md (test/config/schema.test.ts checks it lists every key). */
import { SCHEMA } from '../src/config/schema.ts';
import { envNameOf } from '../src/config/engine.ts';
const out: string[] = [];
out.push('# Configuration', '', '<!-- Generated from src/config/schema.ts by scripts/config-doc.ts; do not edit by hand. -->', '');
out.push(
  'Every setting of Hearth is declared once, in `src/config/schema.ts`: its key, type, bounds, default, environment variable, flag and whether it is a secret. `src/config/engine.ts` reads them all the same way: the default, then a file, then the environment variable, then a flag, each winning over the one before. A bad value stops the command with `HEARTH_ERR_CONFIG`, naming where the value came from, the key and what to write instead.',
  '',
);
out.push(
  '`hearth config check [--config FILE] [--json]` loads and checks all of it and prints the effective values, each one not at its default followed by where it came from (`file PATH line N`, `env NAME`, `flag --NAME`). Secrets are printed as `[redacted]` (a list keeps its length) and masked as `***` in job logs.',
  '',
);
out.push(
  'Keys are written as in the YAML file (`server.port`); the environment variable of a serve key is `HEARTH_` and the key in upper snake case (`server.tls.certPath` is `HEARTH_SERVER_TLS_CERT_PATH`). A list given in a variable is comma-separated. A variable that starts like a section (`HEARTH_GITHUB_…`) but names no key is an error naming the nearest one. `deploy/hearth.example.yaml` is a commented serve file with every key.',
  '',
);
const cell = (v: string): string => v.replace(/\|/g, '\\|');
for (const table of SCHEMA) {
  out.push(`## ${table.name}`, '', `From ${table.from}.`, '');
  out.push('| Key | Environment | Type | Default | Description |', '| --- | --- | --- | --- | --- |');
  for (const [key, s] of Object.entries(table.settings)) {
    const env = table.name === 'pools' ? '' : `\`${envNameOf(key, s)}\`${s.flag ? `, \`${s.flag}\`` : ''}`;
    const type =
      s.kind === 'integer' || s.kind === 'optionalInteger'
        ? `integer ${s.min}–${s.max}${s.kind === 'optionalInteger' ? ', optional' : ''}`
        : s.kind === 'choice'
          ? s.choices!.join(' \\| ')
          : s.kind === 'optionalText'
            ? 'text, optional'
            : s.kind === 'list'
              ? 'list'
              : s.kind === 'boolean'
                ? 'true or false'
                : 'text';
    const def = typeof s.default === 'function' ? '(computed)' : JSON.stringify(s.default);
    out.push(`| \`${table.prefix}${key}\` | ${env} | ${type} | ${cell(def)} | ${cell(s.description)}${s.secret ? ' **Secret.**' : ''} |`);
  }
  out.push('');
}
process.stdout.write(out.join('\n'));
