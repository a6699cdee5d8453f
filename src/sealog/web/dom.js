// Building DOM nodes without innerHTML (so no text is ever parsed as markup), and modals.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), ' +
  'textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

// A modal dialog: focus moves in and is trapped there; Escape or onClose closes it and
// focus returns to what had it before.
export function openModal({ title, body, testid, wide = false, onClose }) {
  const opener = document.activeElement;
  const titleId = `modal-title-${Math.random().toString(36).slice(2)}`;
  const close = h('button', { class: 'icon-button', type: 'button', 'aria-label': 'Close',
                              dataset: { testid: 'modal-close' } }, '✕');
  const dialog = h('div', { class: `modal${wide ? ' modal-wide' : ''}`, role: 'dialog',
                            'aria-modal': 'true', 'aria-labelledby': titleId,
                            dataset: { testid } },
    h('div', { class: 'modal-header' }, h('h2', { id: titleId }, title), close),
    h('div', { class: 'modal-body' }, body));
  const backdrop = h('div', { class: 'backdrop' }, dialog);
  let closed = false;
  function dismiss(reason) {
    if (closed) return;
    closed = true;
    document.removeEventListener('keydown', onKey, true);
    backdrop.remove();
    if (opener && opener.isConnected) opener.focus();
    if (onClose) onClose(reason);
  }
  function onKey(event) {
    if (event.key === 'Escape') {
      event.preventDefault();
      dismiss('escape');
    } else if (event.key === 'Tab') {
      const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((n) => n.offsetParent !== null);
      if (!items.length) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
        event.preventDefault();
        first.focus();
      }
    }
  }
  close.addEventListener('click', () => dismiss('button'));
  backdrop.addEventListener('mousedown', (event) => { if (event.target === backdrop) dismiss('backdrop'); });
  document.addEventListener('keydown', onKey, true);
  document.body.append(backdrop);
  (dialog.querySelector('[autofocus]') || close).focus();
  return { dialog, close: () => dismiss('code') };
}

export async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    flash(button, 'Copied');
  } catch {
    flash(button, 'Copy failed');
  }
}

function flash(button, label) {
  const before = button.getAttribute('aria-label');
  button.dataset.state = label;
  button.setAttribute('aria-label', label);
  setTimeout(() => { button.setAttribute('aria-label', before || 'Copy'); delete button.dataset.state; }, 1500);
}

export function copyButton(text, label) {
  const button = h('button', { class: 'icon-button copy', type: 'button', 'aria-label': label,
                               title: label, dataset: { testid: 'copy' } }, svgIcon(COPY_PATH));
  button.addEventListener('click', () => copyText(text, button));
  return button;
}

const COPY_PATH = 'M16 1H4a2 2 0 0 0-2 2v14h2V3h12V1zm3 4H8a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h11a2 2 0 0 0 2-2V7a2 2 0 0 0-2-2zm0 16H8V7h11v14z';

export function svgIcon(d, size = 16) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', d);
  path.setAttribute('fill', 'currentColor');
  svg.append(path);
  return svg;
}
