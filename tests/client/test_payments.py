"""The client's payment records: kept in its store with the secret it holds, readable offline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connext.client.store import SENDING, PaymentRecord, Store
from connext.errors import InvalidArgumentError, NodeError, NodeUnavailableError, OutcomeUnknownError
from connext.protocol import serialization
from connext.protocol.encoding import keccak256
from tests.client.test_validation import offline_client
from tests.protocol.protocol_helpers import NODE, USER, funded_state

PAYMENT = "0x" + "ab" * 32
RECEIVER = "0x" + "5e" * 20


def record(**overrides: Any) -> PaymentRecord:
    fields: dict[str, Any] = {
        "payment_id": PAYMENT,
        "direction": "outgoing",
        "kind": "linked",
        "sender": USER.address,
        "recipient": NODE.address,
        "asset_id": "0x" + "00" * 20,
        "amount": 10**15,
        "status": "pending",
        "secret": b"\x07" * 32,
        "meta": {"memo": "hi", "encryptedPreimage": "0x1234"},
    }
    return PaymentRecord(**{**fields, **overrides})


def test_a_payment_record_survives_reopening_the_store_and_never_forgets_its_secret(tmp_path):
    store = Store(tmp_path / "wallet.db")
    store.save_payment(record())
    store.save_payment(record(status="completed", secret=b""))
    store.close()

    reopened = Store(tmp_path / "wallet.db")
    kept = reopened.payment(PAYMENT)

    assert kept is not None
    assert (kept.status, kept.secret, kept.amount) == ("completed", b"\x07" * 32, 10**15)
    assert [p.payment_id for p in reopened.payments()] == [PAYMENT]
    assert kept.as_json()["meta"] == {"memo": "hi"}  # the encrypted preimage stays inside the client
    assert "secret" not in kept.as_json()


def test_the_store_pages_its_payments_newest_first(tmp_path):
    store = Store(tmp_path / "wallet.db")
    ids = ["0x" + f"{n:02x}" * 32 for n in range(1, 6)]
    for payment_id in ids:
        store.save_payment(record(payment_id=payment_id))
    newest_first = ids[::-1]

    first = [p.payment_id for p in store.payments(2)]
    second = [p.payment_id for p in store.payments(2, before=first[-1])]
    last = [p.payment_id for p in store.payments(2, before=second[-1])]

    assert (first, second, last) == (newest_first[0:2], newest_first[2:4], newest_first[4:])
    assert store.payments(2, before="0x" + "ee" * 32) == []  # a payment the store never saw


class UnreachableNode:
    async def get(self, path: str, **params: str) -> Any:
        raise NodeUnavailableError("node_unavailable", f"GET {path}: connection refused")


def test_get_transfer_answers_from_the_store_when_the_node_is_unreachable():
    client, _ = offline_client(funded_state(), chain_totals=(0, 0))
    client._core.store.save_payment(record(status="forwarded"))
    client._core.node_api = UnreachableNode()  # type: ignore[assignment]

    found = asyncio.run(client.get_transfer(PAYMENT))
    history = asyncio.run(client.get_transfer_history())

    assert (found["paymentId"], found["status"], found["amount"]) == (PAYMENT, "forwarded", 10**15)
    assert [p["paymentId"] for p in history] == [PAYMENT]
    with pytest.raises(NodeUnavailableError):
        asyncio.run(client.get_transfer("0x" + "cd" * 32))


def test_a_link_redeemed_by_its_own_sender_is_refused_before_anything_is_sent():
    client, api = offline_client(funded_state(), chain_totals=(0, 0))
    client._core.store.save_payment(record())

    with pytest.raises(InvalidArgumentError) as refused:
        asyncio.run(client.redeem_link(PAYMENT, "0x" + "07" * 32))

    assert refused.value.code == "bad_recipient"
    assert api.posts == []


def test_the_nodes_lagging_news_does_not_undo_a_side_this_client_settled():
    client, _ = offline_client(funded_state(), chain_totals=(0, 0))
    client._core.store.save_payment(
        record(direction="incoming", sender=NODE.address, recipient=USER.address, status="completed")
    )
    news = {
        "paymentId": PAYMENT,
        "kind": "linked",
        "sender": NODE.address,
        "recipient": USER.address,
        "assetId": "0x" + "00" * 20,
        "amount": str(10**15),
        "status": "forwarded",  # the node settles the sender's side next, maybe while the sender is away
    }

    reported = client._payments.note_payment_news(news)

    assert reported["status"] == "completed"
    assert client._core.store.payment(PAYMENT).status == "completed"


def test_news_of_a_payment_that_comes_before_the_nodes_answer_is_not_overwritten():
    """The node may settle a payment while its answer to the sender's create is still on the way; the
    sender's own record, saved after the answer, must not turn it back to pending."""
    from coincurve import PrivateKey

    from connext.protocol import serialization

    client, _ = offline_client(funded_state(), chain_totals=(0, 0))
    news: dict[str, Any] = {}

    async def public_key_of(_recipient: str) -> bytes:
        return PrivateKey(b"\x09" * 32).public_key.format(compressed=False)

    async def node_answers_after_settling(build: Any, *, meta: Any = None, **_: Any) -> None:
        update, _deposits = build(client.state)
        news["paymentId"] = serialization.hex_bytes(update.payment_id)
        client._payments.note_payment_news(
            {
                "paymentId": news["paymentId"],
                "kind": "linked",
                "sender": USER.address,
                "recipient": RECEIVER,
                "assetId": "0x" + "00" * 20,
                "amount": str(10**15),
                "status": "completed",
            }
        )

    client._payments._public_key_of = public_key_of  # type: ignore[method-assign]
    client._exchange.propose_locked = node_answers_after_settling  # type: ignore[method-assign]

    payment_id = asyncio.run(client.transfer(RECEIVER, 10**15))

    assert payment_id == news["paymentId"]
    assert client._core.store.payment(payment_id).status == "completed"
    assert client._core.store.payment(payment_id).secret != b""  # the sender's own secret is kept too
    assert asyncio.run(client.wait_for_transfer(payment_id, timeout=1))["status"] == "completed"


def test_waiting_for_a_payment_answers_at_once_when_it_is_settled_and_times_out_otherwise():
    from connext.errors import TimeoutError as ConnextTimeout

    client, _ = offline_client(funded_state(), chain_totals=(0, 0))
    client._core.store.save_payment(record(status="refunded"))
    client._core.store.save_payment(record(payment_id="0x" + "cd" * 32, status="forwarded"))

    assert asyncio.run(client.wait_for_transfer(PAYMENT, timeout=1))["status"] == "refunded"
    with pytest.raises(ConnextTimeout):
        asyncio.run(client.wait_for_transfer("0x" + "cd" * 32, timeout=0.2))


# -- a payment's id, before and after its update is sent ------------------------------------------


class FlakyNode:
    """Stands in for the node's API: answers the channel read with the client's own state (the node
    took nothing), knows no payment, and refuses each update request with the next of `answers`."""

    def __init__(self, client: Any, answers: list[BaseException]) -> None:
        self.client = client
        self.answers = answers
        self.posts: list[tuple[str, dict[str, Any], Any]] = []
        self.down = False

    async def get(self, path: str, **params: str) -> Any:
        if self.down:
            raise NodeUnavailableError("node_unavailable", f"GET {path}: connection refused")
        if path == "/api/channel":
            return self.client.get_channel()
        raise NodeError("unknown_payment", f"{path}: no such payment", 404)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        payment_id = body["update"].get("paymentId")
        self.posts.append((path, body, self.client._core.store.payment(payment_id) if payment_id else None))
        raise self.answers.pop(0)


def pay(client: Any, payment_id: str = PAYMENT) -> str:
    return asyncio.run(
        client.conditional_transfer(
            "linked", 10**17, RECEIVER, lock_hash=keccak256(b"lock"), payment_id=payment_id
        )
    )


def test_a_payment_is_recorded_before_it_is_sent_and_one_left_unanswered_is_reported_with_its_id():
    client, _ = offline_client(funded_state(), chain_totals=(0, 0))
    node = FlakyNode(client, [NodeUnavailableError("node_unavailable", "connection reset")])
    client._core.node_api = node  # type: ignore[assignment]

    with pytest.raises(OutcomeUnknownError) as unknown:
        pay(client)
    node.down = True
    with pytest.raises(OutcomeUnknownError) as retried:  # the node is still away: nothing is sent again
        pay(client)

    [(path, _, recorded)] = node.posts
    assert path == "/api/channel/updates"
    assert recorded is not None
    assert (recorded.status, recorded.payment_id) == (SENDING, PAYMENT)  # in the store before it left
    assert (unknown.value.code, unknown.value.payment_id) == ("outcome_unknown", PAYMENT)
    assert retried.value.payment_id == PAYMENT
    assert client._core.store.payment(PAYMENT).status == SENDING
    pending = client._core.store.pending(client.channel_address)
    assert pending is not None
    assert serialization.hex_bytes(pending.update.payment_id) == PAYMENT
    assert client.get_free_balance()["user"] == 10**18  # nothing adopted: the node's answer never came


def test_a_payment_the_node_refuses_leaves_no_record_and_its_id_stays_free():
    client, _ = offline_client(funded_state(), chain_totals=(0, 0))
    client._core.node_api = FlakyNode(client, [NodeError("insufficient_collateral", "no", 400)])  # type: ignore[assignment]

    with pytest.raises(NodeError):
        pay(client)

    assert client._core.store.payment(PAYMENT) is None
    assert client._core.store.pending(client.channel_address) is None


def test_a_retry_of_a_payment_the_node_never_took_sends_it_once_more_and_an_other_payment_is_refused():
    client, _ = offline_client(funded_state(), chain_totals=(0, 0))
    node = FlakyNode(
        client,
        [
            NodeUnavailableError("node_unavailable", "connection reset"),  # the first try: unknown
            NodeError("bad_update", "the node moved on", 400),  # the re-sent update, refused
            NodeError("insufficient_collateral", "no", 400),  # the retry, sent as a new update
        ],
    )
    client._core.node_api = node  # type: ignore[assignment]
    with pytest.raises(OutcomeUnknownError):
        pay(client)

    with pytest.raises(InvalidArgumentError) as other_payment:
        asyncio.run(
            client.conditional_transfer(
                "linked", 1, RECEIVER, lock_hash=keccak256(b"lock"), payment_id=PAYMENT
            )
        )
    with pytest.raises(NodeError) as retried:
        pay(client)

    assert other_payment.value.code == "payment_id_reused"
    assert retried.value.code == "insufficient_collateral"
    assert [body["update"]["paymentId"] for _, body, _ in node.posts] == [PAYMENT] * 3
    # the retry's sync re-sent exactly the update signed first, with its meta; once the node refused
    # it the payment had never happened, and the retry made it anew
    assert node.posts[0][1] == node.posts[1][1]
    assert "meta" in node.posts[1][1]
    assert client._core.store.payment(PAYMENT) is None
