"""Routed payments on the update engine's owner (`channels_app.engine.router`) against this machine's
Postgres and the session's anvil: users opened and funded through the node's REST API, their payments
then sent through the router. A payment must end as the row-lock path ends it (the payment and both
transfers recorded, each party told what the row-lock path tells it), be refused as it refuses (and
then change nothing), and whatever the router leaves to the row-lock path (a receiver without the
node's collateral) must carry on there and come back."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from channels_app.engine.owner import Event
from channels_app.engine.router import Routed, Router
from channels_app.models import Channel, ChannelUpdate, OnchainTransaction, Payment, Transfer
from channels_app.services.channels import ChannelError
from channels_app.services.errors import ServiceError
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization, signing, validation
from connext.protocol.definitions import LinkedState, PreimageResolver
from connext.protocol.encoding import keccak256
from connext.protocol.types import CreateUpdate, DepositUpdate, ResolveUpdate
from tests.channels_app.conftest import FUNDER_KEY
from tests.support.engine import database_conninfo, django, running
from tests.support.node_work import queued_reconciles, run_node_work, set_profile
from tests.support.wallet import ETH, Wallet

pytestmark = pytest.mark.django_db(transaction=True)
E = 10**18
T = TypeVar("T")


@pytest.fixture
def conninfo() -> str:
    return database_conninfo()


def funded(client: Any, w3: Any) -> Wallet:
    wallet = Wallet(client=client, w3=w3)
    wallet.log_in()
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    assert wallet.deposit_update().status_code == 200
    return wallet


@pytest.fixture
def alice_and_bob(client, w3) -> tuple[Wallet, Wallet]:
    from django.test import Client

    alice, bob = funded(client, w3), funded(Client(), w3)
    run_node_work(alice, bob)  # the node's collateral beside each deposit (its rebalance profile)
    return alice, bob


async def routing(conninfo: str, scenario: Callable[[Router], Awaitable[T]]) -> T:
    """`scenario` with a router over a started owner of every shard."""
    return await running(conninfo, lambda engine: scenario(engine.router))


def payment_create(
    wallet: Wallet, recipient: str, amount: int, **fields: Any
) -> tuple[CreateUpdate, bytes, dict[str, Any], bytes]:
    preimage = secrets.token_bytes(32)
    meta = {"recipient": recipient}
    update = CreateUpdate(
        channel_address=wallet.state.channel_address,
        nonce=wallet.state.nonce + 1,
        initiator=wallet.address,
        asset_id=ETH,
        amount=amount,
        definition=wallet.config["transferDefinitions"]["linked"],
        payment_id=fields.pop("payment_id", None) or secrets.token_bytes(32),
        encoded_state=LinkedState(keccak256(preimage)).encode(),
        transfer_timeout=fields.pop("transfer_timeout", 3600),
        meta_hash=transfer_meta.meta_hash(meta),
    )
    _, signature = wallet.sign(update)
    return update, signature, meta, preimage


def resolve_with(wallet: Wallet, state: Any, payment_id: bytes, preimage: bytes) -> ResolveUpdate:
    """`wallet`'s resolve of the active transfer of `payment_id` in `state` with `preimage`."""
    transfer = next(t for t in state.transfers if t.payment_id == payment_id)
    return ResolveUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=wallet.address,
        transfer_id=transfer.transfer_id,
        encoded_resolver=PreimageResolver(preimage).encode(),
    )


def proposal_for(wallet: Wallet, events: tuple[Event, ...]) -> tuple[Any, bytes]:
    """The node's proposal pushed to `wallet`, checked on its own state and signed."""
    (proposal,) = [
        payload for user, event, payload in events if user == wallet.address and event == "update.proposed"
    ]
    update = serialization.update_from_json(proposal["update"])
    node_signature = bytes.fromhex(proposal["nodeSignature"][2:])
    new = validation.validate_update(wallet.state, update, node_signature, context=wallet.context())
    return new, signing.sign_state(new, wallet.key)


async def resolve_answering(
    router: Router, wallet: Wallet, events: tuple[Event, ...], payment_id: bytes, preimage: bytes
) -> Routed:
    """`wallet` resolves the payment the node forwarded to it (its proposal among `events`) with
    `preimage`, countersigning the forward in the same request."""
    forwarded, answer = proposal_for(wallet, events)
    wallet.state = forwarded
    resolve = resolve_with(wallet, forwarded, payment_id, preimage)
    _, signature = wallet.sign(resolve)
    resolved = await router.user_update(
        user=wallet.address, update=resolve, signature=signature, answer=(forwarded.nonce, answer)
    )
    keep(wallet, resolved)
    return resolved


async def answer_proposal(router: Router, wallet: Wallet, events: tuple[Event, ...]) -> Routed:
    """`wallet` countersigns the node's proposal pushed to it among `events`, through the router."""
    new, signature = proposal_for(wallet, events)
    answered = await router.countersign(
        user=wallet.address, channel_address=new.channel_address, nonce=new.nonce, signature=signature
    )
    keep(wallet, answered)
    return answered


def keep(wallet: Wallet, routed: Routed) -> None:
    signed = routed.outcome.signed
    assert signing.recover_signer(signed.state, signed.node_signature) == signed.state.node
    wallet.state = signed.state
    wallet.signatures = (signed.node_signature, signed.user_signature)


def told(events: tuple[Event, ...], wallet: Wallet) -> list[str]:
    return [event for user, event, _ in events if user == wallet.address]


def test_a_payment_through_the_router_is_forwarded_decided_and_settled_as_the_row_lock_path_does(
    conninfo, alice_and_bob
):
    alice, bob = alice_and_bob
    alice_before, bob_before = alice.state.balances[0], bob.state.balances[0]

    async def scenario(router: Router) -> list[tuple[Events, str | None]]:
        steps: list[tuple[Events, str | None]] = []
        update, signature, meta, preimage = payment_create(alice, bob.address, E // 10)
        sent = await router.user_update(user=alice.address, update=update, signature=signature, meta=meta)
        keep(alice, sent)
        payment_id = "0x" + update.payment_id.hex()
        steps.append((sent.events, await django(lambda: Payment.objects.get(payment_id=payment_id).status)))
        # Bob resolves with the preimage, countersigning the forward in the same request.
        resolved = await resolve_answering(router, bob, sent.events, update.payment_id, preimage)
        steps.append(
            (resolved.events, await django(lambda: Payment.objects.get(payment_id=payment_id).status))
        )
        # Alice countersigns the node's resolve of her side.
        done = await answer_proposal(router, alice, resolved.events)
        steps.append((done.events, await django(lambda: Payment.objects.get(payment_id=payment_id).status)))
        return steps

    (sent, after_sent), (resolved, after_resolved), (done, after_done) = asyncio.run(
        routing(conninfo, scenario)
    )

    assert after_sent == "forwarded"
    assert told(sent, alice) == ["channel.updated", "transfer.created"]
    assert told(sent, bob) == ["update.proposed"]
    assert after_resolved == "completed"
    assert told(resolved, bob) == ["channel.updated", "transfer.received", "transfer.resolved"]
    # Alice hears of the payment after the node's proposal to settle it (one push in the row-lock path).
    assert told(resolved, alice) == ["update.proposed", "transfer.resolved"]
    assert after_done == "completed"
    # Told when Bob decided it: the payment's end tells nobody again.
    assert told(done, alice) == ["channel.updated"]
    assert told(done, bob) == []
    payment = Payment.objects.select_related("sender_transfer", "receiver_transfer").get()
    assert payment.sender_transfer.status == payment.receiver_transfer.status == Transfer.Status.RESOLVED
    assert payment.recipient == bob.address
    assert alice.state.balances[0] == (alice_before[0] + E // 10, alice_before[1] - E // 10)
    assert bob.state.balances[0] == (bob_before[0] - E // 10, bob_before[1] + E // 10)
    assert alice.state.transfers == bob.state.transfers == ()
    for wallet in (alice, bob):  # what the node stored is what each user holds
        channel = Channel.objects.get(address=wallet.state.channel_address)
        assert channel.nonce == wallet.state.nonce
        assert channel.pending_update is None


def test_a_payments_forward_and_its_senders_settle_commit_in_the_batches_of_the_updates_that_call_for_them(
    conninfo, alice_and_bob
):
    """With both channels in the owner's memory and free, the node's forward commits in the batch of
    the sender's create and its settle of the sender's side in the batch of the receiver's resolve
    (companions): each done when the user's update is answered, before any step after the commit,
    one batch for the pair. The payment then ends as the row-lock path ends it."""
    alice, bob = alice_and_bob

    async def scenario(engine: Any) -> dict[str, Any]:
        router, seen = engine.router, {}
        for wallet in (alice, bob):  # in memory, as the channels of users who paid before
            await router._owner.channel(user=wallet.address, channel_address=wallet.state.channel_address)
        update, signature, meta, preimage = payment_create(alice, bob.address, E // 10)
        payment_id = "0x" + update.payment_id.hex()
        batches = engine.writer.batches
        sent = await router.user_update(
            user=alice.address, update=update, signature=signature, meta=meta, answer_first=True
        )
        keep(alice, sent)
        seen["create"] = (
            engine.writer.batches - batches,
            await django(lambda: Payment.objects.get(payment_id=payment_id).status),
            told(sent.events, alice),
        )
        assert sent.later is not None
        forward = tuple(await sent.later())
        forwarded, answer = proposal_for(bob, forward)
        bob.state = forwarded
        resolve = resolve_with(bob, forwarded, update.payment_id, preimage)
        _, resolve_signature = bob.sign(resolve)
        batches = engine.writer.batches
        resolved = await router.user_update(
            user=bob.address,
            update=resolve,
            signature=resolve_signature,
            answer=(forwarded.nonce, answer),
            answer_first=True,
        )
        keep(bob, resolved)
        proposal = await django(
            lambda: Channel.objects.get(address=alice.state.channel_address).pending_update
        )
        seen["resolve"] = (engine.writer.batches - batches, proposal is not None)
        assert resolved.later is not None
        await answer_proposal(router, alice, tuple(await resolved.later()))
        return seen

    seen = asyncio.run(running(conninfo, scenario))

    assert seen["create"] == (1, "forwarded", ["channel.updated", "transfer.created"])
    assert seen["resolve"] == (1, True)
    payment = Payment.objects.select_related("sender_transfer", "receiver_transfer").get()
    assert payment.status == "completed"
    assert payment.sender_transfer.status == payment.receiver_transfer.status == Transfer.Status.RESOLVED
    for wallet in (alice, bob):
        channel = Channel.objects.get(address=wallet.state.channel_address)
        assert (channel.nonce, channel.pending_update) == (wallet.state.nonce, None)


def test_a_create_refused_for_reusing_a_waiting_payments_id_forwards_nothing_with_it(
    conninfo, client, w3, alice_and_bob
):
    """The attack on a forward committed with its create: Alice pays Carol, who has no node collateral
    yet, so the payment waits (`pending`); Bob then sends a create to Alice reusing its id. His create is
    refused (one payment per id), and the forward made with it, guarded by the payment row, must not
    commit: a guard that only asked for a waiting payment of that id would find Alice's and have the
    node lock its money for Alice with nothing locked by Bob."""
    from django.test import Client

    alice, bob = alice_and_bob
    carol = Wallet(client=Client(), w3=w3)
    carol.log_in()
    carol.open()
    alice_nonce = alice.state.nonce

    async def scenario(engine: Any) -> ChannelError:
        router = engine.router
        first, signature, meta, _ = payment_create(alice, carol.address, E // 100)
        keep(
            alice, await router.user_update(user=alice.address, update=first, signature=signature, meta=meta)
        )
        await router._owner.channel(user=alice.address, channel_address=alice.state.channel_address)
        again, signature, meta, _ = payment_create(bob, alice.address, E // 100, payment_id=first.payment_id)
        with pytest.raises(ChannelError) as taken:
            await router.user_update(user=bob.address, update=again, signature=signature, meta=meta)
        return taken.value

    refused = asyncio.run(running(conninfo, scenario))

    assert refused.code == "duplicate_payment"
    channel = Channel.objects.get(address=alice.state.channel_address)
    assert (channel.nonce, channel.pending_update) == (alice.state.nonce, None) == (alice_nonce + 1, None)
    assert Payment.objects.get().status == "pending"  # Alice's, still waiting for Carol's collateral
    assert Transfer.objects.filter(channel=channel).count() == 1  # Alice's own side, nothing for her


def test_a_payment_through_the_router_has_the_channel_it_took_out_of_its_profile_rebalanced(
    conninfo, alice_and_bob
):
    """After the steps that move the node's balance (the receiver's side locking the node's money, the
    sender's side paying the node) the channel's profile is checked: a channel whose node balance
    left it gets its reconcile queued, one whose balance stays inside gets none."""
    import redis
    from django.conf import settings

    alice, bob = alice_and_bob
    amount = E // 100
    node_in_bob, node_in_alice = bob.state.balances[0][0], alice.state.balances[0][0]
    # Bob's side falls under the threshold once it locks `amount`, Alice's stays inside once paid it.
    bob_channel = set_profile(
        bob, collateralize=node_in_bob - amount // 2, target=node_in_bob, reclaim=10 * node_in_bob
    )
    set_profile(alice, collateralize=0, target=node_in_alice, reclaim=node_in_alice + 2 * amount)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("celery")

    async def scenario(router: Router) -> list[list[int]]:
        queued: list[list[int]] = []
        update, signature, meta, preimage = payment_create(alice, bob.address, amount)
        sent = await router.user_update(user=alice.address, update=update, signature=signature, meta=meta)
        keep(alice, sent)
        queued.append(await django(queued_reconciles))
        resolved = await resolve_answering(router, bob, sent.events, update.payment_id, preimage)
        queued.append(await django(queued_reconciles))
        await answer_proposal(router, alice, resolved.events)
        queued.append(await django(queued_reconciles))
        return queued

    after_create, after_resolve, after_settle = asyncio.run(routing(conninfo, scenario))

    assert after_create == []  # the sender's create moves only the sender's money
    assert after_resolve == [bob_channel.pk]
    assert after_settle == [bob_channel.pk]  # Alice's side rose, inside her profile
    assert alice.state.balances[0][0] == node_in_alice + amount
    assert bob.state.balances[0][0] == node_in_bob - amount


Events = tuple[Event, ...]


def test_a_read_failing_after_the_commit_still_answers_the_update_it_follows(conninfo, alice_and_bob):
    """Bob countersigns the node's forward; the reader fails on what the commit calls for (whether his
    channel waits for a proposal). The countersignature committed, so it is answered with the state
    it made: steps after a commit never turn the request into an error (docs/protocol.md)."""
    alice, bob = alice_and_bob

    async def scenario(router: Router) -> Routed:
        update, signature, meta, _ = payment_create(alice, bob.address, E // 100)
        sent = await router.user_update(user=alice.address, update=update, signature=signature, meta=meta)
        keep(alice, sent)
        forwarded, answer = proposal_for(bob, sent.events)

        await router._reader.close()  # the reader's connections gone, the writer's session still up
        answered = await router.countersign(
            user=bob.address,
            channel_address=forwarded.channel_address,
            nonce=forwarded.nonce,
            signature=answer,
        )
        keep(bob, answered)
        return answered

    answered = asyncio.run(routing(conninfo, scenario))

    # The state it made, not the payment's row (unread): his client sees the payment on its next sync.
    assert told(answered.events, bob) == ["channel.updated"]
    channel = Channel.objects.get(address=bob.state.channel_address)
    assert (channel.nonce, channel.pending_update) == (bob.state.nonce, None)
    assert Payment.objects.get().receiver_transfer is not None


def test_a_payment_refused_by_the_routing_terms_or_reusing_a_payment_id_changes_nothing(
    conninfo, alice_and_bob
):
    alice, bob = alice_and_bob
    nonce = alice.state.nonce

    async def scenario(router: Router) -> dict[str, ServiceError]:
        refused: dict[str, ServiceError] = {}
        update, signature, meta, _ = payment_create(alice, bob.address, E // 100, transfer_timeout=60)
        with pytest.raises(ServiceError) as short:
            await router.user_update(user=alice.address, update=update, signature=signature, meta=meta)
        refused["short"] = short.value
        first, signature, meta, _ = payment_create(alice, bob.address, E // 100)
        keep(
            alice, await router.user_update(user=alice.address, update=first, signature=signature, meta=meta)
        )
        again, signature, meta, _ = payment_create(alice, bob.address, E // 100, payment_id=first.payment_id)
        with pytest.raises(ChannelError) as taken:
            await router.user_update(user=alice.address, update=again, signature=signature, meta=meta)
        refused["taken"] = taken.value
        return refused

    refused = asyncio.run(routing(conninfo, scenario))

    assert (refused["short"].code, refused["short"].status) == ("transfer_timeout_too_short", 400)
    assert (refused["taken"].code, refused["taken"].status) == ("duplicate_payment", 409)
    channel = Channel.objects.get(address=alice.state.channel_address)
    assert channel.nonce == nonce + 1 == alice.state.nonce  # the one accepted payment, nothing more
    assert ChannelUpdate.objects.filter(channel=channel, nonce__gt=nonce).count() == 1
    assert Payment.objects.count() == 1
    assert Transfer.objects.filter(channel=channel).count() == 1


def test_a_receiver_answering_the_forward_and_resolving_it_at_once_is_refused_once_the_sender_was_refunded(
    conninfo, alice_and_bob
):
    """The routing-window attack through the router (docs/protocol.md, "Routing windows"): the sender's
    side is refunded on chain (as the node's watcher records it) while the node's forward is open, and
    the receiver answers it and resolves it in one request. The check finds the payment through the
    proposal being answered, as no receiver side is stored yet, and refuses it whole."""
    alice, bob = alice_and_bob

    async def scenario(router: Router) -> tuple[ServiceError, Any]:
        update, signature, meta, preimage = payment_create(alice, bob.address, E // 100)
        sent = await router.user_update(user=alice.address, update=update, signature=signature, meta=meta)
        keep(alice, sent)
        payment_id = "0x" + update.payment_id.hex()
        await django(
            lambda: Transfer.objects.filter(payment_id=payment_id, responder=alice.state.node).update(
                status=Transfer.Status.CANCELLED
            )
        )
        proposal = await django(lambda: Channel.objects.get(address=bob.state.channel_address).pending_update)
        with pytest.raises(ServiceError) as refused:
            await resolve_answering(router, bob, sent.events, update.payment_id, preimage)
        return refused.value, proposal

    nonce = bob.state.nonce
    refused, proposal = asyncio.run(routing(conninfo, scenario))

    assert (refused.code, refused.status) == ("upstream_refunded", 409)
    channel = Channel.objects.get(address=bob.state.channel_address)
    assert (channel.nonce, channel.pending_update) == (nonce, proposal)  # the forward still open
    assert Transfer.objects.filter(channel=channel).count() == 0


@pytest.mark.parametrize("sender_channel", ["open", "disputed"])
def test_a_payment_waiting_for_a_busy_receiver_is_forwarded_by_the_router_once_the_receiver_answers(
    conninfo, alice_and_bob, sender_channel
):
    """A payment whose receiver's channel holds the node's open proposal waits; the receiver's answer
    frees the channel and the router forwards the payment itself, in the steps of that answer (the
    row-lock path's forward would push it on its own). Unless the sender's channel went into dispute
    meanwhile: then the router forwards nothing and the row-lock path fails the payment (the node must
    not pay downstream what it might not claim upstream, docs/protocol.md "Routing windows", rule 4)."""
    alice, bob = alice_and_bob

    async def scenario(router: Router) -> tuple[str, Routed]:
        first, signature, meta, _ = payment_create(alice, bob.address, E // 100)
        sent = await router.user_update(user=alice.address, update=first, signature=signature, meta=meta)
        keep(alice, sent)
        second, signature, meta, _ = payment_create(alice, bob.address, E // 100)
        waiting = await router.user_update(user=alice.address, update=second, signature=signature, meta=meta)
        keep(alice, waiting)
        assert told(waiting.events, bob) == []  # Bob's channel is busy with the first forward
        if sender_channel == "disputed":
            await django(
                lambda: Channel.objects.filter(address=alice.state.channel_address).update(
                    status=Channel.Status.DISPUTED
                )
            )
        return "0x" + second.payment_id.hex(), await answer_proposal(router, bob, sent.events)

    waiting_id, answered = asyncio.run(routing(conninfo, scenario))
    payment = Payment.objects.get(payment_id=waiting_id)
    pending = Channel.objects.get(address=bob.state.channel_address).pending_update
    if sender_channel == "open":
        assert told(answered.events, bob) == ["channel.updated", "transfer.received", "update.proposed"]
        proposed, _ = proposal_for(bob, answered.events)  # a proposal Bob can check and sign
        forward = serialization.update_from_json(pending)
        assert proposed.nonce == forward.nonce
        assert "0x" + forward.payment_id.hex() == waiting_id
        assert payment.status == "forwarded"
    else:
        assert told(answered.events, bob) == ["channel.updated", "transfer.received"]
        assert pending is None
        assert payment.status == "failed"
        assert payment.failure == "the sender's channel is in dispute"


def test_a_receiver_without_the_nodes_collateral_is_left_to_the_row_lock_path_which_forwards_it_later(
    conninfo, client, w3, alice_and_bob
):
    """The router forwards what it can at once; a receiver the node has no collateral for yet goes
    the row-lock path's way (a collateral deposit on chain, then its forward), and the payment comes
    back to the router for its resolve."""
    from django.test import Client

    alice, _ = alice_and_bob
    carol = Wallet(client=Client(), w3=w3)
    carol.log_in()
    carol.open()  # no deposit: the node has nothing in her channel

    async def send(router: Router) -> Routed:
        update, signature, meta, preimage = payment_create(alice, carol.address, E // 100)
        send.preimage, send.payment_id = preimage, update.payment_id  # type: ignore[attr-defined]
        return await router.user_update(user=alice.address, update=update, signature=signature, meta=meta)

    sent = asyncio.run(routing(conninfo, send))
    keep(alice, sent)
    payment_id = "0x" + send.payment_id.hex()  # type: ignore[attr-defined]

    assert told(sent.events, carol) == []
    assert Payment.objects.get(payment_id=payment_id).status == "pending"
    assert OnchainTransaction.objects.filter(channel_address=carol.state.channel_address).exists()
    run_node_work(alice, carol)  # the collateral lands; the row-lock path forwards and carol answers
    transfer = next(t for t in carol.state.transfers if "0x" + t.payment_id.hex() == payment_id)

    async def resolve(router: Router) -> tuple[Routed, Routed]:
        update = ResolveUpdate(
            channel_address=carol.state.channel_address,
            nonce=carol.state.nonce + 1,
            initiator=carol.address,
            transfer_id=transfer.transfer_id,
            encoded_resolver=PreimageResolver(send.preimage).encode(),  # type: ignore[attr-defined]
        )
        _, signature = carol.sign(update)
        resolved = await router.user_update(user=carol.address, update=update, signature=signature)
        keep(carol, resolved)
        done = await answer_proposal(router, alice, resolved.events)
        return resolved, done

    asyncio.run(routing(conninfo, resolve))

    payment = Payment.objects.select_related("sender_transfer", "receiver_transfer").get(
        payment_id=payment_id
    )
    assert payment.status == "completed"
    assert payment.sender_transfer.status == payment.receiver_transfer.status == Transfer.Status.RESOLVED
    assert Channel.objects.get(address=alice.state.channel_address).nonce == alice.state.nonce


def test_a_payment_forwarded_by_the_row_lock_path_is_never_forwarded_again_by_the_router(
    conninfo, alice_and_bob
):
    """The race's late half: the router's forward of a payment comes after the row-lock path forwarded
    it and the receiver answered (its channel free again, the node's collateral still there).
    Proposing would lock the node's money for one payment twice, and the receiver could claim both
    with one preimage: the payment's compare-and-set (`pending` to `forwarded`, in the proposal's
    batch) refuses the proposal whole."""
    from django.db import transaction

    from channels_app.engine.router import _Started
    from channels_app.services import channels

    alice, bob = alice_and_bob
    # Bob's channel is busy with a proposal of the node's when the payment comes: the router leaves
    # the forward for the answer to that proposal, which the row-lock path makes (REST).
    bob.send_eth(FUNDER_KEY, bob.state.channel_address, E // 100)
    totals = deposit_totals(bob)
    with transaction.atomic():
        channel = channels.lock_for_proposal(Channel.objects.get(address=bob.state.channel_address).pk)
        channels.propose_locked(
            channel,
            DepositUpdate(
                channel_address=bob.state.channel_address,
                nonce=bob.state.nonce + 1,
                initiator=bob.state.node,
                asset_id=ETH,
                total_deposits_node=totals[0],
                total_deposits_user=totals[1],
            ),
        )

    async def send(router: Router) -> Routed:
        update, signature, meta, _ = payment_create(alice, bob.address, 10**12)
        return await router.user_update(user=alice.address, update=update, signature=signature, meta=meta)

    sent = asyncio.run(routing(conninfo, send))
    keep(alice, sent)
    (payment,) = Payment.objects.all()
    assert payment.status == "pending"
    bob.countersign_proposal(deposits={ETH: totals})  # the row-lock path then forwards the payment
    assert Payment.objects.get(pk=payment.pk).status == "forwarded"
    bob.countersign_proposal()
    sender_side = alice.state.transfers[0]
    started = _Started(sender_side, bob.address, {"recipient": bob.address}, alice.state.timeout)

    async def forward_again(router: Router) -> list[Event]:
        return await router._forward(started)

    assert asyncio.run(routing(conninfo, forward_again)) == []
    channel = Channel.objects.get(address=bob.state.channel_address)
    assert channel.pending_update is None
    assert channel.nonce == bob.state.nonce
    assert Transfer.objects.filter(payment_id=payment.payment_id).count() == 2  # one side each


def deposit_totals(wallet: Wallet) -> tuple[int, int]:
    from connext.chain import channel_reads

    totals = channel_reads.deposit_totals(wallet.w3, wallet.state.channel_address, ETH, block="latest")
    return totals.node, totals.user


def test_the_routers_payment_json_is_the_row_lock_paths_at_every_step(conninfo, alice_and_bob):
    """The router tells payments from its own read of their rows, or, for the payment a create
    inserts, as it wrote the row: each must read as `payments.payment_json` reads the same row (the
    clients parse one shape)."""
    from channels_app.engine import journal
    from channels_app.engine.router import payment_json
    from channels_app.services import payments

    alice, bob = alice_and_bob
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def legacy(payment_id: str) -> dict[str, Any]:
        return await django(
            lambda: payments.payment_json(
                Payment.objects.select_related("sender_transfer", "receiver_transfer").get(
                    payment_id=payment_id
                )
            )
        )

    async def compare(router: Router) -> None:
        ids = await django(lambda: list(Payment.objects.values_list("payment_id", flat=True)))
        rows = await router._reader.read(lambda cursor: journal.payment_rows(cursor, ids))
        for row in rows:
            seen.append((payment_json(row), await legacy(row.payment_id)))

    update, signature, meta, preimage = payment_create(alice, bob.address, E // 50)
    meta_with_memo = {**meta, "memo": "lunch", "encryptedPreimage": "0x1234"}
    update = CreateUpdate(**{**update.__dict__, "meta_hash": transfer_meta.meta_hash(meta_with_memo)})
    _, signature = alice.sign(update)

    async def scenario(router: Router) -> None:
        sent = await router.user_update(
            user=alice.address, update=update, signature=signature, meta=meta_with_memo, answer_first=True
        )
        keep(alice, sent)
        (created,) = [p for user, event, p in sent.events if event == "transfer.created"]
        seen.append((created, await legacy(created["paymentId"])))  # as inserted, before the forward
        assert sent.later is not None
        forward = tuple(await sent.later())
        await compare(router)  # forwarded
        forwarded, answer = proposal_for(bob, forward)
        await router.countersign(
            user=bob.address,
            channel_address=forwarded.channel_address,
            nonce=forwarded.nonce,
            signature=answer,
        )
        bob.state = forwarded
        await compare(router)  # its receiver side locked
        resolve = resolve_with(bob, forwarded, update.payment_id, preimage)
        _, resolve_signature = bob.sign(resolve)
        keep(bob, await router.user_update(user=bob.address, update=resolve, signature=resolve_signature))
        await compare(router)  # completed, the sender side still active

    asyncio.run(routing(conninfo, scenario))

    assert len(seen) == 4
    for ours, theirs in seen:
        assert ours == theirs
    assert seen[0][0]["meta"] == {"recipient": bob.address, "memo": "lunch"}  # never the ciphertext
    assert [ours["status"] for ours, _ in seen] == ["pending", "forwarded", "forwarded", "completed"]


def test_a_step_another_engine_asks_for_is_made_from_the_payment_as_stored_never_from_the_message(
    conninfo, alice_and_bob
):
    """The attack: a message on the channel layer (whoever can write to Redis) asks the owner of Bob's
    channel to forward Alice's pending payment with ten times its amount, and the owner of Alice's to
    refund her side although Bob was paid. Each owner makes the step from the stored payment: Bob's
    side locks what Alice locked, and Alice's side is resolved with Bob's resolver (the node is paid
    back); a step the stored payment no longer calls for does nothing."""
    alice, bob = alice_and_bob
    amount = E // 10
    alice_before = alice.state.balances[0]

    async def scenario(router: Router) -> tuple[int, list[Event], Any]:
        update, signature, meta, preimage = payment_create(alice, bob.address, amount)
        payment_id = "0x" + update.payment_id.hex()
        sent = await router.user_update(
            user=alice.address, update=update, signature=signature, meta=meta, answer_first=True
        )
        keep(alice, sent)  # answered first: not forwarded yet
        forged = dict(serialization.transfer_state_to_json(alice.state.transfers[-1]))
        forged["balance"] = [str(10 * amount), "0"]
        forwarded_by_command = await router.run_command(
            bob.address,
            "forward",
            {
                "paymentId": payment_id,
                "transfer": forged,
                "recipient": bob.address,
                "meta": meta,
                "senderChannelTimeout": alice.state.timeout,
            },
        )
        locked, answer = proposal_for(bob, tuple(forwarded_by_command))
        bob_locked = locked.transfers[-1].balance[0]
        assert await router.run_command(bob.address, "forward", {"paymentId": payment_id}) == []  # done
        bob.state = locked
        # Alice's channel out of memory (as after its shard moved away and back): Bob's resolve cannot
        # settle her side in its batch, and it is answered first, so her side waits for the command.
        await router._owner.shards_changed(frozenset(range(4)))
        resolve = resolve_with(bob, locked, update.payment_id, preimage)
        _, resolve_signature = bob.sign(resolve)
        resolved = await router.user_update(
            user=bob.address,
            update=resolve,
            signature=resolve_signature,
            answer=(locked.nonce, answer),
            answer_first=True,  # Alice's side not settled yet
        )
        keep(bob, resolved)
        settled_by_command = await router.run_command(
            alice.address,
            "settle",
            {
                "paymentId": payment_id,
                "kind": "linked",
                "sender": alice.address,
                "paid": False,
                "resolver": "0x",
                "event": "transfer.failed",
                "payload": {},
            },
        )
        return bob_locked, settled_by_command, alice.state

    bob_locked, settled_by_command, alice_state = asyncio.run(routing(conninfo, scenario))

    assert bob_locked == amount  # not the ten times the message asked for
    settle, _ = proposal_for(alice, tuple(settled_by_command))
    assert settle.transfers == ()
    node, user = alice_state.balances[0]  # (node, user) with the payment locked
    assert user == alice_before[1] - amount
    assert settle.balances[0] == (node + amount, user)  # resolved: the node is paid, not refunded
