// The channel's address, computed without a chain (docs/protocol.md, "On chain"): CREATE2 by the
// factory, salt keccak256(abi.encode(node, user, chainId)), init code the EIP-1167 clone of the
// mastercopy with the immutable args abi.encodePacked(node, user). The card computes its own channel's
// address from the factory and mastercopy the node publishes, never taking the address itself on trust.

import { abiCodec } from './abi.js';
import { concatHex, keccak256, uintWord } from './bytes.js';
import { checksumAddress, normalizeAddress } from './address.js';

const CLONE_PREFIX = '0x3d81600a3d39f3363d3d373d3d3d363d73';
const CLONE_SUFFIX = '0x5af43d82803e903d91602b57fd5bf3';
const CLONE_RUNTIME_LENGTH = 0x2dn + 0x28n; // proxy code + abi.encodePacked(node, user)
const saltCodec = abiCodec(['address', 'address', 'uint256']);

export function channelSalt(node, user, chainId) {
  return keccak256(saltCodec.encode([node, user, chainId]));
}

export function channelInitCode(mastercopy, node, user) {
  return concatHex('0x61', '0x' + uintWord(CLONE_RUNTIME_LENGTH).slice(-4), CLONE_PREFIX, mastercopy, CLONE_SUFFIX, node, user).toLowerCase();
}

/** The checksummed address of the (node, user) channel on `chainId`. */
export function channelAddress({ factory, mastercopy, node, user, chainId }) {
  const [f, m, n, u] = [
    normalizeAddress(factory, { field: 'factory' }),
    normalizeAddress(mastercopy, { field: 'mastercopy' }),
    normalizeAddress(node, { field: 'node' }),
    normalizeAddress(user, { field: 'user' }),
  ];
  const digest = keccak256(concatHex('0xff', f, channelSalt(n, u, chainId), keccak256(channelInitCode(m, n, u))));
  return checksumAddress('0x' + digest.slice(-40));
}
