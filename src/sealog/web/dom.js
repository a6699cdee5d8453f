// Building DOM nodes without innerHTML (so no text is ever parsed as markup), and modals.

// Characters that change how text around them is shown while being invisible: the bidi
// controls (U+202E makes "invoice\u202Egnp.exe" read "invoiceexe.png"), marks and
// isolates, zero-width spaces, and U+2028/U+2029, which break lines. ZWJ and ZWNJ are
// shown only beside ASCII: between other characters emoji and scripts need them.
const HIDDEN = /[\u061C\u200B\u200E\u200F\u2028-\u202E\u2060\u2066-\u2069\uFEFF]|(?<![^\x00-\x7F])[\u200C\u200D]|[\u200C\u200D](?![^\x00-\x7F])/g;
const HIDDEN_NAMES = {
  '\u061C': 'ARABIC LETTER MARK', '\u200B': 'ZERO WIDTH SPACE', '\u200C': 'ZERO WIDTH NON-JOINER',
  '\u200D': 'ZERO WIDTH JOINER', '\u200E': 'LEFT-TO-RIGHT MARK', '\u200F': 'RIGHT-TO-LEFT MARK',
  '\u2028': 'LINE SEPARATOR', '\u2029': 'PARAGRAPH SEPARATOR',
  '\u202A': 'LEFT-TO-RIGHT EMBEDDING', '\u202B': 'RIGHT-TO-LEFT EMBEDDING',
  '\u202C': 'POP DIRECTIONAL FORMATTING', '\u202D': 'LEFT-TO-RIGHT OVERRIDE',
  '\u202E': 'RIGHT-TO-LEFT OVERRIDE', '\u2060': 'WORD JOINER', '\u2066': 'LEFT-TO-RIGHT ISOLATE',
  '\u2067': 'RIGHT-TO-LEFT ISOLATE', '\u2068': 'FIRST STRONG ISOLATE',
  '\u2069': 'POP DIRECTIONAL ISOLATE', '\uFEFF': 'ZERO WIDTH NO-BREAK SPACE',
};
const PAST_ASCII = /[^\x00-\x7F]/;

function codePoint(char) {
  return `U+${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
}

// text with each hidden character written out as ⟨U+202E⟩: for attributes and dialogs,
// which cannot hold markup.
export function visibleText(text) {
  return String(text).replace(HIDDEN, (char) => `⟨${codePoint(char)}⟩`);
}

// The node that shows a string in the page. Text past ASCII is isolated in a <bdi>, so
// that its direction cannot reorder what stands beside it, and each hidden character in
// it is shown as a marked ⟨U+202E⟩; plain ASCII is a bare text node.
export function textNode(text) {
  if (!PAST_ASCII.test(text)) return document.createTextNode(text);
  const isolated = document.createElement('bdi');
  let last = 0;
  for (const match of text.matchAll(HIDDEN)) {
    if (match.index > last) isolated.append(text.slice(last, match.index));
    const mark = document.createElement('span');
    mark.className = 'hidden-char';
    mark.title = HIDDEN_NAMES[match[0]];
    mark.textContent = `⟨${codePoint(match[0])}⟩`;
    isolated.append(mark);
    last = match.index + match[0].length;
  }
  if (last < text.length) isolated.append(text.slice(last));
  return isolated;
}

// Attributes whose text the browser shows (a tooltip) or reads out.
const SHOWN_ATTRIBUTES = new Set(['title', 'aria-label', 'placeholder', 'alt']);

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, SHOWN_ATTRIBUTES.has(key) ? visibleText(value) : String(value));
  }
  append(node, children);
  return node;
}

// Elements that show only their text (no <bdi> inside): they get the written-out form.
const TEXT_ONLY = new Set(['OPTION', 'TEXTAREA', 'TITLE']);

function append(node, children) {
  const textOnly = TEXT_ONLY.has(node.tagName);
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    if (child instanceof Node) node.append(child);
    else node.append(textOnly ? visibleText(child) : textNode(String(child)));
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
