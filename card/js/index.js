// The card's protocol core: a JavaScript mirror of connext/protocol (pure; no DOM, no I/O, no clock, no
// randomness: callers pass time, chain readings, keys and random bytes in). The card re-derives every
// state from the update with `applyUpdate` / `validateUpdate` and signs only what it derived itself.

export * from './errors.js';
export {
  MAX_UINT256,
  ZERO_ADDRESS,
  ZERO_BYTES32,
  isCanonicalHex,
  isHex,
  keccak256,
  normalizeHex,
  toBytes,
  toHex,
  utf8,
} from './bytes.js';
export { checksumAddress, isChecksumAddress, normalizeAddress } from './address.js';
export { abiCodec } from './abi.js';
export * from './encoding.js';
export * from './signing.js';
export { hashPair, merkleProof, merkleRoot, verifyMerkleProof } from './merkle.js';
export * from './types.js';
export * as definitions from './definitions.js';
export { EMPTY_PREIMAGE_HASH } from './definitions.js';
export { checkState, checkTransition, equalValues } from './invariants.js';
export { MAX_TIMEOUT, UPDATE_FIELDS, applyUpdate, checkUpdateFields } from './updates.js';
export { countersign, initiateUpdate, validateUpdate } from './validation.js';
export * from './serialization.js';
export * as ecies from './ecies.js';
export * from './auth.js';
export { channelAddress, channelInitCode, channelSalt } from './channel.js';
export * from './policy.js';
export { MAX_META_BYTES, canonicalMeta, metaHash } from './meta.js';
