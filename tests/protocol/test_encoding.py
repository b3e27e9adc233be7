"""The hand-written ABI encoders give exactly `eth_abi.encode` of the documented type strings."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from connext.chain import disputes
from connext.protocol import encoding
from connext.protocol.errors import MalformedError
from connext.protocol.types import ChannelState, TransferState, WithdrawCommitment
from tests.protocol.strategies import (
    PROTOCOL_SETTINGS,
    addresses,
    bytes32,
    channel_states,
    transfer_states,
    uint256,
    withdraw_commitments,
)


def reference_state_encoding(state: ChannelState) -> bytes:
    """eth_abi's encoding of the struct web3 sends the contract: the hand encoder must match it."""
    struct = disputes.channel_state_abi(state)
    return abi_encode(list(encoding.STATE_HASH_TYPES), [encoding.CHANNEL_STATE_TAG, struct])


def reference_transfer_encoding(transfer: TransferState) -> bytes:
    struct = disputes.transfer_state_abi(transfer)
    assert struct[9] == keccak(transfer.encoded_state)  # initialStateHash, computed here independently
    return abi_encode(list(encoding.TRANSFER_HASH_TYPES), [encoding.TRANSFER_STATE_TAG, struct])


@pytest.mark.parametrize(
    ("tag", "text"),
    [
        (encoding.CHANNEL_STATE_TAG, "connext-py/ChannelState/v1"),
        (encoding.TRANSFER_STATE_TAG, "connext-py/TransferState/v1"),
        (encoding.WITHDRAW_TAG, "connext-py/Withdraw/v1"),
        (encoding.RESOLVER_TAG, "connext-py/Resolver/v1"),
        (encoding.TRANSFER_ID_TAG, "connext-py/TransferId/v1"),
    ],
)
def test_domain_tags_are_keccak_of_their_names(tag: bytes, text: str) -> None:
    assert tag == keccak(text=text)


def test_keccak_is_ethereums_keccak() -> None:
    assert encoding.keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_the_fast_keccak_is_in_use() -> None:
    assert encoding.keccak256 is not encoding.keccak256_reference


@PROTOCOL_SETTINGS
@given(st.one_of(st.binary(max_size=600), st.integers(0, 5).map(lambda n: bytes(136 * n))))
def test_fast_keccak_equals_pycryptodome_and_eth_utils(data: bytes) -> None:
    assert encoding.keccak256(data) == encoding.keccak256_reference(data) == keccak(data)


def test_fast_keccak_is_thread_safe() -> None:
    inputs = [bytes([i]) * (i * 7) for i in range(64)]
    expected = [keccak(data) for data in inputs]

    def work(_: int) -> list[bytes]:
        return [encoding.keccak256(data) for data in inputs * 20]

    with ThreadPoolExecutor(max_workers=8) as pool:
        for result in pool.map(work, range(16)):
            assert result == expected * 20


@PROTOCOL_SETTINGS
@given(channel_states())
def test_channel_state_encoding_equals_eth_abi(state: ChannelState) -> None:
    assert encoding.encode_channel_state(state) == reference_state_encoding(state)
    assert state.state_hash == keccak(reference_state_encoding(state))


@PROTOCOL_SETTINGS
@given(transfer_states())
def test_transfer_encoding_equals_eth_abi(transfer: TransferState) -> None:
    assert encoding.encode_transfer_state(transfer) == reference_transfer_encoding(transfer)
    assert transfer.transfer_hash == keccak(reference_transfer_encoding(transfer))


@PROTOCOL_SETTINGS
@given(addresses, bytes32, uint256)
def test_transfer_id_equals_eth_abi(channel: str, payment_id: bytes, nonce: int) -> None:
    expected = keccak(
        abi_encode(list(encoding.TRANSFER_ID_TYPES), [encoding.TRANSFER_ID_TAG, channel, payment_id, nonce])
    )
    assert encoding.transfer_id(channel, payment_id, nonce) == expected


@PROTOCOL_SETTINGS
@given(withdraw_commitments)
def test_withdraw_hash_equals_eth_abi(commitment: WithdrawCommitment) -> None:
    values = [
        encoding.WITHDRAW_TAG,
        commitment.chain_id,
        commitment.channel_address,
        commitment.asset_id,
        commitment.recipient,
        commitment.amount,
        commitment.nonce,
    ]
    assert commitment.withdraw_hash == keccak(abi_encode(list(encoding.WITHDRAW_HASH_TYPES), values))


@PROTOCOL_SETTINGS
@given(uint256, bytes32, st.binary(max_size=200))
def test_resolver_hash_equals_eth_abi(chain_id: int, transfer_hash: bytes, resolver: bytes) -> None:
    values = [encoding.RESOLVER_TAG, chain_id, transfer_hash, keccak(resolver)]
    expected = keccak(abi_encode(list(encoding.RESOLVER_HASH_TYPES), values))
    assert encoding.resolver_hash(chain_id, transfer_hash, resolver) == expected


@PROTOCOL_SETTINGS
@given(st.binary(min_size=20, max_size=20))
def test_checksum_matches_eth_utils(raw: bytes) -> None:
    assert encoding.checksum_address(raw) == to_checksum_address(raw)


def test_normalize_address_accepts_single_case_and_valid_checksums() -> None:
    checksummed = to_checksum_address("0x" + "ab" * 20)
    assert encoding.normalize_address(checksummed.lower()) == checksummed
    assert encoding.normalize_address("0x" + checksummed[2:].upper()) == checksummed
    assert encoding.normalize_address(checksummed) == checksummed


@pytest.mark.parametrize(
    "value",
    [
        "0x" + "ab" * 19,
        "ab" * 21,
        "0x" + "zz" * 20,
        None,
        42,
        "0xaBAbabababababababababababababababababab",
    ],
)
def test_normalize_address_rejects_bad_input(value: object) -> None:
    with pytest.raises(MalformedError) as raised:
        encoding.normalize_address(value, field="node")
    assert raised.value.field == "node"
