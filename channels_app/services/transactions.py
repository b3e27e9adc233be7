"""The node's one transaction sender.

Every transaction the node sends goes through here: `transaction_enqueue` records it, `transaction_send`
gives it a nonce and broadcasts it, `transactions_track` follows receipts, re-broadcasts what a crash
left unsent and bumps the fee of what sits unmined. All state is in the database, so a restart with
transactions in flight picks up where it stopped.

Nonces: the `ChainAccount` row of the sending address is locked while a nonce is taken, so several
node processes never hand out the same one. A transaction only gets a nonce after gas estimation
succeeded, so a call that would revert fails early and leaves no gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound

from channels_app import after_commit, chain
from channels_app.models import ChainAccount, OnchainTransaction, TransactionAttempt

logger = logging.getLogger(__name__)

GAS_LIMIT_MARGIN = 1.25  # estimates are exact for the state they ran on; leave room for drift
FEE_BUMP_NUMERATOR, FEE_BUMP_DENOMINATOR = 1125, 1000  # nodes require >= +10% to replace
BUMP_AFTER = timedelta(seconds=30)
MAX_ATTEMPTS = 8

Status = OnchainTransaction.Status


class TransactionRefused(Exception):
    """The transaction would revert (or is malformed): it was never sent."""


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def bumped(self, current: Fees) -> Fees:
        def bump(value: int) -> int:
            return value * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR + 1

        priority = max(bump(self.max_priority_fee_per_gas), current.max_priority_fee_per_gas)
        return Fees(max(bump(self.max_fee_per_gas), current.max_fee_per_gas, priority), priority)


def _current_fees(web3: Web3) -> Fees:
    base_fee = int(web3.eth.get_block("latest")["baseFeePerGas"])
    priority = int(web3.eth.max_priority_fee)
    return Fees(max_fee_per_gas=2 * base_fee + priority, max_priority_fee_per_gas=priority)


@transaction.atomic
def transaction_enqueue(
    *,
    reason: str,
    to: str,
    data: bytes = b"",
    value: int = 0,
    channel_address: str = "",
    asset_id: str = "",
    after: OnchainTransaction | None = None,
) -> OnchainTransaction:
    """Record a transaction for the node to send; it is sent after the surrounding commit, or, with
    `after`, once that transaction is mined (its gas can only be estimated on the state it creates)."""
    if reason not in OnchainTransaction.Reason.values:
        raise ValueError(f"unknown transaction reason {reason!r}")
    if value < 0:
        raise ValueError("value must not be negative")
    web3 = chain.web3()
    record = OnchainTransaction.objects.create(
        reason=reason,
        chain_id=web3.eth.chain_id,
        from_address=chain.node_address(),
        to_address=Web3.to_checksum_address(to),
        value=value,
        data=HexBytes(data).to_0x_hex(),
        channel_address=channel_address,
        asset_id=asset_id,
        after=after,
    )
    after_commit.run_task("channels_app.tasks.transaction_send", record.id)
    return record


def _sign(account: LocalAccount, record: OnchainTransaction, fees: Fees) -> tuple[str, str]:
    signed = account.sign_transaction(
        {
            "chainId": record.chain_id,
            "nonce": record.nonce,
            "to": record.to_address,
            "value": int(record.value),
            "data": record.data,
            "gas": record.gas_limit,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            "type": 2,
        }
    )
    return signed.hash.to_0x_hex(), signed.raw_transaction.to_0x_hex()


def _broadcast(web3: Web3, attempt: TransactionAttempt) -> None:
    """Send a signed attempt. Errors are logged and left to `transactions_track` to retry."""
    try:
        web3.eth.send_raw_transaction(attempt.raw)
    except Exception as exc:
        text = str(exc).lower()
        if "already known" not in text and "nonce too low" not in text:
            logger.warning("broadcast of %s failed: %s", attempt.hash, exc)
            return
    TransactionAttempt.objects.filter(pk=attempt.pk).update(broadcast_at=timezone.now())


def transaction_send(*, transaction_id: int) -> OnchainTransaction:
    """Give a queued transaction its gas limit and nonce, sign it and broadcast it. Idempotent."""
    web3 = chain.web3()
    account = chain.node_account()
    record = OnchainTransaction.objects.select_related("after").get(pk=transaction_id)
    if record.status != Status.QUEUED:
        return record
    if record.after is not None and record.after.status != Status.MINED:
        if record.after.status == Status.FAILED:
            return _refuse(record.pk, f"the transaction it waited for ({record.after.pk}) failed")
        return record  # sent by the tracker once `after` is mined
    try:
        estimate = web3.eth.estimate_gas(
            {
                "from": record.from_address,
                "to": record.to_address,
                "value": int(record.value),
                "data": record.data,
            }
        )
    except ContractLogicError as exc:
        return _refuse(record.pk, f"would revert: {exc}")
    fees = _current_fees(web3)

    with transaction.atomic():
        sender, _ = ChainAccount.objects.select_for_update().get_or_create(
            chain_id=record.chain_id, address=record.from_address
        )
        record = OnchainTransaction.objects.select_for_update().get(pk=transaction_id)
        if record.status != Status.QUEUED:
            return record
        chain_nonce = web3.eth.get_transaction_count(record.from_address, "pending")
        record.nonce = max(sender.next_nonce, chain_nonce)
        sender.next_nonce = record.nonce + 1
        sender.save(update_fields=["next_nonce"])
        record.gas_limit = int(estimate * GAS_LIMIT_MARGIN)
        record.status = Status.PENDING
        record.save(update_fields=["nonce", "gas_limit", "status", "updated_at"])
        tx_hash, raw = _sign(account, record, fees)
        attempt = TransactionAttempt.objects.create(
            transaction=record,
            hash=tx_hash,
            raw=raw,
            max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
        )
    _broadcast(web3, attempt)
    return record


def _refuse(transaction_id: int, reason: str) -> OnchainTransaction:
    with transaction.atomic():
        record = OnchainTransaction.objects.select_for_update().get(pk=transaction_id)
        if record.status == Status.QUEUED:
            record.status = Status.FAILED
            record.error = reason[:2000]
            record.save(update_fields=["status", "error", "updated_at"])
            _notify_settled(record)
    return record


def _notify_settled(record: OnchainTransaction) -> None:
    """After commit, `tasks.transaction_settled` hands the outcome to the service that asked for it."""
    after_commit.run_task("channels_app.tasks.transaction_settled", record.pk)


def _receipt(web3: Web3, tx_hash: str) -> dict | None:
    try:
        return dict(web3.eth.get_transaction_receipt(tx_hash))
    except TransactionNotFound:
        return None


def transaction_track(*, transaction_id: int) -> OnchainTransaction:
    """Settle one pending transaction from its receipt, or re-broadcast / bump it."""
    web3 = chain.web3()
    record = OnchainTransaction.objects.get(pk=transaction_id)
    if record.status != Status.PENDING:
        return record
    attempts = list(record.attempts.order_by("created_at", "pk"))
    head = web3.eth.block_number
    for attempt in attempts:
        receipt = _receipt(web3, attempt.hash)
        if receipt is None:
            continue
        if head - int(receipt["blockNumber"]) < settings.CHAIN_CONFIRMATIONS:
            return record  # mined, not yet deep enough
        return _settle(record.pk, attempt.hash, receipt)

    mined_nonce = web3.eth.get_transaction_count(record.from_address, "latest")
    if mined_nonce > record.nonce:
        # Our nonce is used, but by none of our attempts: something else signed with the node's key.
        return _settle(record.pk, "", None, error="nonce was used by another transaction of this account")

    for attempt in attempts:
        if attempt.broadcast_at is None:
            _broadcast(web3, attempt)
    latest = attempts[-1]
    if timezone.now() - latest.created_at >= BUMP_AFTER and len(attempts) < MAX_ATTEMPTS:
        _bump(web3, record, latest)
    return record


def _bump(web3: Web3, record: OnchainTransaction, latest: TransactionAttempt) -> None:
    previous = Fees(int(latest.max_fee_per_gas), int(latest.max_priority_fee_per_gas))
    fees = previous.bumped(_current_fees(web3))
    tx_hash, raw = _sign(chain.node_account(), record, fees)
    attempt, _ = TransactionAttempt.objects.get_or_create(
        hash=tx_hash,
        defaults={
            "transaction": record,
            "raw": raw,
            "max_fee_per_gas": fees.max_fee_per_gas,
            "max_priority_fee_per_gas": fees.max_priority_fee_per_gas,
        },
    )
    logger.info("bumped fees of transaction %s (nonce %s) to %s", record.pk, record.nonce, fees)
    _broadcast(web3, attempt)


def _settle(
    transaction_id: int, tx_hash: str, receipt: dict | None, *, error: str = ""
) -> OnchainTransaction:
    with transaction.atomic():
        record = OnchainTransaction.objects.select_for_update().get(pk=transaction_id)
        if record.status != Status.PENDING:
            return record
        record.hash = tx_hash
        if receipt is not None:
            record.block_number = int(receipt["blockNumber"])
            record.gas_used = int(receipt["gasUsed"])
            succeeded = int(receipt["status"]) == 1
            record.status = Status.MINED if succeeded else Status.FAILED
            record.error = "" if succeeded else "reverted on chain"
        else:
            record.status = Status.FAILED
            record.error = error
        record.save()
        _notify_settled(record)
    return record


def transactions_track_all() -> int:
    """Track every pending transaction, oldest nonce first. Returns how many were looked at."""
    pending = list(
        OnchainTransaction.objects.filter(status=Status.PENDING)
        .order_by("nonce")
        .values_list("pk", flat=True)
    )
    for transaction_id in pending:
        try:
            transaction_track(transaction_id=transaction_id)
        except Exception:
            logger.exception("tracking transaction %s failed", transaction_id)
    queued = OnchainTransaction.objects.filter(status=Status.QUEUED).filter(
        # waiting on a transaction that has settled, or a send that never ran (worker lost, crash)
        Q(after__status__in=[Status.MINED, Status.FAILED])
        | Q(after=None, updated_at__lt=timezone.now() - BUMP_AFTER)
    )
    for transaction_id in queued.order_by("pk").values_list("pk", flat=True):
        try:  # a send that never ran (worker lost, crash before commit of the task): run it now
            transaction_send(transaction_id=transaction_id)
        except Exception:
            logger.exception("sending transaction %s failed", transaction_id)
    return len(pending)
