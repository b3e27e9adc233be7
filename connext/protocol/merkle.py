"""Merkle root and proofs of a channel's active transfers, compatible with OpenZeppelin `MerkleProof`.

Leaves are transfer hashes sorted ascending (as uint256, which for 32-byte big-endian strings is the
byte order); each level pairs neighbours with OpenZeppelin's commutative `hashPair`; an odd last node
moves up unchanged. No leaves give the zero root; one leaf is its own root (empty proof).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from connext.protocol.encoding import ZERO_BYTES32, keccak256
from connext.protocol.errors import MalformedError


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin `Hashes.commutativeKeccak256`: keccak256 of the smaller then the larger."""
    return keccak256(a + b if a < b else b + a)


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    paired = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def _sorted_leaves(leaves: Iterable[bytes]) -> list[bytes]:
    ordered = sorted(leaves)
    for leaf in ordered:
        if len(leaf) != 32:
            raise MalformedError("a merkle leaf is 32 bytes", field="leaf")
    return ordered


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """Root over `leaves` in any order (they are sorted first)."""
    level = _sorted_leaves(leaves)
    if not level:
        return ZERO_BYTES32
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_proof(leaves: Iterable[bytes], leaf: bytes) -> list[bytes]:
    """Siblings of `leaf` from the bottom up, for `MerkleProof.verify(proof, root, leaf)`."""
    level = _sorted_leaves(leaves)
    try:
        index = level.index(leaf)
    except ValueError:
        raise MalformedError("the leaf is not in the tree", field="leaf") from None
    proof: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        level = _next_level(level)
        index //= 2
    return proof


def verify_merkle_proof(proof: Iterable[bytes], root: bytes, leaf: bytes) -> bool:
    """OpenZeppelin `MerkleProof.verify`."""
    computed = leaf
    for sibling in proof:
        computed = hash_pair(computed, sibling)
    return computed == root
