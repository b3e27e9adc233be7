// Byte and number helpers. Inside the core, bytes are 0x-prefixed lowercase hex strings (so equality is
// `===` and sorting hex of one length is sorting bytes) and every uint256 is a BigInt.

import { bytesToHex as nobleBytesToHex, hexToBytes as nobleHexToBytes } from '@noble/hashes/utils.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { MalformedError } from './errors.js';

export const MAX_UINT256 = (1n << 256n) - 1n;
export const ZERO_BYTES32 = '0x' + '00'.repeat(32);
export const ZERO_ADDRESS = '0x' + '00'.repeat(20);

const HEX = /^0x(?:[0-9a-fA-F]{2})*$/;

/** True for a 0x-hex string with an even number of digits (either case). */
export function isHex(value) {
  return typeof value === 'string' && HEX.test(value);
}

/** The canonical (lowercase) spelling of 0x-hex bytes; `length` fixes the byte count. */
export function normalizeHex(value, { field = null, length = null } = {}) {
  if (!isHex(value)) throw new MalformedError('must be 0x-prefixed hex with an even number of digits', { field });
  if (length !== null && value.length !== 2 + 2 * length) throw new MalformedError(`must be ${length} bytes`, { field });
  return value.toLowerCase();
}

/** True for canonical bytes: 0x-prefixed lowercase hex (of `length` bytes when given). */
export function isCanonicalHex(value, length = null) {
  return isHex(value) && value === value.toLowerCase() && (length === null || value.length === 2 + 2 * length);
}

export function toBytes(value, { field = null } = {}) {
  if (value instanceof Uint8Array) return value;
  return nobleHexToBytes(normalizeHex(value, { field }).slice(2));
}

export function toHex(bytes) {
  return '0x' + nobleBytesToHex(bytes);
}

export function byteLength(hex) {
  return (hex.length - 2) / 2;
}

export function concatHex(...parts) {
  return '0x' + parts.map((part) => (typeof part === 'string' ? part.slice(2) : nobleBytesToHex(part))).join('');
}

/** The 32-byte big-endian word of a uint256. */
export function uintWord(value) {
  return '0x' + value.toString(16).padStart(64, '0');
}


/** Keccak-256 (Ethereum's, not SHA3-256) of bytes given as hex or Uint8Array; returns hex. */
export function keccak256(data) {
  return toHex(keccak_256(toBytes(data)));
}

export function utf8(text) {
  return new TextEncoder().encode(text);
}

export function isUint256(value) {
  return typeof value === 'bigint' && value >= 0n && value <= MAX_UINT256;
}
