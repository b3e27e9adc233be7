"""Channel invariants, checked on every state a rule produces and on every state parsed from outside.

A state (`check_state`):
- one entry per asset in every per-asset list; asset ids unique; defund nonces ≥ 1;
- every amount, nonce and timeout within uint256; the nonce ≥ 1;
- active transfers belong to this channel, go between node and user, are in a known asset, hold
  `[amount > 0, 0]`, and were created at strictly increasing nonces ≤ the state's nonce (so transfer ids
  are unique: an id is bound to its create nonce);
- per asset, `withdrawn = processed(node + user) − balances(node + user) − locked ≥ 0`.

A transition (`check_transition`), from the previous state by one update:
- the nonce rises by exactly one; channel, chain, parties and timeout never change;
- assets are only appended (by a deposit, defund nonce 1), never reordered or dropped;
- only the update's asset moves, and only as its kind allows: a deposit raises balances by exactly what
  it raises processed deposits; a create moves `amount` from the initiator's balance into one new
  transfer; a resolve removes one transfer and pays out at most its locked amount, and only a Withdraw
  transfer may pay out less (the rest is what was withdrawn);
- a swap moves its two assets only, each between the two parties and by exactly its amount (per asset,
  node + user balances are unchanged: conservation), and leaves transfers and processed deposits alone;
- defund nonces change only by a resume: an asset's rises by exactly one (an asset it appends starts
  above 1), and then its balances are [0, 0] and its processed deposits do not fall; every other asset
  keeps its balances, processed deposits and defund nonce; a resume only drops the transfers it names.

The merkle root is derived from the active transfers (`ChannelState.merkle_root`), so it always matches.
"""

from __future__ import annotations

from connext.protocol.encoding import MAX_UINT256
from connext.protocol.errors import InvariantViolationError
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    ResumeUpdate,
    SetupUpdate,
    SwapUpdate,
    Update,
)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantViolationError(message)


def _in_range(value: int) -> bool:
    return type(value) is int and 0 <= value <= MAX_UINT256


def check_state(state: ChannelState) -> None:
    """Raise `invariant_violated` unless `state` is internally consistent (see module docstring)."""
    count = len(state.asset_ids)
    _require(
        len(state.balances) == count
        and len(state.processed_deposits) == count
        and len(state.defund_nonces) == count,
        "every per-asset list has one entry per asset",
    )
    _require(len(set(state.asset_ids)) == count, "each asset appears once")
    _require(state.node != state.user, "node and user differ")
    _require(1 <= state.nonce <= MAX_UINT256, "the nonce is at least 1")
    _require(_in_range(state.chain_id) and _in_range(state.timeout), "chain id and timeout are uint256")
    pairs = (*state.balances, *state.processed_deposits)
    _require(all(len(pair) == 2 for pair in pairs), "amounts come in [node, user] pairs")
    amounts = [amount for pair in pairs for amount in pair]
    _require(all(type(a) is int for a in amounts), "amounts are integers")
    _require(not amounts or (min(amounts) >= 0 and max(amounts) <= MAX_UINT256), "amounts are uint256")
    _require(all(_in_range(n) and n >= 1 for n in state.defund_nonces), "defund nonces start at 1")
    locked = dict.fromkeys(state.asset_ids, 0)
    previous_create_nonce = 0
    parties = {state.node, state.user}
    for transfer in state.transfers:
        balance = transfer.balance
        _require(
            transfer.channel_address == state.channel_address
            and {transfer.initiator, transfer.responder} == parties
            and transfer.asset_id in locked,
            "a transfer belongs to its channel, goes between node and user, in an asset of the channel",
        )
        _require(
            len(balance) == 2 and 0 < balance[0] <= MAX_UINT256 and balance[1] == 0,
            "an active transfer holds [amount > 0, 0]",
        )
        _require(
            previous_create_nonce < transfer.create_nonce <= state.nonce,
            "transfers are created at increasing nonces up to the state's (unique ids)",
        )
        _require(_in_range(transfer.transfer_timeout), "a transfer timeout is uint256")
        previous_create_nonce = transfer.create_nonce
        locked[transfer.asset_id] += balance[0]
    for index, asset_id in enumerate(state.asset_ids):
        node_balance, user_balance = state.balances[index]
        processed_node, processed_user = state.processed_deposits[index]
        _require(
            node_balance + user_balance + locked[asset_id] <= processed_node + processed_user,
            "balances and locked amounts are covered by processed deposits (withdrawn ≥ 0)",
        )


def check_transition(
    previous: ChannelState | None,
    new: ChannelState,
    update: Update,
    *,
    definition_kind: DefinitionKind | None = None,
) -> None:
    """Raise `invariant_violated` unless `new` follows from `previous` by `update` as the rules allow."""
    check_state(new)
    if previous is None:
        _require(isinstance(update, SetupUpdate), "only setup starts a channel")
        _require(
            new.nonce == 1 and not new.asset_ids and not new.transfers, "the setup state is nonce 1 and empty"
        )
        return
    _require(new.nonce == previous.nonce + 1, "the nonce rises by exactly one")
    _require(
        (new.channel_address, new.chain_id, new.node, new.user, new.timeout)
        == (previous.channel_address, previous.chain_id, previous.node, previous.user, previous.timeout),
        "channel, chain, parties and timeout never change",
    )
    old_count = len(previous.asset_ids)
    _require(new.asset_ids[:old_count] == previous.asset_ids, "assets are only appended")
    if isinstance(update, ResumeUpdate):
        _check_resume(previous, new, update)
        return
    _require(new.defund_nonces[:old_count] == previous.defund_nonces, "only a resume changes defund nonces")
    _require(all(n == 1 for n in new.defund_nonces[old_count:]), "a new asset starts at defund nonce 1")
    _require(
        len(new.asset_ids) - old_count <= (1 if isinstance(update, DepositUpdate) else 0), "one new asset"
    )
    if isinstance(update, SwapUpdate):
        _check_swap(previous, new, update)
        return

    moved_asset = _moved_asset(previous, update)
    for index, asset_id in enumerate(previous.asset_ids):
        if asset_id != moved_asset:
            _require(
                new.balances[index] == previous.balances[index]
                and new.processed_deposits[index] == previous.processed_deposits[index]
                and new.locked(asset_id) == previous.locked(asset_id),
                "only the update's own asset moves",
            )
    if moved_asset is None:
        return
    index = new.asset_ids.index(moved_asset)
    old_index = previous.asset_index(moved_asset)
    old_balances = previous.balances[old_index] if old_index is not None else (0, 0)
    old_processed = previous.processed_deposits[old_index] if old_index is not None else (0, 0)
    balance_delta = (new.balances[index][0] - old_balances[0], new.balances[index][1] - old_balances[1])
    processed_delta = (
        new.processed_deposits[index][0] - old_processed[0],
        new.processed_deposits[index][1] - old_processed[1],
    )
    if isinstance(update, DepositUpdate):
        _require(new.transfers == previous.transfers, "a deposit leaves transfers alone")
        _require(min(processed_delta) >= 0, "processed deposits never fall")
        _require(balance_delta == processed_delta, "a deposit credits exactly what it processes")
        return
    _require(processed_delta == (0, 0), "only a deposit changes processed deposits")
    if isinstance(update, CreateUpdate):
        _require(
            new.transfers[:-1] == previous.transfers and len(new.transfers) == len(previous.transfers) + 1,
            "a create adds one transfer",
        )
        created = new.transfers[-1]
        _require(created.create_nonce == new.nonce, "a transfer id is bound to its create nonce")
        payer = previous.party(update.initiator)
        expected = [0, 0]
        if payer is not None:
            expected[payer] = -update.amount
        _require(
            list(balance_delta) == expected and created.balance == (update.amount, 0),
            "a create moves exactly its amount from the initiator into the transfer",
        )
        return
    assert isinstance(update, ResolveUpdate)
    resolved = previous.transfer(update.transfer_id)
    _require(
        resolved is not None and new.transfer(update.transfer_id) is None, "a resolve removes its transfer"
    )
    assert resolved is not None
    _require(
        new.transfers == tuple(t for t in previous.transfers if t is not resolved),
        "a resolve removes only its transfer",
    )
    paid = balance_delta[0] + balance_delta[1]
    _require(min(balance_delta) >= 0 and paid <= resolved.locked, "a resolve pays out at most what is locked")
    _require(
        paid == resolved.locked or definition_kind is DefinitionKind.WITHDRAW,
        "only a withdraw takes funds out of the channel",
    )


def _check_swap(previous: ChannelState, new: ChannelState, update: SwapUpdate) -> None:
    _require(
        new.transfers == previous.transfers and new.processed_deposits == previous.processed_deposits,
        "a swap leaves transfers and processed deposits alone",
    )
    initiator = previous.party(update.initiator)
    _require(initiator is not None, "a swap is between the node and the user")
    assert initiator is not None
    moves = {
        update.give_asset: (int(initiator), update.give_amount),
        update.take_asset: (1 - initiator, update.take_amount),
    }
    _require(len(moves) == 2, "a swap exchanges two different assets")
    for index, asset_id in enumerate(previous.asset_ids):
        old, now = previous.balances[index], new.balances[index]
        _require(old[0] + old[1] == now[0] + now[1], "a swap conserves each asset (node + user unchanged)")
        payer, amount = moves.get(asset_id, (0, 0))
        expected = [0, 0]
        expected[payer] -= amount
        expected[1 - payer] += amount
        _require(
            [now[0] - old[0], now[1] - old[1]] == expected,
            "a swap moves exactly its amounts between the parties, and no other asset",
        )
    _require(
        {update.give_asset, update.take_asset} <= set(previous.asset_ids),
        "a swap is in assets of the channel",
    )


def _check_resume(previous: ChannelState, new: ChannelState, update: ResumeUpdate) -> None:
    changed = False
    for index, asset_id in enumerate(new.asset_ids):
        old_index = previous.asset_index(asset_id)
        nonce = new.defund_nonces[index]
        if old_index is None:
            raised = True
            _require(nonce > 1, "a resume appends only assets the chain defunded (defund nonce above 1)")
            old_processed = (0, 0)
        else:
            old_nonce = previous.defund_nonces[old_index]
            raised = nonce != old_nonce
            _require(not raised or nonce == old_nonce + 1, "a resume raises a defund nonce by exactly one")
            old_processed = previous.processed_deposits[old_index]
        processed = new.processed_deposits[index]
        if raised:
            changed = True
            _require(new.balances[index] == (0, 0), "a defunded asset's balances were paid out: [0, 0]")
            _require(
                processed[0] >= old_processed[0] and processed[1] >= old_processed[1],
                "processed deposits never fall",
            )
        else:
            assert old_index is not None
            _require(
                new.balances[index] == previous.balances[old_index] and processed == old_processed,
                "an asset not defunded keeps its balances and processed deposits",
            )
    dropped = set(update.dropped_transfer_ids)
    _require(
        all(previous.transfer(transfer_id) is not None for transfer_id in dropped)
        and new.transfers == tuple(t for t in previous.transfers if t.transfer_id not in dropped),
        "a resume drops exactly the transfers it names",
    )
    _require(changed or bool(dropped), "a resume changes something")


def _moved_asset(previous: ChannelState, update: Update) -> str | None:
    if isinstance(update, DepositUpdate | CreateUpdate):
        return update.asset_id
    if isinstance(update, ResolveUpdate):
        transfer = previous.transfer(update.transfer_id)
        return transfer.asset_id if transfer else None
    return None
