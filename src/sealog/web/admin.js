// The API Keys and Members tabs, for owners and admins. Every change is an audit event.

import { api } from './api.js';
import { h, clear, openModal, copyButton, visibleText } from './dom.js';

const SCOPES = [
  ['events:write', 'Send events'],
  ['events:read', 'Read events'],
  ['exports', 'Export'],
  ['admin', 'Admin (all of the above, keys and members)'],
];
const ROLES = ['owner', 'admin', 'auditor', 'member'];

function when(iso) {
  return iso ? new Date(iso).toLocaleString('en-US', { dateStyle: 'medium', timeStyle: 'short' }) : '—';
}

function problemLine(target, err) {
  clear(target, h('p', { class: 'error', role: 'alert' }, err.message));
}

export async function renderKeys(panel) {
  const create = h('button', { class: 'button primary', type: 'button', dataset: { testid: 'key-create' } }, 'Create API key');
  const status = h('div', {});
  const body = h('div', { dataset: { testid: 'keys' } }, h('p', { class: 'loading', role: 'status' }, 'Loading keys…'));
  clear(panel, h('div', { class: 'section-heading' },
    h('div', {}, h('h2', {}, 'API Keys'), h('p', { class: 'muted' }, 'Keys let your platform send and read events. A key’s secret is shown once.')),
    create), status, body);
  async function load() {
    try {
      const { data } = await api('GET', '/keys');
      clear(body, data.length ? h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Name', 'Key ID', 'Scopes', 'Created', 'Last used', 'Status'].map((t) => h('th', { scope: 'col' }, t)),
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
        h('tbody', {}, data.map((key) => {
          const revoke = key.revoked_at ? null : h('button', { class: 'button danger small', type: 'button', dataset: { testid: 'key-revoke' } }, 'Revoke');
          revoke?.addEventListener('click', async () => {
            if (!confirm(visibleText(`Revoke ${key.name}? Calls with it fail at once.`))) return;
            try { await api('DELETE', `/keys/${key.id}`); load(); } catch (err) { problemLine(status, err); }
          });
          return h('tr', { dataset: { testid: 'key-row', keyId: key.id } },
            h('td', {}, key.name), h('td', {}, h('code', {}, key.id)), h('td', {}, key.scopes.join(', ')),
            h('td', {}, when(key.created_at)), h('td', {}, when(key.last_used_at)),
            h('td', {}, key.revoked_at ? h('span', { class: 'badge result-denied' }, 'Revoked') : h('span', { class: 'badge result-success' }, 'Active')),
            h('td', {}, revoke));
        })))) : h('p', { class: 'muted' }, 'No API keys yet.'));
    } catch (err) {
      problemLine(body, err);
    }
  }
  create.addEventListener('click', () => {
    const name = h('input', { id: 'key-name', autofocus: true, maxlength: '200', dataset: { testid: 'key-name' } });
    const error = h('p', { class: 'form-error', role: 'alert' });
    const form = h('form', { class: 'export-form', novalidate: true },
      h('label', { for: 'key-name' }, 'Name'), name,
      h('fieldset', { class: 'checks' }, h('legend', {}, 'Scopes'),
        SCOPES.map(([value, label]) => h('label', { class: 'check' },
          h('input', { type: 'checkbox', name: 'scope', value, checked: value === 'events:write', dataset: { testid: `scope-${value}` } }), label))),
      error, h('div', { class: 'actions' }, h('button', { class: 'button primary', type: 'submit', dataset: { testid: 'key-submit' } }, 'Create key')));
    const modal = openModal({ title: 'Create API key', body: form, testid: 'key-dialog' });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const scopes = [...form.querySelectorAll('input[name=scope]:checked')].map((c) => c.value);
      if (!scopes.length) { error.textContent = 'Choose at least one scope.'; return; }
      try {
        const made = await api('POST', '/keys', { body: { name: name.value.trim(), scopes } });
        clear(form, h('p', {}, 'Copy the key now: it is not shown again.'),
          h('p', { class: 'copyable' }, h('code', { class: 'secret', dataset: { testid: 'key-secret' } }, made.secret),
            copyButton(made.secret, 'Copy the key')),
          h('div', { class: 'actions' }, h('button', { class: 'button primary', type: 'button', onclick: () => modal.close() }, 'Done')));
        load();
      } catch (err) {
        clear(error, err.message);
      }
    });
  });
  load();
}

export async function renderMembers(panel, session) {
  const add = h('button', { class: 'button primary', type: 'button', dataset: { testid: 'member-add' } }, 'Add member');
  const status = h('div', {});
  const body = h('div', { dataset: { testid: 'members' } }, h('p', { class: 'loading', role: 'status' }, 'Loading members…'));
  clear(panel, h('div', { class: 'section-heading' },
    h('div', {}, h('h2', {}, 'Members'), h('p', { class: 'muted' }, 'Owners, admins and auditors can view and export the audit log; members cannot.')),
    add), status, body);
  async function load() {
    try {
      const { data } = await api('GET', '/members');
      clear(body, h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Name', 'Email', 'Role', 'Added'].map((t) => h('th', { scope: 'col' }, t)),
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
        h('tbody', {}, data.map((member) => {
          const role = h('select', { 'aria-label': `Role of ${member.email}`, dataset: { testid: 'member-role' } },
            ROLES.map((r) => h('option', { value: r, selected: r === member.role }, r)));
          role.addEventListener('change', async () => {
            try { await api('PATCH', `/members/${member.id}`, { body: { role: role.value } }); clear(status); load(); } catch (err) { problemLine(status, err); role.value = member.role; }
          });
          const remove = member.id === session.user.id ? null
            : h('button', { class: 'button danger small', type: 'button', dataset: { testid: 'member-remove' } }, 'Remove');
          remove?.addEventListener('click', async () => {
            if (!confirm(visibleText(`Remove ${member.email} from ${session.org.name}?`))) return;
            try { await api('DELETE', `/members/${member.id}`); clear(status); load(); } catch (err) { problemLine(status, err); }
          });
          return h('tr', { dataset: { testid: 'member-row', email: member.email } },
            h('td', {}, member.name), h('td', {}, member.email), h('td', {}, role), h('td', {}, when(member.created_at)),
            h('td', {}, remove));
        })))));
    } catch (err) {
      problemLine(body, err);
    }
  }
  add.addEventListener('click', () => {
    const email = h('input', { id: 'member-email', type: 'email', required: true, autofocus: true, dataset: { testid: 'member-email' } });
    const name = h('input', { id: 'member-name', maxlength: '200' });
    const role = h('select', { id: 'member-new-role', dataset: { testid: 'member-new-role' } }, ROLES.map((r) => h('option', { value: r, selected: r === 'auditor' }, r)));
    const error = h('p', { class: 'form-error', role: 'alert' });
    const form = h('form', { class: 'export-form', novalidate: true },
      h('label', { for: 'member-email' }, 'Email'), email, h('label', { for: 'member-name' }, 'Name'), name,
      h('label', { for: 'member-new-role' }, 'Role'), role, error,
      h('div', { class: 'actions' }, h('button', { class: 'button primary', type: 'submit', dataset: { testid: 'member-submit' } }, 'Add member')));
    const modal = openModal({ title: 'Add member', body: form, testid: 'member-dialog' });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!email.checkValidity()) { error.textContent = 'Enter an email address.'; return; }
      try {
        const made = await api('POST', '/members', { body: { email: email.value.trim(), name: name.value.trim(), role: role.value } });
        clear(form, h('p', {}, `${made.member.email} can sign in with this password, shown once:`),
          h('p', { class: 'copyable' }, h('code', { class: 'secret', dataset: { testid: 'member-password' } }, made.password),
            copyButton(made.password, 'Copy the password')),
          h('div', { class: 'actions' }, h('button', { class: 'button primary', type: 'button', onclick: () => modal.close() }, 'Done')));
        load();
      } catch (err) {
        clear(error, err.message);
      }
    });
  });
  load();
}
