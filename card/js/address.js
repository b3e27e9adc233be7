// EIP-55 addresses. Inside the core an address is always its checksummed string; `normalizeAddress`
// is the one place that accepts other spellings (any single case, or a valid checksum).

import { keccak_256 } from '@noble/hashes/sha3.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { MalformedError } from './errors.js';
import { utf8 } from './bytes.js';

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** The EIP-55 spelling of a 20-byte address given as 0x-hex of any case. */
export function checksumAddress(hex) {
  if (typeof hex !== 'string' || !ADDRESS.test(hex)) throw new MalformedError('an address is 20 bytes of 0x-hex');
  const lower = hex.slice(2).toLowerCase();
  const digest = bytesToHex(keccak_256(utf8(lower)));
  let out = '0x';
  for (let i = 0; i < 40; i++) out += lower[i] > '9' && digest[i] >= '8' ? lower[i].toUpperCase() : lower[i];
  return out;
}

function normalized(value) {
  if (typeof value !== 'string' || !ADDRESS.test(value)) return null;
  const checksummed = checksumAddress(value);
  const body = value.slice(2);
  if (body === body.toLowerCase() || body === body.toUpperCase() || value === checksummed) return checksummed;
  return null;
}

/** The checksummed form of an address; `malformed` for anything else (a bad checksum included). */
export function normalizeAddress(value, { field = 'address' } = {}) {
  if (typeof value !== 'string') throw new MalformedError('an address must be a 0x-prefixed hex string', { field });
  const out = normalized(value);
  if (out === null) {
    throw new MalformedError(`not an address or a bad EIP-55 checksum: ${JSON.stringify(value.slice(0, 50))}`, { field });
  }
  return out;
}

/** True when `value` is an address already in its checksummed spelling. */
export function isChecksumAddress(value) {
  return normalized(value) === value;
}
