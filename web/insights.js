// Insights: from the ledger's history, per repository and job name, how long
// jobs wait and run, how often they fail and where, and how pools serve them.
import { api } from './api.js';
import { fill, h, table } from './dom.js';
import { duration, percent } from './format.js';

const REFRESH_MS = 15_000;
const PERIODS = [1, 7, 30, 90];

const COLUMNS = [
  { key: 'repository', label: 'Repository', value: (g) => g.repository },
  { key: 'name', label: 'Job', value: (g) => g.name ?? '' },
  { key: 'runs', label: 'Runs', numeric: true, value: (g) => g.runs },
  { key: 'failureRate', label: 'Failure rate', numeric: true, value: (g) => g.failureRate ?? -1 },
  { key: 'queue50', label: 'Queue p50', numeric: true, value: (g) => g.queueSeconds?.p50 ?? -1 },
  { key: 'queue95', label: 'Queue p95', numeric: true, value: (g) => g.queueSeconds?.p95 ?? -1 },
  { key: 'run50', label: 'Run p50', numeric: true, value: (g) => g.runSeconds?.p50 ?? -1 },
  { key: 'run95', label: 'Run p95', numeric: true, value: (g) => g.runSeconds?.p95 ?? -1 },
  { key: 'timeout', label: 'Suggested timeout-minutes', numeric: true, value: (g) => g.suggestedTimeoutMinutes ?? -1 },
  { key: 'steps', label: 'Top failing steps' },
];

function failureCell(rate) {
  if (rate === null || rate === undefined) return '–';
  const fillBar = h('span', { class: `bar-fill${rate >= 0.2 ? ' bar-hot' : ''}` });
  fillBar.style.width = `${Math.min(100, rate * 100)}%`;
  return h('span', { class: 'rate' }, h('span', { class: 'bar bar-small', 'aria-hidden': 'true' }, fillBar), percent(rate));
}

function stepsCell(steps) {
  if (!steps?.length) return '–';
  return h(
    'ol',
    { class: 'steps' },
    steps.map((s) => h('li', {}, h('span', { class: 'step' }, s.step), h('span', { class: 'sub' }, ` ×${s.count}`))),
  );
}

export function insightsView(main, route, scope) {
  scope.title('Insights');
  let days = Number(route.params.get('days')) || 30;
  let sort = { key: 'runs', descending: true };
  let last = null;

  const period = h(
    'select',
    { id: 'insights-days' },
    PERIODS.map((d) => h('option', { value: d, selected: d === days }, d === 1 ? 'last day' : `last ${d} days`)),
  );
  const groups = h('div', { class: 'table-wrap', id: 'insights-groups' });
  const pools = h('div', { class: 'table-wrap', id: 'insights-pools' });
  const status = h('p', { class: 'meta' }, 'Loading…');
  fill(
    main,
    h('div', { class: 'view-head' }, h('h1', {}, 'Insights'), status),
    h('form', { class: 'filters', 'aria-label': 'Period' }, h('div', { class: 'field' }, h('label', { for: 'insights-days' }, 'Period'), period)),
    h('section', { class: 'panel', 'aria-labelledby': 'groups-title' }, h('h2', { id: 'groups-title' }, 'By repository and job'), groups),
    h('section', { class: 'panel', 'aria-labelledby': 'hits-title' }, h('h2', { id: 'hits-title' }, 'Pool hit rate'), pools),
  );

  const header = (column) => {
    if (!column.value) return h('th', { scope: 'col' }, column.label);
    const active = sort.key === column.key;
    const button = h(
      'button',
      { type: 'button', class: 'sort' },
      column.label,
      h('span', { 'aria-hidden': 'true' }, active ? (sort.descending ? ' ▾' : ' ▴') : ''),
    );
    button.addEventListener('click', () => {
      sort = { key: column.key, descending: active ? !sort.descending : column.numeric === true };
      render();
    });
    return h('th', { scope: 'col', class: column.numeric ? 'num' : null, 'aria-sort': active ? (sort.descending ? 'descending' : 'ascending') : null }, button);
  };

  const render = () => {
    if (!last) return;
    const column = COLUMNS.find((c) => c.key === sort.key);
    const rows = [...last.groups].sort((a, b) => {
      const x = column.value(a);
      const y = column.value(b);
      const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return sort.descending ? -order : order;
    });
    const body = h('tbody');
    if (rows.length === 0)
      body.append(h('tr', {}, h('td', { colspan: COLUMNS.length, class: 'empty' }, `No finished jobs in the last ${days} day${days === 1 ? '' : 's'}.`)));
    for (const g of rows) {
      const cells = [
        g.repository,
        g.name ?? h('span', { class: 'sub' }, '(unnamed)'),
        String(g.runs),
        failureCell(g.failureRate),
        duration(g.queueSeconds?.p50),
        duration(g.queueSeconds?.p95),
        duration(g.runSeconds?.p50),
        duration(g.runSeconds?.p95),
        g.suggestedTimeoutMinutes === null || g.suggestedTimeoutMinutes === undefined ? '–' : h('code', {}, String(g.suggestedTimeoutMinutes)),
        stepsCell(g.topFailingSteps),
      ];
      body.append(
        h(
          'tr',
          { dataset: { repository: g.repository, name: g.name ?? '' } },
          cells.map((cell, i) => h('td', { class: COLUMNS[i].numeric ? 'num' : null }, cell)),
        ),
      );
    }
    fill(
      groups,
      h(
        'table',
        { class: 'data insights' },
        h('caption', { class: 'visually-hidden' }, 'Queue and run times, failure rate and suggested timeout per repository and job'),
        h('thead', {}, h('tr', {}, COLUMNS.map(header))),
        body,
      ),
    );
    fill(
      pools,
      table({
        caption: h('span', { class: 'visually-hidden' }, 'Pool hit rate'),
        columns: [{ label: 'Pool' }, { label: 'Hits', numeric: true }, { label: 'Misses', numeric: true }, { label: 'Hit rate', numeric: true }],
        rows: last.pools.map((p) => ({ cells: [p.pool, String(p.hits), String(p.misses), percent(p.hitRate)] })),
        empty: 'No job was routed to a pool in this period.',
      }),
    );
  };

  const poller = scope.poll(async () => {
    last = await api(`/insights?days=${days}`, { signal: scope.signal });
    render();
    status.textContent = `last ${days} day${days === 1 ? '' : 's'} · refreshed ${new Date().toLocaleTimeString()}`;
  }, REFRESH_MS);
  period.addEventListener('change', () => {
    days = Number(period.value);
    scope.setParams({ days });
    poller.now();
  });
}
