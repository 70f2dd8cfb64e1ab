// Jobs: filters, and a table refreshed every 2 s in which each job shows how
// far it got (the compact stage bar) and where it runs.
import { api, query } from './api.js';
import { fill, h, stateChip } from './dom.js';
import { ago, duration, secondsBetween, when } from './format.js';
import { stageSlots } from './timeline.js';

export const JOB_STATES = ['queued', 'claimed', 'provisioning', 'runner_registered', 'running', 'completed', 'failed', 'cancelled'];
const PAGE = 50;
const REFRESH_MS = 2000;
/** Detail requests in flight at once while stages are fetched. */
const PARALLEL = 6;

export function jobHref(id) {
  return `#/jobs/${encodeURIComponent(id)}`;
}

export function jobTitle(job) {
  return job.name ?? `${job.forge} job ${job.forgeJobId}`;
}

/** How long the job has taken: from received to finished, or to now while it runs. */
function elapsed(job) {
  if (job.finishedAt) return duration(secondsBetween(job.createdAt, job.finishedAt));
  return `${duration(secondsBetween(job.createdAt, null))}…`;
}

function select(id, label, options, value) {
  return [
    h('label', { for: id }, label),
    h(
      'select',
      { id, name: id.replace(/^filter-/, '') },
      options.map(([optionValue, text]) => h('option', { value: optionValue, selected: optionValue === value }, text)),
    ),
  ];
}

/**
 * Stages come with a job's detail only. A released job's stages never change,
 * so they are fetched once; a live job's are fetched on every refresh.
 */
class StageCache {
  constructor() {
    this.entries = new Map();
  }

  async refresh(jobs, signal) {
    const due = jobs.filter((job) => {
      const known = this.entries.get(job.id);
      return !known || !known.released || known.updatedAt !== job.updatedAt;
    });
    for (let i = 0; i < due.length; i += PARALLEL) {
      await Promise.all(
        due.slice(i, i + PARALLEL).map(async (job) => {
          try {
            const detail = await api(`/jobs/${encodeURIComponent(job.id)}`, { signal });
            this.entries.set(job.id, { stages: detail.stages ?? null, released: Boolean(detail.releasedAt), updatedAt: job.updatedAt });
          } catch (error) {
            if (error?.name === 'AbortError' || error?.status === 401) throw error;
            // one job's detail failing leaves its bar empty, not the table
          }
        }),
      );
    }
    const listed = new Set(jobs.map((job) => job.id));
    for (const id of this.entries.keys()) if (!listed.has(id)) this.entries.delete(id);
  }

  stages(id) {
    return this.entries.get(id)?.stages ?? null;
  }
}

/**
 * Rows keyed by job id, cells redrawn only when what they show changed, so a
 * focused link or a hovered bar survives the 2 s refresh.
 */
function syncRows(tbody, jobs, cellsOf) {
  const existing = new Map([...tbody.querySelectorAll('tr[data-job]')].map((tr) => [tr.dataset.job, tr]));
  const rows = jobs.map((job) => {
    let tr = existing.get(job.id);
    if (!tr) tr = h('tr', { dataset: { job: job.id } });
    existing.delete(job.id);
    const cells = cellsOf(job);
    while (tr.children.length > cells.length) tr.lastChild.remove();
    cells.forEach((cell, index) => {
      let td = tr.children[index];
      if (!td) {
        td = h('td', { class: cell.className ?? null });
        tr.append(td);
      }
      if (td.dataset.key !== cell.key) {
        fill(td, cell.render());
        td.dataset.key = cell.key;
      }
    });
    return tr;
  });
  for (const stale of existing.values()) stale.remove();
  rows.forEach((tr, index) => {
    if (tbody.children[index] !== tr) tbody.insertBefore(tr, tbody.children[index] ?? null);
  });
}

export function jobsView(main, route, scope) {
  scope.title('Jobs');
  const filters = { forge: route.params.get('forge') ?? '', repo: route.params.get('repo') ?? '', state: route.params.get('state') ?? '' };
  let limit = PAGE;
  const cache = new StageCache();
  const repos = new Set();

  const repoList = h('datalist', { id: 'repo-list' });
  const repoInput = h('input', {
    id: 'filter-repo',
    name: 'repo',
    type: 'search',
    value: filters.repo,
    list: 'repo-list',
    placeholder: 'owner/name',
    autocomplete: 'off',
  });
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter jobs' },
    h(
      'div',
      { class: 'field' },
      select(
        'filter-forge',
        'Forge',
        [
          ['', 'Any'],
          ['github', 'GitHub'],
          ['gitlab', 'GitLab'],
        ],
        filters.forge,
      ),
    ),
    h('div', { class: 'field field-wide' }, h('label', { for: 'filter-repo' }, 'Repository'), repoInput, repoList),
    h('div', { class: 'field' }, select('filter-state', 'State', [['', 'Any'], ...JOB_STATES.map((s) => [s, s.replace(/_/g, ' ')])], filters.state)),
    h('button', { type: 'reset', class: 'button-quiet' }, 'Clear'),
  );
  const status = h('p', { class: 'meta', id: 'jobs-status' }, 'Loading…');
  const tbody = h('tbody');
  const emptyRow = h(
    'tr',
    { class: 'empty-row' },
    h('td', { colspan: 7, class: 'empty' }, 'No jobs yet. They appear here as soon as a forge asks for a runner.'),
  );
  const more = h('button', { type: 'button', class: 'button-quiet', hidden: true }, 'Show more');
  const columns = ['Job', 'Repository', 'State', 'Stages', 'VM / host', 'Received', 'Took'];
  const tableElement = h(
    'table',
    { class: 'data jobs', id: 'jobs-table' },
    h('caption', { class: 'visually-hidden' }, 'Jobs, newest first'),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        columns.map((c) => h('th', { scope: 'col' }, c)),
      ),
    ),
    tbody,
  );
  const legend = h(
    'p',
    { class: 'meta legend' },
    'Stages, left to right: queue, VM boot, runner registration, pickup, run, teardown. Solid: done; striped: under way; hatched: skipped. Open a job for the times.',
  );
  fill(
    main,
    h('div', { class: 'view-head' }, h('h1', {}, 'Jobs'), status),
    form,
    h('div', { class: 'table-wrap' }, tableElement),
    legend,
    h('p', { class: 'more' }, more),
  );

  const cellsOf = (job) => {
    const stages = cache.stages(job.id);
    const live = !job.releasedAt;
    return [
      {
        key: `${job.id}|${job.name}|${job.forge}`,
        render: () =>
          h('div', { class: 'job-name' }, h('a', { href: jobHref(job.id) }, jobTitle(job)), h('span', { class: 'sub' }, `${job.forge} #${job.forgeJobId}`)),
      },
      { key: job.repository, render: () => job.repository },
      {
        key: `${job.state}|${job.conclusion}`,
        render: () =>
          h('span', {}, stateChip(job.state), job.conclusion && job.conclusion !== job.state ? h('span', { class: 'sub' }, ` ${job.conclusion}`) : null),
      },
      {
        key: `${JSON.stringify(stages)}|${live}|${live ? Date.now() : ''}`,
        className: 'cell-stages',
        render: () => stageSlots(stages ?? { received: job.createdAt }, live),
      },
      {
        key: `${job.vmId}|${job.host}|${job.pool}|${job.poolHit}`,
        render: () =>
          h(
            'div',
            {},
            job.vmId ?? '–',
            job.host || job.pool
              ? h(
                  'span',
                  { class: 'sub' },
                  [job.host, job.pool ? `pool ${job.pool}${job.poolHit === true ? ' (hit)' : job.poolHit === false ? ' (miss)' : ''}` : null]
                    .filter(Boolean)
                    .join(' · '),
                )
              : null,
          ),
      },
      {
        key: `${job.createdAt}|${Math.floor(Date.now() / 1000)}`,
        render: () => h('time', { datetime: job.createdAt, title: when(job.createdAt) }, ago(job.createdAt)),
      },
      { key: `${job.finishedAt}|${job.finishedAt ? '' : Math.floor(Date.now() / 1000)}`, className: 'num', render: () => elapsed(job) },
    ];
  };

  const refresh = async () => {
    const page = await api(`/jobs${query({ limit, ...filters })}`, { signal: scope.signal });
    await cache.refresh(page.jobs, scope.signal);
    for (const job of page.jobs) repos.add(job.repository);
    fill(
      repoList,
      [...repos].sort().map((repo) => h('option', { value: repo })),
    );
    if (page.jobs.length === 0) fill(tbody, emptyRow);
    else {
      emptyRow.remove();
      syncRows(tbody, page.jobs, cellsOf);
    }
    more.hidden = !page.nextCursor;
    const active = page.jobs.filter((job) => !job.releasedAt).length;
    status.textContent = `${page.jobs.length} job${page.jobs.length === 1 ? '' : 's'} shown, ${active} live · refreshed ${new Date().toLocaleTimeString()}`;
  };
  const poller = scope.poll(refresh, REFRESH_MS);

  const applyFilters = () => {
    scope.setParams(filters);
    limit = PAGE;
    poller.now();
  };
  let typing;
  form.addEventListener('change', (event) => {
    if (event.target === repoInput) return;
    filters.forge = form.elements.forge.value;
    filters.state = form.elements.state.value;
    applyFilters();
  });
  repoInput.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      filters.repo = repoInput.value.trim();
      applyFilters();
    }, 300);
  });
  scope.onDispose(() => clearTimeout(typing));
  form.addEventListener('submit', (event) => event.preventDefault());
  form.addEventListener('reset', () => {
    // after the browser has reset the fields
    setTimeout(() => {
      filters.forge = '';
      filters.repo = '';
      filters.state = '';
      applyFilters();
    });
  });
  more.addEventListener('click', () => {
    limit += PAGE;
    poller.now();
  });
}
