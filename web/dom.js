/* global document */
// Building DOM from data. Text always goes in as text nodes and attributes
// through setAttribute: nothing the API returns is ever parsed as HTML.

/**
 * h('td', { class: 'num' }, 'text', child, [more]) → an element.
 * Attribute values of null, undefined or false are left out; `on: {click}` adds listeners.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'on') {
      for (const [event, listener] of Object.entries(value)) element.addEventListener(event, listener);
    } else if (name === 'dataset') {
      for (const [key, data] of Object.entries(value)) element.dataset[key] = String(data);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child);
  }
}

/** Replaces every child of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A table with a caption, header cells and rows of cells (each a node, text, or [attrs, ...children]). */
export function table({ caption, columns, rows, empty, className }) {
  const head = h(
    'thead',
    {},
    h(
      'tr',
      {},
      columns.map((c) => h('th', { scope: 'col', class: c.numeric ? 'num' : null }, c.label)),
    ),
  );
  const body = h('tbody');
  if (rows.length === 0) {
    body.append(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty ?? 'Nothing yet.')));
  }
  for (const row of rows) {
    const tr = h('tr', row.attrs ?? {});
    row.cells.forEach((cell, index) => tr.append(h('td', { class: columns[index]?.numeric ? 'num' : null }, cell)));
    body.append(tr);
  }
  return h('table', { class: className ?? 'data' }, caption ? h('caption', {}, caption) : null, head, body);
}

/** A labelled definition list from [label, value] pairs; empty values show as an en dash. */
export function facts(pairs) {
  return h(
    'dl',
    { class: 'facts' },
    pairs.map(([label, value]) => h('div', {}, h('dt', {}, label), h('dd', {}, value === null || value === undefined || value === '' ? '–' : value))),
  );
}

/** A job state as a coloured chip; the state name is its text, so colour is never the only cue. */
export function stateChip(state) {
  return h('span', { class: `chip chip-${String(state).replace(/[^a-z_]/g, '')}` }, String(state).replace(/_/g, ' '));
}

/** A bar of `used` against `total`, with its numbers in words for screen readers. */
export function capacityBar(label, used, total, unit) {
  const share = total > 0 ? Math.min(1, used / total) : 0;
  const fillBar = h('span', { class: `bar-fill${share >= 0.9 ? ' bar-hot' : ''}` });
  fillBar.style.width = `${(share * 100).toFixed(1)}%`;
  return h(
    'div',
    { class: 'capacity' },
    h('div', { class: 'capacity-head' }, h('span', { class: 'capacity-label' }, label), h('span', { class: 'capacity-value' }, `${used} / ${total} ${unit}`)),
    h(
      'div',
      {
        class: 'bar',
        role: 'meter',
        'aria-label': label,
        'aria-valuemin': 0,
        'aria-valuemax': total,
        'aria-valuenow': used,
        'aria-valuetext': `${used} of ${total} ${unit}`,
      },
      fillBar,
    ),
  );
}
