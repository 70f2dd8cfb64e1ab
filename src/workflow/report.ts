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
      lines.push(`  ${key}  [${shape.cpus} vCPU, ${shape.memoryMib} MiB, ${shape.image}; timeout ${job.timeoutMinutes} min${job.allowFailure ? '; may fail' : ''}]  ${formatLocation(job.location)}`);
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

function seconds(ms: number | undefined): string {
  return ms === undefined ? '-' : `${(ms / 1000).toFixed(1)}s`;
}

/** The table printed after a run. */
export function summaryTable(results: readonly FinishedJob[]): string {
  const rows = [['JOB', 'RESULT', 'TIME', 'BOOT', 'STEPS']];
  for (const r of results) {
    const passed = r.steps.filter((s) => s.result === 'success').length;
    const failed = r.steps.filter((s) => s.result === 'failure').length;
    const skipped = r.steps.filter((s) => s.result === 'skipped').length;
    const result = r.result === 'failure' && r.allowFailure ? 'failure (allowed)' : r.result;
    rows.push([r.key, result, seconds(r.durationMs), seconds(r.bootMs), `${passed} ok, ${failed} failed, ${skipped} skipped${r.reason && r.result !== 'success' ? ` (${r.reason})` : ''}`]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}
