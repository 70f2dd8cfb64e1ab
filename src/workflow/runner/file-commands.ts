/**
 * The runner's file commands ($GITHUB_OUTPUT, $GITHUB_ENV): lines of
 * `name=value`, or `name<<DELIMITER` followed by lines up to a line that is
 * exactly DELIMITER, for multi-line values.
 */
export function parseFileCommand(text: string, file: string): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (!line) continue;
    const heredoc = /^([^=]+?)<<(.+)$/.exec(line);
    const eq = line.indexOf('=');
    if (heredoc && (eq < 0 || eq > line.indexOf('<<'))) {
      const [, name, delimiter] = heredoc;
      const body: string[] = [];
      let closed = false;
      for (i++; i < lines.length; i++) {
        const candidate = lines[i]!.replace(/\r$/, '');
        if (candidate === delimiter) {
          closed = true;
          break;
        }
        body.push(candidate);
      }
      if (!closed) throw new Error(`${file}: no closing line "${delimiter}" for ${name}`);
      values[name!] = body.join('\n');
    } else if (eq > 0) {
      values[line.slice(0, eq)] = line.slice(eq + 1);
    } else {
      throw new Error(`${file}: line "${line}" is neither name=value nor name<<DELIMITER`);
    }
  }
  return values;
}
