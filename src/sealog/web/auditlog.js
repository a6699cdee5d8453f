// The Audit Log tab: search, event-type and time-range filters, the table with its exact
// count and cursor paging, and the Audit Event Details modal.

import { api, ApiError } from './api.js';
import { h, clear, openModal, copyButton, svgIcon } from './dom.js';
import { navigate, urlState } from './app.js';
import { verifyEvent } from './verify.js';
import { openExportDialog } from './exports.js';

export const CATEGORIES = [
  ['agent_operations', 'Agent Operations'],
  ['policy_changes', 'Policy Changes'],
  ['user_actions', 'User Actions'],
  ['security_events', 'Security Events'],
  ['system_events', 'System Events'],
];
export const RANGES = [
  ['24h', 'Last 24 Hours'],
  ['7d', 'Last 7 Days'],
  ['30d', 'Last 30 Days'],
  ['month', 'This Month'],
  ['custom', 'Custom date range'],
];
const PAGE = 50;
const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone;
const SHORT_TIME = new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric', hour: 'numeric',
                                                      minute: '2-digit', second: '2-digit', hour12: true });
const LONG_TIME = new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeStyle: 'long' });

let view = null;

export function formatShort(iso) {
  return SHORT_TIME.format(new Date(iso));
}

export function filtersFrom(params) {
  const range = params.get('range') || '24h';
  return {
    q: params.get('q') || '',
    category: params.get('category') || '',
    range,
    from: range === 'custom' ? params.get('from') || '' : '',
    to: range === 'custom' ? params.get('to') || '' : '',
  };
}

function apiQuery(filters) {
  const query = { range: filters.range, tz: TZ, q: filters.q, category: filters.category };
  if (filters.range === 'custom') { query.from = filters.from; query.to = filters.to; }
  return query;
}

function withParams(change) {
  const params = urlState();
  for (const [key, value] of Object.entries(change)) {
    if (value === null || value === '' || value === undefined) params.delete(key);
    else params.set(key, value);
  }
  return params;
}

export function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function renderAuditLog(panel, session) {
  if (!view || view.panel !== panel || !panel.contains(view.root)) view = build(panel, session);
  const params = urlState();
  const filters = filtersFrom(params);
  syncControls(filters);
  const key = JSON.stringify(filters);
  if (key !== view.filtersKey) {
    view.filtersKey = key;
    view.filters = filters;
    loadFirstPage();
  }
  syncModal(params.get('event'));
}

function build(panel, session) {
  const search = h('input', { id: 'audit-search', type: 'search', placeholder: 'Search audit events…',
                              autocomplete: 'off', 'aria-describedby': 'search-error',
                              dataset: { testid: 'search' } });
  const searchError = h('p', { id: 'search-error', class: 'field-error', role: 'alert', dataset: { testid: 'search-error' } });
  const category = h('select', { id: 'filter-category', dataset: { testid: 'category' } },
    h('option', { value: '' }, 'All Event Types'),
    CATEGORIES.map(([value, label]) => h('option', { value }, label)));
  const range = h('select', { id: 'filter-range', dataset: { testid: 'range' } },
    RANGES.map(([value, label]) => h('option', { value }, label)));
  const from = h('input', { id: 'range-from', type: 'datetime-local', dataset: { testid: 'range-from' } });
  const to = h('input', { id: 'range-to', type: 'datetime-local', dataset: { testid: 'range-to' } });
  const apply = h('button', { class: 'button secondary', type: 'submit', dataset: { testid: 'range-apply' } }, 'Apply');
  const rangeError = h('p', { class: 'field-error', role: 'alert', dataset: { testid: 'range-error' } });
  const custom = h('form', { class: 'custom-range', hidden: true, novalidate: true, 'aria-label': 'Custom date range' },
    h('label', { for: 'range-from' }, 'From'), from,
    h('label', { for: 'range-to' }, 'To'), to, apply, rangeError);
  const exportButton = h('button', { class: 'button primary', type: 'button', dataset: { testid: 'export-open' } },
    h('span', { 'aria-hidden': 'true' }, '⤓ '), 'Export Log');
  const count = h('p', { class: 'count', 'aria-live': 'polite', dataset: { testid: 'count' } });
  const retained = h('p', { class: 'notice', hidden: true, dataset: { testid: 'retained-from' } });
  const tbody = h('tbody', { dataset: { testid: 'rows' } });
  const status = h('div', { class: 'table-status', dataset: { testid: 'table-status' } });
  const more = h('button', { class: 'button secondary', type: 'button', hidden: true, dataset: { testid: 'load-more' } }, 'Load more');
  const sentinel = h('div', { class: 'sentinel', 'aria-hidden': 'true' });

  const rootNode = h('div', { class: 'audit-log' },
    h('div', { class: 'section-heading' },
      h('div', {},
        h('h2', {}, 'Organization Audit Log'),
        h('p', { class: 'muted' }, 'Complete activity history across all agents and users.')),
      exportButton),
    h('div', { class: 'filters' },
      h('div', { class: 'search-box' },
        h('label', { for: 'audit-search', class: 'visually-hidden' }, 'Search audit events'),
        h('span', { class: 'search-icon', 'aria-hidden': 'true' }, '⌕'), search, searchError),
      h('div', {}, h('label', { for: 'filter-category', class: 'visually-hidden' }, 'Event type'), category),
      h('div', {}, h('label', { for: 'filter-range', class: 'visually-hidden' }, 'Time range'), range)),
    custom,
    count,
    retained,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'events', dataset: { testid: 'events-table' } },
        h('caption', { class: 'visually-hidden' }, 'Audit events, newest first'),
        h('thead', {}, h('tr', {},
          ['Timestamp', 'Event Type', 'Actor', 'Action', 'Result'].map((t) => h('th', { scope: 'col' }, t)),
          h('th', { scope: 'col', class: 'details-col' }, h('span', { class: 'visually-hidden' }, 'Details')))),
        tbody)),
    status, h('div', { class: 'more' }, more), sentinel);
  clear(panel, rootNode);

  let debounce = null;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => navigate(withParams({ q: search.value.trim(), event: null }), { push: false }), 300);
  });
  search.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      clearTimeout(debounce);
      navigate(withParams({ q: search.value.trim(), event: null }));
    }
  });
  category.addEventListener('change', () => navigate(withParams({ category: category.value, event: null })));
  range.addEventListener('change', () => {
    if (range.value === 'custom') {
      custom.hidden = false;
      const now = new Date();
      if (!from.value) from.value = toLocalInput(new Date(now - 7 * 864e5).toISOString());
      if (!to.value) to.value = toLocalInput(now.toISOString());
      from.focus();
      return;
    }
    navigate(withParams({ range: range.value === '24h' ? null : range.value, from: null, to: null, event: null }));
  });
  custom.addEventListener('submit', (event) => {
    event.preventDefault();
    rangeError.textContent = '';
    if (!from.value || !to.value) { rangeError.textContent = 'Choose both a start and an end.'; return; }
    const start = new Date(from.value);
    const end = new Date(to.value);
    if (!(start < end)) { rangeError.textContent = 'The start must be before the end.'; return; }
    navigate(withParams({ range: 'custom', from: start.toISOString(), to: end.toISOString(), event: null }));
  });
  exportButton.addEventListener('click', () => openExportDialog(view.filters));
  more.addEventListener('click', () => loadMore());
  // Scrolling near the end loads the next page. The observer's news can be stale (the
  // table may have refilled since), so nearEnd() looks again before loading.
  const observer = new IntersectionObserver(() => loadMoreIfNearEnd(), { rootMargin: '200px' });
  observer.observe(sentinel);

  function nearEnd() {
    return sentinel.isConnected && sentinel.getBoundingClientRect().top < window.innerHeight + 200;
  }

  return { panel, root: rootNode, session, nearEnd, search, searchError, category, range, custom, from, to, rangeError,
           count, retained, tbody, status, more, filtersKey: null, filters: null, cursor: null, generation: 0,
           loading: false, rows: new Map(), modal: null, modalId: null, pushedEvent: false };
}

function syncControls(filters) {
  if (document.activeElement !== view.search) view.search.value = filters.q;
  view.category.value = filters.category;
  view.range.value = filters.range;
  view.custom.hidden = filters.range !== 'custom';
  if (filters.range === 'custom') {
    view.from.value = toLocalInput(filters.from);
    view.to.value = toLocalInput(filters.to);
  }
}

function showProblem(err) {
  const message = err instanceof ApiError ? err.message : String(err);
  if (err instanceof ApiError && err.status === 422 && err.problem.type === 'urn:sealog:problem:query-syntax') {
    clear(view.searchError, message);
    view.search.setAttribute('aria-invalid', 'true');
    clear(view.status);
  } else {
    clear(view.status, h('p', { class: 'error', role: 'alert' }, message));
  }
  view.count.textContent = '';
}

async function loadFirstPage() {
  const generation = ++view.generation;
  view.cursor = null;
  view.rows.clear();
  view.loading = true;
  view.more.hidden = true;
  view.searchError.textContent = '';
  view.search.removeAttribute('aria-invalid');
  view.count.textContent = 'Counting…';
  clear(view.tbody);
  clear(view.status, h('p', { class: 'loading', role: 'status' }, 'Loading events…'));
  const query = apiQuery(view.filters);
  try {
    const [page, counted] = await Promise.all([
      api('GET', '/events', { query: { ...query, limit: PAGE } }),
      api('GET', '/events/count', { query })]);
    if (generation !== view.generation) return;
    view.count.textContent = `${counted.count.toLocaleString('en-US')} ${counted.count === 1 ? 'event' : 'events'}`;
    view.count.dataset.count = String(counted.count);
    showRetained(page.retained_from);
    addRows(page);
    if (!page.data.length) {
      clear(view.status, h('div', { class: 'empty', dataset: { testid: 'empty' } },
        h('p', { class: 'empty-title' }, 'No events match'),
        h('p', { class: 'muted' }, 'Try a longer time range, another event type or fewer search words.')));
    }
  } catch (err) {
    if (generation === view.generation) showProblem(err);
  } finally {
    if (generation === view.generation) view.loading = false;
  }
}

function loadMoreIfNearEnd() {
  if (view && view.cursor && !view.loading && !view.more.hidden && view.nearEnd()) loadMore();
}

async function loadMore() {
  if (!view.cursor || view.loading) return;
  const generation = view.generation;
  view.loading = true;
  view.more.disabled = true;
  view.more.textContent = 'Loading…';
  try {
    const page = await api('GET', '/events', { query: { ...apiQuery(view.filters), limit: PAGE, cursor: view.cursor } });
    if (generation === view.generation) addRows(page);
  } catch (err) {
    if (generation === view.generation) showProblem(err);
  } finally {
    if (generation === view.generation) view.loading = false;
    view.more.disabled = false;
    view.more.textContent = 'Load more';
  }
  // Still at the end (a tall screen, or scrolled on while loading): keep going.
  if (generation === view.generation) requestAnimationFrame(loadMoreIfNearEnd);
}

// Says that the window reaches before the events the org's retention policy kept.
function showRetained(retained) {
  view.retained.hidden = !retained;
  if (!retained) return;
  const policy = retained.policy_days ? ` (${retained.policy_days} days)` : '';
  const when = retained.received_at ? new Date(retained.received_at).toLocaleString() : 'the oldest kept event';
  view.retained.textContent = `Events received before ${when} were removed under this organization's retention policy${policy}.`;
}

function addRows(page) {
  clear(view.status);
  view.tbody.append(...page.data.map(row));
  view.cursor = page.next_cursor;
  view.more.hidden = !page.next_cursor;
}

export function resultBadge(result) {
  const label = result.charAt(0).toUpperCase() + result.slice(1);
  return h('span', { class: `badge result result-${result}`, dataset: { testid: 'result' } }, label);
}

function typeBadge(event) {
  return h('span', { class: `badge type cat-${event.category}`, title: event.category.replace('_', ' '),
                     dataset: { testid: 'event-type' } }, event.event_type);
}

function actorLabel(actor) {
  return actor.email || actor.name || actor.id || actor.type;
}

// What the table and the details show of an erased event: its tombstone, named.
export function shown(event) {
  if (!event.erased) return event;
  return { ...event, event_type: 'Erased', action: 'erased',
           description: `Erased (request at index ${event.erased.request_index})`,
           actor: { id: null, name: 'erased', type: 'erased' } };
}

function row(original) {
  const event = shown(original);
  view.rows.set(event.id, original);
  const details = h('button', { class: 'icon-button eye', type: 'button', 'aria-label': `Details of ${event.description}`,
                                title: 'View details', dataset: { testid: 'details' } }, eyeIcon());
  details.addEventListener('click', () => {
    view.pushedEvent = true;
    navigate(withParams({ event: event.id }));
  });
  return h('tr', { dataset: { testid: 'event-row', eventId: event.id, category: event.category } },
    h('td', { class: 'time' }, h('time', { datetime: event.occurred_at, title: event.occurred_at }, formatShort(event.occurred_at))),
    h('td', {}, typeBadge(event)),
    h('td', { class: 'actor', dataset: { testid: 'actor' } }, actorLabel(event.actor)),
    h('td', { class: 'action', title: event.action, dataset: { testid: 'action' } }, event.description),
    h('td', {}, resultBadge(event.result)),
    h('td', { class: 'details-col' }, details));
}

function eyeIcon() {
  return svgIcon('M12 5c-5 0-9 4.5-10 7 1 2.5 5 7 10 7s9-4.5 10-7c-1-2.5-5-7-10-7zm0 11a4 4 0 1 1 0-8 4 4 0 0 1 0 8zm0-2a2 2 0 1 0 0-4 2 2 0 0 0 0 4z', 18);
}

// -- the details modal ---------------------------------------------------------------

function syncModal(eventId) {
  if (view.modal && view.modalId !== eventId) {
    const modal = view.modal;
    view.pushedEvent = false;
    view.modal = null;
    view.modalId = null;
    modal.close();
  }
  if (eventId && !view.modal) openEvent(eventId);
}

async function openEvent(eventId) {
  const body = h('div', { class: 'event-details' }, h('p', { class: 'loading', role: 'status' }, 'Loading event…'));
  view.modalId = eventId;
  view.modal = openModal({
    title: 'Audit Event Details', body, testid: 'event-modal', wide: true,
    onClose: () => {
      if (view.modalId === eventId) {
        view.modal = null;
        view.modalId = null;
        // Closing undoes the history entry opening it made, so Back does not reopen it.
        if (view.pushedEvent) {
          view.pushedEvent = false;
          history.back();
        } else {
          navigate(withParams({ event: null }), { push: false });
        }
      }
    },
  });
  try {
    const event = await api('GET', `/events/${encodeURIComponent(eventId)}`);
    if (view.modalId === eventId) clear(body, details(event));
  } catch (err) {
    if (view.modalId === eventId) clear(body, h('p', { class: 'error', role: 'alert' }, err.message));
  }
}

function field(label, value, testid) {
  return [h('dt', {}, label), h('dd', { dataset: { testid } }, value)];
}

function copyable(label, value, testid) {
  return [h('dt', {}, label),
    h('dd', { class: 'copyable' }, h('code', { dataset: { testid } }, value ?? '—'),
      value ? copyButton(value, `Copy ${label}`) : null)];
}

function details(original) {
  const event = shown(original);
  const request = event.request;
  const resource = event.resource;
  const proof = h('p', { class: 'proof checking', role: 'status', dataset: { testid: 'proof-status' } }, 'Checking the proof…');
  verifyEvent(original).then((outcome) => {
    proof.className = `proof ${outcome.ok ? 'ok' : outcome.pending ? 'pending' : 'bad'}`;
    proof.dataset.state = outcome.ok ? 'verified' : outcome.pending ? 'pending' : 'failed';
    clear(proof, outcome.ok ? '✓ ' : '✕ ', outcome.message,
      outcome.ok ? h('span', { class: 'muted small' },
        outcome.signatureChecked ? ` · signed by ${outcome.keyName}` : ' · this browser cannot check Ed25519 signatures') : null);
  }).catch((err) => {
    proof.className = 'proof bad';
    proof.dataset.state = 'failed';
    clear(proof, '✕ The proof could not be checked: ', err.message);
  });
  return [
    h('section', { 'aria-labelledby': 'overview-h' },
      h('h3', { id: 'overview-h' }, 'Event Overview'),
      h('dl', { class: 'grid' },
        field('Timestamp', h('time', { datetime: event.occurred_at, title: event.occurred_at }, LONG_TIME.format(new Date(event.occurred_at))), 'd-timestamp'),
        field('Result', resultBadge(event.result), 'd-result'),
        field('Actor', [actorLabel(event.actor), h('span', { class: 'muted small' }, ` (${event.actor.type})`)], 'd-actor'),
        field('Action', [event.description, h('code', { class: 'small block' }, event.action)], 'd-action'),
        field('Event Type', typeBadge(event), 'd-type'),
        field('Resource Type', resource
          ? [resource.type, resource.id ? [' · ', resource.id] : null, resource.name ? [' · ', resource.name] : null]
          : '—', 'd-resource'))),
    h('section', { 'aria-labelledby': 'request-h' },
      h('h3', { id: 'request-h' }, 'Request Details'),
      request
        ? [h('p', { class: 'request-line', dataset: { testid: 'd-request-line' } },
            h('span', { class: `method m-${request.method}` }, request.method), ' ', h('code', {}, request.path),
            request.status ? h('span', { class: 'muted' }, ` → ${request.status}`) : null),
          jsonBlock('Request Body', request.body, 'd-request-body'),
          jsonBlock('Response', request.response, 'd-response')]
        : h('p', { class: 'muted' }, 'No HTTP request was recorded for this event.')),
    h('section', { 'aria-labelledby': 'tech-h' },
      h('h3', { id: 'tech-h' }, 'Technical Information'),
      h('dl', { class: 'grid' },
        copyable('Event ID', event.id, 'd-event-id'),
        copyable('Organization ID', event.org_id, 'd-org-id'),
        copyable('Actor ID', event.actor.id, 'd-actor-id'),
        field('Recorded by', recordedBy(event.recorded_by), 'd-recorded-by'),
        field('IP address', event.context?.ip || '—', 'd-ip'),
        field('Received', event.received_at, 'd-received'))),
    h('section', { 'aria-labelledby': 'integrity-h' },
      h('h3', { id: 'integrity-h' }, 'Integrity'),
      h('dl', { class: 'grid' },
        field('Index', String(event.index), 'd-index'),
        copyable('Leaf hash', event.leaf_hash, 'd-leaf-hash')),
      proof),
  ];
}

// Which credential wrote the event into the log: set by the server and sealed with it.
function recordedBy(by) {
  if (!by) return h('span', { class: 'muted' }, 'not recorded (stored before Sealog sealed it)');
  if (by.type === 'sealog') return 'Sealog (its own record)';
  return ['API key ', h('code', {}, by.id)];
}

function jsonBlock(title, value, testid) {
  const text = JSON.stringify(value ?? null, null, 2);
  return h('div', { class: 'json-block' },
    h('div', { class: 'json-title' }, h('h4', {}, title), copyButton(text, `Copy ${title}`)),
    h('pre', { class: 'json', tabindex: '0', dataset: { testid } }, highlight(text)));
}

const TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false)\b|\b(null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

function highlight(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(TOKEN)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    const kind = m[1] ? (m[2] ? 'key' : 'string') : m[3] ? 'boolean' : m[4] ? 'null' : 'number';
    out.push(h('span', { class: `j-${kind}` }, m[1] || m[0]));
    if (m[2]) out.push(m[2]);
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}
