// Solidity's standard ABI encoding (`abi.encode`) through micro-eth-signer, with the core's value
// conventions: bytes as lowercase 0x-hex, uints as BigInt, addresses checksummed.
//
// micro-eth-signer exposes its ABI coder through contract methods; a method's arguments are encoded
// after a 4-byte selector, and its outputs are decoded without one, so one pseudo-method with the same
// types as inputs and outputs is an `abi.encode` / `abi.decode` pair.

import { createContract } from 'micro-eth-signer/abi.js';
import { toBytes, toHex } from './bytes.js';
import { checksumAddress } from './address.js';

const ARRAY = /^(.*)\[(\d*)\]$/;

function component(type) {
  if (typeof type === 'string') return { type };
  return { type: 'tuple', components: type.map(component) };
}

// Core values -> micro-eth-signer values, and back.
function toLib(type, value) {
  if (Array.isArray(type)) return type.map((inner, i) => toLib(inner, value[i]));
  const array = ARRAY.exec(type);
  if (array) return value.map((item) => toLib(array[1], item));
  if (type === 'bytes' || type.startsWith('bytes')) return toBytes(value);
  return value;
}

function fromLib(type, value) {
  if (Array.isArray(type)) return type.map((inner, i) => fromLib(inner, value[i]));
  const array = ARRAY.exec(type);
  if (array) return value.map((item) => fromLib(array[1], item));
  if (type.startsWith('bytes')) return toHex(value);
  if (type === 'address') return checksumAddress(value);
  return value;
}

/**
 * `{ encode(values) -> hex, decode(hex) -> values }` for a list of ABI types; a tuple is a nested list.
 * `decode` throws on bytes that do not decode; callers that need canonical input re-encode and compare.
 */
export function abiCodec(types) {
  const components = types.map(component);
  const method = createContract([{ type: 'function', name: 'f', inputs: components, outputs: components }]).f;
  const single = types.length === 1;
  return Object.freeze({
    encode(values) {
      const lib = toLib(types, values);
      return toHex(method.encodeInput(single ? lib[0] : lib).subarray(4));
    },
    decode(hex) {
      const out = method.decodeOutput(toBytes(hex));
      return fromLib(types, single ? [out] : out);
    },
  });
}
