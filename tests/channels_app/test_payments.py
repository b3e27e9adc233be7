"""Routed payments through the node (REST + services, Postgres, anvil): the node's side of issue 6."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings

from channels_app.models import Payment, Transfer
from tests.channels_app.conftest import FUNDER_KEY
from tests.support.node_work import queued_reconciles, run_node_work, set_profile
from tests.support.wallet import ETH, Wallet

pytestmark = pytest.mark.django_db
E = 10**18


def new_wallet(client, w3) -> Wallet:
    wallet = Wallet(client=client, w3=w3)
    wallet.log_in()
    wallet.open()
    return wallet


@pytest.fixture
def alice_and_bob(client, w3):
    from django.test import Client

    alice = new_wallet(client, w3)
    bob = new_wallet(Client(), w3)
    alice.send_eth(FUNDER_KEY, alice.state.channel_address, 2 * E)
    alice.deposit_update()
    run_node_work(alice, bob)
    return alice, bob


def balances(wallet: Wallet) -> tuple[int, int]:
    index = wallet.state.asset_index(ETH)
    return (0, 0) if index is None else wallet.state.balances[index]


def test_a_linked_payment_is_routed_and_both_sides_resolve_with_the_same_preimage(alice_and_bob):
    alice, bob = alice_and_bob
    alice_before, bob_before = balances(alice), balances(bob)

    response, payment_id, preimage = alice.pay(bob.address, E // 10)
    assert response.status_code == 200
    run_node_work(alice, bob)  # the node collateralizes Bob's channel, then forwards
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.FORWARDED
    assert bob.resolve_incoming(payment_id, preimage).status_code == 200
    run_node_work(alice, bob)

    payment = Payment.objects.get(payment_id=payment_id)
    assert payment.status == Payment.Status.COMPLETED
    assert payment.sender_transfer.status == Transfer.Status.RESOLVED
    assert payment.receiver_transfer.status == Transfer.Status.RESOLVED
    assert balances(alice)[1] == alice_before[1] - E // 10
    assert balances(alice)[0] == alice_before[0] + E // 10
    assert balances(bob)[1] == bob_before[1] + E // 10
    assert alice.state.transfers == ()
    assert bob.state.transfers == ()


def test_a_payment_above_the_senders_balance_is_refused_and_nothing_is_forwarded(alice_and_bob):
    alice, bob = alice_and_bob
    from connext.protocol import meta as transfer_meta
    from connext.protocol import serialization
    from connext.protocol.types import CreateUpdate

    meta = {"recipient": bob.address}
    update = CreateUpdate(
        channel_address=alice.state.channel_address,
        nonce=alice.state.nonce + 1,
        initiator=alice.address,
        asset_id=ETH,
        amount=10 * E,  # more than Alice has: her own client would refuse to sign this
        definition=alice.config["transferDefinitions"]["linked"],
        payment_id=b"\x05" * 32,
        encoded_state=b"\x06" * 32,
        transfer_timeout=3600,
        meta_hash=transfer_meta.meta_hash(meta),
    )
    response = alice.post(
        "/api/channel/updates",
        {"update": serialization.update_to_json(update), "signature": "0x" + "11" * 64 + "1b", "meta": meta},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "insufficient_balance"
    run_node_work(alice, bob)
    assert not Payment.objects.exists()
    assert bob.proposal() is None


def test_a_hashlock_is_forwarded_with_a_shorter_expiry_and_refunded_when_the_receiver_lets_it_expire(
    alice_and_bob, w3
):
    alice, bob = alice_and_bob
    expiry = int(time.time()) + 3 * 3600
    response, payment_id, _ = alice.pay(bob.address, E // 10, kind="hashlock", expiry=expiry)
    assert response.status_code == 200
    run_node_work(alice, bob)
    from connext.protocol.definitions import HashLockState

    receiver = next(t for t in bob.state.transfers if "0x" + t.payment_id.hex() == payment_id)
    receiver_expiry = HashLockState.decode(receiver.encoded_state).expiry
    assert receiver_expiry == expiry - (3600 + 600)

    with override_settings(DISPUTE_TIMEOUT_SECONDS=3600):
        from unittest import mock

        with mock.patch("channels_app.services.payments.time.time", return_value=receiver_expiry + 1):
            run_node_work(alice, bob)

    payment = Payment.objects.get(payment_id=payment_id)
    assert payment.status == Payment.Status.REFUNDED
    assert payment.sender_transfer.status == Transfer.Status.CANCELLED
    assert alice.state.transfers == ()


def test_a_hashlock_expiring_too_soon_to_route_is_refused(alice_and_bob):
    alice, bob = alice_and_bob

    response, _, _ = alice.pay(bob.address, E // 10, kind="hashlock", expiry=int(time.time()) + 600)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "expiry_too_soon"


def test_meta_that_does_not_match_its_hash_is_refused(alice_and_bob):
    alice, bob = alice_and_bob
    from connext.protocol import serialization
    from connext.protocol.types import CreateUpdate

    update = CreateUpdate(
        channel_address=alice.state.channel_address,
        nonce=alice.state.nonce + 1,
        initiator=alice.address,
        asset_id=ETH,
        amount=1,
        definition=alice.config["transferDefinitions"]["linked"],
        payment_id=b"\x01" * 32,
        encoded_state=b"\x02" * 32,
        transfer_timeout=3600,
    )
    _, signature = alice.sign(update)
    response = alice.post(
        "/api/channel/updates",
        {
            "update": serialization.update_to_json(update),
            "signature": "0x" + signature.hex(),
            "meta": {"recipient": bob.address},
        },
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_meta"


def test_a_link_is_redeemed_by_whoever_holds_the_secret_once(alice_and_bob, client, w3):
    from django.test import Client

    alice, bob = alice_and_bob
    carol = new_wallet(Client(), w3)
    response, payment_id, secret = alice.pay(None, E // 20)
    assert response.status_code == 200
    run_node_work(alice, bob, carol)

    wrong = carol.post(f"/api/transfers/{payment_id}/redeem", {"preimage": "0x" + "ab" * 32})
    unknown = carol.post(f"/api/transfers/0x{'cd' * 32}/redeem", {"preimage": "0x" + secret.hex()})
    redeemed = carol.post(f"/api/transfers/{payment_id}/redeem", {"preimage": "0x" + secret.hex()})
    twice = bob.post(f"/api/transfers/{payment_id}/redeem", {"preimage": "0x" + secret.hex()})
    run_node_work(alice, bob, carol)
    assert carol.resolve_incoming(payment_id, secret).status_code == 200
    run_node_work(alice, bob, carol)

    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "bad_preimage"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_payment"
    assert redeemed.status_code == 200
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "already_redeemed"
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.COMPLETED
    assert balances(carol)[1] == E // 20
    assert carol.get(f"/api/transfers/{payment_id}").json()["status"] == "completed"


def test_an_unredeemed_link_is_reclaimed_by_the_sender_only_after_it_expires(alice_and_bob):
    alice, bob = alice_and_bob
    before = balances(alice)
    _, payment_id, _ = alice.pay(None, E // 20, meta={"expiresAt": int(time.time()) + 3600})
    run_node_work(alice, bob)

    early = alice.post(f"/api/transfers/{payment_id}/cancel", {})
    from unittest import mock

    with mock.patch("channels_app.services.payments.time.time", return_value=time.time() + 7200):
        late = alice.post(f"/api/transfers/{payment_id}/cancel", {})
    run_node_work(alice, bob)

    assert early.status_code == 409
    assert early.json()["error"]["code"] == "link_not_expired"
    assert late.status_code == 200
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.REFUNDED
    assert balances(alice) == before
    assert bob.post(f"/api/transfers/{payment_id}/redeem", {"preimage": "0x" + "00" * 32}).status_code == 409


def test_a_link_nobody_redeemed_goes_back_to_its_sender_on_its_own_once_expired(alice_and_bob):
    """Nobody has to remember to take an expired link back: the node's sweep refunds it, announced as
    failed. Redeeming it after its expiry is refused; the sender's own cancel still answers."""
    from unittest import mock

    from channels_app.models import Channel
    from channels_app.services import payments

    alice, bob = alice_and_bob
    before = balances(alice)
    _, payment_id, preimage = alice.pay(None, E // 20, meta={"expiresAt": int(time.time()) + 3600})
    run_node_work(alice, bob)
    assert payments.payments_overdue_channels() == []
    assert balances(alice)[1] == before[1] - E // 20

    later = time.time() + 7200
    with mock.patch("channels_app.services.payments.time.time", return_value=later):
        redeem = bob.post(f"/api/transfers/{payment_id}/redeem", {"preimage": "0x" + preimage.hex()})
        assert payments.payments_overdue_channels() == [
            Channel.objects.get(address=alice.state.channel_address).pk
        ]
        run_node_work(alice, bob)  # the sweep's reconcile: the refund, countersigned by Alice
        cancel = alice.post(f"/api/transfers/{payment_id}/cancel", {})

    assert redeem.status_code == 409
    assert redeem.json()["error"]["code"] == "link_expired"
    payment = Payment.objects.get(payment_id=payment_id)
    assert (payment.status, payment.failure) == (Payment.Status.REFUNDED, "the link expired unredeemed")
    assert balances(alice) == before
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "refunded"
    assert (
        bob.post(f"/api/transfers/{payment_id}/redeem", {"preimage": "0x" + preimage.hex()}).json()["error"][
            "code"
        ]
        == "link_closed"
    )


def test_history_lists_sent_and_received_payments_and_keys_are_served(alice_and_bob):
    alice, bob = alice_and_bob
    _, payment_id, preimage = alice.pay(bob.address, E // 100, meta={"memo": "coffee"})
    run_node_work(alice, bob)
    bob.resolve_incoming(payment_id, preimage)
    run_node_work(alice, bob)

    sent = alice.get("/api/transfers").json()["transfers"]
    received = bob.get("/api/transfers").json()["transfers"]
    key = alice.get(f"/api/users/{bob.address}/key").json()

    assert [t["paymentId"] for t in sent] == [payment_id]
    assert received[0]["status"] == "completed"
    assert received[0]["meta"] == {"recipient": bob.address, "memo": "coffee"}
    from eth_keys import keys

    assert keys.PublicKey(bytes.fromhex(key["publicKey"][4:])).to_checksum_address() == bob.address


def test_history_pages_through_every_payment_newest_first(alice_and_bob):
    alice, bob = alice_and_bob
    sent = []
    for _ in range(5):
        response, payment_id, _ = alice.pay(bob.address, E // 1000)
        assert response.status_code == 200
        sent.append(payment_id)
    newest_first = sent[::-1]

    pages, before = [], None
    while True:
        page = alice.get("/api/transfers", limit=2, **({"before": before} if before else {})).json()
        pages.append([t["paymentId"] for t in page["transfers"]])
        if not page["more"]:
            break
        before = pages[-1][-1]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]
    everything = alice.get("/api/transfers").json()
    assert [t["paymentId"] for t in everything["transfers"]] == newest_first
    assert everything["more"] is False
    received = bob.get("/api/transfers", before=newest_first[1]).json()  # the receiver pages the same
    assert [t["paymentId"] for t in received["transfers"]] == newest_first[2:]

    refusals = (
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": ""}, "limit"),  # an empty value is not "the default": refused like any other
        ({"before": "0x12"}, "before"),
        ({"before": ""}, "before"),
    )
    for query, field in refusals:
        refused = alice.get("/api/transfers", **query)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "invalid_input"
        assert field in refused.json()["error"]["fields"]
    outsider = alice.get("/api/transfers", before="0x" + "ab" * 32)
    assert (outsider.status_code, outsider.json()["error"]["code"]) == (404, "unknown_payment")


def test_a_signed_transfer_is_resolved_by_the_oracles_receipt_on_both_sides(alice_and_bob):
    from eth_account import Account

    from connext.protocol import signing
    from connext.protocol.definitions import SignedResolver

    alice, bob = alice_and_bob
    oracle = Account.create()
    response, payment_id, _ = alice.pay(bob.address, E // 10, kind="signed", meta={"signer": oracle.address})
    assert response.status_code == 200
    run_node_work(alice, bob)
    data = b"\x07" * 32
    definition = alice.config["transferDefinitions"]["signed"]
    pid = bytes.fromhex(payment_id[2:])
    forged = signing.sign_receipt(31337, definition, pid, data, bytes.fromhex("44" * 32))
    receipt = signing.sign_receipt(31337, definition, pid, data, bytes(oracle.key))

    wrong_signer = bob.post(
        "/api/channel/updates",
        {
            "update": {
                "type": "resolve",
                "channelAddress": bob.state.channel_address,
                "nonce": str(bob.state.nonce + 1),
                "initiator": bob.address,
                "transferId": "0x" + bob.state.transfers[0].transfer_id.hex(),
                "encodedResolver": "0x" + SignedResolver(data, forged).encode().hex(),
            },
            "signature": "0x" + "11" * 64 + "1b",
        },
    )
    resolved = bob.resolve_incoming(payment_id, resolver=SignedResolver(data, receipt).encode())
    run_node_work(alice, bob)

    assert wrong_signer.status_code == 400
    assert wrong_signer.json()["error"]["code"] == "bad_resolver"
    assert resolved.status_code == 200
    payment = Payment.objects.get(payment_id=payment_id)
    assert payment.status == Payment.Status.COMPLETED
    assert payment.sender_transfer.encoded_resolver == payment.receiver_transfer.encoded_resolver
    assert alice.state.transfers == ()


def test_a_payment_from_a_channel_in_dispute_is_not_forwarded(alice_and_bob):
    from channels_app.models import Channel

    alice, bob = alice_and_bob
    _, payment_id, _ = alice.pay(bob.address, E // 10)
    Channel.objects.filter(address=alice.state.channel_address).update(status=Channel.Status.DISPUTED)

    run_node_work(alice, bob)

    payment = Payment.objects.get(payment_id=payment_id)
    assert payment.status == Payment.Status.FAILED
    assert "dispute" in payment.failure
    assert bob.proposal() is None
    assert bob.state.transfers == ()


def test_the_sweep_finds_a_hashlock_whose_receiver_side_expired_without_any_update(alice_and_bob):
    from unittest import mock

    from channels_app.models import Channel
    from channels_app.services import payments

    alice, bob = alice_and_bob
    expiry = int(time.time()) + 3 * 3600
    alice.pay(bob.address, E // 10, kind="hashlock", expiry=expiry)
    run_node_work(alice, bob)
    alice_channel = Channel.objects.get(address=alice.state.channel_address).pk
    receiver_expiry = expiry - (3600 + 600)

    before = payments.payments_overdue_channels()
    with mock.patch("channels_app.services.payments.time.time", return_value=receiver_expiry + 1):
        after = payments.payments_overdue_channels()

    assert before == []
    assert after == [alice_channel]


def test_the_sweep_reconciles_a_channel_whose_open_proposal_went_unanswered_after_its_payment_completed(
    alice_and_bob,
):
    """A node proposal whose push was lost (Redis restarted; found by bench/chaos.py) leaves an idle
    user's channel busy: here the resolve of Alice's side of a payment Bob already completed. The
    payments waiting for Alice are not forwarded while it is open, and none of them names her channel:
    the sweep must, so that its reconcile pushes the proposal to her again (`proposal_remind`)."""
    from datetime import timedelta
    from unittest import mock

    from django.utils import timezone

    from channels_app.models import Channel
    from channels_app.services import payments

    alice, bob = alice_and_bob
    _, to_bob, preimage = alice.pay(bob.address, E // 10)
    run_node_work(alice, bob)
    assert bob.resolve_incoming(to_bob, preimage).status_code == 200
    run_node_work(bob)  # Alice never hears of the node's resolve of her side
    assert Payment.objects.get(payment_id=to_bob).status == Payment.Status.COMPLETED
    assert alice.proposal() is not None
    response, to_alice, _ = bob.pay(alice.address, E // 100)
    assert response.status_code == 200
    run_node_work(bob)
    assert Payment.objects.get(payment_id=to_alice).status == Payment.Status.PENDING
    alice_channel = Channel.objects.get(address=alice.state.channel_address).pk

    later = timezone.now() + timedelta(seconds=payments.STALLED_AFTER_SECONDS + 1)
    with mock.patch("channels_app.services.payments.timezone.now", return_value=later):
        overdue = payments.payments_overdue_channels()

    assert alice_channel in overdue
    run_node_work(alice, bob)  # Alice answers, as her client does when the reminder arrives
    assert Payment.objects.get(payment_id=to_alice).status == Payment.Status.FORWARDED


def test_the_sweep_settles_the_sender_side_of_a_payment_whose_settling_step_was_lost(alice_and_bob):
    """The process dies right after committing Bob's resolve: the payment reads completed, and the
    step that settles Alice's side (inline after that commit) never runs. Nothing else would look at
    it again until Alice updates her channel; the sweep must, or the node's claim upstream stays open."""
    from datetime import timedelta
    from unittest import mock

    from django.utils import timezone

    from channels_app.models import Channel, Transfer
    from channels_app.services import payments

    alice, bob = alice_and_bob
    _, payment_id, preimage = alice.pay(bob.address, E // 10)
    run_node_work(alice, bob)
    with mock.patch("channels_app.services.payments.after_commit.run_inline"):  # lost with the process
        assert bob.resolve_incoming(payment_id, preimage).status_code == 200
    payment = Payment.objects.select_related("sender_transfer").get(payment_id=payment_id)
    assert payment.status == Payment.Status.COMPLETED
    assert payment.sender_transfer.status == Transfer.Status.ACTIVE
    assert alice.proposal() is None
    alice_channel = Channel.objects.get(address=alice.state.channel_address).pk

    now = payments.payments_overdue_channels()
    later = timezone.now() + timedelta(seconds=payments.STALLED_AFTER_SECONDS + 1)
    with mock.patch("channels_app.services.payments.timezone.now", return_value=later):
        overdue = payments.payments_overdue_channels()
    assert alice_channel not in now  # a settling step may still be on its way
    assert alice_channel in overdue
    run_node_work(alice, bob)  # the sweep's reconcile of Alice's channel proposes the settle

    assert Transfer.objects.get(pk=payment.sender_transfer.pk).status == Transfer.Status.RESOLVED


def test_a_payment_id_already_in_use_is_refused_and_the_second_lock_never_happens(alice_and_bob):
    alice, bob = alice_and_bob
    first, payment_id, _ = alice.pay(bob.address, E // 100)
    nonce_before = alice.state.nonce

    again, _, _ = alice.pay(bob.address, E // 100, payment_id=bytes.fromhex(payment_id[2:]))

    assert first.status_code == 200
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "duplicate_payment"
    assert alice.state.nonce == nonce_before
    assert Payment.objects.filter(payment_id=payment_id).count() == 1


def test_a_payment_is_registered_with_the_senders_update_itself(alice_and_bob):
    alice, _ = alice_and_bob

    _, payment_id, _ = alice.pay(None, E // 100)  # a link, before any worker ran

    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.PENDING
    assert alice.get(f"/api/transfers/{payment_id}").json()["status"] == "pending"


def test_a_redeemed_link_waiting_for_collateral_cannot_be_taken_back_by_its_sender(alice_and_bob, w3):
    from django.test import Client

    alice, bob = alice_and_bob
    carol = new_wallet(Client(), w3)  # no collateral in her channel yet: the link waits for it
    from unittest import mock

    _, payment_id, secret = alice.pay(None, E // 20, meta={"expiresAt": int(time.time()) + 60})
    redeemed = carol.post(f"/api/transfers/{payment_id}/redeem", {"preimage": "0x" + secret.hex()})
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.PENDING

    with mock.patch("channels_app.services.payments.time.time", return_value=time.time() + 120):
        taken_back = alice.post(f"/api/transfers/{payment_id}/cancel", {})  # expired, but redeemed
    run_node_work(alice, bob, carol)
    assert carol.resolve_incoming(payment_id, secret).status_code == 200
    run_node_work(alice, bob, carol)

    assert redeemed.status_code == 200
    assert taken_back.status_code == 409
    assert taken_back.json()["error"]["code"] == "already_redeemed"
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.COMPLETED
    assert balances(carol)[1] == E // 20


def _pushes_to(address: str, action) -> list[dict]:
    """The channel-layer messages pushed to `address`'s group while `action()` runs, heard by a
    subscriber on its own loop (a message of several events, `realtime.batched`, is one entry). A
    marker pushed after the action closes the window: pushes from this process arrive in order, so
    once the marker is in, everything the action pushed is too."""
    import asyncio
    import threading

    from channels.layers import get_channel_layer

    from channels_app.realtime import push_event_now, user_group

    ready, marked = threading.Event(), threading.Event()
    received: list[dict] = []

    async def listen() -> None:
        layer = get_channel_layer()
        name = await layer.new_channel()
        await layer.group_add(user_group(address), name)
        ready.set()
        while True:
            message = await asyncio.wait_for(layer.receive(name), 15)
            if message.get("event") == "test.marker":
                break
            received.append(message)
        await layer.group_discard(user_group(address), name)
        marked.set()

    listener = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    listener.start()
    assert ready.wait(10)
    action()
    push_event_now(user_group(address), "test.marker", {})
    assert marked.wait(15)
    listener.join(10)
    return received


def test_an_open_proposal_left_unanswered_is_pushed_again_by_the_reconcile(alice_and_bob):
    from datetime import timedelta

    from django.utils import timezone

    from channels_app.models import Channel
    from channels_app.services import node_actions

    alice, bob = alice_and_bob
    alice.pay(bob.address, E // 10)
    run_node_work(alice)  # Bob does not answer: his channel keeps the node's proposal open
    channel = Channel.objects.get(user_address=bob.address)
    assert channel.pending_update is not None

    fresh = _pushes_to(bob.address, lambda: node_actions.channel_reconcile(channel_id=channel.pk))
    Channel.objects.filter(pk=channel.pk).update(updated_at=timezone.now() - timedelta(seconds=60))
    stale = _pushes_to(bob.address, lambda: node_actions.channel_reconcile(channel_id=channel.pk))

    assert fresh == []  # just proposed: its own push is on its way, no reminder yet
    assert [(m["event"], m["payload"]["update"]["nonce"]) for m in stale] == [
        ("update.proposed", channel.pending_update["nonce"])
    ]


def test_a_routed_payment_that_moves_the_nodes_balance_out_of_a_profile_has_that_channel_rebalanced(
    alice_and_bob, django_capture_on_commit_callbacks
):
    """The profile is checked after the steps that move the node's balance: the receiver's side locking
    the node's money (countersigned inside the receiver's resolve here) and the sender's side paying the
    node. The sender's own create moves only the sender's money and queues nothing."""
    import redis
    from django.conf import settings

    alice, bob = alice_and_bob
    _, first, preimage = alice.pay(bob.address, E // 10)  # brings the node's collateral into Bob's channel
    run_node_work(alice, bob)
    assert bob.resolve_incoming(first, preimage).status_code == 200
    run_node_work(alice, bob)
    amount = E // 100
    node_in_bob, node_in_alice = balances(bob)[0], balances(alice)[0]
    # Bob's side falls under the threshold once it locks `amount`, Alice's rises over the reclaim
    # threshold once paid it.
    bob_channel = set_profile(
        bob, collateralize=node_in_bob - amount // 2, target=node_in_bob, reclaim=10 * node_in_bob
    )
    alice_channel = set_profile(
        alice, collateralize=0, target=node_in_alice, reclaim=node_in_alice + amount // 2
    )
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("celery")

    with django_capture_on_commit_callbacks(execute=True):  # what runs after commit, as in the node
        response, payment_id, preimage = alice.pay(bob.address, amount)  # forwarded to Bob at once
    assert response.status_code == 200
    assert bob.proposal() is not None
    assert queued_reconciles() == []

    with django_capture_on_commit_callbacks(execute=True):
        assert bob.resolve_incoming(payment_id, preimage, answering=True).status_code == 200
    assert queued_reconciles() == [bob_channel.pk]
    assert balances(bob)[0] == node_in_bob - amount

    with django_capture_on_commit_callbacks(execute=True):
        alice.countersign_proposal()  # the node settles Alice's side with Bob's preimage
    assert sorted(queued_reconciles()) == sorted([bob_channel.pk, alice_channel.pk])
    assert balances(alice)[0] == node_in_alice + amount


@pytest.mark.django_db(transaction=True)  # real commits: the settle's push is held by its batch
def test_the_sender_hears_its_payment_decided_after_the_node_proposed_to_settle_its_side(
    alice_and_bob, django_capture_on_commit_callbacks
):
    """Told first, a sender's next update would cross the node's settling proposal and be refused (it
    was about one refusal per payment under load); told after, it answers the proposal first. Both
    reach the sender in one push."""
    alice, bob = alice_and_bob
    with django_capture_on_commit_callbacks(execute=True):
        _, first, preimage = alice.pay(bob.address, E // 10)  # brings collateral into Bob's channel
    run_node_work(alice, bob)
    assert bob.resolve_incoming(first, preimage).status_code == 200
    run_node_work(alice, bob)
    with django_capture_on_commit_callbacks(execute=True):
        _, payment_id, preimage = alice.pay(bob.address, E // 100)
    assert bob.proposal() is not None

    def bob_resolves() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            assert bob.resolve_incoming(payment_id, preimage, answering=True).status_code == 200

    heard = _pushes_to(alice.address, bob_resolves)

    assert len(heard) == 1  # one push carries both
    events = heard[0]["events"]
    assert [(m["event"], (m["payload"].get("update") or {}).get("type")) for m in events] == [
        ("update.proposed", "resolve"),
        ("transfer.resolved", None),
    ]
    assert events[1]["payload"]["paymentId"] == payment_id
    assert events[1]["payload"]["status"] == "completed"


def test_a_links_holder_sees_its_status_before_redeeming_and_a_wrong_secret_learns_nothing(alice_and_bob):
    """POST /api/transfers/<id>/link-status with the secret in the body: pending, then redeemed and
    completed; expired past its time. Anybody without the secret (or with a payment that is no link)
    gets the same 404 as for no payment at all, and nothing changes."""
    from unittest import mock

    from django.test import Client

    alice, bob = alice_and_bob
    expires_at = int(time.time()) + 3600
    _, payment_id, preimage = alice.pay(None, E // 20, meta={"expiresAt": expires_at})
    run_node_work(alice, bob)
    _, addressed_id, addressed_preimage = alice.pay(bob.address, E // 50)
    visitor = Client()  # no login: the redeem screen asks before the card is unlocked

    def status(payment: str, secret: bytes):
        return visitor.post(
            f"/api/transfers/{payment}/link-status", {"preimage": "0x" + secret.hex()}, "application/json"
        )

    before = status(payment_id, preimage)
    with mock.patch("channels_app.services.payments.time.time", return_value=expires_at + 1):
        late = status(payment_id, preimage)
    wrong = status(payment_id, b"\x01" * 32)
    not_a_link = status(addressed_id, addressed_preimage)
    nothing = status("0x" + "ab" * 32, preimage)
    malformed = visitor.post(
        f"/api/transfers/{payment_id}/link-status", {"preimage": "0x12"}, "application/json"
    )
    assert (
        bob.post(f"/api/transfers/{payment_id}/redeem", {"preimage": "0x" + preimage.hex()}).status_code
        == 200
    )
    claimed = status(payment_id, preimage)
    run_node_work(alice, bob)
    bob.resolve_incoming(payment_id, preimage)
    run_node_work(alice, bob)
    paid = status(payment_id, preimage)

    assert before.status_code == 200
    assert before.json() == {
        "paymentId": payment_id,
        "status": "pending",
        "assetId": ETH,
        "amount": str(E // 20),
        "expiresAt": expires_at,
    }
    assert late.json()["status"] == "expired"
    for refused in (wrong, not_a_link, nothing):
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "unknown_payment")
    assert wrong.json() == nothing.json()  # the same answer: no oracle on which ids exist
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "invalid_input")
    assert claimed.json()["status"] == "redeemed"
    assert paid.json()["status"] == "completed"
