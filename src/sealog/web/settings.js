// The Settings tab, for owners and admins: how long the org keeps its events, what purges
// removed, and its legal holds. Only an owner changes them; every change is an audit event.

import { api } from './api.js';
import { h, clear } from './dom.js';

function when(iso) {
  return iso ? new Date(iso).toLocaleString('en-US', { dateStyle: 'medium', timeStyle: 'short' }) : '—';
}

function day(iso) {
  return iso ? new Date(iso).toLocaleDateString('en-US', { dateStyle: 'medium', timeZone: 'UTC' }) : null;
}

// A date input's value as the start of that day, UTC, in RFC 3339; null when empty.
function dayStart(value) {
  return value ? `${value}T00:00:00Z` : null;
}

function covers(hold) {
  if (hold.whole_log) return 'The whole log';
  const from = day(hold.occurred_from) || 'the start';
  const to = day(hold.occurred_to) || 'now on';
  return `Events that occurred from ${from} to ${to}`;
}

export async function renderSettings(panel, session) {
  const owner = session.user?.role === 'owner';
  const status = h('div', { 'aria-live': 'polite', dataset: { testid: 'settings-status' } });
  const body = h('div', {}, h('p', { class: 'loading', role: 'status' }, 'Loading settings…'));
  clear(panel, h('div', { class: 'section-heading' },
    h('div', {}, h('h2', {}, 'Settings'),
      h('p', { class: 'muted' }, 'How long this organization keeps its audit log, and the legal holds that keep events whatever the policy says.'))),
    status, body);

  function say(text, isError = false) {
    clear(status, h('p', isError ? { class: 'error', role: 'alert' } : { class: 'muted', role: 'status' }, text));
  }

  async function act(method, path, requestBody, done) {
    try {
      await api(method, path, { body: requestBody });
      say(done);
      load();
    } catch (err) {
      say(err.message, true);
    }
  }

  function policySection(policy) {
    const kept = policy.days === null ? 'Forever' : `${policy.days.toLocaleString('en-US')} days`;
    const facts = h('dl', { class: 'grid' },
      h('dt', {}, 'Keep events'), h('dd', { dataset: { testid: 'policy-days' } }, kept,
        policy.locked ? h('span', { class: 'badge result-approved', dataset: { testid: 'policy-locked' } }, ' Locked') : null),
      h('dt', {}, 'Removed under the policy'),
      h('dd', { dataset: { testid: 'policy-pruned' } }, policy.retained_from_index
        ? `Events at indexes 0 to ${(policy.retained_from_index - 1).toLocaleString('en-US')}` : 'None'),
      policy.min_days ? [h('dt', {}, 'Least this deployment keeps'), h('dd', {}, `${policy.min_days} days`)] : null);
    const section = h('section', { 'aria-labelledby': 'policy-h' }, h('h3', { id: 'policy-h' }, 'Retention policy'), facts);
    if (!owner) {
      section.append(h('p', { class: 'muted' }, 'Only an owner can change the policy.'));
      return section;
    }
    const days = h('input', { id: 'policy-input', type: 'number', min: String(policy.min_days || 1), max: '36500',
                              value: policy.days ?? '', 'aria-describedby': 'policy-hint', dataset: { testid: 'policy-input' } });
    const lock = h('input', { id: 'policy-lock', type: 'checkbox', checked: policy.locked, disabled: policy.locked,
                              dataset: { testid: 'policy-lock' } });
    const form = h('form', { class: 'export-form', novalidate: true },
      h('label', { for: 'policy-input' }, 'Days to keep events'),
      h('p', { id: 'policy-hint', class: 'muted field-hint' }, 'Empty: keep forever. Older events are removed, oldest first; proofs of the rest still hold.'),
      days,
      h('label', { class: 'check' }, lock, 'Lock the policy (from then on it can only be lengthened)'),
      h('div', { class: 'actions' }, h('button', { class: 'button primary', type: 'submit', dataset: { testid: 'policy-save' } }, 'Save policy')));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const value = days.value.trim();
      act('PUT', '/retention', { days: value === '' ? null : Number(value), lock: lock.checked },
        value === '' ? 'Events are kept forever.' : `Events are kept ${value} days.`);
    });
    section.append(form);
    return section;
  }

  function holdsSection(holds) {
    const rows = holds.map((hold) => {
      let action = null;
      if (owner && hold.active) {
        action = h('button', { class: 'button secondary small', type: 'button', dataset: { testid: 'hold-release' },
                               'aria-label': `Release ${hold.name}` }, 'Release');
        action.addEventListener('click', () => act('POST', `/legal-holds/${hold.id}/release`, {}, `Released ${hold.name}.`));
      }
      return h('tr', { dataset: { testid: 'hold-row', holdId: hold.id } },
        h('td', {}, hold.name), h('td', {}, covers(hold)), h('td', {}, hold.reason),
        h('td', {}, when(hold.created_at)),
        h('td', { dataset: { testid: 'hold-state' } }, hold.active ? 'Active' : `Released ${when(hold.released_at)}`),
        h('td', {}, action));
    });
    const section = h('section', { 'aria-labelledby': 'holds-h' }, h('h3', { id: 'holds-h' }, 'Legal holds'),
      holds.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'events' },
          h('caption', { class: 'visually-hidden' }, 'Legal holds, oldest first'),
          h('thead', {}, h('tr', {}, ['Name', 'Covers', 'Reason', 'Placed', 'State'].map((t) => h('th', { scope: 'col' }, t)),
            h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
          h('tbody', { dataset: { testid: 'holds' } }, rows)))
        : h('p', { class: 'muted', dataset: { testid: 'no-holds' } }, 'No legal holds.'));
    if (!owner) return section;
    const name = h('input', { id: 'hold-name', dataset: { testid: 'hold-name' } });
    const reason = h('input', { id: 'hold-reason', dataset: { testid: 'hold-reason' } });
    const from = h('input', { id: 'hold-from', type: 'date', dataset: { testid: 'hold-from' } });
    const to = h('input', { id: 'hold-to', type: 'date', dataset: { testid: 'hold-to' } });
    const form = h('form', { class: 'export-form', novalidate: true },
      h('label', { for: 'hold-name' }, 'Name'), name,
      h('label', { for: 'hold-reason' }, 'Reason'), reason,
      h('label', { for: 'hold-from' }, 'Events that occurred from (empty: the start)'), from,
      h('label', { for: 'hold-to' }, 'Until, not including (empty: from now on)'), to,
      h('div', { class: 'actions' }, h('button', { class: 'button primary', type: 'submit', dataset: { testid: 'hold-place' } }, 'Place hold')));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      act('POST', '/legal-holds', { name: name.value, reason: reason.value, from: dayStart(from.value), to: dayStart(to.value) },
        `Placed ${name.value.trim()}.`);
    });
    section.append(form);
    return section;
  }

  async function load() {
    try {
      const policy = await api('GET', '/retention');
      clear(body, policySection(policy), holdsSection(policy.holds));
    } catch (err) {
      clear(body, h('p', { class: 'error', role: 'alert' }, err.message));
    }
  }
  load();
}
