"""The node's transaction sender against anvil and Postgres: nonces, receipts, restarts, fee bumps."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from web3 import HTTPProvider, Web3

from channels_app import tasks
from channels_app.models import ChainAccount, OnchainTransaction, TransactionAttempt
from channels_app.services import transactions
from connext.chain import devchain

Status = OnchainTransaction.Status
# The node sends from anvil's account 1 here (account 0 deploys contracts in other tests).
NODE_KEY = devchain.DEV_PRIVATE_KEYS[1]
RECIPIENT = "0x000000000000000000000000000000000000bEEF"
# Init code that deploys a contract whose every call reverts (runtime: PUSH1 0 PUSH1 0 REVERT).
ALWAYS_REVERTS_INITCODE = "0x600580600b6000396000f3" + "60006000fd"


@pytest.fixture
def node_chain(chain):
    with override_settings(CHAIN_RPC_URL=chain, NODE_PRIVATE_KEY=NODE_KEY, CHAIN_CONFIRMATIONS=0):
        yield Web3(HTTPProvider(chain))


def send_and_track(record: OnchainTransaction) -> OnchainTransaction:
    transactions.transaction_send(transaction_id=record.pk)
    return transactions.transaction_track(transaction_id=record.pk)


def enqueue_payment(amount: int = 10**15) -> OnchainTransaction:
    return transactions.transaction_enqueue(reason="transfer", to=RECIPIENT, value=amount)


@pytest.mark.django_db
def test_a_transaction_is_sent_with_a_nonce_and_settled_from_its_receipt(
    node_chain, django_capture_on_commit_callbacks
):
    before = node_chain.eth.get_balance(RECIPIENT)
    with django_capture_on_commit_callbacks(execute=False):
        record = enqueue_payment(10**15)
    assert record.status == Status.QUEUED

    record = send_and_track(record)

    assert record.status == Status.MINED
    assert record.gas_used == 21_000
    assert record.hash == record.attempts.get().hash
    assert record.nonce == node_chain.eth.get_transaction_count(record.from_address) - 1
    assert node_chain.eth.get_balance(RECIPIENT) - before == 10**15


@pytest.mark.django_db
def test_a_mined_transaction_waits_for_the_confirmation_depth(node_chain, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        record = enqueue_payment()

    with override_settings(CHAIN_CONFIRMATIONS=2):
        assert send_and_track(record).status == Status.PENDING
        node_chain.provider.make_request("evm_mine", [])
        assert transactions.transaction_track(transaction_id=record.pk).status == Status.PENDING
        node_chain.provider.make_request("evm_mine", [])
        assert transactions.transaction_track(transaction_id=record.pk).status == Status.MINED


@pytest.mark.django_db
def test_a_call_that_would_revert_fails_without_taking_a_nonce(
    node_chain, django_capture_on_commit_callbacks
):
    deployer = node_chain.eth.account.from_key(devchain.DEV_PRIVATE_KEYS[2])
    signed = deployer.sign_transaction(
        {
            "chainId": 31337,
            "nonce": node_chain.eth.get_transaction_count(deployer.address),
            "data": ALWAYS_REVERTS_INITCODE,
            "gas": 100_000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 1,
        }
    )
    target = node_chain.eth.wait_for_transaction_receipt(
        node_chain.eth.send_raw_transaction(signed.raw_transaction)
    )["contractAddress"]
    with django_capture_on_commit_callbacks(execute=False):
        record = transactions.transaction_enqueue(reason="dispute", to=target, data=b"\x01\x02")

    record = transactions.transaction_send(transaction_id=record.pk)

    assert record.status == Status.FAILED
    assert record.error.startswith("would revert")
    assert record.nonce is None
    assert not ChainAccount.objects.filter(address=record.from_address).exists()


@pytest.mark.django_db
def test_a_transaction_signed_but_never_broadcast_is_sent_by_the_tracker(
    node_chain, monkeypatch, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        record = enqueue_payment()
    with monkeypatch.context() as patched:  # the process dies right after committing the signed attempt
        patched.setattr(transactions, "_broadcast", lambda web3, attempt: None)
        transactions.transaction_send(transaction_id=record.pk)
    attempt = TransactionAttempt.objects.get(transaction=record)
    assert attempt.broadcast_at is None

    transactions.transactions_track_all()  # after the restart: re-broadcasts
    record = transactions.transaction_track(transaction_id=record.pk)

    assert record.status == Status.MINED
    assert record.hash == attempt.hash


@pytest.mark.django_db
def test_an_unmined_transaction_gets_its_fee_bumped_and_the_replacement_settles(
    node_chain, django_capture_on_commit_callbacks
):
    node_chain.provider.make_request("evm_setAutomine", [False])
    try:
        with django_capture_on_commit_callbacks(execute=False):
            record = enqueue_payment()
        transactions.transaction_send(transaction_id=record.pk)
        first = TransactionAttempt.objects.get(transaction=record)
        TransactionAttempt.objects.filter(pk=first.pk).update(
            created_at=timezone.now() - timedelta(minutes=5)
        )

        transactions.transaction_track(transaction_id=record.pk)

        attempts = list(record.attempts.order_by("created_at"))
        assert len(attempts) == 2
        bumped = attempts[1]
        assert bumped.max_priority_fee_per_gas >= first.max_priority_fee_per_gas * 11 // 10
        assert bumped.max_fee_per_gas >= first.max_fee_per_gas * 11 // 10
        node_chain.provider.make_request("evm_mine", [])
    finally:
        node_chain.provider.make_request("evm_setAutomine", [True])

    record = transactions.transaction_track(transaction_id=record.pk)
    assert record.status == Status.MINED
    assert record.hash == bumped.hash


@pytest.mark.django_db
def test_a_nonce_taken_by_another_transaction_fails_the_record(
    node_chain, django_capture_on_commit_callbacks
):
    node_chain.provider.make_request("evm_setAutomine", [False])
    try:
        with django_capture_on_commit_callbacks(execute=False):
            record = enqueue_payment()
        record = transactions.transaction_send(transaction_id=record.pk)
        node_chain.provider.make_request("anvil_dropAllTransactions", [])
        # Someone else with the node's key uses the same nonce.
        intruder = node_chain.eth.account.from_key(NODE_KEY).sign_transaction(
            {
                "chainId": 31337,
                "nonce": record.nonce,
                "to": RECIPIENT,
                "value": 1,
                "gas": 21_000,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        node_chain.eth.send_raw_transaction(intruder.raw_transaction)
        node_chain.provider.make_request("evm_mine", [])
    finally:
        node_chain.provider.make_request("evm_setAutomine", [True])

    record = transactions.transaction_track(transaction_id=record.pk)

    assert record.status == Status.FAILED
    assert "nonce was used by another transaction" in record.error


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_never_share_a_nonce(node_chain, monkeypatch):
    monkeypatch.setattr(tasks.transaction_send, "delay", lambda transaction_id: None)  # the threads send
    records = [enqueue_payment(1) for _ in range(8)]
    errors: list[BaseException] = []

    def send(batch: list[OnchainTransaction]) -> None:
        try:
            for record in batch:
                transactions.transaction_send(transaction_id=record.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(records[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    transactions.transactions_track_all()

    settled = OnchainTransaction.objects.filter(pk__in=[r.pk for r in records])
    nonces = sorted(settled.values_list("nonce", flat=True))
    assert nonces == list(range(nonces[0], nonces[0] + 8))
    assert set(settled.values_list("status", flat=True)) == {Status.MINED}


def test_enqueue_refuses_unknown_reasons_and_negative_values(db, node_chain):
    with pytest.raises(ValueError, match="unknown transaction reason"):
        transactions.transaction_enqueue(reason="gift", to=RECIPIENT)
    with pytest.raises(ValueError, match="negative"):
        transactions.transaction_enqueue(reason="transfer", to=RECIPIENT, value=-1)
    assert not OnchainTransaction.objects.exists()


@pytest.mark.django_db
def test_a_transaction_waits_for_the_one_it_depends_on(node_chain, django_capture_on_commit_callbacks):
    node_chain.provider.make_request("evm_setAutomine", [False])
    try:
        with django_capture_on_commit_callbacks(execute=False):
            first = enqueue_payment()
            second = transactions.transaction_enqueue(reason="transfer", to=RECIPIENT, value=1, after=first)
        transactions.transaction_send(transaction_id=first.pk)

        assert transactions.transaction_send(transaction_id=second.pk).status == Status.QUEUED
        node_chain.provider.make_request("evm_mine", [])
    finally:
        node_chain.provider.make_request("evm_setAutomine", [True])
    transactions.transactions_track_all()  # settles the first, then sends the second
    transactions.transactions_track_all()

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Status.MINED
    assert second.status == Status.MINED
    assert second.nonce == first.nonce + 1


@pytest.mark.django_db
def test_a_transaction_whose_dependency_failed_fails_too(node_chain, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = enqueue_payment()
        second = transactions.transaction_enqueue(reason="transfer", to=RECIPIENT, value=1, after=first)
    OnchainTransaction.objects.filter(pk=first.pk).update(status=Status.FAILED, error="reverted on chain")

    second = transactions.transaction_send(transaction_id=second.pk)

    assert second.status == Status.FAILED
    assert "waited for" in second.error
    assert second.nonce is None


@pytest.mark.django_db
def test_work_queued_after_commit_never_fails_the_transaction_that_queued_it(
    django_capture_on_commit_callbacks, caplog
):
    from channels_app import after_commit

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        after_commit.run_task("channels_app.tasks.no_such_task", 1)

    assert len(callbacks) == 1
    assert "no_such_task" in caplog.text
