// VMs & hosts: what the host has and uses, every VM with its age and state,
// and each pool's idle, starting and busy VMs against its target.
import { api } from './api.js';
import { capacityBar, fill, h, stateChip, table } from './dom.js';
import { duration, mebibytes } from './format.js';
import { jobHref } from './jobs.js';

const REFRESH_MS = 2000;

/** idle | starting | busy side by side, against the target as a tick. */
function poolBar(pool) {
  const scale = Math.max(pool.target, pool.idle + pool.starting + pool.busy, 1);
  const bar = h('div', {
    class: 'poolbar',
    role: 'img',
    'aria-label': `${pool.idle} idle, ${pool.starting} starting, ${pool.busy} busy; target ${pool.target}`,
  });
  for (const kind of ['busy', 'idle', 'starting']) {
    const part = h('span', { class: `poolbar-${kind}` });
    part.style.width = `${(pool[kind] / scale) * 100}%`;
    bar.append(part);
  }
  const target = h('span', { class: 'poolbar-target' });
  target.style.left = `${(pool.target / scale) * 100}%`;
  bar.append(target);
  return bar;
}

export function hostsView(main, _route, scope) {
  scope.title('VMs & hosts');
  const summary = h('div', { class: 'cards', id: 'host-summary' });
  const vms = h('div', { class: 'table-wrap', id: 'vm-table' });
  const pools = h('div', { class: 'table-wrap', id: 'pool-table' });
  const status = h('p', { class: 'meta' }, 'Loading…');
  fill(
    main,
    h('div', { class: 'view-head' }, h('h1', {}, 'VMs & hosts'), status),
    summary,
    h('section', { class: 'panel', 'aria-labelledby': 'vms-title' }, h('h2', { id: 'vms-title' }, 'VMs'), vms),
    h('section', { class: 'panel', 'aria-labelledby': 'pools-title' }, h('h2', { id: 'pools-title' }, 'Pools'), pools),
  );

  scope.poll(async () => {
    const s = await api('/status', { signal: scope.signal });
    const byState = Object.entries(s.jobs?.byState ?? {}).filter(([, count]) => count > 0);
    fill(
      summary,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'host-title' },
        h('h2', { id: 'host-title' }, s.host?.name ?? 'host'),
        h('p', { class: 'meta' }, `driver: ${s.host?.driver ?? '–'}`),
        capacityBar('vCPUs', s.capacity.cpus.used, s.capacity.cpus.total, 'vCPU'),
        capacityBar('Memory', s.capacity.memoryMib.used, s.capacity.memoryMib.total, 'MiB'),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'queue-title' },
        h('h2', { id: 'queue-title' }, 'Jobs'),
        h('p', { class: 'big' }, h('span', { class: 'big-number' }, String(s.queueDepth)), ' waiting for a runner'),
        byState.length
          ? h(
              'ul',
              { class: 'chips' },
              byState.map(([state, count]) => h('li', {}, stateChip(state), ` ${count}`)),
            )
          : h('p', { class: 'meta' }, 'No jobs in the ledger.'),
      ),
    );
    fill(
      vms,
      table({
        caption: h('span', { class: 'visually-hidden' }, 'VMs on this host'),
        columns: [
          { label: 'VM' },
          { label: 'State' },
          { label: 'Pool' },
          { label: 'Job' },
          { label: 'Age', numeric: true },
          { label: 'vCPUs', numeric: true },
          { label: 'Memory', numeric: true },
          { label: 'Image' },
        ],
        rows: s.vms.map((vm) => ({
          attrs: { dataset: { vm: vm.id } },
          cells: [
            h('code', {}, vm.id),
            stateChip(vm.state),
            vm.pool ?? '–',
            vm.jobId ? h('a', { href: jobHref(vm.jobId) }, vm.jobId) : '–',
            duration(vm.ageSeconds),
            String(vm.cpus),
            mebibytes(vm.memoryMib),
            vm.image,
          ],
        })),
        empty: 'No VM is running.',
      }),
    );
    fill(
      pools,
      table({
        caption: h('span', { class: 'visually-hidden' }, 'Pools'),
        columns: [
          { label: 'Pool' },
          { label: 'Mode' },
          { label: 'Idle', numeric: true },
          { label: 'Starting', numeric: true },
          { label: 'Busy', numeric: true },
          { label: 'Target', numeric: true },
          { label: '' },
        ],
        rows: s.pools.map((pool) => ({
          cells: [pool.name, pool.mode, String(pool.idle), String(pool.starting), String(pool.busy), String(pool.target), poolBar(pool)],
        })),
        empty: 'No pools configured: every job boots a VM of its own.',
      }),
    );
    status.textContent = `${s.vms.length} VM${s.vms.length === 1 ? '' : 's'} · refreshed ${new Date().toLocaleTimeString()}`;
  }, REFRESH_MS);
}
