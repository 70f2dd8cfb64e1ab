/* global EventSource */
// One job: where it is (the stage bar), where it runs, what went wrong, and its
// log, followed live over Server-Sent Events until the VM is torn down.
import { api, query } from './api.js';
import { facts, fill, h, stateChip, table } from './dom.js';
import { clock, duration, secondsBetween, when } from './format.js';
import { jobTitle } from './jobs.js';
import { STAGES, STAGE_NAMES, stageAt, stageBar } from './timeline.js';

const REFRESH_MS = 2000;
/** Lines kept on the page; older ones drop off the top. */
const MAX_LINES = 5000;

function poolText(job) {
  if (!job.pool) return null;
  if (job.poolHit === true) return `${job.pool} (hit: an idle VM was ready)`;
  if (job.poolHit === false) return `${job.pool} (miss: booted for this job)`;
  return job.pool;
}

function stageList(stages) {
  return h(
    'ol',
    { class: 'stage-times' },
    STAGES.map((stage) => {
      const at = stageAt(stages, stage);
      return h(
        'li',
        { class: at ? 'reached' : 'not-reached' },
        h('span', { class: 'stage-name' }, STAGE_NAMES[stage]),
        ' ',
        at ? h('time', { datetime: at }, when(at)) : h('span', { class: 'sub' }, 'not yet'),
      );
    }),
  );
}

/**
 * The log panel. EventSource resumes by itself with Last-Event-ID after a
 * dropped connection; if the stream is refused outright, the panel falls back
 * to polling /logs?after= so the tail still moves.
 */
function logTail(jobId, scope) {
  const lines = h('div', { class: 'log', id: 'job-log', role: 'log', 'aria-label': 'Job log', tabindex: 0 });
  const state = h('span', { class: 'log-state', id: 'log-state' }, 'connecting…');
  const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
  const panel = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'log-title' },
    h('div', { class: 'panel-head' }, h('h2', { id: 'log-title' }, 'Log'), state, h('label', { class: 'follow' }, follow, ' Follow')),
    lines,
  );
  let lastSeq = -1;
  let count = 0;
  let stream = null;
  let poller = null;

  const show = (text, kind = '') => {
    state.textContent = text;
    state.dataset.kind = kind;
  };
  const add = (line) => {
    if (typeof line?.seq !== 'number' || line.seq <= lastSeq) return; // a resumed stream may repeat
    lastSeq = line.seq;
    if (count === 0) lines.replaceChildren();
    lines.append(
      h(
        'div',
        { class: `line line-${line.stream === 'hearth' ? 'hearth' : 'runner'}` },
        h('span', { class: 'ts' }, clock(line.at)),
        h('span', { class: 'src' }, line.stream),
        h('span', { class: 'text' }, line.text),
      ),
    );
    count += 1;
    if (count > MAX_LINES) lines.firstChild?.remove();
  };
  const stick = () => {
    if (follow.checked) lines.scrollTop = lines.scrollHeight;
  };
  lines.addEventListener('scroll', () => {
    follow.checked = lines.scrollHeight - lines.scrollTop - lines.clientHeight < 24;
  });
  follow.addEventListener('change', stick);
  const ended = () => {
    show(count === 0 ? 'ended: this job wrote no log' : 'ended: the VM is gone, this is the whole log', 'ended');
    if (count === 0) fill(lines, h('p', { class: 'empty' }, 'No log lines were recorded for this job.'));
  };

  const poll = () => {
    show('polling (the live stream was refused)', 'warn');
    poller = scope.poll(async () => {
      const page = await api(`/jobs/${encodeURIComponent(jobId)}/logs${query({ after: lastSeq >= 0 ? lastSeq : undefined, limit: 1000 })}`, {
        signal: scope.signal,
      });
      page.lines.forEach(add);
      stick();
      if (page.done) {
        poller.stop();
        ended();
      }
    }, REFRESH_MS);
  };

  stream = new EventSource(`/api/v1/jobs/${encodeURIComponent(jobId)}/logs/stream`);
  lines.append(h('p', { class: 'empty' }, 'Waiting for the first line…'));
  stream.addEventListener('open', () => show('live', 'live'));
  stream.addEventListener('log', (event) => {
    try {
      add(JSON.parse(event.data));
    } catch {
      return; // a malformed event is skipped, not fatal
    }
    stick();
  });
  stream.addEventListener('end', () => {
    stream.close();
    ended();
  });
  stream.addEventListener('error', async () => {
    if (stream.readyState !== EventSource.CLOSED) {
      show('reconnecting…', 'warn');
      return;
    }
    // Refused (401, 404, not an event stream): ask the plain API why, then poll it.
    try {
      await api(`/jobs/${encodeURIComponent(jobId)}/logs?limit=1`, { signal: scope.signal });
      poll();
    } catch (error) {
      if (error?.name !== 'AbortError') show(`no log: ${error.message}`, 'error');
    }
  });
  scope.onDispose(() => stream.close());
  return panel;
}

export function jobView(main, route, scope) {
  const id = route.id;
  scope.title(id);
  const heading = h('h1', {}, id);
  const subtitle = h('p', { class: 'meta' });
  const stagePanel = h('div', { class: 'stage-panel', id: 'job-stages' });
  const details = h('div', { id: 'job-facts' });
  const events = h('div', { class: 'table-wrap' });
  const problem = h('div', { role: 'alert' });
  fill(
    main,
    h('p', { class: 'back' }, h('a', { href: '#/jobs' }, '← All jobs')),
    h('div', { class: 'view-head' }, heading, subtitle),
    problem,
    h('section', { class: 'panel', 'aria-labelledby': 'stages-title' }, h('h2', { id: 'stages-title' }, 'Stages'), stagePanel),
    h(
      'div',
      { class: 'split' },
      h('section', { class: 'panel', 'aria-labelledby': 'facts-title' }, h('h2', { id: 'facts-title' }, 'Details'), details),
      logTail(id, scope),
    ),
    h('section', { class: 'panel', 'aria-labelledby': 'events-title' }, h('h2', { id: 'events-title' }, 'Events'), events),
  );

  let shownEvents = -1;
  const poller = scope.poll(async () => {
    let job;
    try {
      job = await api(`/jobs/${encodeURIComponent(id)}`, { signal: scope.signal });
    } catch (error) {
      if (error?.status === 404) {
        fill(problem, h('p', { class: 'error' }, `No job ${id}: it may not have reached Hearth yet.`));
        return;
      }
      throw error;
    }
    fill(problem);
    const live = !job.releasedAt;
    const title = jobTitle(job);
    heading.textContent = title;
    scope.title(title);
    fill(
      subtitle,
      job.repository,
      ' · ',
      `${job.forge} #${job.forgeJobId}`,
      ' · ',
      stateChip(job.state),
      job.labels?.length
        ? h(
            'span',
            { class: 'labels' },
            job.labels.map((label) => h('code', {}, label)),
          )
        : null,
    );
    fill(stagePanel, stageBar(job.stages, live), stageList(job.stages));
    fill(
      details,
      facts([
        ['State', stateChip(job.state)],
        ['Conclusion', job.conclusion],
        ['Failed step', job.failedStep],
        ['Last error', job.lastError],
        ['VM', job.vmId],
        ['Host', job.host],
        ['Pool', poolText(job)],
        ['Runner', job.runnerName],
        ['Attempts', String(job.attempts ?? '–')],
        ['Received', when(job.createdAt)],
        ['Started', when(job.startedAt)],
        ['Finished', when(job.finishedAt)],
        ['Run time', job.startedAt ? duration(secondsBetween(job.startedAt, job.finishedAt)) : null],
        ['Released', when(job.releasedAt)],
      ]),
    );
    const timeline = job.timeline ?? [];
    if (timeline.length !== shownEvents) {
      shownEvents = timeline.length;
      fill(
        events,
        table({
          caption: null,
          columns: [{ label: 'At' }, { label: 'Change' }, { label: 'Reason' }],
          // A note keeps the state (from = to): it shows as the state alone.
          rows: timeline.map((event) => ({
            cells: [
              h('time', { datetime: event.at }, clock(event.at)),
              event.from === event.to ? event.to : `${event.from ?? '–'} → ${event.to}`,
              event.reason,
            ],
          })),
          empty: 'No events yet.',
        }),
      );
    }
    if (!live) poller.stop();
  }, REFRESH_MS);
}
