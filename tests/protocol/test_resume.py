"""The `resume` update: the channel continues after a dispute exactly as the chain settled it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connext.protocol import invariants, serialization
from connext.protocol.errors import ProtocolError
from connext.protocol.types import AssetDefund, ChainDispute, ChannelState, ResumeUpdate, UpdateContext
from connext.protocol.updates import apply_update
from tests.protocol import protocol_helpers as h

E = 10**18
DEFUND_EXPIRY = h.NOW + 2 * h.TIMEOUT
PREIMAGE = h.preimage_for("resume")


def defund_payout(state: ChannelState, asset: str, totals: tuple[int, int]) -> tuple[int, int]:
    """What `defundChannel` pays for `asset` of the disputed `state` with the chain's deposit totals."""
    index = state.asset_index(asset)
    balance = state.balances[index] if index is not None else (0, 0)
    processed = state.processed_deposits[index] if index is not None else (0, 0)
    return (balance[0] + max(0, totals[0] - processed[0]), balance[1] + max(0, totals[1] - processed[1]))


def disputed() -> tuple[ChannelState, bytes, bytes]:
    """A funded channel with two user→node transfers: the first one gets disputed on chain."""
    state = h.funded_state()
    for label in (b"a", b"b"):
        update = h.linked_create(state, initiator=h.USER.address, amount=E // 10, preimage=PREIMAGE)
        state = apply_update(
            state, replace(update, payment_id=h.preimage_for(label.decode())), context=h.context()
        )
    return state, state.transfers[0].transfer_id, state.transfers[1].transfer_id


def chain_after(
    state: ChannelState,
    *,
    totals: tuple[int, int] = (E, E + E // 2),  # the user deposited half an ETH after the state
    defunded_transfers: tuple[bytes, ...] = (),
    chain_time: int = DEFUND_EXPIRY,
) -> ChainDispute:
    hashes = frozenset(t.transfer_hash for t in state.transfers if t.transfer_id in defunded_transfers)
    return ChainDispute(
        state_hash=state.state_hash,
        defund_expiry=DEFUND_EXPIRY,
        chain_time=chain_time,
        defunds={
            h.ETH: AssetDefund(asset_id=h.ETH, defund_nonce=1, payout=defund_payout(state, h.ETH, totals))
        },
        disputed_transfers=hashes,
        defunded_transfers=hashes,
    )


def resume_of(state: ChannelState, dispute: ChainDispute, *, dropped: tuple[bytes, ...] = ()) -> ResumeUpdate:
    return ResumeUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=h.NODE.address,
        defunds=tuple(dispute.defunds.values()),
        dropped_transfer_ids=dropped,
    )


def ctx(dispute: ChainDispute | None, **kwargs: object) -> UpdateContext:
    return replace(h.context(**kwargs), dispute=dispute)  # type: ignore[arg-type]


def test_resume_pays_nothing_twice_drops_what_the_chain_paid_and_keeps_the_rest() -> None:
    state, settled, kept = disputed()
    dispute = chain_after(state, defunded_transfers=(settled,))
    new = apply_update(state, resume_of(state, dispute, dropped=(settled,)), context=ctx(dispute))

    assert new.nonce == state.nonce + 1
    assert new.balances == ((0, 0),)
    # The totals the defund paid against: the user's late half ETH was paid out, so it is processed.
    assert new.processed_deposits == ((E, E + E // 2),)
    assert new.defund_nonces == (2,)  # above the chain's 1: the next dispute can defund again
    assert [t.transfer_id for t in new.transfers] == [kept]
    # The transfer never disputed is still settled off chain as usual (its funds are still locked).
    resolve = h.resolve_update(new, transfer_id=kept, initiator=h.NODE.address, resolver=PREIMAGE)
    resolved = apply_update(new, resolve, context=h.context())
    assert resolved.balances == ((E // 10, 0),)


def test_after_resume_only_later_deposits_count_as_new() -> None:
    state, settled, _ = disputed()
    dispute = chain_after(state, defunded_transfers=(settled,))
    new = apply_update(state, resume_of(state, dispute, dropped=(settled,)), context=ctx(dispute))
    chain_totals = (E, E + E // 2 + 7)  # the user deposits 7 wei after the defund
    deposit = h.deposit_update(new, node=chain_totals[0], user=chain_totals[1], initiator=h.USER.address)
    credited = apply_update(new, deposit, context=h.context(deposits={h.ETH: chain_totals}))
    assert credited.balances == ((0, 7),)
    # A second dispute of that state pays exactly the 7 wei (and the kept transfer by its own dispute).
    assert defund_payout(credited, h.ETH, chain_totals) == (0, 7)


def test_an_asset_defunded_without_being_in_the_state_is_appended_above_defund_nonce_one() -> None:
    state, _, _ = disputed()
    dispute = chain_after(state)
    token = AssetDefund(
        asset_id=h.TOKEN, defund_nonce=1, payout=(0, 55)
    )  # sent to the channel, never credited
    dispute = replace(dispute, defunds={**dispute.defunds, h.TOKEN: token})
    new = apply_update(state, resume_of(state, dispute), context=ctx(dispute))
    assert new.asset_ids == (h.ETH, h.TOKEN)
    assert new.processed_deposits[1] == (0, 55)
    assert (new.balances[1], new.defund_nonces[1]) == ((0, 0), 2)
    left_out = replace(resume_of(state, dispute), defunds=(dispute.defunds[h.ETH],))
    with pytest.raises(ProtocolError) as refused:
        apply_update(state, left_out, context=ctx(dispute))
    assert refused.value.code == "dispute_mismatch"


def test_an_asset_not_defunded_keeps_its_balances_and_defund_nonce() -> None:
    state = h.funded_state()
    deposit = h.deposit_update(state, asset=h.TOKEN, node=5, user=9)
    state = apply_update(state, deposit, context=h.context(deposits={h.TOKEN: (5, 9)}))
    dispute = chain_after(state)
    new = apply_update(state, resume_of(state, dispute), context=ctx(dispute))
    assert (new.balances[1], new.processed_deposits[1], new.defund_nonces[1]) == ((5, 9), (5, 9), 1)
    assert new.defund_nonces[0] == 2


def _refused(state: ChannelState, update: ResumeUpdate, context: UpdateContext) -> str:
    before = serialization.channel_state_to_json(state)
    with pytest.raises(ProtocolError) as refused:
        apply_update(state, update, context=context)
    assert serialization.channel_state_to_json(state) == before  # nothing changed
    return refused.value.code


def test_resume_with_wrong_payouts_is_refused() -> None:
    state, settled, _ = disputed()
    dispute = chain_after(state, defunded_transfers=(settled,))
    update = resume_of(state, dispute, dropped=(settled,))
    (defund,) = update.defunds
    more = replace(update, defunds=(replace(defund, payout=(defund.payout[0], defund.payout[1] + 1)),))
    assert _refused(state, more, ctx(dispute)) == "dispute_mismatch"


def test_resume_with_a_wrong_defund_nonce_is_refused() -> None:
    state, settled, _ = disputed()
    dispute = chain_after(state, defunded_transfers=(settled,))
    update = resume_of(state, dispute, dropped=(settled,))
    (defund,) = update.defunds
    assert _refused(state, replace(update, defunds=(replace(defund, defund_nonce=2),)), ctx(dispute)) == (
        "dispute_mismatch"
    )
    # nor when the chain itself stored a nonce this state does not have
    later = replace(dispute, defunds={h.ETH: replace(defund, defund_nonce=2)})
    assert _refused(state, replace(update, defunds=(replace(defund, defund_nonce=2),)), ctx(later)) == (
        "dispute_mismatch"
    )


def test_resume_before_the_defund_window_ends_is_refused() -> None:
    state, settled, _ = disputed()
    dispute = chain_after(state, defunded_transfers=(settled,), chain_time=DEFUND_EXPIRY - 1)
    update = resume_of(state, dispute, dropped=(settled,))
    # The local clock is no authority: only the chain's time counts.
    assert _refused(state, update, ctx(dispute, now=DEFUND_EXPIRY + 10**6)) == "dispute_not_over"
    assert _refused(state, update, ctx(None)) == "dispute_not_over"


def test_resume_dropping_a_transfer_not_defunded_on_chain_is_refused() -> None:
    state, settled, kept = disputed()
    dispute = chain_after(state, defunded_transfers=(settled,))
    assert (
        _refused(state, resume_of(state, dispute, dropped=(settled, kept)), ctx(dispute))
        == "dispute_mismatch"
    )
    # and leaving one the chain paid out in the state is refused too (it could be resolved twice)
    assert _refused(state, resume_of(state, dispute), ctx(dispute)) == "dispute_mismatch"


def test_resume_of_another_state_than_the_disputed_one_is_refused() -> None:
    state, settled, _ = disputed()
    dispute = replace(chain_after(state, defunded_transfers=(settled,)), state_hash=b"\x01" * 32)
    assert _refused(state, resume_of(state, dispute, dropped=(settled,)), ctx(dispute)) == "dispute_mismatch"


def test_a_transfer_disputed_on_chain_is_not_resolved_off_chain() -> None:
    state, settled, _ = disputed()
    dispute = replace(chain_after(state), disputed_transfers=frozenset({state.transfers[0].transfer_hash}))
    resolve = h.resolve_update(state, transfer_id=settled, initiator=h.NODE.address, resolver=PREIMAGE)
    with pytest.raises(ProtocolError) as refused:
        apply_update(state, resolve, context=ctx(dispute))
    assert refused.value.code == "dispute_mismatch"


def test_a_transfer_paid_out_later_is_dropped_by_a_resume_of_its_own() -> None:
    state, settled, kept = disputed()
    dispute = chain_after(state)  # the transfer's window is still open at the resume
    resumed = apply_update(state, resume_of(state, dispute), context=ctx(dispute))
    assert len(resumed.transfers) == 2
    later = replace(dispute, defunded_transfers=frozenset({state.transfers[0].transfer_hash}))
    drop = replace(resume_of(resumed, later, dropped=(settled,)), defunds=())
    dropped = apply_update(resumed, drop, context=ctx(later))
    assert [t.transfer_id for t in dropped.transfers] == [kept]
    assert dropped.balances == resumed.balances
    assert dropped.defund_nonces == (2,)
    # the asset cannot be resumed a second time from the same defund
    again = replace(resume_of(dropped, later), dropped_transfer_ids=())
    assert _refused(dropped, again, ctx(later)) == "dispute_mismatch"


def test_only_a_resume_changes_defund_nonces() -> None:
    state = h.funded_state()
    update = h.deposit_update(state, node=E, user=E + 1)
    new = apply_update(state, update, context=h.context(deposits={h.ETH: (E, E + 1)}))
    with pytest.raises(ProtocolError) as refused:
        invariants.check_transition(state, replace(new, defund_nonces=(2,)), update)
    assert refused.value.code == "invariant_violated"


def test_a_resume_that_skips_a_defund_nonce_breaks_the_invariant() -> None:
    state, settled, _ = disputed()
    dispute = chain_after(state, defunded_transfers=(settled,))
    update = resume_of(state, dispute, dropped=(settled,))
    new = apply_update(state, update, context=ctx(dispute))
    with pytest.raises(ProtocolError) as refused:
        invariants.check_transition(state, replace(new, defund_nonces=(3,)), update)
    assert refused.value.code == "invariant_violated"
    with pytest.raises(ProtocolError):
        invariants.check_transition(state, replace(new, balances=((1, 0),)), update)


def test_resume_and_context_round_trip_through_json() -> None:
    state, settled, _ = disputed()
    dispute = chain_after(state, defunded_transfers=(settled,))
    update = resume_of(state, dispute, dropped=(settled,))
    assert serialization.update_from_json(serialization.update_to_json(update)) == update
    context = ctx(dispute)
    parsed = serialization.update_context_from_json(serialization.update_context_to_json(context))
    assert parsed.dispute == context.dispute
    document = serialization.update_to_json(update)
    document["defunds"][0]["toUser"] = "-1"
    with pytest.raises(ProtocolError) as refused:
        serialization.update_from_json(document)
    assert (refused.value.code, refused.value.field) == ("malformed", "defunds[0].toUser")
    document = serialization.update_to_json(update)
    document["defunds"].append(document["defunds"][0])
    with pytest.raises(ProtocolError) as duplicate:
        apply_update(state, serialization.update_from_json(document), context=context)
    assert (duplicate.value.code, duplicate.value.field) == ("malformed", "defunds")


@settings(max_examples=150, deadline=None)
@given(
    balances=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    processed_extra=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    late=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    locks=st.lists(st.integers(1, 1000), max_size=4),
    defunded=st.lists(st.booleans(), min_size=4, max_size=4),
    later_deposit=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_after_a_resume_a_second_dispute_pays_exactly_the_later_deposits(
    balances, processed_extra, late, locks, defunded, later_deposit
) -> None:
    # Any funded state, with some user→node transfers; deposits may have arrived after it.
    processed = (balances[0] + processed_extra[0] + 1, balances[1] + sum(locks) + processed_extra[1])
    state = h.funded_state(node=processed[0], user=processed[1])
    state = replace(state, balances=((balances[0], balances[1] + sum(locks)),))  # the rest was withdrawn
    invariants.check_state(state)
    for i, amount in enumerate(locks):
        update = h.linked_create(state, initiator=h.USER.address, amount=amount, preimage=PREIMAGE)
        state = apply_update(state, replace(update, payment_id=h.preimage_for(str(i))), context=h.context())
    settled = tuple(t.transfer_id for t, paid in zip(state.transfers, defunded, strict=False) if paid)
    totals = (processed[0] + late[0], processed[1] + late[1])
    dispute = chain_after(state, totals=totals, defunded_transfers=settled)
    payout = dispute.defunds[h.ETH].payout
    new = apply_update(state, resume_of(state, dispute, dropped=settled), context=ctx(dispute))

    assert new.processed_deposits == (totals,)
    # What left the channel on chain (the defund and the paid-out transfers) is exactly what the new
    # state counts as gone: nothing created, nothing lost.
    paid_transfers = sum(t.locked for t in state.transfers if t.transfer_id in settled)
    assert new.withdrawn(h.ETH) == state.withdrawn(h.ETH) + sum(payout) + paid_transfers
    assert defund_payout(new, h.ETH, totals) == (0, 0)  # a second dispute pays nothing twice
    later = (totals[0] + later_deposit[0], totals[1] + later_deposit[1])
    if later != totals:
        deposit = h.deposit_update(new, node=later[0], user=later[1])
        new = apply_update(new, deposit, context=h.context(deposits={h.ETH: later}))
    assert defund_payout(new, h.ETH, later) == later_deposit
    assert new.defund_nonces == (2,)
