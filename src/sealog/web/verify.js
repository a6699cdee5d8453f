// Checking one event in the browser, trusting nothing but the math: its leaf hash from
// its own JSON (RFC 8785 + SHA-256), its inclusion proof (RFC 9162 §2.1.3.2) against
// the latest checkpoint, and that checkpoint's Ed25519 signature (C2SP signed note).

import { api } from './api.js';

// RFC 8785: ECMAScript number and string forms, object keys sorted by UTF-16 code units.
export function canonicalJson(value) {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('not a JSON number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
}

async function sha256(...parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const joined = new Uint8Array(total);
  let at = 0;
  for (const part of parts) { joined.set(part, at); at += part.length; }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', joined));
}

const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);

export function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function fromHex(text) {
  return Uint8Array.from(text.match(/../g) || [], (pair) => parseInt(pair, 16));
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export async function leafHash(event) {
  const copy = { ...event };
  delete copy.leaf_hash;
  return sha256(LEAF, new TextEncoder().encode(canonicalJson(copy)));
}

// The root an inclusion proof leads to, or null if the proof has the wrong shape.
export async function rootFromInclusionProof(index, treeSize, leaf, proof) {
  if (index >= treeSize) return null;
  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(NODE, p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await sha256(NODE, r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

export function parseCheckpoint(text) {
  const split = text.indexOf('\n\n');
  if (split < 0) throw new Error('the checkpoint is not a signed note');
  const body = text.slice(0, split + 1);
  const [origin, size, root] = body.split('\n');
  const signatures = text.slice(split + 2).split('\n').filter(Boolean).map((line) => {
    const match = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!match) throw new Error('a signature line of the checkpoint is malformed');
    return { name: match[1], blob: fromBase64(match[2]) };
  });
  return { body, origin, size: Number(size), root: fromBase64(root), signatures };
}

// true, false, or null when this browser cannot check Ed25519 signatures.
export async function signatureValid(checkpoint, verifierKey) {
  // name+hex8+base64: the base64 part may itself hold '+'.
  const [name, keyHex, ...rest] = verifierKey.trim().split('+');
  const keyB64 = rest.join('+');
  const keyBytes = fromBase64(keyB64);
  if (keyBytes[0] !== 1) return false;
  const signature = checkpoint.signatures.find((s) => s.name === name && hex(s.blob.slice(0, 4)) === keyHex);
  if (!signature) return false;
  let key;
  try {
    key = await crypto.subtle.importKey('raw', keyBytes.slice(1), { name: 'Ed25519' }, false, ['verify']);
  } catch (err) {
    if (err.name === 'NotSupportedError') return null;
    return false;
  }
  return crypto.subtle.verify({ name: 'Ed25519' }, key, signature.blob.slice(4),
                              new TextEncoder().encode(checkpoint.body));
}

// { ok, size, message } for the event, checked against the latest signed checkpoint.
export async function verifyEvent(event) {
  // An erased event's content is gone: its stored leaf hash is what the proof can show.
  const leaf = event.erased ? fromHex(event.leaf_hash) : await leafHash(event);
  if (hex(leaf) !== event.leaf_hash) {
    return { ok: false, message: `The event's contents do not match its leaf hash (recomputed ${hex(leaf).slice(0, 16)}…).` };
  }
  const [note, verifierKey] = await Promise.all([
    api('GET', '/log/checkpoint', { text: true }), api('GET', '/log/key', { text: true })]);
  const checkpoint = parseCheckpoint(note);
  if (event.index >= checkpoint.size) {
    return { ok: false, pending: true, message: `Not yet in a checkpoint (the latest has size ${checkpoint.size}).` };
  }
  const signed = await signatureValid(checkpoint, verifierKey);
  if (signed === false) {
    return { ok: false, message: 'The checkpoint signature does not verify with the log key.' };
  }
  const proof = await api('GET', '/log/proof/inclusion', { query: { index: event.index, tree_size: checkpoint.size } });
  const root = await rootFromInclusionProof(event.index, checkpoint.size, leaf, proof.hashes.map(fromBase64));
  if (!root || !equal(root, checkpoint.root)) {
    return { ok: false, message: `The inclusion proof does not lead to the root of checkpoint ${checkpoint.size}.` };
  }
  return { ok: true, size: checkpoint.size, signatureChecked: signed === true,
           keyName: verifierKey.split('+')[0],
           message: event.erased
             ? `Erased by the request at index ${event.erased.request_index}; its place and leaf hash are verified in checkpoint of size ${checkpoint.size.toLocaleString('en-US')}`
             : `Verified in checkpoint of size ${checkpoint.size.toLocaleString('en-US')}` };
}
