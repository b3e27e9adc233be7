// Merkle root and proofs of a channel's active transfers, compatible with OpenZeppelin `MerkleProof`.
// Leaves are transfer hashes sorted ascending (as uint256, which for lowercase hex of one length is the
// string order); each level pairs neighbours with OpenZeppelin's commutative `hashPair`; an odd last
// node moves up unchanged. No leaves give the zero root; one leaf is its own root (empty proof).

import { MalformedError } from './errors.js';
import { ZERO_BYTES32, concatHex, isCanonicalHex, keccak256, normalizeHex } from './bytes.js';

/** OpenZeppelin `Hashes.commutativeKeccak256`: keccak256 of the smaller then the larger. */
export function hashPair(a, b) {
  return a < b ? keccak256(concatHex(a, b)) : keccak256(concatHex(b, a));
}

function nextLevel(level) {
  const paired = [];
  for (let i = 0; i + 1 < level.length; i += 2) paired.push(hashPair(level[i], level[i + 1]));
  if (level.length % 2) paired.push(level[level.length - 1]);
  return paired;
}

function sortedLeaves(leaves) {
  const out = [...leaves].map((leaf) => {
    if (!isCanonicalHex(leaf)) leaf = normalizeHex(leaf, { field: 'leaf' });
    if (leaf.length !== 66) throw new MalformedError('a merkle leaf is 32 bytes', { field: 'leaf' });
    return leaf;
  });
  return out.sort();
}

/** Root over `leaves` (32-byte hex, any order; they are sorted first). */
export function merkleRoot(leaves) {
  let level = sortedLeaves(leaves);
  if (!level.length) return ZERO_BYTES32;
  while (level.length > 1) level = nextLevel(level);
  return level[0];
}

/** Siblings of `leaf` from the bottom up, for `MerkleProof.verify(proof, root, leaf)`. */
export function merkleProof(leaves, leaf) {
  let level = sortedLeaves(leaves);
  let index = level.indexOf(typeof leaf === 'string' ? leaf.toLowerCase() : leaf);
  if (index < 0) throw new MalformedError('the leaf is not in the tree', { field: 'leaf' });
  const proof = [];
  while (level.length > 1) {
    const sibling = index ^ 1;
    if (sibling < level.length) proof.push(level[sibling]);
    level = nextLevel(level);
    index = Math.floor(index / 2);
  }
  return proof;
}

/** OpenZeppelin `MerkleProof.verify`. */
export function verifyMerkleProof(proof, root, leaf) {
  let computed = leaf.toLowerCase();
  for (const sibling of proof) computed = hashPair(computed, sibling.toLowerCase());
  return computed === root.toLowerCase();
}
