"""The update engine's channel owner (`channels_app.engine.owner`) against this machine's Postgres and
the session's anvil: a user's channel opened and funded through the node's REST API (the row-lock
path), then updated through the owner, which reads the channel once, signs from memory and journals
through its writer. What it stores must be what the row-lock path stores and reads back (the channel
row, the journal a channel is rebuilt from, the transfer rows), its refusals the same and changing
nothing, and a row written past it by the row-lock path must never let it sign a second state at a
nonce."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest

from channels_app.engine.owner import ChannelOwner, Outcome
from channels_app.engine.shard_writer import OwnershipLost, ShardWriter
from channels_app.models import Channel, ChannelUpdate, Transfer
from channels_app.services import channels
from channels_app.services.channels import ChannelError
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization, signing
from connext.protocol.definitions import LinkedState, PreimageResolver
from connext.protocol.encoding import keccak256
from connext.protocol.types import CreateUpdate, ResolveUpdate, Update
from tests.channels_app.conftest import FUNDER_KEY
from tests.support.engine import database_conninfo, django, fixed, running
from tests.support.node_work import run_node_work
from tests.support.wallet import ETH, Wallet

pytestmark = pytest.mark.django_db(transaction=True)
E = 10**18
T = TypeVar("T")


@pytest.fixture
def conninfo() -> str:
    return database_conninfo()


@pytest.fixture
def alice(client, w3) -> Wallet:
    wallet = Wallet(client=client, w3=w3)
    wallet.log_in()
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, 2 * E)
    assert wallet.deposit_update().status_code == 200
    run_node_work(wallet)
    return wallet


async def owning(conninfo: str, scenario: Callable[[ChannelOwner, ShardWriter], Awaitable[T]]) -> T:
    """`scenario` with a started owner of every shard (the node's signer and definitions)."""
    return await running(conninfo, lambda engine: scenario(engine.owner, engine.writer))


def linked_payment(wallet: Wallet, amount: int) -> tuple[CreateUpdate, bytes, dict[str, Any], bytes]:
    """A Linked transfer to the node, signed by `wallet` on its latest state: (update, signature,
    meta, preimage)."""
    preimage = secrets.token_bytes(32)
    meta = {"recipient": "0x" + "ab" * 20}
    update = CreateUpdate(
        channel_address=wallet.state.channel_address,
        nonce=wallet.state.nonce + 1,
        initiator=wallet.address,
        asset_id=ETH,
        amount=amount,
        definition=wallet.config["transferDefinitions"]["linked"],
        payment_id=secrets.token_bytes(32),
        encoded_state=LinkedState(keccak256(preimage)).encode(),
        transfer_timeout=3600,
        meta_hash=transfer_meta.meta_hash(meta),
    )
    _, signature = wallet.sign(update)
    return update, signature, meta, preimage


def adopt(wallet: Wallet, outcome: Outcome) -> None:
    """The wallet checks the node's signature on the state the owner answered and keeps it."""
    signed = outcome.signed
    assert signing.recover_signer(signed.state, signed.node_signature) == signed.state.node
    assert signing.recover_signer(signed.state, signed.user_signature) == wallet.address
    wallet.state = signed.state
    wallet.signatures = (signed.node_signature, signed.user_signature)


def stored_as_the_row_lock_path_reads_it(address: str) -> dict[str, Any]:
    channel = Channel.objects.get(address=address)
    return {
        "nonce": channel.nonce,
        "latest": channels.latest_state(channel),
        "rebuilt": channels.state_at(channel, channel.nonce),
        "journal": list(
            ChannelUpdate.objects.filter(channel=channel).order_by("nonce").values_list("nonce", "kind")
        ),
        "transfers": {
            t.transfer_id: (t.status, t.created_nonce, t.resolved_nonce, t.meta)
            for t in Transfer.objects.filter(channel=channel)
        },
        "proposal": channels.proposal_json(channel),
    }


def test_a_users_create_and_resolve_are_signed_from_memory_and_stored_as_the_row_lock_path_stores_them(
    conninfo, alice
):
    address = alice.state.channel_address
    before = alice.state.nonce

    async def scenario(owner: ChannelOwner, writer: ShardWriter) -> tuple[Outcome, Outcome, int, int]:
        update, signature, meta, preimage = linked_payment(alice, E // 10)
        created = await owner.user_update(
            user=alice.address, update=update, signature=signature, context=alice.context(), meta=meta
        )
        adopt(alice, created)
        transfer = created.stored[0].created
        assert transfer is not None
        # The node resolves what it was paid (as a payment's receiver side is settled upstream).
        resolve = ResolveUpdate(
            channel_address=address,
            nonce=alice.state.nonce + 1,
            initiator=alice.state.node,
            transfer_id=transfer.transfer_id,
            encoded_resolver=PreimageResolver(preimage).encode(),
        )
        proposed = await owner.propose(
            user=alice.address,
            channel_address=resolve.channel_address,
            build=fixed(resolve),
            context=alice.context(),
        )
        new = serialization.channel_state_from_json(proposed.channel.pending_state)
        resolved = await owner.countersign(
            user=alice.address,
            channel_address=address,
            nonce=new.nonce,
            signature=signing.sign_state(new, alice.key),
        )
        adopt(alice, resolved)
        return created, resolved, owner.loads, writer.batches

    created, resolved, loads, batches = asyncio.run(owning(conninfo, scenario))

    assert loads == 1  # read once, then decided from memory
    assert batches == 3
    assert [s.update_type for s in created.stored] == ["create"]
    assert created.events[0][:2] == (alice.address, "channel.updated")
    assert resolved.stored[0].resolved is not None
    assert not resolved.stored[0].refunded
    seen = stored_as_the_row_lock_path_reads_it(address)
    transfer_id = serialization.hex_bytes(created.stored[0].created.transfer_id)
    assert seen["nonce"] == before + 2 == alice.state.nonce
    assert seen["latest"] == alice.state == seen["rebuilt"]  # the journal rebuilds what was signed
    assert seen["journal"][-2:] == [(before + 1, "create"), (before + 2, "resolve")]
    assert seen["transfers"] == {
        transfer_id: ("resolved", before + 1, before + 2, {"recipient": "0x" + "ab" * 20})
    }
    assert seen["proposal"] is None
    # The row-lock path takes the channel on where the owner left it.
    alice.send_eth(FUNDER_KEY, address, E // 100)
    assert alice.deposit_update().status_code == 200
    assert Channel.objects.get(address=address).nonce == before + 3


def test_an_update_sent_again_gets_its_first_answer_and_nothing_more_is_stored_even_by_a_new_owner(
    conninfo, alice
):
    update, signature, meta, _ = linked_payment(alice, E // 10)

    async def send(owner: ChannelOwner, writer: ShardWriter) -> Outcome:
        return await owner.user_update(
            user=alice.address, update=update, signature=signature, context=alice.context(), meta=meta
        )

    async def twice(owner: ChannelOwner, writer: ShardWriter) -> tuple[Outcome, Outcome]:
        return await send(owner, writer), await send(owner, writer)

    first, again = asyncio.run(owning(conninfo, twice))
    later = asyncio.run(owning(conninfo, send))  # a new process: the journal's last update

    assert first.stored
    assert not again.stored
    assert not later.stored
    assert first.signed == again.signed == later.signed
    assert (
        ChannelUpdate.objects.filter(channel__address=update.channel_address, nonce=update.nonce).count() == 1
    )


def test_refusals_are_the_row_lock_paths_and_change_nothing(conninfo, alice):
    address = alice.state.channel_address
    nonce = alice.state.nonce

    async def scenario(owner: ChannelOwner, writer: ShardWriter) -> dict[str, ChannelError]:
        refused: dict[str, ChannelError] = {}

        async def refusal(name: str, call: Awaitable[Any]) -> None:
            with pytest.raises(ChannelError) as caught:
                await call
            refused[name] = caught.value

        update, signature, meta, _ = linked_payment(alice, E // 10)
        await refusal(
            "someone else's",
            owner.user_update(
                user="0x" + "cd" * 20, update=update, signature=signature, context=alice.context(), meta=meta
            ),
        )
        forged = signing.sign_state(alice.sign(update)[0], secrets.token_bytes(32))
        await refusal(
            "forged",
            owner.user_update(
                user=alice.address, update=update, signature=forged, context=alice.context(), meta=meta
            ),
        )
        behind = CreateUpdate(**{**update.__dict__, "nonce": nonce})
        await refusal(
            "stale",
            owner.user_update(
                user=alice.address, update=behind, signature=signature, context=alice.context(), meta=meta
            ),
        )
        await refusal(
            "no proposal",
            owner.countersign(
                user=alice.address, channel_address=address, nonce=nonce + 1, signature=signature
            ),
        )
        # With the node's proposal open, the user's own update at its nonce waits for the answer.
        deposit, context = await django(lambda: node_deposit(alice))
        await owner.propose(
            user=alice.address, channel_address=deposit.channel_address, build=fixed(deposit), context=context
        )
        await refusal(
            "proposal open",
            owner.user_update(
                user=alice.address, update=update, signature=signature, context=alice.context(), meta=meta
            ),
        )
        await refusal(
            "second proposal",
            owner.propose(
                user=alice.address,
                channel_address=deposit.channel_address,
                build=fixed(deposit),
                context=context,
            ),
        )
        return refused

    refused = asyncio.run(owning(conninfo, scenario))

    assert {name: (e.code, e.status) for name, e in refused.items()} == {
        "someone else's": ("not_your_channel", 403),
        "forged": ("bad_signature", 400),
        "stale": ("stale_nonce", 409),
        "no proposal": ("no_proposal", 409),
        "proposal open": ("update_pending", 409),
        "second proposal": ("update_pending", 409),
    }
    assert refused["stale"].extra["latest"]["nodeSignature"] == "0x" + alice.signatures[0].hex()
    assert refused["proposal open"].extra["proposal"]["update"]["type"] == "deposit"
    channel = Channel.objects.get(address=address)
    assert channel.nonce == nonce  # nothing but the proposal was stored
    assert not ChannelUpdate.objects.filter(channel=channel, nonce__gt=nonce).exists()
    assert not Transfer.objects.filter(channel=channel).exists()


def node_deposit(wallet: Wallet, amount: int = E // 100) -> tuple[Update, Any]:
    """Fund `wallet`'s channel on chain; the node's deposit update crediting it, and its context."""
    from connext.chain import channel_reads
    from connext.protocol.types import DepositUpdate

    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, amount)
    totals = channel_reads.deposit_totals(wallet.w3, wallet.state.channel_address, ETH, block="latest")
    update = DepositUpdate(
        channel_address=wallet.state.channel_address,
        nonce=wallet.state.nonce + 1,
        initiator=wallet.state.node,
        asset_id=ETH,
        total_deposits_node=totals.node,
        total_deposits_user=totals.user,
    )
    return update, wallet.context(deposits={ETH: (totals.node, totals.user)})


def test_a_row_moved_under_the_owner_is_read_again_and_no_second_state_is_signed_at_its_nonce(
    conninfo, alice
):
    """While the row-lock path remains, a task can write a channel the owner holds in memory: the
    owner's write is compare-and-set, so it reads the channel again and decides on what is there."""
    address = alice.state.channel_address

    async def scenario(owner: ChannelOwner, writer: ShardWriter) -> tuple[int, ChannelError, Outcome]:
        warm, signature, meta, _ = linked_payment(alice, E // 100)
        adopt(
            alice,
            await owner.user_update(
                user=alice.address, update=warm, signature=signature, context=alice.context(), meta=meta
            ),
        )
        # The owner holds the channel at nonce n; the user's next update goes the row-lock way.
        stale_update, stale_signature, stale_meta, _ = linked_payment(alice, E // 100)
        response = await django(lambda: alice.pay(None, E // 100)[0])
        assert response.status_code == 200, response.json()
        # The same nonce again, through the owner: its memory says it is free; the row says not.
        with pytest.raises(ChannelError) as stale:
            await owner.user_update(
                user=alice.address,
                update=stale_update,
                signature=stale_signature,
                context=alice.context(),
                meta=stale_meta,
            )
        # And the node's proposal after it builds on the row as it is now.
        deposit, context = await django(lambda: node_deposit(alice))
        proposed = await owner.propose(
            user=alice.address, channel_address=deposit.channel_address, build=fixed(deposit), context=context
        )
        return owner.loads, stale.value, proposed

    loads, stale, proposed = asyncio.run(owning(conninfo, scenario))

    assert loads == 2  # read again once the row moved
    assert stale.code == "stale_nonce"
    assert stale.status == 409
    assert int(stale.extra["latest"]["state"]["nonce"]) == alice.state.nonce
    channel = Channel.objects.get(address=address)
    assert channel.nonce == alice.state.nonce
    assert proposed.channel.pending_state["nonce"] == str(alice.state.nonce + 1)
    assert channel.pending_node_signature == proposed.channel.pending_node_signature
    assert ChannelUpdate.objects.filter(channel=channel, nonce=alice.state.nonce).count() == 1


def test_updates_of_many_channels_commit_together_and_a_lost_session_drops_what_the_owner_held(
    conninfo, client, w3
):
    from django.test import Client

    wallets = []
    for index in range(4):
        wallet = Wallet(client=client if index == 0 else Client(), w3=w3)
        wallet.log_in()
        wallet.open()
        wallets.append(wallet)

    deposits = [node_deposit(w) for w in wallets]

    async def scenario(owner: ChannelOwner, writer: ShardWriter) -> tuple[int, BaseException | None, int]:
        for w in wallets:  # in memory: the proposals below are decided without a read
            await owner.channel(user=w.address, channel_address=w.state.channel_address)
        before = writer.batches
        await asyncio.gather(
            *(
                owner.propose(
                    user=w.address,
                    channel_address=update.channel_address,
                    build=fixed(update),
                    context=context,
                )
                for w, (update, context) in zip(wallets, deposits, strict=True)
            )
        )
        batches = writer.batches - before
        assert writer._conn is not None
        pid = writer._conn.info.backend_pid
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        first = wallets[0]
        proposed = serialization.channel_state_from_json(
            (await django(lambda: Channel.objects.get(address=first.state.channel_address))).pending_state
        )
        answer = owner.countersign(
            user=first.address,
            channel_address=first.state.channel_address,
            nonce=proposed.nonce,
            signature=signing.sign_state(proposed, first.key),
        )
        lost = (await asyncio.gather(answer, return_exceptions=True))[0]
        await writer.wait_owning({0, 1, 2, 3}, timeout=15)
        done = await owner.countersign(
            user=first.address,
            channel_address=first.state.channel_address,
            nonce=proposed.nonce,
            signature=signing.sign_state(proposed, first.key),
        )
        adopt(first, done)
        return batches, lost if isinstance(lost, BaseException) else None, owner.loads

    batches, lost, loads = asyncio.run(owning(conninfo, scenario))

    assert batches == 1  # the proposals to four channels shared one commit
    assert isinstance(lost, OwnershipLost)
    assert loads == len(wallets) + 1  # the answered channel was read again in the new session
    assert Channel.objects.get(address=wallets[0].state.channel_address).nonce == wallets[0].state.nonce


def test_a_proposal_the_row_lock_path_made_under_the_owner_is_never_overwritten(conninfo, alice):
    """A proposal leaves the nonce as it was: the owner's write checks the open proposal too, or it
    would replace a node-signed state its user may already hold with another at the same nonce."""
    from django.db import transaction

    address = alice.state.channel_address

    async def scenario(owner: ChannelOwner, writer: ShardWriter) -> tuple[ChannelError, str]:
        await owner.channel(user=alice.address, channel_address=address)  # held at no proposal
        update, context = await django(lambda: node_deposit(alice))

        def reconcile() -> str:  # the row-lock path's proposal of the same credit
            with transaction.atomic():
                channel = channels.lock_for_proposal(Channel.objects.get(address=address).pk)
                channels.propose_locked(channel, update)
                return channel.pending_node_signature

        theirs = await django(reconcile)
        assert theirs
        with pytest.raises(ChannelError) as refused:
            await owner.propose(
                user=alice.address,
                channel_address=update.channel_address,
                build=fixed(update),
                context=context,
            )
        return refused.value, theirs

    refused, theirs = asyncio.run(owning(conninfo, scenario))

    assert (refused.code, refused.status) == ("update_pending", 409)
    assert Channel.objects.get(address=address).pending_node_signature == theirs


def test_a_refusal_is_made_on_the_channel_as_stored_never_on_memory_behind_it(conninfo, alice):
    """The row-lock path proposed after the owner read the channel: the user's countersignature of
    that proposal reaches the owner, whose memory has no proposal. Refused from memory it would be
    `no_proposal`; the owner reads the channel again before refusing, and stores it."""
    from django.db import transaction

    address = alice.state.channel_address

    async def scenario(owner: ChannelOwner, writer: ShardWriter) -> Outcome:
        await owner.channel(user=alice.address, channel_address=address)  # held at no proposal
        update, _context = await django(lambda: node_deposit(alice))

        def propose_the_row_lock_way() -> None:
            with transaction.atomic():
                channel = channels.lock_for_proposal(Channel.objects.get(address=address).pk)
                channels.propose_locked(channel, update)

        await django(propose_the_row_lock_way)
        proposed = await django(
            lambda: serialization.channel_state_from_json(Channel.objects.get(address=address).pending_state)
        )
        return await owner.countersign(
            user=alice.address,
            channel_address=address,
            nonce=proposed.nonce,
            signature=signing.sign_state(proposed, alice.key),
        )

    done = asyncio.run(owning(conninfo, scenario))

    assert [s.update_type for s in done.stored] == ["deposit"]
    channel = Channel.objects.get(address=address)
    assert channel.nonce == done.signed.state.nonce
    assert channel.pending_update is None
