// A job's stages, received → released, drawn as a bar: one segment per interval
// between two stages, sized by how long it took, the running one growing.
import { h } from './dom.js';
import { duration, secondsBetween, when } from './format.js';

export const STAGES = ['received', 'placed', 'vmReady', 'registered', 'started', 'finished', 'released'];

export const STAGE_NAMES = {
  received: 'received',
  placed: 'placed',
  vmReady: 'VM ready',
  registered: 'runner registered',
  started: 'started',
  finished: 'finished',
  released: 'released',
};

/** What happens in the interval that ends at each stage. */
const INTERVAL_NAMES = {
  placed: 'Queue',
  vmReady: 'VM boot',
  registered: 'Register',
  started: 'Pickup',
  finished: 'Run',
  released: 'Teardown',
};

/** When the job reached `stage`, or null; the ledger's snake_case names are read too. */
export function stageAt(stages, stage) {
  if (!stages) return null;
  return stages[stage] ?? stages[stage.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] ?? null;
}

function intervalName(from, to) {
  return STAGES.indexOf(to) === STAGES.indexOf(from) + 1 ? INTERVAL_NAMES[to] : `${STAGE_NAMES[from]} → ${STAGE_NAMES[to]}`;
}

/**
 * The bar's segments: between each two stages reached in turn, and, while the
 * job is live (not released), one more from the last stage reached to now.
 */
export function segments(stages, live) {
  const reached = STAGES.map((name) => ({ name, at: stageAt(stages, name) })).filter((s) => s.at);
  const out = [];
  for (let i = 1; i < reached.length; i += 1) {
    const from = reached[i - 1];
    const to = reached[i];
    out.push({ from: from.name, to: to.name, name: intervalName(from.name, to.name), seconds: secondsBetween(from.at, to.at), current: false });
  }
  const last = reached.at(-1);
  if (live && last && last.name !== 'released') {
    const next = STAGES[STAGES.indexOf(last.name) + 1];
    out.push({ from: last.name, to: next, name: intervalName(last.name, next), seconds: secondsBetween(last.at, null), current: true });
  }
  return out;
}

/** The full bar for a job's page: proportional segments, each labelled with its name and duration. */
export function stageBar(stages, live) {
  const parts = segments(stages, live);
  const total = parts.reduce((sum, p) => sum + Math.max(0, p.seconds ?? 0), 0);
  const bar = h('ol', { class: 'stagebar', 'aria-label': 'Stage timeline' });
  if (parts.length === 0) {
    bar.append(
      h(
        'li',
        { class: 'seg seg-none' },
        h('span', { class: 'seg-name' }, stageAt(stages, 'received') ? 'received, waiting for placement' : 'no stage recorded yet'),
      ),
    );
    return bar;
  }
  for (const part of parts) {
    const text = `${part.name}: ${duration(part.seconds)}${part.current ? ' so far' : ''}`;
    const segment = h(
      'li',
      {
        class: `seg seg-${part.to}${part.current ? ' seg-current' : ''}`,
        dataset: { from: part.from, to: part.to },
        title: `${STAGE_NAMES[part.from]} → ${STAGE_NAMES[part.to]}: ${text}`,
      },
      h('span', { class: 'seg-name' }, part.name),
      h('span', { class: 'seg-time' }, `${duration(part.seconds)}${part.current ? '…' : ''}`),
    );
    // Proportional, with a floor so a 0.2 s stage beside a 10 min run stays readable.
    segment.style.flexGrow = String(Math.max(total > 0 ? (Math.max(0, part.seconds ?? 0) / total) * 100 : 1, 4));
    bar.append(segment);
  }
  return bar;
}

/**
 * The compact bar of the jobs table: six fixed slots, one per interval, filled
 * when its stage was reached, striped while under way, hatched when skipped.
 */
export function stageSlots(stages, live) {
  const list = h('ol', { class: 'slots', 'aria-label': 'Stages' });
  const times = STAGES.map((stage) => stageAt(stages, stage));
  const lastReached = times.reduce((last, at, index) => (at ? index : last), -1);
  let previous = times[0];
  for (let index = 1; index < STAGES.length; index += 1) {
    const stage = STAGES[index];
    const at = times[index];
    let status = 'pending';
    if (at) status = 'done';
    else if (index < lastReached) status = 'skipped';
    else if (index === lastReached + 1 && live && lastReached >= 0) status = 'current';
    const seconds = at && previous ? secondsBetween(previous, at) : status === 'current' && previous ? secondsBetween(previous, null) : null;
    const label = `${INTERVAL_NAMES[stage]}: ${status === 'done' ? duration(seconds) : status === 'current' ? `under way, ${duration(seconds)}` : status}`;
    list.append(
      h(
        'li',
        { class: `slot slot-${status}`, dataset: { stage, status }, title: at ? `${label} (${STAGE_NAMES[stage]} at ${when(at)})` : label },
        h('span', { class: 'visually-hidden' }, label),
      ),
    );
    if (at) previous = at;
  }
  return list;
}
