"""Merkle roots and proofs follow docs/protocol.md and verify as OpenZeppelin `MerkleProof` does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connext.protocol import merkle
from connext.protocol.encoding import ZERO_BYTES32, keccak256
from connext.protocol.errors import MalformedError
from tests.protocol.strategies import PROTOCOL_SETTINGS


def leaves(count: int) -> list[bytes]:
    return [keccak256(bytes([i])) for i in range(count)]


def test_no_leaves_give_the_zero_root() -> None:
    assert merkle.merkle_root([]) == ZERO_BYTES32


def test_one_leaf_is_its_own_root_with_an_empty_proof() -> None:
    (leaf,) = leaves(1)
    assert merkle.merkle_root([leaf]) == leaf
    assert merkle.merkle_proof([leaf], leaf) == []


def test_three_leaves_pair_the_first_two_and_lift_the_third() -> None:
    a, b, c = sorted(leaves(3))
    expected = merkle.hash_pair(merkle.hash_pair(a, b), c)
    assert merkle.merkle_root([c, a, b]) == expected
    assert merkle.merkle_proof([a, b, c], c) == [merkle.hash_pair(a, b)]
    assert merkle.merkle_proof([a, b, c], a) == [b, c]


def test_hash_pair_is_commutative_keccak_of_sorted_pair() -> None:
    a, b = sorted(leaves(2))
    assert merkle.hash_pair(a, b) == merkle.hash_pair(b, a) == keccak256(a + b)


@pytest.mark.parametrize("count", range(1, 18))
def test_every_leaf_proves_against_the_root(count: int) -> None:
    tree = leaves(count)
    root = merkle.merkle_root(tree)
    for leaf in tree:
        proof = merkle.merkle_proof(tree, leaf)
        assert merkle.verify_merkle_proof(proof, root, leaf)
        assert not merkle.verify_merkle_proof(proof, root, keccak256(leaf))


@PROTOCOL_SETTINGS
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=20, unique=True), st.data())
def test_root_ignores_input_order_and_proofs_verify(tree: list[bytes], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(tree))
    root = merkle.merkle_root(tree)
    assert merkle.merkle_root(shuffled) == root
    leaf = data.draw(st.sampled_from(tree))
    assert merkle.verify_merkle_proof(merkle.merkle_proof(shuffled, leaf), root, leaf)


def test_proof_of_a_missing_leaf_is_refused() -> None:
    with pytest.raises(MalformedError):
        merkle.merkle_proof(leaves(2), ZERO_BYTES32)


def test_leaves_must_be_32_bytes() -> None:
    with pytest.raises(MalformedError):
        merkle.merkle_root([b"short"])
