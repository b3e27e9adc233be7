"""Hypothesis strategies for protocol values."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from connext.protocol.encoding import MAX_UINT256, checksum_address
from connext.protocol.types import ChannelState, TransferState, WithdrawCommitment

# Every protocol property test runs with these: derandomized and database-less, so CI is never flaky.
PROTOCOL_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=60,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

uint256 = st.one_of(st.integers(0, 2**64), st.integers(0, MAX_UINT256), st.sampled_from([0, 1, MAX_UINT256]))
bytes32 = st.binary(min_size=32, max_size=32)
addresses = st.binary(min_size=20, max_size=20).map(checksum_address)


@st.composite
def transfer_states(draw: st.DrawFn, channel_address: str | None = None) -> TransferState:
    return TransferState(
        channel_address=channel_address or draw(addresses),
        payment_id=draw(bytes32),
        create_nonce=draw(uint256),
        definition=draw(addresses),
        initiator=draw(addresses),
        responder=draw(addresses),
        asset_id=draw(addresses),
        balance=(draw(uint256), draw(uint256)),
        transfer_timeout=draw(uint256),
        encoded_state=draw(st.binary(max_size=300)),
        meta_hash=draw(bytes32),
    )


@st.composite
def channel_states(draw: st.DrawFn) -> ChannelState:
    """Any struct values (not necessarily a valid channel): for encoding equality only."""
    count = draw(st.integers(0, 5))
    channel_address = draw(addresses)
    pairs = st.tuples(uint256, uint256)
    return ChannelState(
        channel_address=channel_address,
        chain_id=draw(uint256),
        node=draw(addresses),
        user=draw(addresses),
        asset_ids=tuple(draw(st.lists(addresses, min_size=count, max_size=count))),
        balances=tuple(draw(st.lists(pairs, min_size=count, max_size=count))),
        processed_deposits=tuple(draw(st.lists(pairs, min_size=count, max_size=count))),
        defund_nonces=tuple(draw(st.lists(uint256, min_size=count, max_size=count))),
        timeout=draw(uint256),
        nonce=draw(uint256),
        transfers=tuple(draw(st.lists(transfer_states(channel_address), max_size=4))),
    )


withdraw_commitments = st.builds(
    WithdrawCommitment,
    chain_id=uint256,
    channel_address=addresses,
    asset_id=addresses,
    recipient=addresses,
    amount=uint256,
    nonce=uint256,
)
