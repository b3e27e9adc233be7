"""Rows in bulk for measuring the dashboard at scale (`seed_demo --bulk`, bench/dashboard_bench.py).

Not how money moves: these rows are inserted directly, without the chain. They are consistent the way
the dashboard reads them: each channel's latest state keeps the channel invariant and carries the
node's and its user's real signatures, and every payment has its two settled transfers (resolved
when it completed, cancelled otherwise) in the sender's and the receiver's channels.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from channels_app.models import Channel, Payment, Transfer
from connext.protocol import serialization, signing
from connext.protocol.types import ChannelState
from dashboard.models import ValueSnapshot

ETH = "0x0000000000000000000000000000000000000000"
E = 10**18
BATCH = 5000


@dataclass(frozen=True)
class BulkCounts:
    channels: int
    payments: int


def _address(rng: random.Random) -> str:
    from web3 import Web3

    return Web3.to_checksum_address("0x" + rng.randbytes(20).hex())


def _hex32(rng: random.Random) -> str:
    return "0x" + rng.randbytes(32).hex()


def bulk_insert(
    *,
    channels: int,
    payments: int,
    node_key: bytes,
    chain_id: int,
    days: int = 30,
    seed: int = 17,
    now: datetime | None = None,
) -> BulkCounts:
    """Insert `channels` channels and `payments` payments between them, spread over the last `days`."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo rows; their keys guard no money
    now = now or timezone.now()
    node = signing.Signer(node_key)
    made: list[Channel] = []
    for _ in range(channels):
        user_key = rng.randbytes(32)
        user = signing.Signer(user_key)
        user_deposit, node_deposit = rng.randrange(1, 5 * E), rng.randrange(0, E // 2)
        paid = rng.randrange(0, user_deposit)  # moved to the node's side by payments it made
        state = ChannelState(
            channel_address=_address(rng),
            chain_id=chain_id,
            node=node.address,
            user=user.address,
            asset_ids=(ETH,),
            balances=((node_deposit + paid, user_deposit - paid),),
            processed_deposits=((node_deposit, user_deposit),),
            defund_nonces=(1,),
            timeout=86400,
            nonce=rng.randrange(2, 400),
        )
        created = now - timedelta(days=days, seconds=-rng.randrange(0, days * 86400))
        made.append(
            Channel(
                address=state.channel_address,
                chain_id=chain_id,
                node_address=node.address,
                user_address=user.address,
                status=Channel.Status.OPEN,
                nonce=state.nonce,
                latest_state=serialization.channel_state_to_json(state),
                node_signature="0x" + signing.sign_state(state, node).hex(),
                user_signature="0x" + signing.sign_state(state, user_key).hex(),
                deployed=rng.random() < 0.3,
                created_at=created,
                updated_at=created
                + timedelta(seconds=rng.randrange(0, max(1, int((now - created).total_seconds())))),
            )
        )
    with transaction.atomic(), _times_as_given():
        for start in range(0, len(made), BATCH):
            Channel.objects.bulk_create(made[start : start + BATCH])
        for start in range(0, payments, BATCH):
            _insert_payments(rng, made, min(BATCH, payments - start), node.address, now, days)
        ValueSnapshot.objects.bulk_create(_history(made, now, days), batch_size=BATCH)
    return BulkCounts(channels=channels, payments=payments)


def _history(channels: list[Channel], now: datetime, days: int) -> Iterator[ValueSnapshot]:
    """An hourly value history the rows agree with: at each hour, the channels created by then with
    the balances their latest states hold (in these rows a channel's balances are its only ones)."""
    ordered = sorted(channels, key=lambda channel: channel.created_at)
    node = users = on_chain = 0
    added = 0
    moment = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    while moment <= now:
        while added < len(ordered) and ordered[added].created_at <= moment:
            state = ordered[added].latest_state
            node += int(state["balances"][0][0])
            users += int(state["balances"][0][1])
            on_chain += sum(int(total) for total in state["processedDeposits"][0])
            added += 1
        yield ValueSnapshot(
            taken_at=moment, asset_id=ETH, node=node, users=users, locked=0, on_chain=on_chain
        )
        moment += timedelta(hours=1)


def _insert_payments(
    rng: random.Random, channels: list[Channel], count: int, node: str, now: datetime, days: int
) -> None:
    transfers: list[Transfer] = []
    payments: list[Payment] = []
    for _ in range(count):
        sender, receiver = rng.sample(channels, 2)
        roll = rng.random()
        status = (
            Payment.Status.COMPLETED
            if roll < 0.9
            else (Payment.Status.REFUNDED if roll < 0.97 else Payment.Status.FAILED)
        )
        side = Transfer.Status.RESOLVED if status == Payment.Status.COMPLETED else Transfer.Status.CANCELLED
        payment_id, amount = _hex32(rng), rng.randrange(10**12, E // 10)
        kind = rng.choice(("linked", "linked", "hashlock", "signed"))
        created = now - timedelta(seconds=rng.randrange(0, days * 86400))
        pair = []
        for channel, initiator, responder in (
            (sender, sender.user_address, node),
            (receiver, node, receiver.user_address),
        ):
            pair.append(
                Transfer(
                    channel=channel,
                    transfer_id=_hex32(rng),
                    payment_id=payment_id,
                    kind=kind,
                    definition=ETH,
                    initiator=initiator,
                    responder=responder,
                    asset_id=ETH,
                    amount=amount,
                    status=side,
                    transfer_state={},
                    created_nonce=rng.randrange(1, channel.nonce),
                    resolved_nonce=channel.nonce,
                    created_at=created,
                    updated_at=created,
                )
            )
        transfers.extend(pair)
        payments.append(
            Payment(
                payment_id=payment_id,
                kind=kind,
                sender=sender.user_address,
                recipient=receiver.user_address,
                asset_id=ETH,
                amount=amount,
                status=status,
                sender_transfer=pair[0],
                receiver_transfer=pair[1],
                failure="" if status == Payment.Status.COMPLETED else "the receiver declined",
                created_at=created,
                updated_at=created + timedelta(seconds=rng.randrange(1, 30)),
            )
        )
    Transfer.objects.bulk_create(transfers)
    Payment.objects.bulk_create(payments)


@contextmanager
def _times_as_given() -> Iterator[None]:
    """Insert the spread-out times these rows carry instead of now (auto_now and auto_now_add)."""
    fields = [
        model._meta.get_field(name)
        for model in (Channel, Transfer, Payment)
        for name in ("created_at", "updated_at")
    ]
    saved = [(field.auto_now, field.auto_now_add) for field in fields]
    for field in fields:
        field.auto_now = field.auto_now_add = False
    try:
        yield
    finally:
        for field, (auto_now, auto_now_add) in zip(fields, saved, strict=True):
            field.auto_now, field.auto_now_add = auto_now, auto_now_add
