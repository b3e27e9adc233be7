"""The node's records. Amounts are whole wei in `DecimalField(max_digits=78, decimal_places=0)`.

Only services write these (channels_app.services); selectors read them.
"""

from __future__ import annotations

from django.db import models

WEI = {"max_digits": 78, "decimal_places": 0}


class AuthChallenge(models.Model):
    """A one-time nonce a client signs to prove it holds an address's key."""

    address = models.CharField(max_length=42, db_index=True)
    nonce = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"challenge for {self.address}"


class AuthToken(models.Model):
    """A bearer token for REST and the websocket. Only its SHA-256 is stored."""

    address = models.CharField(max_length=42, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"token of {self.address}"


class ChainAccount(models.Model):
    """An account the node sends transactions from; its row lock serializes nonce assignment."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    next_nonce = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "address"], name="chain_account_unique")]

    def __str__(self) -> str:
        return f"{self.address} on chain {self.chain_id}"


class OnchainTransaction(models.Model):
    """A transaction the node sends, from request to receipt, across retries and restarts."""

    class Reason(models.TextChoices):
        CONTRACT_DEPLOY = "contract_deploy"
        CHANNEL_DEPLOY = "channel_deploy"
        COLLATERALIZATION = "collateralization"
        USER_WITHDRAWAL = "user_withdrawal"
        NODE_WITHDRAWAL = "node_withdrawal"
        DISPUTE = "dispute"
        TRANSFER = "transfer"

    class Status(models.TextChoices):
        QUEUED = "queued"  # recorded, no nonce yet
        PENDING = "pending"  # signed with a nonce, broadcast (or about to be)
        MINED = "mined"  # included and succeeded
        FAILED = "failed"  # reverted on chain, or refused before it got a nonce

    reason = models.CharField(max_length=32, choices=Reason.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    chain_id = models.PositiveBigIntegerField()
    from_address = models.CharField(max_length=42)
    to_address = models.CharField(max_length=42)
    value = models.DecimalField(**WEI, default=0)
    data = models.TextField(default="0x")
    nonce = models.PositiveBigIntegerField(null=True, blank=True)
    gas_limit = models.PositiveBigIntegerField(null=True, blank=True)
    hash = models.CharField(
        max_length=66, blank=True, default="", db_index=True
    )  # the attempt that was mined
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    gas_used = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    channel_address = models.CharField(max_length=42, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "from_address", "nonce"],
                condition=models.Q(nonce__isnull=False),
                name="onchain_tx_one_per_nonce",
            )
        ]

    def __str__(self) -> str:
        return f"{self.reason} {self.status} nonce={self.nonce}"


class TransactionAttempt(models.Model):
    """One signed version of a transaction; a gas bump adds another with the same nonce."""

    transaction = models.ForeignKey(OnchainTransaction, on_delete=models.CASCADE, related_name="attempts")
    hash = models.CharField(max_length=66, unique=True)
    raw = models.TextField()  # signed bytes, so a restart can broadcast it again
    max_fee_per_gas = models.DecimalField(**WEI)
    max_priority_fee_per_gas = models.DecimalField(**WEI)
    broadcast_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.hash
