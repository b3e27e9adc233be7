"""The pages and the API over real activity: what they show, their query counts, the CSV, the actions."""

from __future__ import annotations

import csv
import io

import pytest

from channels_app.models import Channel, Dispute, Payment, RebalanceProfile
from dashboard import selectors
from tests.dashboard.conftest import E

pytestmark = [pytest.mark.django_db, pytest.mark.chain]
ETH = selectors.ETH
# Each page's reads are a fixed set of aggregates and one page of rows (no query per row), plus the
# session and user lookups, plus the 3 that plan its reads for their parameters (`custom_plans`:
# here a savepoint, the setting, its reset and the release).
PLAN = 4
MAX_QUERIES = {
    "/dashboard/": 12 + PLAN,
    "/dashboard/channels/": 6 + PLAN,
    "/dashboard/payments/": 10 + PLAN,
    "/dashboard/payments/stuck/": 8 + PLAN,
    "/dashboard/onchain/": 10 + PLAN,
    "/dashboard/disputes/": 8 + PLAN,
    "/api/dashboard/overview": 12 + PLAN,
    "/api/dashboard/series?window=30d": 6 + PLAN,
    "/api/dashboard/channels": 6 + PLAN,
    "/api/dashboard/payments": 6 + PLAN,
    "/api/dashboard/payments/stuck": 8 + PLAN,
    "/api/dashboard/onchain": 10 + PLAN,
    "/api/dashboard/disputes": 8 + PLAN,
}


@pytest.mark.parametrize("path", list(MAX_QUERIES))
def test_every_page_reads_a_bounded_number_of_queries(
    activity, staff_client, django_assert_max_num_queries, path
):
    with django_assert_max_num_queries(MAX_QUERIES[path]):
        response = staff_client.get(path)

    assert response.status_code == 200, response.content[:500]


def test_the_channel_page_reads_a_bounded_number_of_queries(
    activity, staff_client, django_assert_max_num_queries
):
    address = activity.bob.state.channel_address
    with django_assert_max_num_queries(14 + PLAN):
        page = staff_client.get(f"/dashboard/channels/{address}/")
    with django_assert_max_num_queries(14 + PLAN):
        api = staff_client.get(f"/api/dashboard/channels/{address}")

    assert page.status_code == api.status_code == 200
    body = page.content.decode()
    assert activity.bob.state.channel_address in body
    channel = Channel.objects.get(address=address)
    assert channel.node_signature in body
    assert channel.user_signature in body
    latest = api.json()["latest"]
    assert latest["nodeSignature"] == channel.node_signature
    assert latest["userSignature"] == channel.user_signature
    assert int(latest["state"]["nonce"]) == activity.bob.state.nonce
    assert len(api.json()["updates"]) == activity.bob.state.nonce


def test_the_overview_shows_the_numbers_of_the_payments(activity, staff_client):
    overview = staff_client.get("/api/dashboard/overview").json()
    page = staff_client.get("/dashboard/").content.decode()

    hour = next(row for row in overview["payments"] if row["window"] == "hour")
    assert (hour["count"], hour["completed"], hour["failed"]) == (4, 2, 1)
    assert hour["volume"] == str(sum(amount for _, amount in activity.completed))
    assert overview["channelsByStatus"]["open"] == 2
    assert overview["inFlight"] == [{"assetId": ETH, "count": 1, "amount": str(activity.offline[1])}]
    assert overview["openDisputes"] == 0
    (value,) = overview["valueLocked"]
    assert value["lockedInTransfers"] == str(activity.offline[1])
    assert f'data-wei="{value["users"]}"' in page
    assert "33.33 %" in page


def test_the_payments_page_filters_and_lists_the_stuck_payment(activity, staff_client):
    offline_id = activity.offline[0]

    completed = staff_client.get("/dashboard/payments/?status=completed").content.decode()
    by_id = staff_client.get(f"/api/dashboard/payments?payment_id={offline_id}").json()
    stuck = staff_client.get("/api/dashboard/payments/stuck").json()

    assert completed.count("data-payment-id=") == 2  # no stuck one yet: it is younger than 600 s
    assert [row["paymentId"] for row in by_id["results"]] == [offline_id]
    assert stuck["count"] == 0
    Payment.objects.filter(payment_id=offline_id).update(
        updated_at=Payment.objects.get(payment_id=offline_id).updated_at.replace(year=2025)
    )
    stuck = staff_client.get("/api/dashboard/payments/stuck").json()
    assert [(row["paymentId"], row["reason"]) for row in stuck["results"]] == [
        (offline_id, "receiver offline: it has no channel yet")
    ]
    assert "receiver offline" in staff_client.get("/dashboard/payments/").content.decode()


def test_the_csv_export_streams_the_filtered_rows(activity, staff_client):
    response = staff_client.get("/dashboard/export/payments.csv?status=completed")
    channels = staff_client.get(f"/dashboard/export/channels.csv?q={activity.alice.address}")

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted((row["payment_id"], int(row["amount"])) for row in rows) == sorted(activity.completed)
    assert {row["status"] for row in rows} == {"completed"}
    (alice,) = csv.DictReader(io.StringIO(b"".join(channels.streaming_content).decode()))
    assert alice["address"] == activity.alice.state.channel_address
    index = activity.alice.state.asset_index(ETH)
    assert int(alice["user_balance"]) == activity.alice.state.balances[index][1]


def test_an_operator_sets_a_rebalance_profile_through_the_service(activity, staff_client):
    address = activity.bob.state.channel_address
    url = f"/dashboard/channels/{address}/profile"

    wrong = staff_client.post(
        url,
        {"asset": ETH, "collateralize_threshold": "5", "target": "4", "reclaim_threshold": "9"},
        follow=True,
    )
    saved = staff_client.post(
        url,
        {
            "asset": ETH,
            "collateralize_threshold": str(E // 10),
            "target": str(E // 5),
            "reclaim_threshold": str(E),
        },
        follow=True,
    )
    api = staff_client.post(
        f"/api/dashboard/channels/{address}/profile",
        {"assetId": ETH, "collateralizeThreshold": "1", "target": "2", "reclaimThreshold": "x"},
        content_type="application/json",
    )

    assert "collateralize threshold ≤ target" in wrong.content.decode()
    assert "Rebalance profile saved" in saved.content.decode()
    profile = RebalanceProfile.objects.get(channel__address=address, asset_id=ETH)
    assert (int(profile.collateralize_threshold), int(profile.target), int(profile.reclaim_threshold)) == (
        E // 10,
        E // 5,
        E,
    )
    assert "(set by an operator)" in saved.content.decode()
    assert api.status_code == 400
    assert api.json()["error"]["fields"]["reclaimThreshold"]


def test_an_operator_disputes_a_channel_through_the_watchtower(activity, staff_client):
    address = activity.alice.state.channel_address

    unconfirmed = staff_client.post(f"/dashboard/channels/{address}/dispute", {"reason": "test"})
    response = staff_client.post(
        f"/api/dashboard/channels/{address}/dispute",
        {"reason": "suspicious"},
        content_type="application/json",
    )

    assert unconfirmed.status_code == 400
    assert response.status_code == 200, response.json()
    dispute = Dispute.objects.get(channel__address=address)
    assert response.json()["dispute"]["id"] == dispute.pk
    assert dispute.status == Dispute.Status.REQUESTED
    assert "suspicious" in dispute.reason
    assert Channel.objects.get(address=address).status == Channel.Status.DISPUTED
    disputes = staff_client.get("/api/dashboard/disputes?active=true").json()
    assert [row["id"] for row in disputes["results"]] == [dispute.pk]
    assert [action["kind"] for action in disputes["results"][0]["actions"]] == ["dispute_channel"]
    assert staff_client.get("/api/dashboard/overview").json()["openDisputes"] == 1


def test_a_dispute_rounds_progress_is_read_on_chain_time_not_the_wall_clock():
    from types import SimpleNamespace

    from dashboard.templatetags.dashboard_tags import window_percent

    # A round opened at chain time 1,000 with a 100 s timeout, on a dev chain whose clock is far from
    # the wall's: the bar follows the chain's clock alone.
    round_ = SimpleNamespace(consensus_expiry=1_100, defund_expiry=1_200)

    assert [window_percent(round_, now) for now in (900, 1_000, 1_050, 1_100, 1_200, 9_999)] == [
        0,
        0,
        25,
        50,
        100,
        100,
    ]
    assert window_percent(SimpleNamespace(consensus_expiry=None, defund_expiry=None), 1_000) == 100
