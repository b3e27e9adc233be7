"""The node's watchtower on anvil (issue 7, node side): stale disputes answered, the node's own
disputes, transfers settled on chain, withdrawals counted once, a restart mid-window, the channel used
again after a dispute. Chain time moves
with `evm_increaseTime`; nothing sleeps. Every scenario ends with the conservation check."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from web3 import Web3

from channels_app import chain as node_chain
from channels_app import network, realtime
from channels_app.models import (
    BlockCursor,
    Channel,
    ChannelUpdate,
    Dispute,
    DisputeAction,
    OnchainTransaction,
    Payment,
    RebalanceProfile,
    Transfer,
    TransferDispute,
    Withdrawal,
)
from channels_app.services import channels, node_actions, payments, transactions, watcher, watchtower
from connext.chain import channel_reads, disputes
from connext.chain.contracts import contract_at
from tests.channels_app.conftest import FUNDER_KEY, new_wallet
from tests.support.conservation import assert_conserved
from tests.support.disputes import (
    advance_chain,
    run_tower_work,
    send_from,
    user_defunds_transfer,
    user_disputes_channel,
    user_disputes_transfer,
)
from tests.support.node_work import run_node_work
from tests.support.wallet import ETH, Wallet

pytestmark = pytest.mark.django_db
E = 10**18
T = 3600  # the dispute timeout of these channels (DISPUTE_TIMEOUT_SECONDS in the w3 fixture)


@pytest.fixture
def alice_and_bob(client, w3):
    alice = new_wallet(client, w3)
    bob = new_wallet(Client(), w3)
    alice.send_eth(FUNDER_KEY, alice.state.channel_address, 2 * E)
    alice.deposit_update()
    run_node_work(alice, bob)  # the node collateralizes both channels
    return alice, bob


@pytest.fixture
def events(monkeypatch):
    """(user address, event, payload) of every push, recorded instead of sent after commit."""
    pushed: list[tuple[str, str, dict]] = []

    def record(group: str, event: str, payload: dict) -> None:
        pushed.append((group.removeprefix("user."), event, payload))

    monkeypatch.setattr(realtime, "push_event_on_commit", record)
    return pushed


def dispute_events(pushed, wallet: Wallet) -> list[str]:
    return [
        event for user, event, _ in pushed if user == wallet.address.lower() and event.startswith("dispute.")
    ]


def eth_balance(w3, address: str) -> int:
    return int(w3.eth.get_balance(address))


def channel_defunds(w3, channel_address: str) -> list[dict]:
    channel = contract_at(w3, "Channel", channel_address)
    return [dict(log["args"]) for log in channel.events.ChannelDefunded().get_logs(from_block=0)]


def pay_and_complete(alice: Wallet, bob: Wallet, amount: int) -> None:
    response, payment_id, preimage = alice.pay(bob.address, amount)
    assert response.status_code == 200
    run_node_work(alice, bob)
    assert bob.resolve_incoming(payment_id, preimage).status_code == 200
    run_node_work(alice, bob)
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.COMPLETED


# -- (1) the user disputes with a stale state in its favour ----------------------------------------


def test_a_stale_dispute_by_the_user_is_answered_and_the_defund_pays_exactly_the_latest_balances(
    alice_and_bob, w3, chain, events
):
    alice, bob = alice_and_bob
    stale = alice.state
    pay_and_complete(alice, bob, E // 4)  # small enough that the node reclaims no collateral
    latest = alice.state
    assert latest.balances[0][1] == stale.balances[0][1] - E // 4
    assert latest.transfers == ()

    user_disputes_channel(alice, stale)  # Alice tries her luck with the state before she paid
    run_tower_work(bob)

    dispute = Dispute.objects.get(channel__address=latest.channel_address)
    assert dispute.disputed_by == Dispute.Party.USER
    assert (dispute.started_nonce, dispute.nonce) == (stale.nonce, latest.nonce)
    assert dispute.status == Dispute.Status.ANSWERED
    assert Channel.objects.get(address=latest.channel_address).status == Channel.Status.DISPUTED
    assert dispute_events(events, alice) == ["dispute.started", "dispute.answered"]
    # frozen off chain while it runs
    frozen, _, _ = alice.pay(bob.address, 1)
    assert frozen.json()["error"]["code"] == "channel_not_open"
    alice.state = latest

    alice_before = eth_balance(w3, alice.address)
    advance_chain(chain, T)
    run_tower_work(bob)

    (defund,) = channel_defunds(w3, latest.channel_address)
    totals = channel_reads.deposit_totals(w3, latest.channel_address, ETH, block="latest")
    node_balance, user_balance = latest.balances[0]
    assert defund["toUser"] == user_balance
    assert defund["toNode"] == node_balance + totals.node - latest.processed_deposits[0][0]
    assert eth_balance(w3, alice.address) == alice_before + user_balance
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.DEFUNDED
    assert dispute_events(events, alice)[-1] == "dispute.defunded"
    kinds = sorted(DisputeAction.objects.filter(dispute=dispute).values_list("kind", flat=True))
    assert kinds == ["defund_channel", "dispute_channel"]
    # Running everything again, logs included, does nothing twice.
    BlockCursor.objects.update(block_number=0)
    watcher.logs_watch()
    watchtower.disputes_advance_all()
    watchtower.disputes_advance_all()
    assert DisputeAction.objects.filter(dispute=dispute).count() == 2
    assert dispute_events(events, alice).count("dispute.defunded") == 1

    advance_chain(chain, T)
    run_tower_work(bob)
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.RESUMED  # the channel continues once Alice countersigns
    channel = Channel.objects.get(address=latest.channel_address)
    assert channel.status == Channel.Status.OPEN
    assert channel.pending_update["type"] == "resume"
    assert_conserved(w3, latest.channel_address)


def test_when_the_node_missed_the_window_it_still_collects_what_the_older_state_owes_it(
    alice_and_bob, w3, chain, events
):
    """The node was down for the whole window and Alice's older state won: the node rebuilds that
    state from its update records, defunds the channel and claims the transfer it holds a resolver
    for, so its share does not stay in the contract."""
    alice, bob = alice_and_bob
    response, payment_id, preimage = alice.pay(bob.address, E // 4)
    assert response.status_code == 200
    older = alice.state  # Alice's payment to the node is locked in it
    (locked,) = older.transfers
    run_node_work(alice, bob)
    assert bob.resolve_incoming(payment_id, preimage).status_code == 200
    run_node_work(alice, bob)
    latest = Channel.objects.get(address=older.channel_address)
    assert latest.nonce > older.nonce
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.COMPLETED

    user_disputes_channel(alice, older)
    advance_chain(chain, T)  # the consensus window passes while the node is down
    node_before = eth_balance(w3, latest.node_address)
    run_tower_work(bob)

    dispute = Dispute.objects.get(channel=latest)
    assert dispute.nonce == older.nonce  # nobody answered: the older state stands on chain
    assert dispute.status == Dispute.Status.DEFUNDED
    (defund,) = channel_defunds(w3, older.channel_address)
    totals = channel_reads.deposit_totals(w3, older.channel_address, ETH, block="latest")
    node_balance, user_balance = older.balances[0]
    assert defund["toUser"] == user_balance
    assert defund["toNode"] == node_balance + totals.node - older.processed_deposits[0][0]
    claimed = disputes.read_transfer_dispute(w3, older.channel_address, locked.transfer_hash)
    assert claimed.defunded  # with Bob's preimage, which the node kept
    kinds = sorted(DisputeAction.objects.filter(dispute=dispute).values_list("kind", flat=True))
    assert kinds == ["defund_channel", "defund_transfer", "dispute_transfer"]
    assert eth_balance(w3, latest.node_address) > node_before  # gas spent, more than that received

    advance_chain(chain, T)
    run_tower_work(bob)
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.CLOSED  # later states are void on chain: no resume
    assert Channel.objects.get(pk=latest.pk).status == Channel.Status.CLOSED
    assert_conserved(w3, older.channel_address)


def test_when_the_node_missed_a_window_after_a_resume_it_still_collects_what_the_older_state_owes_it(
    alice_and_bob, w3, chain, events
):
    """As above, on a channel that was disputed and resumed before: the older state is rebuilt from
    the state the resume made (kept whole: it depends on the chain's record of that first dispute)
    and the updates after it. Before, such a round was left `missed` with the node's share stranded."""
    alice, bob = alice_and_bob
    channel = Channel.objects.get(user_address=alice.address)
    user_disputes_channel(alice, alice.state)
    run_tower_work(alice, bob)
    advance_chain(chain, T)
    run_tower_work(alice, bob)  # the node defunds
    advance_chain(chain, T)
    run_tower_work(alice, bob)  # the node proposes the resume, Alice signs it
    assert Dispute.objects.get(channel=channel).status == Dispute.Status.RESUMED
    alice.send_eth(FUNDER_KEY, channel.address, E)
    assert alice.deposit_update().status_code == 200
    response, payment_id, preimage = alice.pay(bob.address, E // 4)
    assert response.status_code == 200
    older = alice.state  # after the resume, with Alice's payment to the node locked
    (locked,) = older.transfers
    run_node_work(alice, bob)
    assert bob.resolve_incoming(payment_id, preimage).status_code == 200
    run_node_work(alice, bob)
    channel.refresh_from_db()
    assert channel.nonce > older.nonce

    user_disputes_channel(alice, older)
    advance_chain(chain, T)  # the consensus window passes while the node is down
    run_tower_work(bob)

    second = Dispute.objects.filter(channel=channel).order_by("pk").last()
    assert second.nonce == older.nonce
    assert second.status == Dispute.Status.DEFUNDED  # not `missed`
    defund = channel_defunds(w3, older.channel_address)[-1]
    totals = channel_reads.deposit_totals(w3, older.channel_address, ETH, block="latest")
    node_balance, user_balance = older.balances[0]
    assert (defund["defundNonce"], defund["toUser"]) == (older.defund_nonces[0], user_balance)
    assert defund["toNode"] == node_balance + totals.node - older.processed_deposits[0][0]
    assert disputes.read_transfer_dispute(w3, older.channel_address, locked.transfer_hash).defunded
    advance_chain(chain, T)
    run_tower_work(bob)
    assert Channel.objects.get(pk=channel.pk).status == Channel.Status.CLOSED
    assert_conserved(w3, older.channel_address)


def test_every_state_the_node_signed_is_rebuilt_exactly_and_nothing_it_cannot_vouch_for(alice_and_bob):
    alice, bob = alice_and_bob
    pay_and_complete(alice, bob, E // 8)
    channel = Channel.objects.get(address=alice.state.channel_address)
    signed = dict(ChannelUpdate.objects.filter(channel=channel).values_list("nonce", "state_hash"))
    assert sorted(signed) == list(range(1, channel.nonce + 1))  # setup, deposits, create, resolve

    for nonce, state_hash in signed.items():
        rebuilt = channels.state_at(channel, nonce)
        assert rebuilt is not None
        assert "0x" + rebuilt.state_hash.hex() == state_hash
    assert channels.state_at(channel, channel.nonce) == channels.latest_state(channel)
    assert channels.state_at(channel, channel.nonce + 1) is None  # never signed

    record = ChannelUpdate.objects.get(channel=channel, nonce=channel.nonce)
    record.update = {**record.update, "encodedResolver": "0x" + "00" * 32}  # not what was signed
    record.save()
    assert channels.state_at(channel, channel.nonce) is None
    assert channels.state_at(channel, channel.nonce - 1) is not None


def test_the_node_resumes_only_after_its_chain_watcher_recorded_a_defund_the_user_sent(
    alice_and_bob, w3, chain, events
):
    alice, bob = alice_and_bob
    disputed = alice.state
    user_disputes_channel(alice, disputed)
    run_tower_work(alice, bob)
    advance_chain(chain, T)
    # Alice defunds herself before the node's workers run: the chain has paid out, the records lag.
    send_from(w3, alice.key, disputed.channel_address, disputes.defund_channel_calldata(w3, disputed, [ETH]))
    advance_chain(chain, T)
    watchtower.disputes_advance_all()  # the beat, before the chain watcher saw `ChannelDefunded`

    channel = Channel.objects.get(address=disputed.channel_address)
    assert (channel.status, channel.nonce, channel.pending_update) == (
        Channel.Status.DISPUTED,
        disputed.nonce,
        None,
    )  # never open again at a state whose balances the chain already paid out
    assert Dispute.objects.get(channel=channel).status != Dispute.Status.RESUMED

    run_tower_work(alice, bob)  # the watcher records the defund; the resume carries it
    assert Dispute.objects.get(channel=channel).status == Dispute.Status.RESUMED
    assert alice.state.nonce == disputed.nonce + 1
    assert alice.state.balances == ((0, 0),)
    assert alice.state.defund_nonces == (2,)
    assert_conserved(w3, disputed.channel_address)


def dispute_transfer_until_resumed(alice: Wallet, bob: Wallet, chain, state, transfer) -> None:
    """Alice disputes her channel with `state` and `transfer` in it on chain; the round ends and the
    channel resumes (the disputed transfer stays in it until the chain pays it out)."""
    user_disputes_channel(alice, state)
    run_tower_work(alice, bob)
    advance_chain(chain, T)
    run_tower_work(alice, bob)
    user_disputes_transfer(alice, state, transfer)
    run_tower_work(alice, bob)
    advance_chain(chain, T)
    run_tower_work(alice, bob)


def test_a_link_whose_sender_side_is_disputed_on_chain_is_not_forwarded_and_blocks_no_other_payment(
    alice_and_bob, w3, chain, events
):
    alice, bob = alice_and_bob
    # Two links nobody redeemed yet; Alice disputes the first one's transfer on chain.
    expires = {"expiresAt": int(time.time()) + 30 * 24 * 3600}
    response, disputed_payment, disputed_preimage = alice.pay(None, E // 20, meta=expires)
    assert response.status_code == 200
    response, kept, kept_preimage = alice.pay(None, E // 10, meta=expires)
    assert response.status_code == 200
    run_node_work(alice, bob)
    disputed_state = alice.state
    disputed_transfer, _ = disputed_state.transfers
    alice_channel = Channel.objects.get(user_address=alice.address)
    dispute_transfer_until_resumed(alice, bob, chain, disputed_state, disputed_transfer)
    assert Dispute.objects.get(channel=alice_channel).status == Dispute.Status.RESUMED
    assert disputed_transfer in alice.state.transfers

    # Bob redeems both. The disputed side's window runs on chain, on its own clock: the node forwards
    # nothing for it (it could not be sure to claim it), and the other link is paid as usual.
    for payment_id, preimage in ((disputed_payment, disputed_preimage), (kept, kept_preimage)):
        redeemed = bob.post(f"/api/transfers/{payment_id}/redeem", {"preimage": "0x" + preimage.hex()})
        assert redeemed.status_code == 200, redeemed.json()
    run_node_work(alice, bob)
    assert Payment.objects.get(payment_id=disputed_payment).status == Payment.Status.FAILED
    assert Payment.objects.get(payment_id=disputed_payment).receiver_transfer is None
    assert bob.resolve_incoming(kept, kept_preimage).status_code == 200
    run_node_work(alice, bob)
    assert Payment.objects.get(payment_id=kept).status == Payment.Status.COMPLETED
    assert alice.state.transfers == (disputed_transfer,)
    assert not payments.payments_settle_upstream(channel_id=alice_channel.pk)
    alice_channel.refresh_from_db()
    assert alice_channel.pending_update is None

    assert Transfer.objects.get(transfer_id="0x" + disputed_transfer.transfer_id.hex()).status == (
        Transfer.Status.ACTIVE
    )


def test_a_payment_claimed_after_its_sender_side_was_disputed_and_the_channel_resumed_is_paid_on_chain(
    alice_and_bob, w3, chain, events
):
    alice, bob = alice_and_bob
    # Alice's side may be disputed on chain for two days; Bob reveals only after her channel resumed.
    response, payment_id, preimage = alice.pay(bob.address, E // 20, transfer_timeout=2 * 24 * 3600)
    assert response.status_code == 200
    run_node_work(alice, bob)
    disputed_state = alice.state
    (disputed_transfer,) = disputed_state.transfers
    (bob_side,) = bob.state.transfers
    alice_channel = Channel.objects.get(user_address=alice.address)
    dispute_transfer_until_resumed(alice, bob, chain, disputed_state, disputed_transfer)
    assert Dispute.objects.get(channel=alice_channel).status == Dispute.Status.RESUMED
    assert alice.state.transfers == (disputed_transfer,)

    # The node took Bob's side to the chain first (its window closes before Alice's). Bob reveals
    # there; the node reads his preimage from the call and claims Alice's side on chain inside its
    # window; the transfer leaves her state once the chain has paid it.
    bob_channel = Channel.objects.get(user_address=bob.address)
    assert Dispute.objects.get(channel=bob_channel).disputed_by == Dispute.Party.NODE
    bob_window = TransferDispute.objects.get(transfer_id="0x" + bob_side.transfer_id.hex()).expiry
    alice_window = TransferDispute.objects.get(transfer_id="0x" + disputed_transfer.transfer_id.hex()).expiry
    assert bob_window < alice_window
    user_defunds_transfer(bob, bob_side, preimage)
    run_tower_work(alice, bob)

    channel = contract_at(w3, "Channel", alice_channel.address)
    defunded = [dict(log["args"]) for log in channel.events.TransferDefunded().get_logs(from_block=0)]
    assert [(d["transferId"], d["toInitiator"], d["toResponder"]) for d in defunded] == [
        (disputed_transfer.transfer_id, 0, E // 20)
    ]
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.COMPLETED
    assert alice.state.transfers == ()
    action = DisputeAction.objects.get(kind="defund_transfer", dispute__channel=alice_channel)
    assert action.dispute.status == Dispute.Status.RESUMED
    assert action.transaction.status == OnchainTransaction.Status.MINED


# -- (4) the user vanishes with the node's funds locked -------------------------------------------------


def test_the_operator_disputes_a_vanished_users_channel_and_the_node_gets_its_locked_funds_back(
    alice_and_bob, w3, chain, events, admin_client
):
    alice, bob = alice_and_bob
    bob_channel = Channel.objects.get(user_address=bob.address)
    # The operator trusts Bob with collateral beyond the payment: the node has more than the lock there.
    RebalanceProfile.objects.create(
        channel=bob_channel,
        asset_id=ETH,
        collateralize_threshold=E // 20,
        target=E // 10,
        reclaim_threshold=E // 2,
    )
    response, payment_id, _ = alice.pay(bob.address, E // 10)
    assert response.status_code == 200
    run_node_work(alice, bob)
    payment = Payment.objects.get(payment_id=payment_id)
    assert payment.status == Payment.Status.FORWARDED
    (locked,) = bob.state.transfers  # the node's lock to Bob, who now vanishes without resolving it
    node_balance = bob.state.balances[0][0]

    page = admin_client.post(
        "/admin/channels_app/channel/",
        {"action": "dispute_channel", "_selected_action": [bob_channel.pk]},
        follow=True,
    )
    assert page.status_code == 200
    dispute = Dispute.objects.get(channel=bob_channel)
    assert (dispute.status, dispute.disputed_by) == (Dispute.Status.REQUESTED, Dispute.Party.NODE)
    bob_channel.refresh_from_db()
    assert bob_channel.status == Channel.Status.DISPUTED
    run_tower_work(alice)
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.UNCONTESTED
    assert dispute.nonce == bob.state.nonce

    advance_chain(chain, T)
    run_tower_work(alice)
    (defund,) = channel_defunds(w3, bob_channel.address)
    totals = channel_reads.deposit_totals(w3, bob_channel.address, ETH, block="latest")
    assert defund["toNode"] == node_balance + totals.node - bob.state.processed_deposits[0][0]
    assert defund["toUser"] == 0
    transfer_dispute = TransferDispute.objects.get(transfer_id="0x" + locked.transfer_id.hex())
    assert transfer_dispute.status == TransferDispute.Status.DISPUTED

    # Bob never reveals: the lock goes back to the node after its window (shorter than the round's).
    assert locked.transfer_timeout < T
    advance_chain(chain, T)
    run_tower_work(alice)
    transfer_dispute.refresh_from_db()
    assert transfer_dispute.status == TransferDispute.Status.DEFUNDED
    assert (transfer_dispute.to_initiator, transfer_dispute.to_responder) == (E // 10, 0)
    assert Transfer.objects.get(transfer_id=transfer_dispute.transfer_id).status == Transfer.Status.CANCELLED
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.RESUMED
    assert dispute_events(events, bob) == ["dispute.started", "dispute.defunded", "dispute.resumed"]
    bob_channel.refresh_from_db()
    assert bob_channel.pending_update["droppedTransferIds"] == ["0x" + locked.transfer_id.hex()]
    # Alice, online, got her side of the payment back off chain
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.REFUNDED
    assert alice.state.transfers == ()
    assert_conserved(w3, bob_channel.address)


# -- (5) hashlocks in a dispute: one claimed with its preimage on chain, one refunded --------------------


def test_in_a_dispute_the_node_claims_a_hashlock_with_its_preimage_and_refunds_its_own_after_the_window(
    alice_and_bob, w3, chain, events
):
    alice, bob = alice_and_bob
    bob.send_eth(FUNDER_KEY, bob.state.channel_address, E)
    bob.deposit_update()
    run_node_work(alice, bob)
    now = int(time.time())
    # Bob pays Alice: she accepts the node's lock and never reveals.
    _, unrevealed, _ = bob.pay(alice.address, E // 10, kind="hashlock", expiry=now + 5 * 3600)
    run_node_work(alice, bob)
    # Alice pays Bob: Bob reveals, the node pays him and asks Alice to settle her side. She is gone.
    expiry = now + 3 * 3600
    response, claimed, preimage = alice.pay(bob.address, E // 10, kind="hashlock", expiry=expiry)
    assert response.status_code == 200
    run_node_work(alice, bob)
    assert bob.resolve_incoming(claimed, preimage).status_code == 200
    run_tower_work(bob)
    alice_channel = Channel.objects.get(user_address=alice.address)
    assert alice_channel.pending_update is not None  # the resolve Alice does not countersign
    assert len(alice.state.transfers) == 2
    assert not Dispute.objects.exists()  # far from the lock's expiry the node waits

    # One dispute window (and a margin) before the lock expires, the node goes on chain by itself.
    advance_chain(chain, expiry - T - 300 - disputes.chain_time(w3))
    run_tower_work(bob)
    dispute = Dispute.objects.get(channel=alice_channel)
    assert (dispute.disputed_by, dispute.status) == (Dispute.Party.NODE, Dispute.Status.UNCONTESTED)
    assert "hashlock" in dispute.reason

    advance_chain(chain, T)
    run_tower_work(bob)
    sender_side = Payment.objects.get(payment_id=claimed).sender_transfer
    claim = TransferDispute.objects.get(transfer_id=sender_side.transfer_id)
    assert claim.status == TransferDispute.Status.DEFUNDED
    assert (claim.to_initiator, claim.to_responder) == (0, E // 10)
    assert disputes.chain_time(w3) < expiry
    assert Payment.objects.get(payment_id=claimed).status == Payment.Status.COMPLETED

    receiver_side = Payment.objects.get(payment_id=unrevealed).receiver_transfer
    refund = TransferDispute.objects.get(transfer_id=receiver_side.transfer_id)
    assert refund.status == TransferDispute.Status.DISPUTED
    advance_chain(chain, max(refund.expiry, dispute.defund_expiry) - disputes.chain_time(w3))
    run_tower_work(bob)
    refund.refresh_from_db()
    assert (refund.to_initiator, refund.to_responder) == (E // 10, 0)
    # Bob, online, gets his side of the unrevealed payment back off chain
    assert Payment.objects.get(payment_id=unrevealed).status == Payment.Status.REFUNDED
    dispute.refresh_from_db()
    # The node's resolve was open when the dispute started (Alice may hold it countersigned): closed.
    assert dispute.status == Dispute.Status.CLOSED
    assert_conserved(w3, alice_channel.address)


# -- (6) a withdraw commitment signed but not sent when the dispute starts -------------------------------


def test_a_withdrawal_signed_but_not_sent_when_the_user_disputes_is_paid_exactly_once(
    alice_and_bob, w3, chain, events
):
    alice, _ = alice_and_bob
    recipient = Web3().eth.account.create().address
    assert alice.withdraw_update(E // 2, recipient).status_code == 200
    alice_channel = Channel.objects.get(user_address=alice.address)
    node_actions.channel_reconcile(channel_id=alice_channel.pk)  # the node signs; the send waits in the queue
    withdrawal = Withdrawal.objects.get()
    assert withdrawal.onchain_transaction.status == OnchainTransaction.Status.QUEUED
    latest = alice.state
    (withdraw_transfer,) = latest.transfers

    user_disputes_channel(alice, latest)  # with the withdraw transfer still active in the state
    run_tower_work()
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.CONFIRMED
    assert eth_balance(w3, recipient) == E // 2
    assert Dispute.objects.get().status == Dispute.Status.UNCONTESTED

    advance_chain(chain, T)
    run_tower_work()
    (defund,) = channel_defunds(w3, alice_channel.address)
    assert defund["toUser"] == latest.balances[0][1]  # the locked withdrawal is not in the balance
    # Alice proves the withdraw transfer too: it pays nothing, the commitment already paid.
    user_disputes_transfer(alice, latest, withdraw_transfer)
    user_defunds_transfer(alice, withdraw_transfer)
    run_tower_work()
    record = TransferDispute.objects.get()
    assert (record.to_initiator, record.to_responder) == (0, 0)
    assert eth_balance(w3, recipient) == E // 2
    advance_chain(chain, T)
    run_tower_work()
    assert Dispute.objects.get().status == Dispute.Status.CLOSED
    assert_conserved(w3, alice_channel.address)


# -- (8) the watchtower restarts in the middle of the window ----------------------------------------


def _forget_process_state() -> None:
    """What a restart loses: every per-process cache. Only the database and the chain remain."""
    node_chain._web3_for.cache_clear()
    node_chain._account_for.cache_clear()
    network._network_for.cache_clear()
    network._signer_for.cache_clear()


def test_a_watchtower_restarted_late_in_the_window_still_answers_in_time(alice_and_bob, w3, chain, events):
    alice, bob = alice_and_bob
    stale = alice.state
    pay_and_complete(alice, bob, E // 4)
    latest = alice.state
    user_disputes_channel(alice, stale)

    # The node was down; it comes back ten minutes before the consensus window closes.
    window = disputes.read_dispute(w3, latest.channel_address)
    advance_chain(chain, window.consensus_expiry - disputes.chain_time(w3) - 600)
    _forget_process_state()
    watcher.logs_watch()  # from its stored cursor: sees the dispute...
    watchtower.disputes_advance_all()  # ...and the watchtower's beat queues the answer...
    dispute = Dispute.objects.get()
    answer = DisputeAction.objects.get(dispute=dispute).transaction
    assert (dispute.status, answer.status) == (Dispute.Status.STARTED, OnchainTransaction.Status.QUEUED)
    # ...and dies before the send task runs. The next process has only the database.
    _forget_process_state()
    OnchainTransaction.objects.filter(pk=answer.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
    transactions.transactions_track_all()  # the tracker's beat sends what a lost task left queued
    run_tower_work(bob)

    dispute.refresh_from_db()
    answer.refresh_from_db()
    assert dispute.status == Dispute.Status.ANSWERED
    assert dispute.nonce == latest.nonce
    assert int(w3.eth.get_block(answer.block_number)["timestamp"]) < window.consensus_expiry
    assert DisputeAction.objects.filter(dispute=dispute, kind="dispute_channel").count() == 1

    advance_chain(chain, T)
    run_tower_work(bob)
    (defund,) = channel_defunds(w3, latest.channel_address)
    assert defund["toUser"] == latest.balances[0][1]
    advance_chain(chain, T)
    run_tower_work(bob)
    assert Dispute.objects.get().status == Dispute.Status.RESUMED
    assert_conserved(w3, latest.channel_address)


# -- (7) the channel is used again after a dispute --------------------------------------------------


def test_after_a_dispute_the_channel_resumes_and_deposits_transfers_and_withdrawals_work_again(
    alice_and_bob, w3, chain, events
):
    alice, bob = alice_and_bob
    # Two links from Alice nobody redeemed yet (so no receiver side goes on chain with her channel):
    # one stays off chain, one Alice disputes.
    expires = {"expiresAt": int(time.time()) + 30 * 24 * 3600}
    response, kept, kept_preimage = alice.pay(None, E // 10, meta=expires)
    assert response.status_code == 200
    response, refunded, _ = alice.pay(None, E // 20, meta=expires)
    assert response.status_code == 200
    run_node_work(alice, bob)
    disputed_state = alice.state
    kept_transfer, settled_transfer = disputed_state.transfers
    alice_channel = Channel.objects.get(user_address=alice.address)
    # Alice sends more after her last state: the defund pays it out, so it must never be credited again.
    alice.send_eth(FUNDER_KEY, alice_channel.address, E // 5)

    user_disputes_channel(alice, disputed_state)
    run_tower_work(alice, bob)
    dispute = Dispute.objects.get(channel=alice_channel)
    assert dispute.status == Dispute.Status.UNCONTESTED
    advance_chain(chain, T)
    run_tower_work(alice, bob)
    (defund,) = channel_defunds(w3, alice_channel.address)
    assert defund["toUser"] == disputed_state.balances[0][1] + E // 5
    user_disputes_transfer(alice, disputed_state, settled_transfer)
    run_tower_work(alice, bob)

    # Before the window ends the node proposes nothing and the channel stays frozen.
    alice_channel.refresh_from_db()
    assert (alice_channel.status, alice_channel.pending_update) == (Channel.Status.DISPUTED, None)

    advance_chain(chain, T)
    run_tower_work(alice, bob)  # the node proposes the resume; Alice checks it on chain and signs
    dispute.refresh_from_db()
    alice_channel.refresh_from_db()
    assert dispute.status == Dispute.Status.RESUMED
    assert dispute_events(events, alice)[-1] == "dispute.resumed"
    assert alice_channel.status == Channel.Status.OPEN
    resumed = alice.state
    assert resumed.nonce == disputed_state.nonce + 1
    assert resumed.balances == ((0, 0),)
    assert resumed.defund_nonces == (2,)
    totals = channel_reads.deposit_totals(w3, alice_channel.address, ETH, block="latest")
    assert resumed.processed_deposits == ((totals.node, totals.user),)
    # The transfer Alice disputed is still in its window: it stays until the chain pays it out.
    assert resumed.transfers == disputed_state.transfers

    advance_chain(chain, settled_transfer.transfer_timeout)
    user_defunds_transfer(alice, settled_transfer)  # refunded to her on chain
    run_tower_work(alice, bob)
    assert alice.state.transfers == (kept_transfer,)  # dropped by a resume of its own
    assert alice.state.balances[0][1] == 0  # (the node may have topped up its collateral since)
    assert Payment.objects.get(payment_id=refunded).status == Payment.Status.REFUNDED

    # A new deposit: only it counts.
    alice.send_eth(FUNDER_KEY, alice_channel.address, E)
    assert alice.deposit_update().status_code == 200
    assert alice.state.balances[0][1] == E
    # The payment never disputed is claimed and settled off chain as usual.
    redeemed = bob.post(f"/api/transfers/{kept}/redeem", {"preimage": "0x" + kept_preimage.hex()})
    assert redeemed.status_code == 200
    run_node_work(alice, bob)
    assert bob.resolve_incoming(kept, kept_preimage).status_code == 200
    run_node_work(alice, bob)
    assert alice.state.transfers == ()
    assert Payment.objects.get(payment_id=kept).status == Payment.Status.COMPLETED
    # A new transfer and a withdrawal.
    pay_and_complete(alice, bob, E // 4)
    recipient = Web3().eth.account.create().address
    assert alice.withdraw_update(E // 2, recipient).status_code == 200
    run_node_work(alice, bob)
    assert Withdrawal.objects.get(channel=alice_channel).status == Withdrawal.Status.CONFIRMED
    assert eth_balance(w3, recipient) == E // 2
    assert alice.state.balances[0][1] == E - E // 4 - E // 2
    assert alice.state.transfers == ()

    # Every state the channel had, across both resumes, is rebuilt exactly from the node's records.
    for record in ChannelUpdate.objects.filter(channel=alice_channel):
        rebuilt = channels.state_at(alice_channel, record.nonce)
        assert rebuilt is not None
        assert "0x" + rebuilt.state_hash.hex() == record.state_hash
    assert channels.state_at(alice_channel, alice_channel.nonce) == channels.latest_state(alice_channel)

    # A second dispute pays out the rest: the raised defund nonce lets the chain defund the asset again.
    final = alice.state
    user_disputes_channel(alice, final)
    run_tower_work(alice, bob)
    advance_chain(chain, T)
    run_tower_work(alice, bob)
    second = channel_defunds(w3, alice_channel.address)[-1]
    assert (second["defundNonce"], second["toUser"]) == (2, final.balances[0][1])
    assert second["toNode"] == final.balances[0][0] + (
        channel_reads.deposit_totals(w3, alice_channel.address, ETH, block="latest").node
        - final.processed_deposits[0][0]
    )
    advance_chain(chain, T)
    run_tower_work(alice, bob)
    assert alice.state.defund_nonces == (3,)
    assert_conserved(w3, alice_channel.address)
