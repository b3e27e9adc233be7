"""`channels_app.rows`: its reads give what the ORM gives, on the test database (Postgres)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction

from channels_app import rows
from channels_app.models import Channel, Payment, Transfer

pytestmark = pytest.mark.django_db(transaction=True)
ADDRESS = "0x" + "11" * 20


def _channel() -> Channel:
    return Channel.objects.create(
        address="0x" + "22" * 20,
        chain_id=31337,
        node_address="0x" + "33" * 20,
        user_address=ADDRESS,
        nonce=1,
        latest_state={"nonce": "1"},
        node_signature="0x01",
        user_signature="0x02",
    )


def _transfer(channel: Channel, tag: str) -> Transfer:
    return Transfer.objects.create(
        channel=channel,
        transfer_id="0x" + tag * 32,
        payment_id="0x" + "aa" * 32,
        kind="linked",
        definition="0x" + "44" * 20,
        initiator=ADDRESS,
        responder="0x" + "33" * 20,
        asset_id="0x" + "00" * 20,
        amount=Decimal(10**30),
        transfer_state={"lockHash": "0x" + tag * 32},
        meta={"recipient": None, "memo": "ünïcode"},
        created_nonce=2,
    )


def _payment(sender: Transfer) -> Payment:
    return Payment.objects.create(
        payment_id="0x" + "aa" * 32,
        kind="linked",
        sender=ADDRESS,
        asset_id="0x" + "00" * 20,
        amount=Decimal(10**30),
        sender_transfer=sender,
    )


def _fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_get_related_loads_the_row_and_its_foreign_rows_as_the_orm_does():
    channel = _channel()
    sender = _transfer(channel, "bb")
    payment = _payment(sender)

    loaded = rows.get_related(
        Payment, ("sender_transfer", "receiver_transfer"), payment_id=payment.payment_id
    )

    assert _fields(loaded) == _fields(Payment.objects.get(pk=payment.pk))
    assert _fields(loaded.sender_transfer) == _fields(Transfer.objects.get(pk=sender.pk))
    assert loaded.receiver_transfer is None  # a null key: no row, not an empty one
    assert rows.get_related(Payment, ("sender_transfer",), pk=payment.pk + 1000) is None

    receiver = _transfer(channel, "cc")
    Payment.objects.filter(pk=payment.pk).update(receiver_transfer=receiver)
    both = rows.get_related(Payment, ("sender_transfer", "receiver_transfer"), pk=payment.pk)
    assert _fields(both.receiver_transfer) == _fields(Transfer.objects.get(pk=receiver.pk))


def test_get_related_for_update_locks_only_the_main_row():
    if connection.vendor != "postgresql":
        pytest.skip("reads Postgres' lock table")
    channel = _channel()
    sender = _transfer(channel, "bb")
    payment = _payment(sender)
    with transaction.atomic():
        rows.get_related(Payment, ("sender_transfer",), pk=payment.pk, for_update=True)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relation::regclass::text FROM pg_locks WHERE locktype = 'tuple' OR mode = 'RowShareLock'"
            )
            locked = {row[0] for row in cursor.fetchall()}
    assert Payment._meta.db_table in locked
    assert Transfer._meta.db_table not in locked


def test_values_reads_several_columns_converted():
    channel = _channel()
    assert rows.values(Channel, ("id", "pending_update", "nonce"), address=channel.address) == (
        channel.pk,
        None,
        1,
    )
    Channel.objects.filter(pk=channel.pk).update(pending_update={"type": "resolve"})
    assert rows.values(Channel, ("pending_update",), pk=channel.pk) == ({"type": "resolve"},)
    assert rows.values(Channel, ("id",), address="0x" + "99" * 20) is None
