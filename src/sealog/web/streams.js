// The Streams tab, for owners and admins: the org's streams of its log to webhooks and
// syslog receivers, their state and lag (refreshed every 5 s while the tab is open), and
// making, pausing, resuming, testing, replaying and deleting them. Every change is an
// audit event.

import { api } from './api.js';
import { h, clear, openModal, copyButton, visibleText } from './dom.js';
import { CATEGORIES } from './auditlog.js';

const KINDS = [['webhook', 'Webhook (HTTPS POST)'], ['syslog', 'Syslog (RFC 5424 over TCP or TLS)']];
const FORMATS = [
  ['sealog', 'Sealog', 'each event as the API returns it'],
  ['ocsf', 'OCSF 1.8', 'for security lakes and SIEMs'],
  ['cloudevents', 'CloudEvents 1.0', 'for event routers'],
];
const STATES = {
  active: ['Active', 'result-success'], paused: ['Paused', 'result-approved'],
  failing: ['Failing', 'result-failed'], disabled: ['Disabled', 'result-denied'],
};
const REFRESH_MS = 5000;

function when(iso) {
  return iso ? new Date(iso).toLocaleString('en-US', { dateStyle: 'medium', timeStyle: 'short' }) : '—';
}

function alertLine(target, text) {
  clear(target, h('p', { class: 'error', role: 'alert' }, text));
}

export async function renderStreams(panel) {
  const create = h('button', { class: 'button primary', type: 'button', dataset: { testid: 'stream-create' } }, 'Create stream');
  const status = h('div', { 'aria-live': 'polite', dataset: { testid: 'stream-status' } });
  const body = h('div', { dataset: { testid: 'streams' } }, h('p', { class: 'loading', role: 'status' }, 'Loading streams…'));
  clear(panel, h('div', { class: 'section-heading' },
    h('div', {}, h('h2', {}, 'Streams'),
      h('p', { class: 'muted' }, 'Streams push every event of the log, in order, to your SIEM or webhook, each batch with the signed checkpoint that proves it.')),
    create), status, body);
  let timer = null;

  async function act(method, path, done, requestBody) {
    try {
      const answer = await api(method, path, requestBody === undefined ? {} : { body: requestBody });
      clear(status, h('p', { class: 'muted', role: 'status' }, done(answer)));
      load();
    } catch (err) {
      alertLine(status, err.message);
    }
  }

  function actions(stream) {
    const button = (label, testid, onClick, kind = 'secondary') => {
      const b = h('button', { class: `button ${kind} small`, type: 'button', dataset: { testid },
                              'aria-label': `${label} ${stream.name}` }, label);
      b.addEventListener('click', onClick);
      return b;
    };
    const pausing = stream.state === 'active' || stream.state === 'failing';
    return h('div', { class: 'row-actions' },
      pausing
        ? button('Pause', 'stream-pause', () => act('POST', `/streams/${stream.id}/pause`, () => `Paused ${stream.name}.`))
        : button('Resume', 'stream-resume', () => act('POST', `/streams/${stream.id}/resume`, () => `Resumed ${stream.name}.`)),
      button('Send test', 'stream-test', () => act('POST', `/streams/${stream.id}/test`, (answer) => (answer.delivered
        ? `The destination took the test message${answer.status ? ` (HTTP ${answer.status})` : ''}.`
        : `The destination did not take the test message: ${answer.error}`))),
      button('Replay…', 'stream-replay', () => openReplay(stream)),
      button('Delete', 'stream-delete', () => {
        if (!confirm(visibleText(`Delete the stream ${stream.name}? Nothing more is sent to it.`))) return;
        act('DELETE', `/streams/${stream.id}`, () => `Deleted ${stream.name}.`);
      }, 'danger'));
  }

  function openReplay(stream) {
    const index = h('input', { id: 'replay-index', type: 'number', min: '0', step: '1', autofocus: true,
                               value: '0', dataset: { testid: 'replay-index' } });
    const error = h('p', { class: 'form-error', role: 'alert' });
    const form = h('form', { class: 'export-form', novalidate: true },
      h('p', { class: 'muted' }, `The stream is at index ${stream.next_index.toLocaleString('en-US')}. It sends again from the index you give.`),
      h('label', { for: 'replay-index' }, 'From index'), index, error,
      h('div', { class: 'actions' }, h('button', { class: 'button primary', type: 'submit', dataset: { testid: 'replay-submit' } }, 'Replay')));
    const modal = openModal({ title: `Replay ${stream.name}`, body: form, testid: 'replay-dialog' });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!/^\d+$/.test(index.value)) { error.textContent = 'Give an index: a whole number from 0.'; return; }
      try {
        await api('POST', `/streams/${stream.id}/replay`, { body: { index: Number(index.value) } });
        modal.close();
        clear(status, h('p', { class: 'muted', role: 'status' }, `${stream.name} sends again from index ${index.value}.`));
        load();
      } catch (err) {
        clear(error, err.message);
      }
    });
  }

  async function load() {
    clearTimeout(timer);
    if (!panel.isConnected || !body.isConnected) return;
    try {
      const { data } = await api('GET', '/streams');
      clear(body, data.length ? h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Name', 'Destination', 'Format', 'State', 'Behind', 'Last delivered'].map((t) => h('th', { scope: 'col' }, t)),
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
        h('tbody', {}, data.map((stream) => {
          const [label, badge] = STATES[stream.state];
          return h('tr', { dataset: { testid: 'stream-row', streamId: stream.id } },
            h('td', {}, stream.name),
            h('td', {}, h('span', { class: 'muted small' }, `${stream.kind} `), h('code', {}, stream.url)),
            h('td', {}, stream.format),
            h('td', {}, h('span', { class: `badge ${badge}`, dataset: { testid: 'stream-state' } }, label),
              stream.last_error ? h('p', { class: 'small error-text', dataset: { testid: 'stream-error' } }, stream.last_error) : null),
            h('td', { dataset: { testid: 'stream-lag' } }, `${stream.lag_events.toLocaleString('en-US')} events`),
            h('td', {}, when(stream.last_delivered_at)),
            h('td', {}, actions(stream)));
        })))) : h('p', { class: 'muted' }, 'No streams yet.'));
    } catch (err) {
      alertLine(body, err.message);
    }
    timer = setTimeout(load, REFRESH_MS);
  }

  create.addEventListener('click', () => openCreate(status, load));
  load();
}

function parseHeaders(text) {
  const headers = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const colon = line.indexOf(':');
    if (colon < 1) throw new Error(`Write each header as Name: value, not “${line.trim()}”.`);
    headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return headers;
}

function openCreate(status, reload) {
  const name = h('input', { id: 'stream-name', required: true, maxlength: '200', autofocus: true, dataset: { testid: 'stream-name' } });
  const kind = h('select', { id: 'stream-kind', dataset: { testid: 'stream-kind' } },
    KINDS.map(([value, label]) => h('option', { value }, label)));
  const url = h('input', { id: 'stream-url', required: true, spellcheck: 'false', autocapitalize: 'none',
                           'aria-describedby': 'stream-url-hint', dataset: { testid: 'stream-url' } });
  const urlHint = h('p', { id: 'stream-url-hint', class: 'muted field-hint' });
  const formats = h('fieldset', { class: 'checks' }, h('legend', {}, 'Format'),
    FORMATS.map(([value, label, hint], i) => h('label', { class: 'check' },
      h('input', { type: 'radio', name: 'format', value, checked: i === 0, dataset: { testid: `stream-format-${value}` } }),
      label, h('span', { class: 'muted small' }, ` — ${hint}`))));
  const start = h('fieldset', { class: 'checks' }, h('legend', {}, 'Start'),
    [['now', 'From the next event'], ['beginning', 'From the log’s first event (backfill)']].map(([value, label], i) =>
      h('label', { class: 'check' }, h('input', { type: 'radio', name: 'start', value, checked: i === 0,
                                                 dataset: { testid: `stream-start-${value}` } }), label)));
  const types = h('fieldset', { class: 'checks' }, h('legend', {}, 'Event types (none checked: all)'),
    CATEGORIES.map(([value, label]) => h('label', { class: 'check' },
      h('input', { type: 'checkbox', name: 'categories', value }), label)));
  const query = h('input', { id: 'stream-query', spellcheck: 'false', 'aria-describedby': 'stream-query-hint',
                             dataset: { testid: 'stream-query' } });
  const proofs = h('input', { id: 'stream-proofs', type: 'checkbox', dataset: { testid: 'stream-proofs' } });
  const headers = h('textarea', { id: 'stream-headers', rows: '2', spellcheck: 'false', 'aria-describedby': 'stream-headers-hint' });
  const headersPart = h('div', {}, h('label', { for: 'stream-headers' }, 'Headers'),
    h('p', { id: 'stream-headers-hint', class: 'muted field-hint' }, 'One “Name: value” a line, such as a token your receiver asks for. Kept secret.'),
    headers);
  const ca = h('textarea', { id: 'stream-ca', rows: '3', spellcheck: 'false', 'aria-describedby': 'stream-ca-hint' });
  const caPart = h('div', { hidden: true }, h('label', { for: 'stream-ca' }, 'CA certificates (TLS)'),
    h('p', { id: 'stream-ca-hint', class: 'muted field-hint' }, 'PEM certificates to trust for the receiver, instead of the system’s. Leave empty for the system’s.'),
    ca);
  function kindChanged() {
    const syslog = kind.value === 'syslog';
    urlHint.textContent = syslog ? 'tcp://host:port, or tls://host:port for TLS (port 6514)' : 'The receiver’s https:// address';
    headersPart.hidden = syslog;
    caPart.hidden = !syslog;
  }
  kind.addEventListener('change', kindChanged);
  kindChanged();
  const error = h('p', { class: 'form-error', role: 'alert', dataset: { testid: 'stream-error-message' } });
  const form = h('form', { class: 'export-form', novalidate: true },
    h('label', { for: 'stream-name' }, 'Name'), name,
    h('label', { for: 'stream-kind' }, 'Destination'), kind,
    h('label', { for: 'stream-url' }, 'Address'), urlHint, url,
    formats, start, types,
    h('label', { for: 'stream-query' }, 'Search query'),
    h('p', { id: 'stream-query-hint', class: 'muted field-hint' }, 'Only events matching it are sent, such as actor:alice* or action:policy.*. Empty: all.'),
    query,
    h('label', { class: 'check' }, proofs, 'Send each event’s inclusion proof (lets the receiver verify every event offline)'),
    headersPart, caPart, error,
    h('div', { class: 'actions' }, h('button', { class: 'button primary', type: 'submit', dataset: { testid: 'stream-submit' } }, 'Create stream')));
  const modal = openModal({ title: 'Create stream', body: form, testid: 'stream-dialog', wide: true });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    if (!name.value.trim() || !url.value.trim()) { error.textContent = 'Give the stream a name and an address.'; return; }
    const spec = {
      name: name.value.trim(), kind: kind.value, url: url.value.trim(),
      format: form.querySelector('input[name=format]:checked').value,
      start: form.querySelector('input[name=start]:checked').value,
      categories: [...form.querySelectorAll('input[name=categories]:checked')].map((c) => c.value),
      query: query.value.trim(), include_proofs: proofs.checked,
    };
    try {
      if (kind.value === 'webhook') spec.headers = parseHeaders(headers.value);
      else if (ca.value.trim()) spec.ca_bundle = ca.value;
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    try {
      const made = await api('POST', '/streams', { body: spec });
      const done = h('button', { class: 'button primary', type: 'button', onclick: () => modal.close() }, 'Done');
      if (made.secret) {
        clear(form, h('p', {}, 'Give this signing secret to the receiver now: it is not shown again. It verifies each request (Standard Webhooks).'),
          h('p', { class: 'copyable' }, h('code', { class: 'secret', dataset: { testid: 'stream-secret' } }, made.secret),
            copyButton(made.secret, 'Copy the signing secret')),
          h('div', { class: 'actions' }, done));
      } else {
        clear(form, h('p', { dataset: { testid: 'stream-made' } }, `${made.name} sends to ${made.url}.`), h('div', { class: 'actions' }, done));
      }
      clear(status, h('p', { class: 'muted', role: 'status' }, `Created ${made.name}.`));
      done.focus();
      reload();
    } catch (err) {
      clear(error, err.message);
    }
  });
}
