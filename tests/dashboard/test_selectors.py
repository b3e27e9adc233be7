"""The dashboard's numbers against the payments actually made through the node (Postgres, anvil).

Expected values come from the users' own copies of their channel states (the test wallets keep the
latest state both signed) and from the chain, not from the node's tables the selectors read.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from channels_app.models import Channel, OnchainTransaction
from channels_app.network import network
from dashboard import selectors, snapshots
from dashboard.models import ValueSnapshot
from tests.dashboard.conftest import E

pytestmark = [pytest.mark.django_db, pytest.mark.chain]
ETH = selectors.ETH


def _eth(state):
    index = state.asset_index(ETH)
    node, user = state.balances[index]
    deposits = sum(state.processed_deposits[index])
    locked = sum(t.balance[0] + t.balance[1] for t in state.transfers if t.asset_id == ETH)
    return node, user, locked, deposits


def test_value_locked_is_the_sum_of_the_users_signed_states(activity):
    states = [activity.alice.state, activity.bob.state]
    node, user, locked, deposits = (sum(values) for values in zip(*map(_eth, states), strict=True))

    (value,) = selectors.value_locked()

    assert (value.asset_id, value.node, value.users, value.locked) == (ETH, node, user, locked)
    assert value.on_chain == deposits  # nothing withdrawn
    assert value.off_chain == deposits  # the channel invariant: all of it is somebody's
    assert value.locked == activity.offline[1]  # the payment to the offline receiver
    assert value.collateral_ratio == (Decimal(node) / Decimal(user)).quantize(Decimal("0.01"))


def test_closed_channels_hold_no_value_and_are_counted_apart(activity):
    Channel.objects.filter(address=activity.bob.state.channel_address).update(status=Channel.Status.CLOSED)

    (value,) = selectors.value_locked()

    assert value.users == _eth(activity.alice.state)[1]
    assert selectors.channels_by_status() == {"open": 1, "disputed": 0, "closed": 1}


def test_payment_windows_count_volume_average_and_failure_rate(activity):
    now = timezone.now()
    volume = sum(amount for _, amount in activity.completed)

    windows = selectors.payment_windows(now=now)

    assert {w.window for w in windows} == {"hour", "day", "week", "month"}
    for window in windows:
        assert (window.asset_id, window.count, window.completed, window.not_completed) == (ETH, 4, 2, 1)
        assert window.volume == volume
        assert window.average == volume // 2
        assert window.failure_rate == Decimal("0.3333")  # one refunded of three decided
    # An hour from now the last hour holds none of them; the day still does.
    later = {w.window: w for w in selectors.payment_windows(now=now + timedelta(hours=1, minutes=1))}
    assert "hour" in later
    assert (later["hour"].count, later["day"].count) == (0, 4)
    assert later["hour"].failure_rate is None


def test_in_flight_and_stuck_payments_name_the_offline_receiver(activity):
    offline_id, amount, receiver = activity.offline

    assert selectors.payments_in_flight() == {ETH: (1, amount)}
    stuck, total = selectors.stuck_payments(older_than=timezone.now() + timedelta(seconds=1))
    assert total == 1
    assert stuck[0].payment.payment_id == offline_id
    assert stuck[0].payment.recipient == receiver
    assert stuck[0].reason == "receiver offline: it has no channel yet"
    assert selectors.stuck_payments(older_than=timezone.now() - timedelta(hours=1)) == ([], 0)


def test_series_buckets_add_up_to_the_payments(activity):
    now = timezone.now()
    points = selectors.payment_series(
        since=now - timedelta(hours=24), until=now + timedelta(hours=1), bucket="hour"
    )

    assert len(points) in (25, 26)  # every hour present, empty ones too
    assert sum(point.count for point in points) == 4
    assert sum(point.failed for point in points) == 1
    assert sum(point.volume.get(ETH, 0) for point in points) == sum(a for _, a in activity.completed)


def test_the_collateral_history_is_each_buckets_last_snapshot_of_the_signed_states(activity):
    node, user, locked, deposits = (
        sum(values) for values in zip(*map(_eth, [activity.alice.state, activity.bob.state]), strict=True)
    )
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    ValueSnapshot.objects.create(  # earlier in the same hour, other numbers: not the hour's last
        taken_at=hour + timedelta(minutes=5), asset_id=ETH, node=1, users=2, locked=3, on_chain=4
    )
    ValueSnapshot.objects.create(
        taken_at=hour - snapshots.KEEP, asset_id=ETH, node=1, users=1, locked=0, on_chain=2
    )

    snapshots.take(hour + timedelta(minutes=50))
    snapshots.take(hour + timedelta(minutes=50))  # the same moment again: nothing more

    history = selectors.collateral_series(
        since=hour - timedelta(hours=2), until=hour + timedelta(hours=2), bucket="hour"
    )
    assert history == [
        {"at": hour, "asset_id": ETH, "node": node, "users": user, "locked": locked, "on_chain": deposits}
    ]  # the empty hours are absent, not zeros
    assert ValueSnapshot.objects.count() == 2  # the one older than the keep time is gone


def test_payment_filters_narrow_the_table(activity):
    first_id = activity.completed[0][0]
    PaymentFilter = selectors.PaymentFilter

    assert selectors.payments_filtered(PaymentFilter()).count() == 4
    assert selectors.payments_filtered(PaymentFilter(status="completed")).count() == 2
    assert selectors.payments_filtered(PaymentFilter(user=activity.bob.address)).count() == 2
    assert selectors.payments_filtered(PaymentFilter(user=activity.alice.address)).count() == 4
    assert [
        p.payment_id
        for p in selectors.payments_filtered(
            PaymentFilter(payment_id=first_id.upper()[2:].join(["0x", ""]).lower())
        )
    ] == [first_id]
    assert (
        selectors.payments_filtered(PaymentFilter(created_from=timezone.now() + timedelta(minutes=1))).count()
        == 0
    )
    assert selectors.payments_filtered(PaymentFilter(kind="hashlock")).count() == 0


def test_channel_filters_search_and_balances(activity):
    alice, bob = activity.alice, activity.bob
    ChannelFilter = selectors.ChannelFilter

    by_user = list(selectors.channels_filtered(ChannelFilter(search=bob.address.lower())))
    by_channel_prefix = list(
        selectors.channels_filtered(ChannelFilter(search=alice.state.channel_address[:12]))
    )
    richest = list(selectors.channels_filtered(ChannelFilter(sort="user_balance")))
    rich_only = list(selectors.channels_filtered(ChannelFilter(min_user_balance=E)))

    assert [c.address for c in by_user] == [bob.state.channel_address]
    assert alice.state.channel_address in [c.address for c in by_channel_prefix]
    assert [c.address for c in richest] == [alice.state.channel_address, bob.state.channel_address]
    assert int(richest[0].user_balance) == _eth(alice.state)[1]
    assert int(richest[1].node_balance) == _eth(bob.state)[0]
    assert [c.address for c in rich_only] == [alice.state.channel_address]
    assert selectors.channels_filtered(ChannelFilter(status="disputed")).count() == 0


def test_channel_detail_shows_the_state_both_signed(activity):
    bob = activity.bob

    detail = selectors.channel_detail(address=bob.state.channel_address.lower())

    assert detail is not None
    assert int(detail.signed_state["state"]["nonce"]) == bob.state.nonce
    assert detail.update_count == bob.state.nonce == len(detail.updates)
    (eth,) = detail.assets
    assert (eth.node, eth.user) == _eth(bob.state)[:2]
    assert not eth.operator_profile
    assert len(detail.transfers) == 2  # the two payments' receiver sides
    assert {tx.reason for tx in detail.transactions} == {"collateralization"}
    deposited = sum(int(tx.value) for tx in detail.transactions)
    assert deposited == bob.state.processed_deposits[bob.state.asset_index(ETH)][0]
    assert all(tx.attempt_count == 1 for tx in detail.transactions)


def test_hot_wallet_and_gas_match_the_chain(activity, w3):
    node = network().node_address

    address, wallets = selectors.hot_wallet()
    gas = selectors.gas_per_day(since=timezone.now() - timedelta(days=1))

    assert address == node
    eth = next(wallet for wallet in wallets if wallet.asset_id == ETH)
    assert eth.balance == w3.eth.get_balance(node)
    assert not eth.low
    with override_settings(DASHBOARD_HOT_WALLET_MIN={"eth": 10**30, "token": 0}):
        assert next(w for w in selectors.hot_wallet()[1] if w.asset_id == ETH).low
    mined = OnchainTransaction.objects.exclude(hash="")
    receipts = [w3.eth.get_transaction_receipt(tx.hash) for tx in mined]
    assert sum(row["gas"] for row in gas) == sum(receipt["gasUsed"] for receipt in receipts) > 0
    paid = sum(receipt["gasUsed"] * receipt["effectiveGasPrice"] for receipt in receipts)
    assert sum(row["fee"] for row in gas) >= paid
    head = selectors.chain_head()
    assert head == w3.eth.block_number


def test_chain_reads_say_unknown_when_the_chain_does_not_answer(db):
    with override_settings(CHAIN_RPC_URL="http://127.0.0.1:18599"):
        assert selectors.chain_head() is None


def test_the_dashboards_reads_are_planned_for_their_parameters_and_the_node_keeps_its_plans():
    """psycopg prepares a statement run 5 times; Postgres may then plan it generically, which made the
    overview's aggregates three times slower (bench/dashboard_bench.py). Inside `custom_plans` (every
    dashboard GET and /metrics) each run is planned for its parameters; outside nothing changes."""
    from django.db import connection

    def mode() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            return str(cursor.fetchone()[0])

    before = mode()
    with selectors.custom_plans():
        inside = mode()
    after = mode()

    assert (before, inside, after) == ("auto", "force_custom_plan", "auto")
