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
    asset_id = models.CharField(max_length=42, blank=True, default="")
    # Sent only after this one is mined (e.g. a withdraw waits for its channel's deployment).
    after = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
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


class Channel(models.Model):
    """A user's channel with the node and its latest doubly signed state.

    `latest_state` is the protocol's JSON form of the state (with its active transfers);
    `pending_*` holds an update the node proposed and signed that the user has not countersigned yet.
    The node never signs a second, different state at that nonce: the proposal stands until answered.
    """

    class Status(models.TextChoices):
        OPEN = "open"
        DISPUTED = "disputed"
        CLOSED = "closed"

    address = models.CharField(max_length=42, unique=True)
    chain_id = models.PositiveBigIntegerField()
    node_address = models.CharField(max_length=42)
    user_address = models.CharField(max_length=42)
    # Recovered from the user's setup signature: senders encrypt preimages to it (ECIES).
    user_public_key = models.CharField(max_length=132, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    nonce = models.PositiveBigIntegerField()
    latest_state = models.JSONField()
    node_signature = models.CharField(max_length=132)
    user_signature = models.CharField(max_length=132)
    pending_update = models.JSONField(null=True, blank=True)
    pending_state = models.JSONField(null=True, blank=True)
    pending_node_signature = models.CharField(max_length=132, blank=True, default="")
    pending_meta = models.JSONField(default=dict, blank=True)
    deployed = models.BooleanField(default=False)
    # Set when a node deposit may have landed on chain (its transaction mined, or the watcher saw
    # one): only then does the reconcile read the chain to credit it, not after every update.
    node_deposit_seen_at = models.DateTimeField(null=True, blank=True)
    # The signing fence (channels_app.services.fence): set when the node's data was found behind what
    # it had signed (a restored backup). The node then signs nothing for the channel until its user
    # shows a doubly signed state at least as new as the stored one and as `fence_min_nonce`, the
    # highest nonce the chain has shown for the channel since.
    fenced_since = models.DateTimeField(null=True, blank=True)
    fence_min_nonce = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "node_address", "user_address"], name="one_channel_per_user"
            )
        ]
        # Plain b-tree indexes (no LIKE twin): every index is one more write per row version.
        indexes = [
            models.Index(fields=["user_address"], name="channel_by_user"),
            # The payments sweep's reminder of proposals left unanswered: the few channels holding one.
            models.Index(
                fields=["updated_at"],
                name="channel_open_proposal",
                condition=models.Q(pending_update__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"channel {self.address} ({self.user_address})"


class ChannelUpdate(models.Model):
    """Every doubly signed state of a channel: the update that made it and both signatures."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="updates")
    nonce = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=16)
    initiator = models.CharField(max_length=42)
    update = models.JSONField()
    state_hash = models.CharField(max_length=66)
    node_signature = models.CharField(max_length=132)
    user_signature = models.CharField(max_length=132)
    # The state a resume made, or one adopted from the user by a reconcile, kept whole. Every other
    # state is rebuilt from the updates before it; a resume's outcome depends on the chain's record of
    # its dispute as it was then, and an adopted state has no update of the node's behind it.
    resumed_state = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "nonce"], name="one_update_per_nonce")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.nonce} of {self.channel_id}"


class Transfer(models.Model):
    """A conditional transfer in one channel, from creation to resolution."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        RESOLVED = "resolved"  # paid out by its definition
        CANCELLED = "cancelled"  # refunded to the initiator

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="transfers")
    transfer_id = models.CharField(max_length=66)  # unique: see Meta
    payment_id = models.CharField(max_length=66)
    kind = models.CharField(max_length=16)  # linked, hashlock, signed, withdraw
    definition = models.CharField(max_length=42)
    initiator = models.CharField(max_length=42)
    responder = models.CharField(max_length=42)
    asset_id = models.CharField(max_length=42)
    amount = models.DecimalField(**WEI)
    # Not indexed: status is read within a channel (its foreign-key index) and changes on every
    # resolve, where an index would turn a cheap in-page update into a write to every index.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    transfer_state = models.JSONField()
    # Off-chain details the creator sent with the update (recipient, encrypted preimage, ...);
    # `transfer_state.metaHash` commits to them.
    meta = models.JSONField(default=dict, blank=True)
    encoded_resolver = models.TextField(blank=True, default="")
    created_nonce = models.PositiveBigIntegerField()
    resolved_nonce = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["payment_id"], name="transfer_by_payment")]
        # A constraint, not `unique=True`: on Postgres that also builds a second index for LIKE
        # queries, kept up on every insert of the payment path and never used.
        constraints = [models.UniqueConstraint(fields=["transfer_id"], name="one_transfer_per_id")]

    def __str__(self) -> str:
        return f"{self.kind} {self.transfer_id[:10]} {self.status}"


class Withdrawal(models.Model):
    """A withdraw commitment signed by both sides, and the transaction that executes it on chain."""

    class Status(models.TextChoices):
        SIGNED = "signed"  # both signatures held, transaction not sent yet
        SUBMITTED = "submitted"
        CONFIRMED = "confirmed"
        FAILED = "failed"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="withdrawals")
    transfer = models.OneToOneField(Transfer, on_delete=models.PROTECT, related_name="withdrawal")
    asset_id = models.CharField(max_length=42)
    recipient = models.CharField(max_length=42)
    amount = models.DecimalField(**WEI)
    nonce = models.PositiveBigIntegerField()
    node_signature = models.CharField(max_length=132)
    user_signature = models.CharField(max_length=132)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SIGNED, db_index=True)
    onchain_transaction = models.ForeignKey(
        OnchainTransaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="withdrawals"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"withdraw {self.amount} of {self.asset_id} to {self.recipient} ({self.status})"


class RebalanceProfile(models.Model):
    """How much collateral the node keeps in a channel for one asset (wei or token base units)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="rebalance_profiles")
    asset_id = models.CharField(max_length=42)
    collateralize_threshold = models.DecimalField(**WEI)
    target = models.DecimalField(**WEI)
    reclaim_threshold = models.DecimalField(**WEI)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "asset_id"], name="one_profile_per_asset"),
            models.CheckConstraint(
                condition=models.Q(collateralize_threshold__lte=models.F("target"))
                & models.Q(target__lte=models.F("reclaim_threshold")),
                name="profile_thresholds_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"profile {self.asset_id} of {self.channel_id}"


class BlockCursor(models.Model):
    """How far a chain watcher has processed, per watcher name and chain."""

    name = models.CharField(max_length=64)
    chain_id = models.PositiveBigIntegerField()
    block_number = models.PositiveBigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "chain_id"], name="one_cursor_per_watcher")]

    def __str__(self) -> str:
        return f"{self.name}@{self.block_number}"


class ProcessedLog(models.Model):
    """A chain log already acted on: the unique key makes every handler run once per log."""

    chain_id = models.PositiveBigIntegerField()
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"], name="one_record_per_log")
        ]

    def __str__(self) -> str:
        return f"{self.tx_hash}:{self.log_index}"


class Payment(models.Model):
    """A payment routed through the node: the sender's transfer to the node and the node's matching
    transfer to the receiver, linked by the payment id and unlocked by the same resolver."""

    class Status(models.TextChoices):
        PENDING = "pending"  # sender side locked; receiver side not created yet (offline, collateral, link)
        FORWARDED = "forwarded"  # receiver side proposed or locked
        COMPLETED = "completed"  # receiver resolved; sender side resolved (or being resolved) with it
        REFUNDED = "refunded"  # sender side refunded (cancelled, expired, or could not be forwarded)
        FAILED = "failed"  # cannot complete (not forwardable, declined, expired, cancelled): being refunded

    payment_id = models.CharField(max_length=66)  # unique: see Meta
    kind = models.CharField(max_length=16)  # linked, hashlock, signed
    sender = models.CharField(max_length=42)
    recipient = models.CharField(max_length=42, blank=True, default="")  # blank: a link
    asset_id = models.CharField(max_length=42)
    amount = models.DecimalField(**WEI)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    sender_transfer = models.OneToOneField(
        Transfer, on_delete=models.PROTECT, related_name="payment_as_sender"
    )
    receiver_transfer = models.OneToOneField(
        Transfer, null=True, blank=True, on_delete=models.PROTECT, related_name="payment_as_receiver"
    )
    redeemer = models.CharField(max_length=42, blank=True, default="")  # who redeemed a link
    failure = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["sender"], name="payment_by_sender"),
            models.Index(fields=["recipient", "status"], name="payment_by_recipient"),
            # The stalled-payment sweep reads only payments still open: a partial index stays small.
            models.Index(
                fields=["updated_at"],
                condition=~models.Q(status__in=["completed", "refunded"]),
                name="open_payments",
            ),
        ]
        # A constraint, not `unique=True` (no LIKE twin index: see Transfer).
        constraints = [models.UniqueConstraint(fields=["payment_id"], name="one_payment_per_id")]

    def __str__(self) -> str:
        return f"payment {self.payment_id[:10]} {self.status}"


class Dispute(models.Model):
    """One dispute round of a channel on chain: from `disputeChannel` until what it pays is paid out.

    A round is identified on chain by its windows (a newer state replaces the disputed one without moving
    them), so the record follows the latest disputed nonce and keeps who started it. `state` is the
    disputed state in the protocol's JSON when the node knows it (its latest or its open proposal).
    """

    class Status(models.TextChoices):
        REQUESTED = "requested"  # the node sent disputeChannel; not seen on chain yet
        STARTED = "started"  # disputed with a state older than the node's latest: being answered
        ANSWERED = "answered"  # the node replaced the stale state with its latest
        UNCONTESTED = "uncontested"  # disputed with the node's latest (or newer): nothing to answer
        MISSED = "missed"  # the window closed on a state the node cannot rebuild, or left it unpaid
        DEFUNDED = "defunded"  # everything the node is owed has been paid out
        CLOSED = "closed"  # over; the channel is closed
        RESUMED = "resumed"  # over; the channel continues with raised defund nonces
        FAILED = "failed"  # the node's own disputeChannel never made it on chain

    class Party(models.TextChoices):
        NODE = "node"
        USER = "user"
        OTHER = "other"

    ACTIVE = (
        Status.REQUESTED,
        Status.STARTED,
        Status.ANSWERED,
        Status.UNCONTESTED,
        Status.MISSED,
        Status.DEFUNDED,
    )

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="disputes")
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    disputed_by = models.CharField(max_length=8, choices=Party.choices)
    disputer = models.CharField(max_length=42, blank=True, default="")
    reason = models.CharField(max_length=300, blank=True, default="")  # why the node started it
    started_nonce = models.PositiveBigIntegerField()  # the nonce the round started with
    nonce = models.PositiveBigIntegerField()  # the nonce disputed now
    state_hash = models.CharField(max_length=66)
    state = models.JSONField(null=True, blank=True)
    consensus_expiry = models.PositiveBigIntegerField(null=True, blank=True)  # unix seconds, chain time
    defund_expiry = models.PositiveBigIntegerField(null=True, blank=True)
    # asset id -> {"defundNonce", "toNode", "toUser"} from ChannelDefunded, decimal strings
    defunds = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel"],
                condition=models.Q(
                    status__in=["requested", "started", "answered", "uncontested", "missed", "defunded"]
                ),
                name="one_active_dispute_per_channel",
            ),
            models.UniqueConstraint(
                fields=["channel", "defund_expiry"],
                condition=models.Q(defund_expiry__isnull=False),
                name="one_dispute_per_round",
            ),
        ]

    def __str__(self) -> str:
        return f"dispute of {self.channel_id} at nonce {self.nonce} ({self.status})"


class DisputeAction(models.Model):
    """One on-chain step the node took in a dispute, and the transaction that carries it."""

    class Kind(models.TextChoices):
        DISPUTE_CHANNEL = "dispute_channel"
        DEFUND_CHANNEL = "defund_channel"
        DISPUTE_TRANSFER = "dispute_transfer"
        DEFUND_TRANSFER = "defund_transfer"

    dispute = models.ForeignKey(Dispute, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    transaction = models.OneToOneField(
        OnchainTransaction, on_delete=models.PROTECT, related_name="dispute_action"
    )
    transfer_id = models.CharField(max_length=66, blank=True, default="")
    asset_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind} of dispute {self.dispute_id}"


class TransferDispute(models.Model):
    """An active transfer proven on chain in a dispute (by anyone), until it is paid out."""

    class Status(models.TextChoices):
        DISPUTED = "disputed"
        DEFUNDED = "defunded"

    dispute = models.ForeignKey(
        Dispute, null=True, blank=True, on_delete=models.SET_NULL, related_name="transfer_disputes"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="transfer_disputes")
    # The node's record of the transfer (none for one created by an unanswered node proposal).
    transfer_record = models.ForeignKey(
        Transfer, null=True, blank=True, on_delete=models.SET_NULL, related_name="disputes"
    )
    transfer_id = models.CharField(max_length=66, db_index=True)
    transfer_hash = models.CharField(max_length=66, unique=True)  # a transfer is disputed once, ever
    expiry = models.PositiveBigIntegerField()  # unix seconds, chain time: resolve before, refund after
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DISPUTED, db_index=True)
    to_initiator = models.DecimalField(**WEI, null=True, blank=True)
    to_responder = models.DecimalField(**WEI, null=True, blank=True)
    encoded_resolver = models.TextField(blank=True, default="")  # read from the defunding call
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"transfer dispute {self.transfer_id[:10]} {self.status}"


class DataFence(models.Model):
    """A time the node found its data behind what it had signed: a backup restored (`manage.py
    restore`), a user showing a doubly signed state newer than the stored one, or the chain showing a
    channel at a nonce the node never stored. Every channel was fenced then (Channel.fenced_since);
    none is let go before the chain watcher has read up to `chain_block`, so that what the chain
    recorded meanwhile (withdrawals, disputes at later nonces) is known first."""

    class Reason(models.TextChoices):
        RESTORED = "restored"
        USER_STATE_AHEAD = "user_state_ahead"
        CHAIN_AHEAD = "chain_ahead"

    reason = models.CharField(max_length=32, choices=Reason.choices)
    detail = models.JSONField(default=dict, blank=True)
    chain_block = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"data fence ({self.reason}) at block {self.chain_block}"


class ShardOwner(models.Model):
    """Where the update engine owning a shard of the channels is reached (issue #21): its process's
    channel-layer address, written by the owner's writer session as it takes the shard
    (`engine.shard_writer`). A row may outlive its owner (a process that died): a request forwarded
    there goes unanswered and is served where it arrived (`engine.relay`). `socket_url` is where
    users reach that process's websocket (its NODE_SOCKET_URL; blank when it names none): a socket
    of one of the shard's users authenticating elsewhere is told to move there."""

    shard = models.PositiveSmallIntegerField(primary_key=True)
    channel = models.CharField(max_length=200)
    socket_url = models.CharField(max_length=300, blank=True, default="")
    since = models.DateTimeField()

    def __str__(self) -> str:
        return f"shard {self.shard} at {self.channel}"


class Swap(models.Model):
    """One swap the node countersigned: the user gave `give_amount` of `give_asset` and took
    `take_amount` of `take_asset`, in the doubly signed state at `nonce`. `mid_price` is the node's
    price source at the time (take base units per give base unit, `numerator/denominator`); `spread`
    is what the node kept against it, in the take asset; `base_value` the swap's size in base units of
    its pair's base asset (what the per-swap and per-day limits count)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="swaps")
    user_address = models.CharField(max_length=42)
    nonce = models.PositiveBigIntegerField()
    give_asset = models.CharField(max_length=42)
    give_amount = models.DecimalField(**WEI)
    take_asset = models.CharField(max_length=42)
    take_amount = models.DecimalField(**WEI)
    base_asset = models.CharField(max_length=42)
    base_value = models.DecimalField(**WEI)
    mid_price = models.CharField(max_length=160)
    spread = models.DecimalField(**WEI)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "nonce"], name="one_swap_per_state")]
        indexes = [models.Index(fields=["user_address", "created_at"], name="swap_by_user_and_time")]

    def __str__(self) -> str:
        return f"swap #{self.nonce} of {self.channel_id}"


class SwapExposure(models.Model):
    """Per asset, how much more of it the node paid out in swaps than it took in (negative: took in
    more). Its row lock orders the swaps that move the asset, so the exposure limit holds under
    concurrent swaps on different channels."""

    asset_id = models.CharField(max_length=42)
    paid_out = models.DecimalField(max_digits=79, decimal_places=0, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["asset_id"], name="one_exposure_per_asset")]

    def __str__(self) -> str:
        return f"swap exposure in {self.asset_id}: {self.paid_out}"
