import type { Command } from 'commander';
import { HearthError } from '../../errors.ts';
import type { CliContext, CliContextSource } from '../context.ts';

interface Target {
  readonly url: string;
  readonly token: string;
}

interface ConnectOptions {
  url?: string;
  config?: string;
}

/** Where the running server is and the token to show it: --url or HEARTH_URL, else the serve config's address. */
async function target(options: ConnectOptions, context: CliContext): Promise<Target> {
  const { loadServeConfig } = await import('../../config/serve-config.ts');
  const loaded = loadServeConfig({ path: options.config, paths: context.paths });
  const { host, port, tls } = loaded.config.server;
  const local = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const url = (options.url ?? context.host.config.cli.url ?? `${tls ? 'https' : 'http'}://${local}:${port}`).replace(/\/+$/, '');
  const token = loaded.config.api.token;
  if (!token) {
    throw new HearthError('HEARTH_ERR_SERVER_API', {
      url,
      reason: 'no API token to send',
      hint: "set HEARTH_API_TOKEN to the server's api.token (or pass --config with the server's config file)",
    });
  }
  return { url, token };
}

async function call(t: Target, path: string, accept = 'application/json'): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(`${t.url}/api/v1${path}`, { headers: { authorization: `Bearer ${t.token}`, accept } });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new HearthError('HEARTH_ERR_SERVER_API', {
      url: t.url,
      reason: `cannot connect (${cause?.code ?? cause?.message ?? (error as Error).message})`,
      hint: 'start it (npm start, or systemctl start hearth), or point at it with --url or HEARTH_URL',
    });
  }
  if (response.ok) return response;
  const body = await response.text();
  const reason = `${path.split('?')[0]} answered ${response.status}: ${body.slice(0, 200)}`;
  const hint =
    response.status === 401
      ? "set HEARTH_API_TOKEN to the server's api.token"
      : response.status === 404
        ? 'check the job id: `hearth status` lists recent jobs (ids look like github:123456)'
        : 'see the server log for this request';
  throw new HearthError('HEARTH_ERR_SERVER_API', { url: t.url, reason, hint });
}

interface StatusView {
  host: { name: string | null; driver: string };
  capacity: { cpus: { used: number; total: number }; memoryMib: { used: number; total: number } };
  jobs: { byState: Record<string, number> };
  queueDepth: number;
  vms: { id: string; jobId: string | null; pool: string | null; state: string; ageSeconds: number; cpus: number; memoryMib: number }[];
  pools: { name: string; mode: string; idle: number; starting: number; busy: number; target: number }[];
}

interface JobsView {
  jobs: { id: string; repository: string; name: string | null; state: string; conclusion: string | null; createdAt: string }[];
}

function bar(used: number, total: number, width = 20): string {
  const filled = total > 0 ? Math.min(width, Math.round((used / total) * width)) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  return `${Math.round(seconds / 3600)}h`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** The terminal summary `hearth status` prints. */
export function formatStatus(status: StatusView, recent: JobsView['jobs']): string {
  const { cpus, memoryMib } = status.capacity;
  const lines = [
    `host ${status.host.name ?? '?'} (${status.host.driver})`,
    `cpu    ${bar(cpus.used, cpus.total)} ${cpus.used}/${cpus.total} vCPU`,
    `memory ${bar(memoryMib.used, memoryMib.total)} ${memoryMib.used}/${memoryMib.total} MiB`,
    `queue  ${status.queueDepth} waiting; ${
      Object.entries(status.jobs.byState)
        .filter(([, n]) => n > 0)
        .map(([state, n]) => `${n} ${state}`)
        .join(', ') || 'no jobs yet'
    }`,
  ];
  if (status.pools.length > 0) {
    lines.push(
      '',
      table([
        ['POOL', 'MODE', 'IDLE', 'STARTING', 'BUSY', 'TARGET'],
        ...status.pools.map((p) => [p.name, p.mode, String(p.idle), String(p.starting), String(p.busy), String(p.target)]),
      ]),
    );
  }
  if (status.vms.length > 0) {
    lines.push(
      '',
      table([
        ['VM', 'STATE', 'AGE', 'SHAPE', 'JOB'],
        ...status.vms.map((vm) => [
          vm.id,
          vm.state,
          age(vm.ageSeconds),
          `${vm.cpus} vCPU ${vm.memoryMib} MiB`,
          vm.jobId ?? (vm.pool ? `pool ${vm.pool}` : '-'),
        ]),
      ]),
    );
  }
  if (recent.length > 0) {
    lines.push(
      '',
      table([
        ['JOB', 'STATE', 'REPOSITORY', 'NAME', 'CREATED'],
        ...recent.map((j) => [j.id, j.conclusion ? `${j.state} (${j.conclusion})` : j.state, j.repository, j.name ?? '-', j.createdAt]),
      ]),
    );
  }
  return `${lines.join('\n')}\n`;
}

interface LogLine {
  seq: number;
  at: string;
  stream: string;
  text: string;
}

function printLine(line: LogLine): void {
  process.stdout.write(`${line.at.slice(11, 23)} ${line.stream === 'hearth' ? '[hearth] ' : ''}${line.text}\n`);
}

/** Follows the job's log over SSE until the server says it ended. */
async function follow(t: Target, jobId: string, after: number): Promise<void> {
  let last = after;
  for (;;) {
    const response = await call(t, `/jobs/${encodeURIComponent(jobId)}/logs/stream?lastEventId=${last}`, 'text/event-stream');
    const decoder = new TextDecoder();
    let buffer = '';
    let ended = false;
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event === 'end') ended = true;
          if (event === 'log' && data) {
            const line = JSON.parse(data) as LogLine;
            last = line.seq;
            printLine(line);
          }
        }
      }
    } catch {
      // The connection dropped: reconnect from the last line seen, as EventSource does.
    }
    if (ended) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export function registerObserve(program: Command, context: CliContextSource): void {
  const connection = (command: Command): Command =>
    command
      .option('--url <url>', 'the server, e.g. http://127.0.0.1:8080 (default: $HEARTH_URL, else the address in the serve config)')
      .option(
        '--config <path>',
        'the serve config, for its address and api.token (default: $HEARTH_SERVE_CONFIG, else embedded defaults); the token can also come from HEARTH_API_TOKEN',
      );

  connection(program.command('status'))
    .description('a terminal summary of a running hearth serve: capacity, queue, pools, VMs and recent jobs')
    .option('--json', 'print the /api/v1/status answer as JSON')
    .option('--jobs <n>', 'how many recent jobs to list', '10')
    .action(async (options: ConnectOptions & { json?: boolean; jobs: string }) => {
      const t = await target(options, await context());
      const status = (await (await call(t, '/status')).json()) as StatusView;
      if (options.json) {
        process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
        return;
      }
      const limit = Number(options.jobs);
      if (!Number.isInteger(limit) || limit < 0 || limit > 1000)
        throw new HearthError('HEARTH_ERR_BAD_OPTION', {
          option: '--jobs',
          reason: `"${options.jobs}" is not a whole number from 0 to 1000`,
          hint: 'e.g. --jobs 20',
        });
      const recent = limit > 0 ? ((await (await call(t, `/jobs?limit=${limit}`)).json()) as JobsView).jobs : [];
      process.stdout.write(formatStatus(status, recent));
    });

  connection(program.command('logs').argument('<job>', 'the job id, e.g. github:123456 or gitlab:7890'))
    .description("print a job's log (the runner's output and what Hearth did), secrets masked; -f follows it live until the job is torn down")
    .option('-f, --follow', 'keep printing new lines until the job ends')
    .action(async (jobId: string, options: ConnectOptions & { follow?: boolean }) => {
      const t = await target(options, await context());
      let after = 0;
      for (;;) {
        const page = (await (await call(t, `/jobs/${encodeURIComponent(jobId)}/logs?after=${after}&limit=5000`)).json()) as { lines: LogLine[]; done: boolean };
        for (const line of page.lines) printLine(line);
        after = page.lines.at(-1)?.seq ?? after;
        if (page.lines.length < 5000) break;
      }
      if (options.follow) await follow(t, jobId, after);
    });
}
