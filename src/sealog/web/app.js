// The console: sign-in, then Organization Management with its tabs. The view is a
// function of the URL (tab, filters, open event), so links reproduce it and Back works.

import { api, ApiError, setCsrfToken } from './api.js';
import { h, clear } from './dom.js';
import { renderAuditLog } from './auditlog.js';
import { renderKeys, renderMembers } from './admin.js';
import { renderStreams } from './streams.js';
import { renderSettings } from './settings.js';

const root = document.getElementById('app');
let session = null;
let currentView = null;

export function urlState() {
  return new URLSearchParams(location.search);
}

// Changes the URL (push: a new history entry; else replace) and re-renders what depends on it.
export function navigate(params, { push = true } = {}) {
  const search = params.toString();
  const url = `${location.pathname}${search ? `?${search}` : ''}`;
  if (url !== `${location.pathname}${location.search}`) {
    history[push ? 'pushState' : 'replaceState'](null, '', url);
  }
  route();
}

window.addEventListener('popstate', () => route());

async function boot() {
  try {
    session = await api('GET', '/session');
    setCsrfToken(session.csrf_token);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) {
      clear(root, h('p', { class: 'error-page', role: 'alert' }, err.message));
      return;
    }
    session = null;
  }
  route();
}

function route() {
  if (!session) {
    currentView = 'signin';
    renderSignIn();
    return;
  }
  if (!session.permissions.includes('events:read')) {
    currentView = 'noaccess';
    renderNoAccess();
    return;
  }
  const params = urlState();
  const isAdmin = session.permissions.includes('admin');
  let tab = params.get('tab') || 'audit';
  if (!isAdmin && tab !== 'audit') tab = 'audit';
  if (currentView !== `shell:${tab}`) {
    currentView = `shell:${tab}`;
    renderShell(tab, isAdmin);
  }
  const panel = document.getElementById('tab-panel');
  if (tab === 'audit') renderAuditLog(panel, session);
  else if (tab === 'keys') renderKeys(panel, session);
  else if (tab === 'streams') renderStreams(panel, session);
  else if (tab === 'settings') renderSettings(panel, session);
  else renderMembers(panel, session);
}

function header() {
  const signOut = h('button', { class: 'button secondary', type: 'button', dataset: { testid: 'sign-out' } }, 'Sign out');
  signOut.addEventListener('click', async () => {
    try { await api('DELETE', '/session'); } catch { /* signed out either way */ }
    session = null;
    setCsrfToken(null);
    currentView = null;
    history.pushState(null, '', '/');
    route();
  });
  return h('header', { class: 'topbar' },
    h('div', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, '◆'), 'Sealog'),
    h('div', { class: 'topbar-right' },
      h('span', { class: 'who', dataset: { testid: 'who' } },
        session.user.email, ' · ', session.user.role),
      signOut));
}

function renderShell(tab, isAdmin) {
  const tabs = [['audit', 'Audit Log']];
  if (isAdmin) tabs.push(['keys', 'API Keys'], ['members', 'Members'], ['streams', 'Streams'], ['settings', 'Settings']);
  const tabList = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Organization Management' },
    tabs.map(([id, label]) => {
      const button = h('button', { role: 'tab', type: 'button', id: `tab-${id}`,
                                   'aria-selected': String(id === tab), 'aria-controls': 'tab-panel',
                                   tabindex: id === tab ? '0' : '-1', dataset: { testid: `tab-${id}` } }, label);
      button.addEventListener('click', () => navigate(new URLSearchParams(id === 'audit' ? '' : `tab=${id}`)));
      button.addEventListener('keydown', (event) => {
        const i = tabs.findIndex(([t]) => t === id);
        const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
        if (step) {
          const next = tabs[(i + step + tabs.length) % tabs.length][0];
          navigate(new URLSearchParams(next === 'audit' ? '' : `tab=${next}`));
          document.getElementById(`tab-${next}`)?.focus();
        }
      });
      return button;
    }));
  clear(root,
    header(),
    h('main', { id: 'main', class: 'page' },
      h('div', { class: 'page-heading' },
        h('p', { class: 'eyebrow', dataset: { testid: 'org-name' } }, session.org.name),
        h('h1', {}, 'Organization Management')),
      tabList,
      h('section', { id: 'tab-panel', role: 'tabpanel', 'aria-labelledby': `tab-${tab}`, class: 'panel' })));
}

// The org of the last sign-in on this browser, so the form need not ask for it again.
const ORG_STORAGE_KEY = 'sealog.org';

function rememberedOrg() {
  try { return localStorage.getItem(ORG_STORAGE_KEY) || ''; } catch { return ''; }
}

function rememberOrg(orgId) {
  try { localStorage.setItem(ORG_STORAGE_KEY, orgId); } catch { /* storage off: ask next time */ }
}

function renderSignIn() {
  // Accounts are per org: a sign-in names its org (a link may give it as ?org=).
  const org = h('input', { id: 'org', type: 'text', name: 'org', required: true, autocapitalize: 'none',
                           spellcheck: 'false', 'aria-describedby': 'org-hint', dataset: { testid: 'sign-in-org' } });
  org.value = urlState().get('org') || rememberedOrg();
  const email = h('input', { id: 'email', type: 'email', name: 'email', autocomplete: 'username', required: true,
                             dataset: { testid: 'email' } });
  const password = h('input', { id: 'password', type: 'password', name: 'password', autocomplete: 'current-password',
                                required: true, dataset: { testid: 'password' } });
  const error = h('p', { class: 'form-error', role: 'alert', dataset: { testid: 'sign-in-error' } });
  const submit = h('button', { class: 'button primary wide', type: 'submit', dataset: { testid: 'sign-in' } }, 'Sign in');
  const form = h('form', { class: 'signin-card', novalidate: true },
    h('div', { class: 'brand big' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, '◆'), 'Sealog'),
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'The audit log of your organization’s agents and users.'),
    h('label', { for: 'org' }, 'Organization'),
    h('p', { id: 'org-hint', class: 'muted field-hint' }, 'Your organization’s id, such as acme.'), org,
    h('label', { for: 'email' }, 'Email'), email,
    h('label', { for: 'password' }, 'Password'), password,
    error, submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!org.value.trim() || !email.value || !password.value) {
      error.textContent = 'Enter your organization, email and password.';
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      session = await api('POST', '/session',
                          { body: { org_id: org.value.trim(), email: email.value, password: password.value } });
      setCsrfToken(session.csrf_token);
      rememberOrg(session.org.id);
      currentView = null;
      const params = urlState();
      if (params.has('org')) {  // it named whom to sign in as; the view that follows has no use for it
        params.delete('org');
        navigate(params, { push: false });
      } else {
        route();
      }
    } catch (err) {
      submit.disabled = false;
      submit.textContent = 'Sign in';
      clear(error, err.message);
      password.select();
    }
  });
  clear(root, h('main', { id: 'main', class: 'signin-page' }, form));
  (org.value ? email : org).focus();
}

function renderNoAccess() {
  const signOut = h('button', { class: 'button secondary', type: 'button' }, 'Sign out');
  signOut.addEventListener('click', async () => {
    try { await api('DELETE', '/session'); } catch { /* signed out either way */ }
    session = null;
    route();
  });
  clear(root, h('main', { id: 'main', class: 'signin-page' },
    h('div', { class: 'signin-card', dataset: { testid: 'no-access' } },
      h('h1', {}, 'No access'),
      h('p', {}, 'You are signed in as ', session.user.email, ` (${session.user.role}). `,
        'Only owners, admins and auditors may view the audit log of ', session.org.name, '.'),
      h('p', { class: 'muted' }, 'Ask an admin of your organization for the auditor role.'),
      signOut)));
}

boot();
