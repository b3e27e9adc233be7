"""The update rules: `apply_update(state, update, *, context) -> new state`, pure.

Who may initiate what:
- `setup`: the node or the user of the new channel; nonce 1.
- `deposit`: either party; credits the chain's deposit totals (never more than the context shows).
- `create`: either party, locking its own balance; the other party is the transfer's responder.
- `resolve`: only the transfer's responder (for a Withdraw, the resolver is the responder's signature on
  the commitment; the empty resolver is the responder's cancel, which refunds the initiator).

Every update names its channel and the nonce of the state it produces (previous nonce + 1). Any
rejection raises a `ProtocolError` and, the values being immutable, leaves the caller's state as it was.
Every new state passes `invariants.check_transition` before it is returned.
"""

from __future__ import annotations

from dataclasses import replace

from connext.protocol import definitions, invariants
from connext.protocol.encoding import MAX_UINT256, ZERO_ADDRESS, is_checksum_address
from connext.protocol.errors import (
    AmountOutOfRangeError,
    BadDepositError,
    BadResolverError,
    BadTimeoutError,
    ChannelExistsError,
    DepositExceedsChainError,
    DuplicateTransferError,
    InsufficientBalanceError,
    InvalidSetupError,
    MalformedError,
    NoChannelError,
    NonceGapError,
    NoNewDepositError,
    StaleNonceError,
    UnauthorizedError,
    UnknownAssetError,
    UnknownDefinitionError,
    UnknownTransferError,
    WrongChannelError,
)
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    SetupUpdate,
    TransferState,
    Update,
    UpdateContext,
)

# Upper bound for the dispute timeout and transfer timeouts, in seconds (about 136 years). Channel.sol
# stores `now + 2·timeout` and `now + transferTimeout` as uint64 (SafeCast): a state or transfer with a
# larger timeout could never be disputed, so nobody may sign one.
MAX_TIMEOUT = 2**32 - 1

_ADDRESS_FIELDS = ("channel_address", "initiator", "node", "user", "asset_id", "definition")
_BYTES32_FIELDS = ("payment_id", "meta_hash", "transfer_id")
_BYTES_FIELDS = ("encoded_state", "encoded_resolver")
_AMOUNT_FIELDS = ("amount", "total_deposits_node", "total_deposits_user")
_UINT_FIELDS = ("nonce", "chain_id", "timeout", "transfer_timeout")


def check_update_fields(update: Update) -> None:
    """Raise `malformed` / `amount_out_of_range` for any ill-typed field (names the field)."""
    for name in _ADDRESS_FIELDS:
        value = getattr(update, name, None)
        if value is not None and not is_checksum_address(value):
            raise MalformedError("must be a checksummed address", field=name)
    for name in _BYTES32_FIELDS:
        value = getattr(update, name, None)
        if value is not None and not (isinstance(value, bytes) and len(value) == 32):
            raise MalformedError("must be 32 bytes", field=name)
    for name in _BYTES_FIELDS:
        value = getattr(update, name, None)
        if value is not None and not isinstance(value, bytes):
            raise MalformedError("must be bytes", field=name)
    for name in _UINT_FIELDS:
        value = getattr(update, name, None)
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_UINT256):
            raise MalformedError("must be an integer in uint256", field=name)
    for name in _AMOUNT_FIELDS:
        value = getattr(update, name, None)
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_UINT256):
            raise AmountOutOfRangeError("an amount must be an integer in [0, 2**256 - 1]", field=name)


def _check_timeout(value: int, field: str) -> None:
    if not 0 < value <= MAX_TIMEOUT:
        raise BadTimeoutError(f"must be in [1, {MAX_TIMEOUT}] seconds", field=field)


def apply_update(state: ChannelState | None, update: Update, *, context: UpdateContext) -> ChannelState:
    """The state `update` produces from `state` (None before setup), or a `ProtocolError`."""
    check_update_fields(update)
    if isinstance(update, SetupUpdate):
        if state is not None:
            raise ChannelExistsError("the channel already has a state")
        new = _setup(update)
        invariants.check_transition(None, new, update)
        return new
    if state is None:
        raise NoChannelError("the channel has no state yet: set it up first")
    if update.channel_address != state.channel_address:
        raise WrongChannelError(f"the update is for {update.channel_address}, not {state.channel_address}")
    if update.nonce <= state.nonce:
        raise StaleNonceError(f"nonce {update.nonce} is not above the current {state.nonce}")
    if update.nonce > state.nonce + 1:
        raise NonceGapError(f"nonce {update.nonce} skips ahead of the current {state.nonce}")
    if state.party(update.initiator) is None:
        raise UnauthorizedError("the initiator is neither the node nor the user", field="initiator")
    kind: DefinitionKind | None = None
    if isinstance(update, DepositUpdate):
        new = _deposit(state, update, context)
    elif isinstance(update, CreateUpdate):
        new = _create(state, update, context)
    else:
        new, kind = _resolve(state, update, context)
    invariants.check_transition(state, new, update, definition_kind=kind)
    return new


def _setup(update: SetupUpdate) -> ChannelState:
    if update.nonce != 1:
        error = StaleNonceError if update.nonce < 1 else NonceGapError
        raise error("the setup state has nonce 1", field="nonce")
    if update.node == update.user or ZERO_ADDRESS in (update.node, update.user):
        raise InvalidSetupError("node and user must be two different non-zero addresses")
    if update.chain_id == 0 or update.channel_address == ZERO_ADDRESS:
        raise InvalidSetupError("the chain id and channel address must be set")
    if update.initiator not in (update.node, update.user):
        raise UnauthorizedError("only the node or the user may set up the channel", field="initiator")
    _check_timeout(update.timeout, "timeout")
    return ChannelState(
        channel_address=update.channel_address,
        chain_id=update.chain_id,
        node=update.node,
        user=update.user,
        timeout=update.timeout,
        nonce=1,
    )


def _deposit(state: ChannelState, update: DepositUpdate, context: UpdateContext) -> ChannelState:
    index = state.asset_index(update.asset_id)
    old_processed = state.processed_deposits[index] if index is not None else (0, 0)
    old_balances = state.balances[index] if index is not None else (0, 0)
    totals = (update.total_deposits_node, update.total_deposits_user)
    if totals[0] < old_processed[0] or totals[1] < old_processed[1]:
        raise BadDepositError(f"deposit totals {totals} are below the processed {old_processed}")
    if totals == old_processed:
        raise NoNewDepositError("the deposit totals equal what is already processed")
    on_chain = context.chain_deposits.get(update.asset_id, (0, 0))
    if totals[0] > on_chain[0] or totals[1] > on_chain[1]:
        raise DepositExceedsChainError(f"deposit totals {totals} exceed the chain's {tuple(on_chain)}")
    balances = (
        old_balances[0] + totals[0] - old_processed[0],
        old_balances[1] + totals[1] - old_processed[1],
    )
    if max(balances) > MAX_UINT256:
        raise AmountOutOfRangeError("the credited balance would exceed 2**256 - 1")
    if index is None:
        return replace(
            state,
            nonce=update.nonce,
            asset_ids=(*state.asset_ids, update.asset_id),
            balances=(*state.balances, balances),
            processed_deposits=(*state.processed_deposits, totals),
            defund_nonces=(*state.defund_nonces, 1),
        )
    return replace(
        state,
        nonce=update.nonce,
        balances=_set(state.balances, index, balances),
        processed_deposits=_set(state.processed_deposits, index, totals),
    )


def _create(state: ChannelState, update: CreateUpdate, context: UpdateContext) -> ChannelState:
    if update.amount == 0:
        raise AmountOutOfRangeError("a transfer locks more than zero", field="amount")
    kind = context.definitions.get(update.definition)
    if kind is None:
        raise UnknownDefinitionError(f"{update.definition} is not a known transfer definition")
    index = state.asset_index(update.asset_id)
    if index is None:
        raise UnknownAssetError(f"the channel holds no {update.asset_id}")
    _check_timeout(update.transfer_timeout, "transfer_timeout")
    payer = _party_index(state, update.initiator)
    balance = state.balances[index]
    if balance[payer] < update.amount:
        raise InsufficientBalanceError(f"balance {balance[payer]} is below the amount {update.amount}")
    transfer = TransferState(
        channel_address=state.channel_address,
        payment_id=update.payment_id,
        create_nonce=update.nonce,
        definition=update.definition,
        initiator=update.initiator,
        responder=state.counterparty(update.initiator),
        asset_id=update.asset_id,
        balance=(update.amount, 0),
        transfer_timeout=update.transfer_timeout,
        encoded_state=update.encoded_state,
        meta_hash=update.meta_hash,
    )
    if state.transfer(transfer.transfer_id) is not None:
        raise DuplicateTransferError("a transfer with this id is already active")
    definitions.accept(kind, transfer, chain_id=state.chain_id, now=context.now)
    new_balance = list(balance)
    new_balance[payer] -= update.amount
    return replace(
        state,
        nonce=update.nonce,
        balances=_set(state.balances, index, (new_balance[0], new_balance[1])),
        transfers=(*state.transfers, transfer),
    )


def _resolve(
    state: ChannelState, update: ResolveUpdate, context: UpdateContext
) -> tuple[ChannelState, DefinitionKind]:
    transfer = state.transfer(update.transfer_id)
    if transfer is None:
        raise UnknownTransferError(f"no active transfer 0x{update.transfer_id.hex()}")
    if update.initiator != transfer.responder:
        raise UnauthorizedError("only the transfer's responder may resolve it", field="initiator")
    kind = context.definitions.get(transfer.definition)
    if kind is None:
        raise UnknownDefinitionError(f"{transfer.definition} is not a known transfer definition")
    to_initiator, to_responder = definitions.resolve(
        kind,
        transfer.balance,
        transfer.encoded_state,
        update.encoded_resolver,
        chain_id=state.chain_id,
        definition=transfer.definition,
        now=context.now,
    )
    if to_initiator < 0 or to_responder < 0 or to_initiator + to_responder > transfer.locked:
        raise BadResolverError("the definition paid out more than the transfer holds")
    index = state.asset_ids.index(transfer.asset_id)
    new_balance = list(state.balances[index])
    new_balance[_party_index(state, transfer.initiator)] += to_initiator
    new_balance[_party_index(state, transfer.responder)] += to_responder
    if max(new_balance) > MAX_UINT256:
        raise AmountOutOfRangeError("the resolved balance would exceed 2**256 - 1")
    new = replace(
        state,
        nonce=update.nonce,
        balances=_set(state.balances, index, (new_balance[0], new_balance[1])),
        transfers=tuple(t for t in state.transfers if t is not transfer),
    )
    return new, kind


def _set(
    pairs: tuple[tuple[int, int], ...], index: int, value: tuple[int, int]
) -> tuple[tuple[int, int], ...]:
    return (*pairs[:index], value, *pairs[index + 1 :])


def _party_index(state: ChannelState, address: str) -> int:
    party = state.party(address)
    if party is None:
        raise UnauthorizedError(f"{address} is neither the node nor the user")
    return int(party)
