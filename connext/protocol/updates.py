"""The update rules: `apply_update(state, update, *, context) -> new state`, pure.

Who may initiate what:
- `setup`: the node or the user of the new channel; nonce 1.
- `deposit`: either party; credits the chain's deposit totals (never more than the context shows).
- `create`: either party, locking its own balance; the other party is the transfer's responder.
- `resolve`: only the transfer's responder (for a Withdraw, the resolver is the responder's signature on
  the commitment; the empty resolver is the responder's cancel, which refunds the initiator). A transfer
  disputed on chain settles there only: its resolve is refused when the context shows the dispute.
- `resume`: either party, after a dispute's defund window (chain time), exactly as the chain's dispute
  record in the context says: every asset defunded at the state's defund nonce gets balances [0, 0],
  processed deposits `processed + payout − balances` and defund nonce + 1 (so the next dispute can defund
  it again: the contract only defunds above the nonce it stored), and every active transfer paid out on
  chain is dropped without moving balances.
- `swap`: either party (who may is policy, decided above the core): `give_amount` of `give_asset` moves
  from the initiator's balance to the responder's and `take_amount` of `take_asset` from the responder's
  to the initiator's, in one state. Both amounts are above zero, the two assets differ, both are already
  in the channel and each side holds what it gives.

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
    DisputeMismatchError,
    DisputeNotOverError,
    DuplicateTransferError,
    InsufficientBalanceError,
    InvalidSetupError,
    MalformedError,
    NoChannelError,
    NonceGapError,
    NoNewDepositError,
    SameAssetError,
    StaleNonceError,
    UnauthorizedError,
    UnknownAssetError,
    UnknownDefinitionError,
    UnknownTransferError,
    WrongChannelError,
)
from connext.protocol.types import (
    AssetDefund,
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    ResumeUpdate,
    SetupUpdate,
    SwapUpdate,
    TransferState,
    Update,
    UpdateContext,
)

# Upper bound for the dispute timeout and transfer timeouts, in seconds (about 136 years). Channel.sol
# stores `now + 2·timeout` and `now + transferTimeout` as uint64 (SafeCast): a state or transfer with a
# larger timeout could never be disputed, so nobody may sign one.
MAX_TIMEOUT = 2**32 - 1

_ADDRESS_FIELDS = (
    "channel_address",
    "initiator",
    "node",
    "user",
    "asset_id",
    "definition",
    "give_asset",
    "take_asset",
)
_BYTES32_FIELDS = ("payment_id", "meta_hash", "transfer_id")
_BYTES_FIELDS = ("encoded_state", "encoded_resolver")
_AMOUNT_FIELDS = ("amount", "total_deposits_node", "total_deposits_user", "give_amount", "take_amount")
_UINT_FIELDS = ("nonce", "chain_id", "timeout", "transfer_timeout")


def check_update_fields(update: Update) -> None:
    """Raise `malformed` / `amount_out_of_range` for any ill-typed field (names the field)."""
    if isinstance(update, ResumeUpdate):
        _check_resume_fields(update)
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


def _check_resume_fields(update: ResumeUpdate) -> None:
    if not isinstance(update.defunds, tuple) or not isinstance(update.dropped_transfer_ids, tuple):
        raise MalformedError("defunds and dropped transfer ids must be tuples")
    for i, defund in enumerate(update.defunds):
        where = f"defunds[{i}]"
        if not isinstance(defund, AssetDefund) or not is_checksum_address(defund.asset_id):
            raise MalformedError("must be an asset defund with a checksummed asset id", field=where)
        if type(defund.defund_nonce) is not int or not 1 <= defund.defund_nonce < MAX_UINT256:
            raise MalformedError("must be a defund nonce in [1, 2**256 - 2]", field=f"{where}.defundNonce")
        payout = defund.payout
        if not (isinstance(payout, tuple) and len(payout) == 2):
            raise MalformedError("must be a pair (to node, to user)", field=f"{where}.payout")
        if not all(type(a) is int and 0 <= a <= MAX_UINT256 for a in payout):
            raise AmountOutOfRangeError(
                "a payout must be an integer in [0, 2**256 - 1]", field=f"{where}.payout"
            )
    if len({defund.asset_id for defund in update.defunds}) != len(update.defunds):
        raise MalformedError("each asset is defunded once", field="defunds")
    for i, transfer_id in enumerate(update.dropped_transfer_ids):
        if not (isinstance(transfer_id, bytes) and len(transfer_id) == 32):
            raise MalformedError("must be 32 bytes", field=f"dropped_transfer_ids[{i}]")
    if len(set(update.dropped_transfer_ids)) != len(update.dropped_transfer_ids):
        raise MalformedError("each transfer is dropped once", field="dropped_transfer_ids")


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
    elif isinstance(update, ResumeUpdate):
        new = _resume(state, update, context)
    elif isinstance(update, SwapUpdate):
        new = _swap(state, update)
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
    if context.dispute is not None and transfer.transfer_hash in context.dispute.disputed_transfers:
        raise DisputeMismatchError("the transfer is disputed on chain: it settles there only")
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


def _resume(state: ChannelState, update: ResumeUpdate, context: UpdateContext) -> ChannelState:
    dispute = context.dispute
    if dispute is None:
        raise DisputeNotOverError("the chain shows no dispute of this channel")
    if dispute.chain_time < dispute.defund_expiry:
        raise DisputeNotOverError(
            f"the defund window runs until {dispute.defund_expiry}; the chain's time is {dispute.chain_time}"
        )
    given = {defund.asset_id: defund for defund in update.defunds}
    asset_ids = list(state.asset_ids)
    balances = list(state.balances)
    processed = list(state.processed_deposits)
    defund_nonces = list(state.defund_nonces)
    # New assets are appended in the update's (signed) order, so both sides derive the same state.
    candidates = [*state.asset_ids, *(a for a in given if a not in state.asset_ids)]
    candidates += [a for a in dispute.defunds if a not in candidates]
    for asset_id in candidates:
        index = state.asset_index(asset_id)
        defund_nonce = state.defund_nonces[index] if index is not None else 1
        on_chain = dispute.defunds.get(asset_id)
        proposed = given.get(asset_id)
        if on_chain is None or on_chain.defund_nonce < defund_nonce:
            if proposed is not None:
                raise DisputeMismatchError(
                    f"the chain did not defund {asset_id} at defund nonce {defund_nonce}", field="defunds"
                )
            continue
        if on_chain.defund_nonce > defund_nonce:
            raise DisputeMismatchError(
                f"the chain defunded {asset_id} at defund nonce {on_chain.defund_nonce}, above this state's"
                f" {defund_nonce}",
                field="defunds",
            )
        if proposed is None:
            raise DisputeMismatchError(
                f"the chain defunded {asset_id}: the update must include it", field="defunds"
            )
        if proposed.defund_nonce != on_chain.defund_nonce:
            raise DisputeMismatchError(
                f"{asset_id} was defunded at defund nonce {on_chain.defund_nonce}, not {proposed.defund_nonce}",
                field="defunds",
            )
        if proposed.payout != on_chain.payout:
            raise DisputeMismatchError(
                f"the chain paid {on_chain.payout} of {asset_id}, not {proposed.payout}", field="defunds"
            )
        if dispute.state_hash != state.state_hash:
            raise DisputeMismatchError("the chain's disputed state is not this channel's latest state")
        old_balance = balances[index] if index is not None else (0, 0)
        old_processed = processed[index] if index is not None else (0, 0)
        payout = on_chain.payout
        if payout[0] < old_balance[0] or payout[1] < old_balance[1]:
            raise DisputeMismatchError(
                f"the chain paid {payout} of {asset_id}, below the balances {old_balance}"
            )
        new_processed = (
            old_processed[0] + payout[0] - old_balance[0],
            old_processed[1] + payout[1] - old_balance[1],
        )
        if max(new_processed) > MAX_UINT256:
            raise AmountOutOfRangeError("the processed deposits would exceed 2**256 - 1")
        if index is None:
            asset_ids.append(asset_id)
            balances.append((0, 0))
            processed.append(new_processed)
            defund_nonces.append(defund_nonce + 1)
        else:
            balances[index] = (0, 0)
            processed[index] = new_processed
            defund_nonces[index] = defund_nonce + 1
    dropped = set(update.dropped_transfer_ids)
    for i, transfer_id in enumerate(update.dropped_transfer_ids):
        transfer = state.transfer(transfer_id)
        if transfer is None:
            raise UnknownTransferError(
                f"no active transfer 0x{transfer_id.hex()}", field=f"dropped_transfer_ids[{i}]"
            )
        if transfer.transfer_hash not in dispute.defunded_transfers:
            raise DisputeMismatchError(
                f"the chain did not pay out transfer 0x{transfer_id.hex()}: it stays",
                field=f"dropped_transfer_ids[{i}]",
            )
    for transfer in state.transfers:
        if transfer.transfer_hash in dispute.defunded_transfers and transfer.transfer_id not in dropped:
            raise DisputeMismatchError(
                f"the chain paid out transfer 0x{transfer.transfer_id.hex()}: the update must drop it",
                field="dropped_transfer_ids",
            )
    if not update.defunds and not dropped:
        raise DisputeMismatchError("the chain shows nothing to follow up off chain")
    return replace(
        state,
        nonce=update.nonce,
        asset_ids=tuple(asset_ids),
        balances=tuple(balances),
        processed_deposits=tuple(processed),
        defund_nonces=tuple(defund_nonces),
        transfers=tuple(t for t in state.transfers if t.transfer_id not in dropped),
    )


def _swap(state: ChannelState, update: SwapUpdate) -> ChannelState:
    if update.give_amount == 0:
        raise AmountOutOfRangeError("a swap gives more than zero", field="give_amount")
    if update.take_amount == 0:
        raise AmountOutOfRangeError("a swap takes more than zero", field="take_amount")
    if update.give_asset == update.take_asset:
        raise SameAssetError("a swap exchanges two different assets", field="take_asset")
    give_index = state.asset_index(update.give_asset)
    if give_index is None:
        raise UnknownAssetError(f"the channel holds no {update.give_asset}", field="give_asset")
    take_index = state.asset_index(update.take_asset)
    if take_index is None:
        raise UnknownAssetError(f"the channel holds no {update.take_asset}", field="take_asset")
    initiator = _party_index(state, update.initiator)
    responder = 1 - initiator
    give = list(state.balances[give_index])
    take = list(state.balances[take_index])
    if give[initiator] < update.give_amount:
        raise InsufficientBalanceError(
            f"the initiator's balance {give[initiator]} is below the amount it gives {update.give_amount}",
            field="give_amount",
        )
    if take[responder] < update.take_amount:
        raise InsufficientBalanceError(
            f"the responder's balance {take[responder]} is below the amount it gives {update.take_amount}",
            field="take_amount",
        )
    give[initiator] -= update.give_amount
    give[responder] += update.give_amount
    take[responder] -= update.take_amount
    take[initiator] += update.take_amount
    if max(*give, *take) > MAX_UINT256:
        raise AmountOutOfRangeError("the swapped balance would exceed 2**256 - 1")
    balances = _set(state.balances, give_index, (give[0], give[1]))
    return replace(state, nonce=update.nonce, balances=_set(balances, take_index, (take[0], take[1])))


def _set(
    pairs: tuple[tuple[int, int], ...], index: int, value: tuple[int, int]
) -> tuple[tuple[int, int], ...]:
    return (*pairs[:index], value, *pairs[index + 1 :])


def _party_index(state: ChannelState, address: str) -> int:
    party = state.party(address)
    if party is None:
        raise UnauthorizedError(f"{address} is neither the node nor the user")
    return int(party)
