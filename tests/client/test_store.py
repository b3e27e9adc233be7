"""The client's store: the latest doubly signed state, the update left unanswered, the proposal the user
countersigned, and what of them is synced before a signature leaves."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from connext.client.store import BATCH_SECONDS, ChannelSetup, PaymentRecord, PendingUpdate, SignedState, Store
from connext.protocol import signing
from connext.protocol.types import DefinitionKind
from connext.protocol.updates import apply_update
from tests.protocol.protocol_helpers import (
    ETH,
    NODE,
    USER,
    context,
    deposit_update,
    funded_state,
    linked_create,
    preimage_for,
)
from tests.support.processes import wait_until


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


# -- durability: what is synced, and the memory against the file ---------------------------------------


def _linked_create_by_user(state):
    update = linked_create(state, initiator=USER.address, amount=10**17, preimage=preimage_for("store"))
    return update, apply_update(state, update, context=context())


def test_the_users_update_and_the_proposal_it_countersigns_are_one_synced_commit(tmp_path):
    state = funded_state()
    store = Store(tmp_path / "wallet.db")
    store.save_latest(signed(state))
    proposal = deposit_update(state, user=10**18, node=2 * 10**18, initiator=NODE.address)
    answered = signed(apply_update(state, proposal, context=context(deposits={ETH: (2 * 10**18, 10**18)})))
    update, new = _linked_create_by_user(answered.state)
    before = (store.commits, store.synced_commits)

    store.save_pending(update, signing.sign_state(new, USER), answered=answered)
    store.close()
    reopened = Store(tmp_path / "wallet.db")

    assert (store.commits - before[0], store.synced_commits - before[1]) == (1, 1)
    assert reopened.countersigned(state.channel_address) == answered
    assert reopened.pending(state.channel_address).update == update


def test_payment_news_and_a_state_that_pays_the_user_nothing_more_commit_unsynced(tmp_path):
    state = funded_state()
    store = Store(tmp_path / "wallet.db")
    store.save_latest(signed(state))
    _, locked = _linked_create_by_user(state)
    synced = store.synced_commits

    store.save_payment(_payment("forwarded"))
    store.save_payment(_payment("completed"))
    store.save_latest(signed(locked))  # the node's answer to the user's create: the user's balance is down

    assert store.synced_commits == synced
    assert store.latest(state.channel_address) == signed(locked)


def test_a_state_that_pays_the_user_more_is_synced_unless_the_file_holds_it_as_the_countersigned_proposal(
    tmp_path,
):
    state = funded_state()
    store = Store(tmp_path / "wallet.db")
    store.save_latest(signed(state))
    credit = deposit_update(state, user=2 * 10**18, node=10**18, initiator=USER.address)
    credited = signed(apply_update(state, credit, context=context(deposits={ETH: (10**18, 2 * 10**18)})))
    more = deposit_update(credited.state, user=3 * 10**18, node=10**18, initiator=NODE.address)
    countersigned = signed(
        apply_update(credited.state, more, context=context(deposits={ETH: (10**18, 3 * 10**18)}))
    )

    synced = store.synced_commits
    store.save_latest(credited)  # the user's own deposit, credited: only the node's signature proves it
    assert store.synced_commits == synced + 1

    store.save_countersigned(countersigned)  # synced before the countersignature leaves
    store.save_latest(countersigned)  # the node confirms it: already on disk
    assert store.synced_commits == synced + 2
    assert store.countersigned(state.channel_address) is None


def test_a_write_that_raises_leaves_the_memory_as_the_file_is(tmp_path):
    state = funded_state()
    store = Store(tmp_path / "wallet.db")
    store.save_latest(signed(state))
    update, locked = _linked_create_by_user(state)
    store.save_pending(update, signing.sign_state(locked, USER))
    first = store.save_payment(_payment("forwarded"))
    refusing = sqlite3.connect(tmp_path / "wallet.db")
    for table in ("channel_state", "pending_update", "payment"):
        refusing.execute(
            f"CREATE TRIGGER refuse_{table} BEFORE DELETE ON {table} BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    refusing.commit()
    refusing.close()
    assert store.latest(state.channel_address) == signed(state)  # read again after the other connection

    with pytest.raises(sqlite3.IntegrityError):
        store.clear_pending(state.channel_address)  # synced, at once
    store.save_latest(signed(locked))  # batched: its DELETE of the pending update is refused at the flush
    store.delete_payment(first.payment_id)
    assert store.latest(state.channel_address) == signed(locked)  # in memory, not in the file yet
    with pytest.raises(sqlite3.IntegrityError):
        store.flush()

    reopened = Store(tmp_path / "wallet.db")
    for view in (store, reopened):
        assert view.latest(state.channel_address) == signed(state)
        assert view.pending(state.channel_address) == PendingUpdate(update, signing.sign_state(locked, USER))
        assert view.payment(first.payment_id) == first


def test_a_store_sees_what_another_process_committed_to_its_file(tmp_path):
    state = funded_state()
    watching = Store(tmp_path / "wallet.db")  # `connext watch` beside a running client, say
    assert watching.latest(state.channel_address) is None
    assert watching.payment(_payment("forwarded").payment_id) is None
    writing = Store(tmp_path / "wallet.db")

    writing.save_latest(signed(state))
    writing.save_payment(_payment("forwarded"))
    writing.flush()  # payment news is batched (the next test)

    wait_until(  # a read looks again within FRESH_SECONDS
        lambda: watching.latest(state.channel_address) == signed(state), timeout=5, what="the new state"
    )
    assert watching.payment(_payment("forwarded").payment_id).status == "forwarded"


def test_payment_news_goes_with_the_next_transaction_or_on_its_own_soon_after(tmp_path):
    state = funded_state()
    store = Store(tmp_path / "wallet.db")
    store.flush_with(lambda delay, flush: threading.Timer(delay, flush).start())  # the client's loop
    store.save_latest(signed(state))
    update, locked = _linked_create_by_user(state)
    other = sqlite3.connect(tmp_path / "wallet.db")

    def on_file(payment_id: str) -> str | None:
        row = other.execute("SELECT status FROM payment WHERE payment_id = ?", (payment_id,)).fetchone()
        return None if row is None else row[0]

    commits = store.commits
    store.save_payment(replace(_payment("sending"), payment_id="0x" + "03" * 32))
    store.save_pending(update, signing.sign_state(locked, USER))  # the record of a create, then its update
    assert store.commits == commits + 1
    assert on_file("0x" + "03" * 32) == "sending"

    store.save_payment(_payment("forwarded"))  # nothing else to go with: on its own, BATCH_SECONDS later
    wait_until(lambda: on_file(_payment("forwarded").payment_id), timeout=5, what="the batch's commit")
    assert on_file(_payment("forwarded").payment_id) == "forwarded"

    store.save_payment(_payment("completed"))
    store.close()  # closing writes what is batched
    assert Store(tmp_path / "wallet.db").payment(_payment("forwarded").payment_id).status == "completed"


def test_a_state_the_node_confirms_is_on_disk_as_countersigned_until_the_loop_runs_its_batch_however_late(
    tmp_path,
):
    state = funded_state()
    address = state.channel_address
    timers: list[tuple[float, Callable[[], None]]] = []
    store = Store(tmp_path / "wallet.db")
    store.flush_with(lambda delay, flush: timers.append((delay, flush)))  # a busy loop: not run yet
    store.save_latest(signed(state))
    collateral = deposit_update(state, user=10**18, node=2 * 10**18, initiator=NODE.address)
    confirmed = signed(apply_update(state, collateral, context=context(deposits={ETH: (2 * 10**18, 10**18)})))

    store.save_countersigned(confirmed)  # synced before the countersignature leaves
    store.save_latest(confirmed)  # the node took it: batched, the file holds it already
    reader = Store(tmp_path / "wallet.db")  # another process, or the client restarted after a crash

    assert reader.latest(address) == signed(state)  # what the payments test once read, and failed on
    assert reader.countersigned(address) == confirmed
    assert store.latest(address) == confirmed  # (a read of the store's own may commit a due batch: last)

    for delay, flush in timers:  # the loop gets to the batch's timer, later than it was due
        threading.Timer(delay, flush).start()
    wait_until(
        lambda: Store(tmp_path / "wallet.db").latest(address) == confirmed,
        timeout=5,
        what="the batch's commit",
    )
    assert Store(tmp_path / "wallet.db").countersigned(address) is None


def test_a_batch_the_file_was_too_busy_for_is_tried_again_on_the_next_timer(tmp_path):
    timers: list[Callable[[], None]] = []
    store = Store(tmp_path / "wallet.db")
    store.flush_with(lambda delay, flush: timers.append(flush))
    store.save_latest(signed(funded_state()))
    store.save_payment(_payment("forwarded"))  # batched, its timer set
    assert len(timers) == 1
    store._db.execute("PRAGMA busy_timeout = 50")  # give up on the lock at once, not after 5 s
    other = sqlite3.connect(tmp_path / "wallet.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing the file
    time.sleep(BATCH_SECONDS)

    timers.pop()()  # due, and the file is locked: not written, and its timer set again
    assert other.execute("SELECT count(*) FROM payment").fetchone() == (0,)
    assert len(timers) == 1
    other.execute("ROLLBACK")
    timers.pop()()
    assert other.execute("SELECT status FROM payment").fetchall() == [("forwarded",)]
    assert timers == []
    store.close()


def _payment(status: str) -> PaymentRecord:
    return PaymentRecord(
        payment_id="0x" + "02" * 32,
        direction="incoming",
        kind="linked",
        sender="0x" + "aa" * 20,
        recipient="0x" + "bb" * 20,
        asset_id=ETH,
        amount=5,
        status=status,
    )
