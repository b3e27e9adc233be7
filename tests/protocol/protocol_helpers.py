"""Builders for protocol tests: fixed keys, definition addresses and one-line updates."""

from __future__ import annotations

from connext.protocol import definitions, signing
from connext.protocol.encoding import ZERO_ADDRESS, ZERO_BYTES32, checksum_address, keccak256
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    SetupUpdate,
    SwapUpdate,
    UpdateContext,
    WithdrawCommitment,
)
from connext.protocol.updates import apply_update


def _address(label: str) -> str:
    return checksum_address(keccak256(label.encode())[12:])


NODE = signing.Signer(keccak256(b"connext-py/tests/node"))
USER = signing.Signer(keccak256(b"connext-py/tests/user"))
STRANGER = signing.Signer(keccak256(b"connext-py/tests/stranger"))
RECEIPT_SIGNER = signing.Signer(keccak256(b"connext-py/tests/receipt-signer"))
SIGNERS = {NODE.address: NODE, USER.address: USER}
CHANNEL = _address("connext-py/tests/channel")
CHAIN_ID = 1337
ETH = ZERO_ADDRESS
TOKEN = _address("connext-py/tests/token")
RECIPIENT = _address("connext-py/tests/recipient")
LINKED = _address("connext-py/tests/Linked")
HASHLOCK = _address("connext-py/tests/HashLock")
SIGNED = _address("connext-py/tests/Signed")
WITHDRAW = _address("connext-py/tests/Withdraw")
DEFINITIONS = {
    LINKED: DefinitionKind.LINKED,
    HASHLOCK: DefinitionKind.HASHLOCK,
    SIGNED: DefinitionKind.SIGNED,
    WITHDRAW: DefinitionKind.WITHDRAW,
}
NOW = 1_700_000_000
TIMEOUT = 86_400
TRANSFER_TIMEOUT = 3_600


def context(*, now: int = NOW, deposits: dict[str, tuple[int, int]] | None = None) -> UpdateContext:
    return UpdateContext(now=now, definitions=DEFINITIONS, chain_deposits=deposits or {})


def setup_update(**overrides: object) -> SetupUpdate:
    fields: dict[str, object] = {
        "channel_address": CHANNEL,
        "nonce": 1,
        "initiator": NODE.address,
        "chain_id": CHAIN_ID,
        "node": NODE.address,
        "user": USER.address,
        "timeout": TIMEOUT,
    }
    fields.update(overrides)
    return SetupUpdate(**fields)  # type: ignore[arg-type]


def setup_state() -> ChannelState:
    return apply_update(None, setup_update(), context=context())


def deposit_update(
    state: ChannelState, *, asset: str = ETH, node: int = 0, user: int = 0, initiator: str | None = None
) -> DepositUpdate:
    return DepositUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=initiator or NODE.address,
        asset_id=asset,
        total_deposits_node=node,
        total_deposits_user=user,
    )


def funded_state(*, node: int = 10**18, user: int = 10**18, asset: str = ETH) -> ChannelState:
    state = setup_state()
    update = deposit_update(state, asset=asset, node=node, user=user)
    return apply_update(state, update, context=context(deposits={asset: (node, user)}))


def two_asset_state(
    *, eth: tuple[int, int] = (10**18, 10**18), token: tuple[int, int] = (10**6, 10**6)
) -> ChannelState:
    """Funded in ETH and TOKEN: (node, user) deposits of each, all credited."""
    state = funded_state(node=eth[0], user=eth[1])
    update = deposit_update(state, asset=TOKEN, node=token[0], user=token[1])
    return apply_update(state, update, context=context(deposits={TOKEN: token}))


def swap_update(
    state: ChannelState,
    *,
    initiator: str,
    give_asset: str = ETH,
    give_amount: int,
    take_asset: str = TOKEN,
    take_amount: int,
) -> SwapUpdate:
    return SwapUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=initiator,
        give_asset=give_asset,
        give_amount=give_amount,
        take_asset=take_asset,
        take_amount=take_amount,
    )


def preimage_for(label: str) -> bytes:
    return keccak256(label.encode())


def linked_state(preimage: bytes) -> bytes:
    return definitions.LinkedState(keccak256(preimage)).encode()


def hashlock_state(preimage: bytes, expiry: int) -> bytes:
    return definitions.HashLockState(keccak256(preimage), expiry).encode()


def signed_state(payment_id: bytes, signer: str | None = None) -> bytes:
    return definitions.SignedState(signer or RECEIPT_SIGNER.address, payment_id).encode()


def withdraw_state(
    state: ChannelState,
    *,
    initiator: signing.Signer,
    amount: int,
    asset: str = ETH,
    recipient: str = RECIPIENT,
    nonce: int | None = None,
) -> bytes:
    nonce = state.nonce + 1 if nonce is None else nonce
    commitment = WithdrawCommitment(
        chain_id=state.chain_id,
        channel_address=state.channel_address,
        asset_id=asset,
        recipient=recipient,
        amount=amount,
        nonce=nonce,
    )
    return definitions.WithdrawState(
        channel_address=state.channel_address,
        asset_id=asset,
        recipient=recipient,
        amount=amount,
        nonce=nonce,
        initiator=initiator.address,
        responder=state.counterparty(initiator.address),
        initiator_signature=signing.sign_withdraw(commitment, initiator),
    ).encode()


def create_update(
    state: ChannelState,
    *,
    initiator: str,
    definition: str,
    encoded_state: bytes,
    amount: int,
    asset: str = ETH,
    payment_id: bytes | None = None,
    transfer_timeout: int = TRANSFER_TIMEOUT,
) -> CreateUpdate:
    return CreateUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=initiator,
        asset_id=asset,
        amount=amount,
        definition=definition,
        payment_id=payment_id
        if payment_id is not None
        else keccak256(b"payment" + bytes([state.nonce % 256])),
        encoded_state=encoded_state,
        transfer_timeout=transfer_timeout,
        meta_hash=ZERO_BYTES32,
    )


def linked_create(
    state: ChannelState, *, initiator: str, amount: int, preimage: bytes, asset: str = ETH
) -> CreateUpdate:
    return create_update(
        state,
        initiator=initiator,
        definition=LINKED,
        encoded_state=linked_state(preimage),
        amount=amount,
        asset=asset,
    )


def resolve_update(
    state: ChannelState, *, transfer_id: bytes, initiator: str, resolver: bytes
) -> ResolveUpdate:
    return ResolveUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=initiator,
        transfer_id=transfer_id,
        encoded_resolver=resolver,
    )


def withdraw_resolver(state: ChannelState, transfer_id: bytes, responder: signing.Signer) -> bytes:
    transfer = state.transfer(transfer_id)
    assert transfer is not None
    withdraw = definitions.WithdrawState.decode(transfer.encoded_state)
    signature = signing.sign_withdraw(withdraw.commitment(state.chain_id), responder)
    return definitions.WithdrawResolver(signature).encode()


def receipt_resolver(payment_id: bytes, data: bytes, signer: signing.Signer = RECEIPT_SIGNER) -> bytes:
    signature = signing.sign_receipt(CHAIN_ID, SIGNED, payment_id, data, signer)
    return definitions.SignedResolver(data, signature).encode()
