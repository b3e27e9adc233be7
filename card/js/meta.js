// Transfer meta: off-chain details that travel with a `create` update (the recipient of a routed
// payment, the preimage encrypted to it, a link's expiry, a memo). The transfer commits to them by
// `metaHash = keccak256(canonical JSON)`; no meta at all hashes to zero. The canonical form is Python's
// `json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` (connext/protocol/meta.py).
// Numbers must be safe integers: a float would print differently in JavaScript and Python.

import { MalformedError } from './errors.js';
import { ZERO_BYTES32, keccak256, utf8 } from './bytes.js';

export const MAX_META_BYTES = 4096;

// Python sorts keys by code point; JavaScript's default sort compares UTF-16 units.
function byCodePoint(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

function canonical(value, where) {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') {
    if (typeof value === 'string' && !value.isWellFormed()) throw new MalformedError('meta text must be valid Unicode', { field: where });
    return JSON.stringify(value);
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new MalformedError('meta numbers must be safe integers', { field: where });
    return String(value);
  }
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return `[${value.map((item, i) => canonical(item, `${where}[${i}]`)).join(',')}]`;
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const keys = Object.keys(value).sort(byCodePoint);
    return `{${keys.map((key) => `${canonical(key, where)}:${canonical(value[key], `${where}.${key}`)}`).join(',')}}`;
  }
  throw new MalformedError('meta must be plain JSON', { field: where });
}

/** Sorted keys, no spaces, UTF-8: the one byte form both sides hash (Uint8Array). */
export function canonicalMeta(meta) {
  const encoded = utf8(canonical(meta, 'meta'));
  if (encoded.length > MAX_META_BYTES) throw new MalformedError(`meta is limited to ${MAX_META_BYTES} bytes`, { field: 'meta' });
  return encoded;
}

export function metaHash(meta) {
  if (meta === null || meta === undefined || (typeof meta === 'object' && !Array.isArray(meta) && !Object.keys(meta).length)) {
    return ZERO_BYTES32;
  }
  return keccak256(canonicalMeta(meta));
}
