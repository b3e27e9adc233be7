"""The client's store: the latest doubly signed state and the update left unanswered."""

from __future__ import annotations

from dataclasses import replace

from connext.client.store import ChannelSetup, PaymentRecord, SignedState, Store
from connext.protocol import signing
from connext.protocol.types import DefinitionKind
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


def _setup(channel_address: str, **changes) -> ChannelSetup:
    fields = {
        "channel_address": channel_address,
        "chain_id": 31337,
        "node": NODE.address,
        "user": USER.address,
        "factory": "0x" + "12" * 20,
        "definitions": {"0x" + "34" * 20: DefinitionKind.LINKED, "0x" + "56" * 20: DefinitionKind.HASHLOCK},
        "assets": ("0x" + "00" * 20,),
        "chain_rpc_url": "http://127.0.0.1:8545",
    }
    return ChannelSetup(**{**fields, **changes})


def test_the_channel_setup_survives_reopening_and_is_found_without_naming_the_channel(tmp_path):
    state = funded_state()
    store = Store(tmp_path / "wallet.db")
    assert store.setup() is None
    store.save_setup(_setup(state.channel_address))
    store.save_setup(_setup(state.channel_address, chain_rpc_url="http://rpc.example"))  # replaced, not added
    store.close()

    reopened = Store(tmp_path / "wallet.db")

    assert reopened.setup() == _setup(state.channel_address, chain_rpc_url="http://rpc.example")
    assert reopened.setup(state.channel_address) == reopened.setup()
    assert reopened.setup("0x" + "99" * 20) is None


def test_a_store_with_two_channels_names_no_default_setup():
    store = Store(None)
    store.save_setup(_setup("0x" + "aa" * 20))
    store.save_setup(_setup("0x" + "bb" * 20))

    assert store.setup() is None
    assert store.setup("0x" + "bb" * 20) == _setup("0x" + "bb" * 20)


def test_a_payment_saved_again_with_nothing_new_is_left_as_it_was(tmp_path):
    store = Store(tmp_path / "client.db")
    news = PaymentRecord(
        payment_id="0x" + "01" * 32,
        direction="incoming",
        kind="linked",
        sender="0x" + "aa" * 20,
        recipient="0x" + "bb" * 20,
        asset_id="0x" + "00" * 20,
        amount=5,
        status="forwarded",
        meta={"note": "rent"},
    )
    first = store.save_payment(replace(news, secret=b"s" * 32))

    again = store.save_payment(news)  # the same news, told again without the secret

    assert again == first  # not written: the same record, the same updatedAt
    assert store.payment(news.payment_id) == first
    completed = store.save_payment(replace(news, status="completed"))
    assert completed.status == "completed"
    assert completed.updated_at > first.updated_at
    assert completed.secret == b"s" * 32
    assert store.payment(news.payment_id) == completed
