"""The protocol's values: channel state, transfer state, updates, withdraw commitment, update context.

All are frozen dataclasses; every rule makes a new value and never mutates one. Addresses are
checksummed strings, hashes and ids are 32-byte `bytes`, amounts are `int` wei.

`ChannelState` carries the fields of the on-chain struct (docs/protocol.md) plus the active transfers
themselves; `merkle_root` is derived from them, so the root can never disagree with the transfer set.

Withdrawn amounts are not a field. They are what the processed deposits no longer cover:
``withdrawn(asset) = processed(node + user) − balances(node + user) − locked(asset)``. Only the resolve
of a Withdraw transfer raises it (by the withdrawn amount, which then leaves the channel on chain through
`Channel.withdraw`, once); every other update leaves it unchanged. So the invariant
``node + user + locked = processed − withdrawn`` holds for every signed state by construction and is
checkable from the state alone, and the update rules enforce how it may change.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from connext.protocol import encoding, merkle
from connext.protocol.errors import UnknownTransferError


class DefinitionKind(enum.StrEnum):
    """The transfer definitions the core mirrors (each is a contract on chain)."""

    LINKED = "linked"
    HASHLOCK = "hashlock"
    SIGNED = "signed"
    WITHDRAW = "withdraw"


class Party(enum.IntEnum):
    """Index of a party in a per-asset pair `[node, user]`."""

    NODE = 0
    USER = 1


@dataclass(frozen=True, kw_only=True)
class TransferState:
    """An active conditional transfer: funds locked by `initiator`, claimable by `responder`."""

    channel_address: str
    payment_id: bytes
    create_nonce: int
    definition: str
    initiator: str
    responder: str
    asset_id: str
    balance: tuple[int, int]  # [initiator, responder]; [amount, 0] while active
    transfer_timeout: int
    encoded_state: bytes
    meta_hash: bytes = encoding.ZERO_BYTES32

    @cached_property
    def transfer_id(self) -> bytes:
        return encoding.transfer_id(self.channel_address, self.payment_id, self.create_nonce)

    @cached_property
    def initial_state_hash(self) -> bytes:
        return encoding.keccak256(self.encoded_state)

    @cached_property
    def transfer_hash(self) -> bytes:
        return encoding.transfer_hash(self)

    @property
    def locked(self) -> int:
        return self.balance[0] + self.balance[1]


@dataclass(frozen=True, kw_only=True)
class ChannelState:
    """One channel state as both parties sign it, with its active transfers."""

    channel_address: str
    chain_id: int
    node: str
    user: str
    asset_ids: tuple[str, ...] = ()
    balances: tuple[tuple[int, int], ...] = ()  # per asset: (node, user)
    processed_deposits: tuple[tuple[int, int], ...] = ()  # per asset: (node, user), cumulative
    defund_nonces: tuple[int, ...] = ()  # per asset, from 1
    timeout: int
    nonce: int
    transfers: tuple[TransferState, ...] = ()  # active, in create order (create nonce ascending)

    @cached_property
    def merkle_root(self) -> bytes:
        return merkle.merkle_root(transfer.transfer_hash for transfer in self.transfers)

    @cached_property
    def state_hash(self) -> bytes:
        return encoding.channel_state_hash(self)

    @cached_property
    def _transfers_by_id(self) -> dict[bytes, TransferState]:
        return {transfer.transfer_id: transfer for transfer in self.transfers}

    def transfer(self, transfer_id: bytes) -> TransferState | None:
        return self._transfers_by_id.get(transfer_id)

    def asset_index(self, asset_id: str) -> int | None:
        try:
            return self.asset_ids.index(asset_id)
        except ValueError:
            return None

    def party(self, address: str) -> Party | None:
        if address == self.node:
            return Party.NODE
        if address == self.user:
            return Party.USER
        return None

    def counterparty(self, address: str) -> str:
        return self.user if address == self.node else self.node

    @cached_property
    def _locked_by_asset(self) -> dict[str, int]:
        locked: dict[str, int] = {}
        for transfer in self.transfers:
            locked[transfer.asset_id] = locked.get(transfer.asset_id, 0) + transfer.locked
        return locked

    def locked(self, asset_id: str) -> int:
        """Total locked in active transfers of `asset_id`."""
        return self._locked_by_asset.get(asset_id, 0)

    def withdrawn(self, asset_id: str) -> int:
        """Cumulative amount of `asset_id` that left the channel through withdraw transfers."""
        index = self.asset_index(asset_id)
        if index is None:
            return 0
        processed_node, processed_user = self.processed_deposits[index]
        node_balance, user_balance = self.balances[index]
        return processed_node + processed_user - node_balance - user_balance - self.locked(asset_id)

    def merkle_proof(self, transfer_id: bytes) -> list[bytes]:
        """Proof of an active transfer against `merkle_root` (for `disputeTransfer`)."""
        transfer = self.transfer(transfer_id)
        if transfer is None:
            raise UnknownTransferError(f"no active transfer 0x{transfer_id.hex()}")
        return merkle.merkle_proof((t.transfer_hash for t in self.transfers), transfer.transfer_hash)


@dataclass(frozen=True, kw_only=True)
class WithdrawCommitment:
    """What `Channel.withdraw` executes once, when both node and user signed its hash."""

    chain_id: int
    channel_address: str
    asset_id: str
    recipient: str
    amount: int
    nonce: int  # channel nonce of the state that created the withdraw transfer

    @cached_property
    def withdraw_hash(self) -> bytes:
        return encoding.withdraw_hash(self)


@dataclass(frozen=True, kw_only=True)
class SetupUpdate:
    """Opens the channel: the first state (nonce 1), no assets, no transfers."""

    channel_address: str
    nonce: int
    initiator: str
    chain_id: int
    node: str
    user: str
    timeout: int


@dataclass(frozen=True, kw_only=True)
class DepositUpdate:
    """Credits on-chain deposits: sets processed deposits of `asset_id` to the totals given."""

    channel_address: str
    nonce: int
    initiator: str
    asset_id: str
    total_deposits_node: int  # the chain's totalDepositsNode, as the initiator read it
    total_deposits_user: int  # the chain's derived user total, as the initiator read it


@dataclass(frozen=True, kw_only=True)
class CreateUpdate:
    """Locks `amount` of the initiator's balance into a new transfer to the other party."""

    channel_address: str
    nonce: int
    initiator: str
    asset_id: str
    amount: int
    definition: str
    payment_id: bytes
    encoded_state: bytes
    transfer_timeout: int
    meta_hash: bytes = encoding.ZERO_BYTES32


@dataclass(frozen=True, kw_only=True)
class ResolveUpdate:
    """Pays out an active transfer as its definition says; only the transfer's responder may."""

    channel_address: str
    nonce: int
    initiator: str
    transfer_id: bytes
    encoded_resolver: bytes


@dataclass(frozen=True, kw_only=True)
class AssetDefund:
    """One asset's `defundChannel` payout as `ChannelDefunded` reports it."""

    asset_id: str
    defund_nonce: int  # the defund nonce the chain stored: the disputed state's for this asset
    payout: tuple[int, int]  # (to node, to user)


@dataclass(frozen=True, kw_only=True)
class ResumeUpdate:
    """Continues the channel after a dispute's defund window (docs/protocol.md, "Off chain after a
    dispute"): each asset defunded at the state's defund nonce gets balances [0, 0], its processed
    deposits raised to the totals the defund paid against, and its defund nonce raised above the chain's;
    each transfer defunded on chain is dropped without moving balances."""

    channel_address: str
    nonce: int
    initiator: str
    defunds: tuple[AssetDefund, ...] = ()  # every asset defunded on chain at the state's defund nonce
    dropped_transfer_ids: tuple[bytes, ...] = ()  # every active transfer defunded on chain


@dataclass(frozen=True, kw_only=True)
class SwapUpdate:
    """Exchanges two assets at once: `give_amount` of `give_asset` from the initiator to the responder and
    `take_amount` of `take_asset` from the responder to the initiator. Both assets are already in the
    channel; per asset, node + user balances are unchanged (the rate is the two amounts, agreed by both
    signatures)."""

    channel_address: str
    nonce: int
    initiator: str
    give_asset: str
    give_amount: int
    take_asset: str
    take_amount: int


Update = SetupUpdate | DepositUpdate | CreateUpdate | ResolveUpdate | ResumeUpdate | SwapUpdate


@dataclass(frozen=True, kw_only=True)
class ChainDispute:
    """What the chain says about a channel's latest dispute, as the verifier read it itself."""

    state_hash: bytes  # the disputed state's hash (`getDispute`)
    defund_expiry: int  # unix seconds, chain time
    chain_time: int  # the latest block's timestamp when read: the clock the contract's windows run on
    # asset -> its latest defund: `getDefundNonce` and the `ChannelDefunded` payout at that nonce; an asset
    # never defunded is absent. Covers every asset of the state the update applies to.
    defunds: Mapping[str, AssetDefund] = field(default_factory=dict)
    disputed_transfers: frozenset[bytes] = (
        frozenset()
    )  # transfer hashes disputed on chain (`getTransferDispute`)
    defunded_transfers: frozenset[bytes] = frozenset()  # transfer hashes paid out on chain


@dataclass(frozen=True, kw_only=True)
class UpdateContext:
    """What the rules need from outside: the time, the chain's deposit totals, the definitions and, after
    a dispute, what the chain says about it."""

    now: int  # unix seconds, the caller's clock (HashLock expiry)
    definitions: Mapping[str, DefinitionKind] = field(default_factory=dict)  # address -> kind
    chain_deposits: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # asset -> (node, user)
    dispute: ChainDispute | None = None  # the channel's latest dispute on chain, when there was one
