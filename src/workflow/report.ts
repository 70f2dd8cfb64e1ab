import { shapeFromLabels } from '../scheduler/labels.ts';
import { formatLocation, type Plan } from './model.ts';
import type { FinishedJob } from './runner/plan-runner.ts';

/** Jobs grouped in waves: each wave needs only jobs of earlier waves. */
export function planWaves(plan: Plan): string[][] {
  const wave = new Map<string, number>();
  const depth = (key: string): number => {
    const known = wave.get(key);
    if (known !== undefined) return known;
    const job = plan.jobs.find((j) => j.key === key);
    const value = job && job.needs.length ? Math.max(...job.needs.map(depth)) + 1 : 0;
    wave.set(key, value);
    return value;
  };
  const waves: string[][] = [];
  for (const job of plan.jobs) (waves[depth(job.key)] ??= []).push(job.key);
  return waves;
}

/** `--dry-run`: what would run, in which order, on which VM shape, without booting anything. */
export function describePlan(plan: Plan): string {
  const lines = [`plan for ${plan.file} (${plan.forge}): ${plan.jobs.length} job(s)`];
  planWaves(plan).forEach((keys, i) => {
    lines.push(`wave ${i + 1}:`);
    for (const key of keys) {
      const job = plan.jobs.find((j) => j.key === key)!;
      const { shape } = shapeFromLabels(job.labels);
      lines.push(
        `  ${key}  [${shape.cpus} vCPU, ${shape.memoryMib} MiB, ${shape.image}; timeout ${job.timeoutMinutes} min${job.allowFailure ? '; may fail' : ''}]  ${formatLocation(job.location)}`,
      );
      if (job.needs.length) lines.push(`    needs: ${job.needs.join(', ')}`);
      if (job.body.kind === 'github') {
        if (Object.keys(job.body.matrix).length) lines.push(`    matrix: ${JSON.stringify(job.body.matrix)}`);
        if (job.body.if) lines.push(`    if: ${job.body.if}`);
        for (const step of job.body.steps) {
          lines.push(`    - ${step.name}${step.if ? `  (if: ${step.if})` : ''}`);
          if (step.action.kind === 'unsupported') lines.push(`      will fail the job: ${step.action.message}`);
        }
      } else {
        lines.push(`    stage: ${job.body.stage}, when: ${job.body.when}`);
        for (const command of [...job.body.beforeScript, ...job.body.script]) lines.push(`    $ ${command.split('\n')[0]}`);
      }
    }
  });
  for (const skipped of plan.skipped) lines.push(`skipped: ${skipped.key}: ${skipped.reason}`);
  return lines.join('\n');
}

/** 0.4s, 12.3s, 2m 05s, 1h 02m: short enough for a table column, exact enough to compare jobs. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const totalSeconds = Math.round(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const sec = totalSeconds % 60;
  return h ? `${h}h ${String(m).padStart(2, '0')}m` : `${m}m ${String(sec).padStart(2, '0')}s`;
}

const MARKS: Record<FinishedJob['result'], string> = { success: '✓', failure: '✗', cancelled: '✗', skipped: '-' };

/** What a job's steps (GitHub) or script sections (GitLab) did, naming the ones that failed. */
function stepsCell(r: FinishedJob): string {
  const count = (result: 'success' | 'failure' | 'skipped'): number => r.steps.filter((s) => s.result === result).length;
  const failed = r.steps.filter((s) => s.result === 'failure' && !s.failedButContinued);
  const continued = r.steps.filter((s) => s.failedButContinued);
  const parts: string[] = [];
  if (count('success')) parts.push(`${count('success')} passed`);
  if (failed.length) parts.push(`${failed.length} failed (${failed.map((s) => s.name).join(', ')})`);
  if (continued.length) parts.push(`${continued.length} failed, continued (${continued.map((s) => s.name).join(', ')})`);
  if (count('skipped')) parts.push(`${count('skipped')} skipped`);
  const why = r.reason && r.result !== 'success' ? r.reason : '';
  return [parts.join(', '), why].filter(Boolean).join('; ') || '-';
}

/**
 * The table printed after a run: one row per job with a mark (✓ passed, ✗
 * failed or cancelled, - skipped), its result, how long it took in all and
 * to boot its VM, and its steps (GitLab: before_script, script,
 * after_script). A line of totals closes it.
 */
export function summaryTable(results: readonly FinishedJob[]): string {
  const rows = [[' ', 'JOB', 'RESULT', 'TIME', 'BOOT', 'STEPS']];
  for (const r of results) {
    const result = r.result === 'failure' && r.allowFailure ? 'failure (allowed)' : r.result;
    // A job skipped or cancelled before it started has no time of its own.
    const ran = r.bootMs !== undefined || r.steps.length > 0 || r.result === 'failure' || r.result === 'success';
    rows.push([MARKS[r.result], r.key, result, ran ? formatDuration(r.durationMs) : '-', formatDuration(r.bootMs), stepsCell(r)]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const lines = rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
  const tally = (['success', 'failure', 'cancelled', 'skipped'] as const)
    .map((result) => [result, results.filter((r) => r.result === result)] as const)
    .filter(([, jobs]) => jobs.length);
  const words: Record<FinishedJob['result'], string> = { success: 'passed', failure: 'failed', cancelled: 'cancelled', skipped: 'skipped' };
  const allowed = results.filter((r) => r.result === 'failure' && r.allowFailure).length;
  const totals = tally.map(([result, jobs]) => `${jobs.length} ${words[result]}${result === 'failure' && allowed ? ` (${allowed} allowed)` : ''}`);
  lines.push('', `${results.length} job(s): ${totals.join(', ') || 'none'}`);
  return lines.join('\n');
}
