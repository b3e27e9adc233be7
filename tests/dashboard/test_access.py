"""Who gets in: staff only, by Django session; the pages send others to the login page, the API
answers 401 / 403 in the node's error shape. No chain needed."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

PAGES = [
    "/dashboard/",
    "/dashboard/channels/",
    "/dashboard/payments/",
    "/dashboard/payments/stuck/",
    "/dashboard/onchain/",
    "/dashboard/disputes/",
    "/dashboard/export/payments.csv",
    "/dashboard/export/channels.csv",
]
API = [
    "/api/dashboard/overview",
    "/api/dashboard/series",
    "/api/dashboard/channels",
    "/api/dashboard/payments",
    "/api/dashboard/payments/stuck",
    "/api/dashboard/onchain",
    "/api/dashboard/disputes",
    "/api/dashboard/channels/0x" + "ab" * 20,
]


@pytest.mark.parametrize("path", PAGES)
def test_an_anonymous_visitor_is_sent_to_the_login_page(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/dashboard/login/?next=")


@pytest.mark.parametrize("path", PAGES)
def test_a_user_without_staff_status_is_refused(user_client, path):
    assert user_client.get(path).status_code == 403


@pytest.mark.parametrize("path", API)
def test_the_api_answers_401_without_a_session_and_403_without_staff_status(client, user_client, path):
    anonymous = client.get(path)
    not_staff = user_client.get(path)

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    assert not_staff.status_code == 403
    assert not_staff.json()["error"]["code"] == "permission_denied"


def test_a_bearer_token_of_a_channel_user_does_not_open_the_api(client):
    response = client.get("/api/dashboard/overview", HTTP_AUTHORIZATION="Bearer " + "a" * 43)

    assert response.status_code == 401


def test_the_api_refuses_a_change_without_the_csrf_token(db):
    from django.contrib.auth.models import User

    operator = User.objects.create_user("op", password="not-a-real-secret-3", is_staff=True)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)

    response = strict.post(
        "/api/dashboard/channels/0x" + "ab" * 20 + "/dispute",
        {"reason": "x"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]


def test_the_login_page_logs_a_staff_user_in_and_sends_them_on(client, db):
    from django.contrib.auth.models import User

    User.objects.create_user("op", password="not-a-real-secret-3", is_staff=True)
    page = client.get("/dashboard/login/?next=/dashboard/payments/")
    response = client.post(
        "/dashboard/login/",
        {"username": "op", "password": "not-a-real-secret-3", "next": "/dashboard/payments/"},
    )
    wrong = Client().post("/dashboard/login/", {"username": "op", "password": "wrong"})

    assert page.status_code == 200
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/payments/"
    assert wrong.status_code == 200
    assert "Wrong user name or password" in wrong.content.decode()


def test_the_dashboard_api_is_in_the_openapi_schema(client):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    paths = {path for path in schema["paths"] if path.startswith("/api/dashboard/")}
    assert paths == {
        "/api/dashboard/overview",
        "/api/dashboard/series",
        "/api/dashboard/channels",
        "/api/dashboard/channels/{address}",
        "/api/dashboard/channels/{address}/profile",
        "/api/dashboard/channels/{address}/dispute",
        "/api/dashboard/payments",
        "/api/dashboard/payments/stuck",
        "/api/dashboard/onchain",
        "/api/dashboard/disputes",
    }
    overview = schema["paths"]["/api/dashboard/overview"]["get"]
    assert {"200", "401", "403"} <= set(overview["responses"])
    parameters = {p["name"] for p in schema["paths"]["/api/dashboard/payments"]["get"]["parameters"]}
    assert {
        "status",
        "kind",
        "asset",
        "user",
        "payment_id",
        "created_from",
        "created_until",
        "page",
    } <= parameters


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/dashboard/payments?status=lost", "status"),
        ("/api/dashboard/payments?payment_id=0x12", "payment_id"),
        ("/api/dashboard/payments?created_from=yesterday", "created_from"),
        ("/api/dashboard/payments?user=", "user"),
        ("/api/dashboard/channels?sort=colour", "sort"),
        ("/api/dashboard/channels?min_user_balance=-1", "min_user_balance"),
        ("/api/dashboard/channels?page=0", "page"),
        ("/api/dashboard/channels?per_page=100000", "per_page"),
        ("/api/dashboard/onchain?q=0xzz", "q"),
        ("/api/dashboard/series?window=1y", "window"),
    ],
)
def test_bad_query_parameters_are_refused_with_the_field(staff_client, path, field):
    response = staff_client.get(path)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["fields"]


def test_a_page_with_a_bad_filter_says_so_with_400(staff_client):
    response = staff_client.get("/dashboard/payments/?created_from=soon")

    assert response.status_code == 400
    assert "Expected a date" in response.content.decode()


def test_an_export_with_a_bad_filter_is_refused_in_the_error_shape(staff_client):
    response = staff_client.get("/dashboard/export/payments.csv?status=lost")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["status"]


def test_an_unknown_channel_is_404(staff_client):
    address = "0x" + "cd" * 20

    assert staff_client.get(f"/dashboard/channels/{address}/").status_code == 404
    api = staff_client.get(f"/api/dashboard/channels/{address}")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "unknown_channel"


def test_actions_say_so_when_the_chain_does_not_answer_and_change_nothing(staff_client):
    from django.test import override_settings

    from channels_app.models import Channel, Dispute, RebalanceProfile
    from dashboard import bulk

    bulk.bulk_insert(channels=1, payments=0, node_key=b"\x01" * 32, chain_id=31337)
    address = Channel.objects.get().address

    with override_settings(CHAIN_RPC_URL="http://127.0.0.1:18599"):
        dispute = staff_client.post(
            f"/dashboard/channels/{address}/dispute", {"reason": "r", "confirm": "on"}, follow=True
        )
        profile = staff_client.post(
            f"/dashboard/channels/{address}/profile",
            {
                "asset": "0x" + "00" * 20,
                "collateralize_threshold": "1",
                "target": "2",
                "reclaim_threshold": "3",
            },
            follow=True,
        )
        api = staff_client.post(
            f"/api/dashboard/channels/{address}/dispute", {"reason": "r"}, content_type="application/json"
        )

    assert "cannot read the chain" in dispute.content.decode()
    assert "cannot read the chain" in profile.content.decode()
    assert api.status_code == 503
    assert api.json()["error"]["code"] == "chain_unavailable"
    assert not Dispute.objects.exists()
    assert not RebalanceProfile.objects.exists()
    assert Channel.objects.get().status == Channel.Status.OPEN


def test_a_channels_update_history_pages_by_nonce(staff_client):
    from channels_app.models import Channel
    from dashboard import bulk

    bulk.bulk_insert(channels=1, payments=0, node_key=b"\x01" * 32, chain_id=31337)
    channel = Channel.objects.get()
    url = f"/api/dashboard/channels/{channel.address}"

    second = staff_client.get(url, {"updates_page": "2"})
    zero = staff_client.get(url, {"updates_page": "0"})
    page = staff_client.get(f"/dashboard/channels/{channel.address}/", {"updates_page": "x"})

    assert second.status_code == 200
    assert (second.json()["updatesPage"], second.json()["updatesPages"]) == (2, -(-channel.nonce // 50))
    assert zero.status_code == 400
    assert "updates_page" in zero.json()["error"]["fields"]
    assert page.status_code == 400
