// The Export Log dialog: name, time range, event types and format; then the org's exports,
// refreshed every 2 s while any is queued or running.

import { api } from './api.js';
import { h, clear, openModal } from './dom.js';
import { CATEGORIES, RANGES, toLocalInput } from './auditlog.js';

const FORMATS = [
  ['csv', 'CSV', 'Opens in any spreadsheet'],
  ['xlsx', 'Excel', 'A styled .xlsx workbook'],
  ['jsonl', 'JSON Lines bundle', 'Verifiable offline with sealog verify'],
];
const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone;

function size(bytes) {
  if (bytes === null || bytes === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function openExportDialog(filters) {
  const today = new Date().toISOString().slice(0, 10);
  const name = h('input', { id: 'export-name', required: true, maxlength: '200', autofocus: true,
                            value: `audit-log-${today}`, dataset: { testid: 'export-name' } });
  const range = h('select', { id: 'export-range', dataset: { testid: 'export-range' } },
    RANGES.map(([value, label]) => h('option', { value, selected: value === filters.range }, label)));
  const from = h('input', { id: 'export-from', type: 'datetime-local', dataset: { testid: 'export-from' } });
  const to = h('input', { id: 'export-to', type: 'datetime-local', dataset: { testid: 'export-to' } });
  const custom = h('div', { class: 'custom-range', hidden: filters.range !== 'custom' },
    h('label', { for: 'export-from' }, 'From'), from, h('label', { for: 'export-to' }, 'To'), to);
  if (filters.range === 'custom') {
    from.value = toLocalInput(filters.from);
    to.value = toLocalInput(filters.to);
  }
  range.addEventListener('change', () => { custom.hidden = range.value !== 'custom'; });
  const types = h('fieldset', { class: 'checks' }, h('legend', {}, 'Event types (none checked: all)'),
    CATEGORIES.map(([value, label]) => h('label', { class: 'check' },
      h('input', { type: 'checkbox', name: 'categories', value, checked: filters.category === value,
                   dataset: { testid: `export-cat-${value}` } }), label)));
  const formats = h('fieldset', { class: 'checks' }, h('legend', {}, 'Format'),
    FORMATS.map(([value, label, hint], i) => h('label', { class: 'check' },
      h('input', { type: 'radio', name: 'format', value, checked: i === 0, dataset: { testid: `export-format-${value}` } }),
      label, h('span', { class: 'muted small' }, ` — ${hint}`))));
  const query = filters.q ? h('p', { class: 'muted small' }, 'Search: ', h('code', {}, filters.q)) : null;
  const error = h('p', { class: 'form-error', role: 'alert', dataset: { testid: 'export-error' } });
  const submit = h('button', { class: 'button primary', type: 'submit', dataset: { testid: 'export-queue' } }, 'Queue Export');
  const list = h('div', { class: 'export-list', 'aria-live': 'polite', dataset: { testid: 'export-list' } });
  const form = h('form', { class: 'export-form', novalidate: true },
    h('label', { for: 'export-name' }, 'Export name'), name,
    h('label', { for: 'export-range' }, 'Time range'), range, custom,
    types, formats, query, error, h('div', { class: 'actions' }, submit));
  let timer = null;
  const modal = openModal({
    title: 'Export Audit Log', testid: 'export-dialog', wide: true,
    body: [form, h('h3', {}, 'Your exports'), list],
    onClose: () => clearTimeout(timer),
  });

  async function refresh() {
    clearTimeout(timer);
    try {
      const { data } = await api('GET', '/exports');
      renderList(list, data);
      if (data.some((e) => e.status === 'queued' || e.status === 'running')) timer = setTimeout(refresh, 2000);
    } catch (err) {
      clear(list, h('p', { class: 'error', role: 'alert' }, err.message));
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    if (!name.value.trim()) { error.textContent = 'Give the export a name.'; name.focus(); return; }
    const body = {
      name: name.value.trim(),
      format: form.querySelector('input[name=format]:checked').value,
      range: range.value,
      tz: TZ,
      categories: [...form.querySelectorAll('input[name=categories]:checked')].map((c) => c.value),
      q: filters.q || null,
    };
    if (range.value === 'custom') {
      if (!from.value || !to.value || !(new Date(from.value) < new Date(to.value))) {
        error.textContent = 'Choose a start before the end.';
        return;
      }
      body.from = new Date(from.value).toISOString();
      body.to = new Date(to.value).toISOString();
    }
    submit.disabled = true;
    try {
      await api('POST', '/exports', { body });
      await refresh();
    } catch (err) {
      clear(error, err.message);
    } finally {
      submit.disabled = false;
    }
  });
  refresh();
  return modal;
}

function renderList(list, exports) {
  if (!exports.length) {
    clear(list, h('p', { class: 'muted' }, 'No exports yet.'));
    return;
  }
  clear(list, h('table', { class: 'compact' },
    h('thead', {}, h('tr', {}, ['Name', 'Format', 'Status', 'Rows', 'Size'].map((t) => h('th', { scope: 'col' }, t)),
      h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Download')))),
    h('tbody', {}, exports.map((e) => h('tr', { dataset: { testid: 'export-row', exportId: e.id, status: e.status } },
      h('td', {}, e.name),
      h('td', {}, e.format.toUpperCase()),
      h('td', {}, h('span', { class: `badge status-${e.status}`, dataset: { testid: 'export-status' } }, e.status),
        e.status === 'running' ? h('progress', { max: '1', value: String(e.progress), 'aria-label': `${Math.round(e.progress * 100)}% done` }) : null,
        e.error ? h('span', { class: 'small error' }, ` ${e.error}`) : null),
      h('td', { class: 'num' }, e.row_count === null ? '—' : e.row_count.toLocaleString('en-US')),
      h('td', { class: 'num' }, size(e.size_bytes)),
      h('td', {}, e.status === 'completed' && e.download_url
        ? h('a', { class: 'button secondary small', href: e.download_url, download: '', dataset: { testid: 'export-download' } }, 'Download')
        : null))))));
}
