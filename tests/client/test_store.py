"""The client's store: the latest doubly signed state and the update left unanswered."""

from __future__ import annotations

from connext.client.store import SignedState, Store
from connext.protocol import signing
from connext.protocol.updates import apply_update
from tests.protocol.protocol_helpers import NODE, USER, context, deposit_update, funded_state


def signed(state) -> SignedState:
    return SignedState(state, signing.sign_state(state, NODE), signing.sign_state(state, USER))


def test_the_latest_state_and_its_signatures_survive_reopening_the_file(tmp_path):
    state = funded_state()
    store = Store(tmp_path / "wallet.db")
    store.save_latest(signed(state))
    store.close()

    reopened = Store(tmp_path / "wallet.db").latest(state.channel_address)

    assert reopened == signed(state)
    signing.verify_state_signatures(reopened.state, reopened.node_signature, reopened.user_signature)


def test_an_empty_store_has_no_state_and_an_in_memory_one_keeps_nothing_after_closing(tmp_path):
    state = funded_state()
    memory = Store(None)
    memory.save_latest(signed(state))

    assert Store(None).latest(state.channel_address) is None
    assert memory.latest(state.channel_address) == signed(state)


def test_a_pending_update_is_kept_until_a_state_at_its_nonce_is_stored():
    state = funded_state()
    update = deposit_update(state, user=2 * 10**18, node=10**18, initiator=USER.address)
    new = apply_update(state, update, context=context(deposits={update.asset_id: (10**18, 2 * 10**18)}))
    store = Store(None)
    store.save_latest(signed(state))
    store.save_pending(update, signing.sign_state(new, USER))

    kept = store.pending(state.channel_address)
    store.save_latest(signed(new))

    assert kept is not None
    assert kept.update == update
    assert store.pending(state.channel_address) is None
