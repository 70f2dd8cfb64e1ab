/* global document, window, location, history, AbortController, URLSearchParams */
// Hearth's dashboard: one page, hash routes, plain DOM. The server opens the
// page on `app`, `login` or `disabled` (body[data-page]); from then on a 401
// from the API brings the login form back.
import { onUnauthorized, query } from './api.js';
import { fill } from './dom.js';
import { hostsView } from './hosts.js';
import { insightsView } from './insights.js';
import { jobView } from './job.js';
import { jobsView } from './jobs.js';

const VIEWS = { jobs: jobsView, hosts: hostsView, insights: insightsView };

/** '#/jobs/github%3A12?state=running' → { name: 'jobs', id: 'github:12', params }. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const at = raw.indexOf('?');
  const path = at < 0 ? raw : raw.slice(0, at);
  const [name = '', id] = path.split('/').map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  return { name, id: id || null, path, params: new URLSearchParams(at < 0 ? '' : raw.slice(at + 1)) };
}

const banner = document.getElementById('banner');

function showBanner(message) {
  banner.hidden = !message;
  banner.textContent = message ?? '';
}

/**
 * What a view gets: polling that never overlaps itself and stops with the
 * view, an abort signal for its requests, and ways to set the title and the
 * route's query without re-rendering.
 */
function createScope(route) {
  const disposers = [];
  const aborter = new AbortController();
  let disposed = false;
  return {
    signal: aborter.signal,
    get disposed() {
      return disposed;
    },
    onDispose(fn) {
      disposers.push(fn);
    },
    title(text) {
      document.title = `${text} · Hearth`;
    },
    setParams(params) {
      history.replaceState(null, '', `#/${route.path}${query(params)}`);
    },
    poll(fn, ms) {
      let timer = null;
      let running = false;
      let again = false;
      let stopped = false;
      const tick = async () => {
        if (stopped || disposed) return;
        if (running) {
          again = true;
          return;
        }
        clearTimeout(timer);
        running = true;
        try {
          await fn();
          showBanner(null);
        } catch (error) {
          if (error?.name !== 'AbortError' && error?.status !== 401 && !disposed) showBanner(`Could not refresh: ${error?.message ?? error}`);
        } finally {
          running = false;
        }
        if (stopped || disposed) return;
        if (again) {
          again = false;
          tick();
        } else timer = setTimeout(tick, ms);
      };
      const control = {
        now: () => void tick(),
        stop: () => {
          stopped = true;
          clearTimeout(timer);
        },
      };
      disposers.push(control.stop);
      tick();
      return control;
    },
    dispose() {
      disposed = true;
      aborter.abort();
      for (const fn of disposers.splice(0)) fn();
    },
  };
}

let current = null;

function render(focus) {
  current?.dispose();
  current = null;
  if (document.body.dataset.page !== 'app') return;
  const route = parseHash();
  const view = route.name === 'jobs' && route.id ? jobView : VIEWS[route.name];
  if (!view) {
    location.replace('#/jobs');
    return;
  }
  for (const link of document.querySelectorAll('.nav a')) {
    if (link.dataset.route === route.name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  showBanner(null);
  const main = document.getElementById('main');
  fill(main);
  current = createScope(route);
  view(main, route, current);
  if (focus) main.focus({ preventScroll: true });
}

function showLogin(message) {
  current?.dispose();
  current = null;
  document.body.dataset.page = 'login';
  document.title = 'Log in · Hearth';
  const error = document.getElementById('login-error');
  if (message) error.textContent = message;
  document.getElementById('token').focus();
}

onUnauthorized(() => showLogin('Your session has ended: log in again.'));

function start() {
  const page = document.body.dataset.page;
  if (page === 'login') {
    showLogin(null);
    return;
  }
  if (page !== 'app') return;
  if (!location.hash) history.replaceState(null, '', '#/jobs');
  window.addEventListener('hashchange', () => render(true));
  render(false);
}

start();
