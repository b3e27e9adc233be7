"""The dashboard's reads: every number is an aggregate query (or a bounded page), never all rows.

Amounts are `int` wei (token base units for tokens). Closed channels hold nothing: their money left on
chain, so the value locked counts open and disputed channels only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import (
    Count,
    DecimalField,
    F,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Trunc
from web3 import Web3

from channels_app import chain, network
from channels_app.models import (
    BlockCursor,
    Channel,
    ChannelUpdate,
    Dispute,
    DisputeAction,
    OnchainTransaction,
    Payment,
    Swap,
    SwapExposure,
    TransactionAttempt,
    Transfer,
    Withdrawal,
)
from channels_app.services import collateral
from connext.chain import channel_reads
from connext.chain.disputes import chain_time
from connext.chain.rpc import http_web3
from dashboard.models import ValueSnapshot

ETH = "0x0000000000000000000000000000000000000000"
FINISHED = (Payment.Status.COMPLETED, Payment.Status.FAILED, Payment.Status.REFUNDED)
NOT_COMPLETED = (Payment.Status.FAILED, Payment.Status.REFUNDED)
IN_FLIGHT = (Payment.Status.PENDING, Payment.Status.FORWARDED)
WINDOWS: dict[str, timedelta] = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
}
WEI_FIELD = DecimalField(max_digits=78, decimal_places=0)


def _int(value: Any) -> int:
    return int(value or 0)


@contextmanager
def custom_plans() -> Iterator[None]:
    """The dashboard's reads planned for their own parameters every time. psycopg prepares a statement
    once a connection ran it 5 times, and Postgres may then switch it to a generic plan, which for
    these aggregates (laterals over the states' JSON, windows over `created_at`) measured three times
    slower: `value_locked` 100 → 330 ms, `payment_windows` 45 → 135 ms at 10,000 channels and 100,000
    payments. The node's hot path keeps its prepared plans; only the dashboard's reads come here."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")
        try:
            yield
        finally:
            # Ended with the transaction; inside an outer one (a test's), put back by hand.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('plan_cache_mode', reset_val, true) FROM pg_settings"
                    " WHERE name = 'plan_cache_mode'"
                )


# -- overview ---------------------------------------------------------------------------------------


def channels_by_status() -> dict[str, int]:
    counted = dict(Channel.objects.values_list("status").annotate(n=Count("pk")).order_by())
    return {status: counted.get(status, 0) for status in Channel.Status.values}


@dataclass(frozen=True)
class AssetValue:
    """Per asset: off chain the node's and the users' balances and what active transfers lock; on chain
    what the channels were credited less what confirmed withdrawals took out."""

    asset_id: str
    node: int
    users: int
    locked: int
    on_chain: int

    @property
    def off_chain(self) -> int:
        return self.node + self.users + self.locked

    @property
    def collateral_ratio(self) -> Decimal | None:
        """The node's balance per unit the users hold: below 1 the node cannot pay out all users at once."""
        if self.users == 0:
            return None
        return (Decimal(self.node) / Decimal(self.users)).quantize(Decimal("0.01"))


_BALANCES_POSTGRES = """
SELECT a.asset, SUM((b.pair->>0)::numeric), SUM((b.pair->>1)::numeric),
       SUM((d.pair->>0)::numeric + (d.pair->>1)::numeric)
FROM {table} c
CROSS JOIN LATERAL jsonb_array_elements_text(c.latest_state->'assetIds') WITH ORDINALITY AS a(asset, i)
JOIN LATERAL jsonb_array_elements(c.latest_state->'balances') WITH ORDINALITY AS b(pair, j) ON b.j = a.i
JOIN LATERAL jsonb_array_elements(c.latest_state->'processedDeposits') WITH ORDINALITY AS d(pair, k)
  ON d.k = a.i
WHERE c.status <> %s
GROUP BY a.asset
"""


def _balances_per_asset() -> dict[str, tuple[int, int, int]]:
    """asset -> (node balances, user balances, processed deposits) over the channels' latest states."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_BALANCES_POSTGRES.format(table=Channel._meta.db_table), [Channel.Status.CLOSED])
            return {asset: (_int(node), _int(user), _int(deps)) for asset, node, user, deps in cursor}
    # SQLite (the embedded default, one small node): its integers stop at 2^63, so sum in Python,
    # streaming the states rather than holding them.
    totals: dict[str, list[int]] = {}
    states = Channel.objects.exclude(status=Channel.Status.CLOSED).values_list("latest_state", flat=True)
    for state in states.iterator(chunk_size=500):
        for asset, balance, deposits in zip(
            state["assetIds"], state["balances"], state["processedDeposits"], strict=True
        ):
            sums = totals.setdefault(asset, [0, 0, 0])
            sums[0] += int(balance[0])
            sums[1] += int(balance[1])
            sums[2] += int(deposits[0]) + int(deposits[1])
    return {asset: (node, user, deps) for asset, (node, user, deps) in totals.items()}


def value_locked() -> list[AssetValue]:
    balances = _balances_per_asset()
    open_channels = ~Q(channel__status=Channel.Status.CLOSED)
    locked = dict(
        Transfer.objects.filter(open_channels, status=Transfer.Status.ACTIVE)
        .values_list("asset_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    withdrawn = dict(
        Withdrawal.objects.filter(open_channels, status=Withdrawal.Status.CONFIRMED)
        .values_list("asset_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    assets = sorted(set(balances) | set(locked), key=lambda asset: (asset != ETH, asset))
    return [
        AssetValue(
            asset_id=asset,
            node=balances.get(asset, (0, 0, 0))[0],
            users=balances.get(asset, (0, 0, 0))[1],
            locked=_int(locked.get(asset)),
            on_chain=balances.get(asset, (0, 0, 0))[2] - _int(withdrawn.get(asset)),
        )
        for asset in assets
    ]


@dataclass(frozen=True)
class PaymentWindow:
    """Payments created in one window for one asset. Volume and average are over completed payments;
    the failure rate is failed and refunded over finished ones (those in flight are not decided)."""

    window: str
    asset_id: str
    count: int
    completed: int
    not_completed: int
    volume: int

    @property
    def average(self) -> int:
        return self.volume // self.completed if self.completed else 0

    @property
    def failure_rate(self) -> Decimal | None:
        finished = self.completed + self.not_completed
        if finished == 0:
            return None
        return (Decimal(self.not_completed) / Decimal(finished)).quantize(Decimal("0.0001"))


def payment_windows(*, now: datetime) -> list[PaymentWindow]:
    """For each window (hour, day, week, month) and asset; one grouped query for all of them."""
    aggregates: dict[str, Any] = {}
    for name, length in WINDOWS.items():
        since = Q(created_at__gte=now - length)
        aggregates[f"{name}_count"] = Count("pk", filter=since)
        aggregates[f"{name}_completed"] = Count("pk", filter=since & Q(status=Payment.Status.COMPLETED))
        aggregates[f"{name}_failed"] = Count("pk", filter=since & Q(status__in=NOT_COMPLETED))
        aggregates[f"{name}_volume"] = Sum("amount", filter=since & Q(status=Payment.Status.COMPLETED))
    rows = (
        Payment.objects.filter(created_at__gte=now - max(WINDOWS.values()), created_at__lte=now)
        .values("asset_id")
        .annotate(**aggregates)
        .order_by("asset_id")
    )
    return [
        PaymentWindow(
            window=name,
            asset_id=row["asset_id"],
            count=row[f"{name}_count"],
            completed=row[f"{name}_completed"],
            not_completed=row[f"{name}_failed"],
            volume=_int(row[f"{name}_volume"]),
        )
        for name in WINDOWS
        for row in rows
    ]


def payments_in_flight() -> dict[str, tuple[int, int]]:
    """asset -> (payments pending or forwarded, their amount)."""
    rows = (
        Payment.objects.filter(status__in=IN_FLIGHT)
        .values_list("asset_id")
        .annotate(n=Count("pk"), total=Sum("amount"))
        .order_by()
    )
    return {asset: (n, _int(total)) for asset, n, total in rows}


def open_disputes_count() -> int:
    return Dispute.objects.filter(status__in=Dispute.ACTIVE).count()


Bucket = Literal["hour", "day"]


@dataclass
class SeriesPoint:
    at: datetime
    count: int = 0
    failed: int = 0
    volume: dict[str, int] = field(default_factory=dict)  # asset -> completed volume


def payment_series(*, since: datetime, until: datetime, bucket: Bucket) -> list[SeriesPoint]:
    """Payments per hour or day created in [since, until): count, failed or refunded, completed volume
    per asset. Buckets without payments are present with zeros, so a chart's time axis is even."""
    rows = (
        Payment.objects.filter(created_at__gte=since, created_at__lt=until)
        .annotate(at=Trunc("created_at", bucket))
        .values("at", "asset_id")
        .annotate(
            n=Count("pk"),
            failed=Count("pk", filter=Q(status__in=NOT_COMPLETED)),
            volume=Sum("amount", filter=Q(status=Payment.Status.COMPLETED)),
        )
        .order_by("at")
    )
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    start = since.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    points: dict[datetime, SeriesPoint] = {}
    moment = start
    while moment < until:
        points[moment] = SeriesPoint(at=moment)
        moment += step
    for row in rows:
        point = points.setdefault(row["at"], SeriesPoint(at=row["at"]))
        point.count += row["n"]
        point.failed += row["failed"]
        point.volume[row["asset_id"]] = point.volume.get(row["asset_id"], 0) + _int(row["volume"])
    return sorted(points.values(), key=lambda point: point.at)


def collateral_series(*, since: datetime, until: datetime, bucket: Bucket) -> list[dict[str, Any]]:
    """The value history per bucket and asset: the last snapshot taken in each bucket of [since,
    until) (node, users, locked, on chain; see `models.ValueSnapshot`). A bucket in which none was
    taken (no worker ran) is absent: the chart shows a gap, not a guess. Two queries: the buckets'
    last moments, then the rows taken at those moments."""
    window = ValueSnapshot.objects.filter(taken_at__gte=since, taken_at__lt=until)
    moments = (
        window.annotate(at=Trunc("taken_at", bucket))
        .values("at")
        .annotate(last=Max("taken_at"))
        .values_list("at", "last")
        .order_by()
    )
    bucket_of = {last: at for at, last in moments}
    rows = window.filter(taken_at__in=list(bucket_of)).order_by("taken_at", "asset_id")
    return [
        {
            "at": bucket_of[row.taken_at],
            "asset_id": row.asset_id,
            "node": int(row.node),
            "users": int(row.users),
            "locked": int(row.locked),
            "on_chain": int(row.on_chain),
        }
        for row in rows
    ]


# -- channels ---------------------------------------------------------------------------------------

_BALANCE_SQL = {
    "postgresql": (
        "(SELECT (b.pair->>{side})::numeric"
        " FROM jsonb_array_elements_text({table}.latest_state->'assetIds') WITH ORDINALITY AS a(asset, i)"
        " JOIN jsonb_array_elements({table}.latest_state->'balances') WITH ORDINALITY AS b(pair, j)"
        " ON b.j = a.i WHERE lower(a.asset) = lower(%s))"
    ),
    "sqlite": (
        "(SELECT CAST(json_extract(b.value, '$[{side}]') AS NUMERIC)"
        " FROM json_each({table}.latest_state, '$.assetIds') AS a"
        " JOIN json_each({table}.latest_state, '$.balances') AS b ON b.key = a.key"
        " WHERE lower(a.value) = lower(%s))"
    ),
}


def _balance_of(asset_id: str, side: Literal[0, 1]) -> RawSQL:
    """A channel's node (0) or user (1) balance of one asset in its latest state; null without the asset."""
    sql = _BALANCE_SQL.get(connection.vendor, _BALANCE_SQL["sqlite"])
    query = sql.format(side=side, table=Channel._meta.db_table)  # side and table are ours
    return RawSQL(query, [asset_id], output_field=WEI_FIELD)  # noqa: S611 - the asset is a parameter


CHANNEL_SORTS = {
    "created": "created_at",
    "activity": "updated_at",
    "nonce": "nonce",
    "user_balance": "user_balance",
    "node_balance": "node_balance",
}


@dataclass(frozen=True)
class ChannelFilter:
    asset_id: str = ETH
    status: str | None = None
    search: str | None = None  # a user or channel address, or the start of one
    min_user_balance: int | None = None
    active_since: datetime | None = None
    idle_since: datetime | None = None  # no update since then
    sort: str = "activity"
    descending: bool = True


def channels_filtered(filters: ChannelFilter) -> QuerySet[Channel]:
    """Channels with `node_balance` and `user_balance` of the filter's asset, filtered and sorted.
    Only the listed columns are read: a latest state can hold many transfers."""
    channels = Channel.objects.only(
        "address", "user_address", "status", "nonce", "deployed", "created_at", "updated_at"
    ).annotate(node_balance=_balance_of(filters.asset_id, 0), user_balance=_balance_of(filters.asset_id, 1))
    if filters.status:
        channels = channels.filter(status=filters.status)
    if filters.search:
        term = filters.search
        if len(term) == 42:  # a whole address: checksummed, as stored, so the indexes answer
            term = Web3.to_checksum_address(term)
            channels = channels.filter(Q(address=term) | Q(user_address=term))
        else:
            channels = channels.filter(Q(address__istartswith=term) | Q(user_address__istartswith=term))
    if filters.min_user_balance is not None:
        channels = channels.filter(user_balance__gte=filters.min_user_balance)
    if filters.active_since is not None:
        channels = channels.filter(updated_at__gte=filters.active_since)
    if filters.idle_since is not None:
        channels = channels.filter(updated_at__lt=filters.idle_since)
    column = CHANNEL_SORTS[filters.sort]
    order = F(column).desc(nulls_last=True) if filters.descending else F(column).asc(nulls_first=True)
    return channels.order_by(order, "-pk" if filters.descending else "pk")


@dataclass(frozen=True)
class AssetCollateral:
    asset_id: str
    node: int
    user: int
    processed_node: int
    processed_user: int
    collateralize_threshold: int
    target: int
    reclaim_threshold: int
    operator_profile: bool  # False: the node's default profile

    @property
    def position(self) -> str:
        if self.node < self.collateralize_threshold:
            return "below"
        if self.node > self.reclaim_threshold:
            return "above"
        return "within"


@dataclass(frozen=True)
class ChannelDetail:
    channel: Channel
    assets: list[AssetCollateral]
    signed_state: dict[str, Any]
    updates: list[ChannelUpdate]
    update_count: int
    updates_page: int
    transfers: list[Transfer]
    withdrawals: list[Withdrawal]
    disputes: list[Dispute]
    transactions: list[OnchainTransaction]

    @property
    def updates_pages(self) -> int:
        return max(1, -(-self.update_count // DETAIL_ROWS))


DETAIL_ROWS = 50


def channel_detail(*, address: str, updates_page: int = 1) -> ChannelDetail | None:
    """A channel with its latest rows of each kind; its updates a page of DETAIL_ROWS at a time, newest
    first (one per nonce, so a page is a nonce range: no count query)."""
    channel = Channel.objects.filter(address=Web3.to_checksum_address(address)).first()
    if channel is None:
        return None
    state = channel.latest_state
    profiles = collateral.rebalance_profiles(channel)  # the operator's, in one read
    assets = []
    for index, asset in enumerate(state["assetIds"]):
        bounds = profiles.get(asset) or collateral.rebalance_profile(channel, asset)
        assets.append(
            AssetCollateral(
                asset_id=asset,
                node=int(state["balances"][index][0]),
                user=int(state["balances"][index][1]),
                processed_node=int(state["processedDeposits"][index][0]),
                processed_user=int(state["processedDeposits"][index][1]),
                collateralize_threshold=bounds[0],
                target=bounds[1],
                reclaim_threshold=bounds[2],
                operator_profile=asset in profiles,
            )
        )
    return ChannelDetail(
        channel=channel,
        assets=assets,
        signed_state={
            "state": channel.latest_state,
            "nodeSignature": channel.node_signature,
            "userSignature": channel.user_signature,
        },
        updates=list(
            channel.updates.filter(
                nonce__lte=channel.nonce - (updates_page - 1) * DETAIL_ROWS,
                nonce__gt=channel.nonce - updates_page * DETAIL_ROWS,
            ).order_by("-nonce")
        ),
        updates_page=updates_page,
        update_count=channel.nonce,  # one doubly signed update per nonce
        transfers=list(channel.transfers.order_by("-created_nonce")[:DETAIL_ROWS]),
        withdrawals=list(
            channel.withdrawals.select_related("onchain_transaction").order_by("-pk")[:DETAIL_ROWS]
        ),
        disputes=list(_disputes().filter(channel=channel)[:DETAIL_ROWS]),
        transactions=list(
            _transactions().filter(channel_address=channel.address).order_by("-pk")[:DETAIL_ROWS]
        ),
    )


# -- payments ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentFilter:
    status: str | None = None
    kind: str | None = None
    asset_id: str | None = None
    user: str | None = None  # sender or recipient
    payment_id: str | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None


def payments_filtered(filters: PaymentFilter) -> QuerySet[Payment]:
    payments = Payment.objects.all()
    if filters.status:
        payments = payments.filter(status=filters.status)
    if filters.kind:
        payments = payments.filter(kind=filters.kind)
    if filters.asset_id:
        payments = payments.filter(asset_id=filters.asset_id)
    if filters.user:  # checksummed, as stored
        payments = payments.filter(Q(sender=filters.user) | Q(recipient=filters.user))
    if filters.payment_id:
        payments = payments.filter(payment_id=filters.payment_id.lower())
    if filters.created_from is not None:
        payments = payments.filter(created_at__gte=filters.created_from)
    if filters.created_until is not None:
        payments = payments.filter(created_at__lt=filters.created_until)
    return payments.order_by("-pk")


@dataclass(frozen=True)
class StuckPayment:
    payment: Payment
    reason: str


def stuck_payments(*, older_than: datetime, limit: int = 100) -> tuple[list[StuckPayment], int]:
    """Payments pending or forwarded, unchanged since `older_than`, oldest first, each with why it waits;
    and how many there are. Reads the open-payments partial index; a bounded number of queries."""
    stuck = Payment.objects.filter(status__in=IN_FLIGHT, updated_at__lt=older_than)
    total = stuck.count()
    page = list(stuck.select_related("sender_transfer").order_by("updated_at")[:limit])
    recipients = {payment.recipient for payment in page if payment.recipient}
    channels = {
        user: (address, pending)
        for user, address, pending in Channel.objects.filter(user_address__in=recipients).values_list(
            "user_address", "address", Q(pending_update__isnull=False)
        )
    }
    addresses = [address for address, _ in channels.values()]
    collateral_moving = set(
        OnchainTransaction.objects.filter(
            reason=OnchainTransaction.Reason.COLLATERALIZATION,
            status__in=(OnchainTransaction.Status.QUEUED, OnchainTransaction.Status.PENDING),
            channel_address__in=addresses,
        ).values_list("channel_address", "asset_id")
    )
    return [
        StuckPayment(payment, _stuck_reason(payment, channels, collateral_moving)) for payment in page
    ], total


def _stuck_reason(
    payment: Payment, channels: dict[str, tuple[str, bool]], collateral_moving: set[tuple[str, str]]
) -> str:
    if payment.status == Payment.Status.FORWARDED:
        channel = channels.get(payment.recipient)
        if channel is not None and channel[1]:
            return "receiver offline: it has not countersigned the node's transfer"
        return "waiting for the receiver to resolve"
    if not payment.recipient:
        return "link not redeemed yet"
    channel = channels.get(payment.recipient)
    if channel is None:
        return "receiver offline: it has no channel yet"
    if (channel[0], payment.asset_id) in collateral_moving:
        return "collateral on its way to the receiver's channel"
    if channel[1]:
        return "receiver offline: it has not answered the node's last proposal"
    return "waiting to be forwarded (the receiver's channel is busy or not reconciled yet)"


# -- on chain ---------------------------------------------------------------------------------------


def _mined_attempt_fee() -> Subquery:
    """The max fee per gas of the attempt that was mined: gas used × it bounds the fee paid."""
    return Subquery(
        TransactionAttempt.objects.filter(transaction=OuterRef("pk"), hash=OuterRef("hash")).values(
            "max_fee_per_gas"
        )[:1],
        output_field=WEI_FIELD,
    )


def _transactions() -> QuerySet[OnchainTransaction]:
    return OnchainTransaction.objects.defer("data").annotate(
        attempt_count=Subquery(
            TransactionAttempt.objects.filter(transaction=OuterRef("pk"))
            .order_by()
            .values("transaction")
            .annotate(n=Count("pk"))
            .values("n")[:1]
        ),
        max_fee_per_gas=_mined_attempt_fee(),
    )


@dataclass(frozen=True)
class TransactionFilter:
    status: str | None = None
    reason: str | None = None
    search: str | None = None  # a transaction hash or channel address


def transactions_filtered(filters: TransactionFilter) -> QuerySet[OnchainTransaction]:
    transactions = _transactions()
    if filters.status:
        transactions = transactions.filter(status=filters.status)
    if filters.reason:
        transactions = transactions.filter(reason=filters.reason)
    if filters.search:
        transactions = transactions.filter(
            Q(hash__iexact=filters.search) | Q(channel_address__iexact=filters.search)
        )
    return transactions.order_by("-pk")


def gas_per_day(*, since: datetime) -> list[dict[str, Any]]:
    """Gas used per day and reason by transactions that reached the chain (mined or reverted), with the
    bound on the fee (gas used × max fee per gas of the mined attempt)."""
    rows = (
        OnchainTransaction.objects.filter(created_at__gte=since, gas_used__isnull=False)
        .annotate(day=Trunc("created_at", "day"), fee_cap=F("gas_used") * _mined_attempt_fee())
        .values("day", "reason")
        .annotate(n=Count("pk"), gas=Sum("gas_used"), fee=Sum("fee_cap"))
        .order_by("-day", "reason")
    )
    return [
        {
            "day": row["day"],
            "reason": row["reason"],
            "count": row["n"],
            "gas": _int(row["gas"]),
            "fee": _int(row["fee"]),
        }
        for row in rows
    ]


def transactions_by_status() -> dict[str, int]:
    counted = dict(OnchainTransaction.objects.values_list("status").annotate(n=Count("pk")).order_by())
    return {status: counted.get(status, 0) for status in OnchainTransaction.Status.values}


def watcher_cursors() -> list[BlockCursor]:
    return list(BlockCursor.objects.order_by("name", "chain_id"))


# -- disputes ---------------------------------------------------------------------------------------


def _disputes() -> QuerySet[Dispute]:
    actions = DisputeAction.objects.select_related("transaction").order_by("pk")
    return (
        Dispute.objects.select_related("channel")
        .defer("state", "channel__latest_state", "channel__pending_state", "channel__pending_update")
        .prefetch_related(Prefetch("actions", queryset=actions))
        .order_by("-pk")
    )


def disputes_filtered(*, active_only: bool) -> QuerySet[Dispute]:
    disputes = _disputes()
    if active_only:
        disputes = disputes.filter(status__in=Dispute.ACTIVE)
    return disputes


# -- export -----------------------------------------------------------------------------------------


# The export's columns, in order: the CSV's header and the rows' fields alike.
PAYMENT_EXPORT_COLUMNS = (
    "payment_id",
    "created_at",
    "updated_at",
    "status",
    "kind",
    "asset_id",
    "amount",
    "sender",
    "recipient",
    "redeemer",
    "failure",
)
CHANNEL_EXPORT_COLUMNS = (
    "address",
    "user_address",
    "status",
    "nonce",
    "deployed",
    "created_at",
    "updated_at",
    "node_balance",
    "user_balance",
)


def payments_for_export(filters: PaymentFilter) -> Iterable[tuple[Any, ...]]:
    return payments_filtered(filters).values_list(*PAYMENT_EXPORT_COLUMNS).iterator(chunk_size=2000)


def channels_for_export(filters: ChannelFilter) -> Iterable[tuple[Any, ...]]:
    return channels_filtered(filters).values_list(*CHANNEL_EXPORT_COLUMNS).iterator(chunk_size=2000)


# -- the chain (read with a short timeout: a page must not hang on a slow RPC) --------------------

CHAIN_TIMEOUT_SECONDS = 2.0
CHAIN_ERRORS = (*chain.READ_ERRORS, OSError, ImproperlyConfigured)


@dataclass(frozen=True)
class HotWallet:
    asset_id: str
    balance: int
    minimum: int

    @property
    def low(self) -> bool:
        return self.balance < self.minimum


def hot_wallet() -> tuple[str, list[HotWallet]] | None:
    """The node's address and its on-chain balance per served asset; None when the chain does not answer."""
    w3 = http_web3(settings.CHAIN_RPC_URL, timeout=CHAIN_TIMEOUT_SECONDS)
    try:
        served = network.network()
        wallets = [
            HotWallet(
                asset_id=asset,
                balance=channel_reads.asset_balance(w3, served.node_address, asset),
                minimum=settings.DASHBOARD_HOT_WALLET_MIN["eth" if int(asset, 16) == 0 else "token"],
            )
            for asset in served.assets
        ]
    except CHAIN_ERRORS:
        return None
    return served.node_address, wallets


def chain_now() -> int | None:
    """The latest block's timestamp, the clock dispute windows run on (on a dev chain whose time was
    moved it is not the wall clock); None when the chain does not answer."""
    try:
        return chain_time(http_web3(settings.CHAIN_RPC_URL, timeout=CHAIN_TIMEOUT_SECONDS))
    except CHAIN_ERRORS:
        return None


def chain_head() -> int | None:
    """The chain's latest block number; None when the chain does not answer."""
    try:
        return int(http_web3(settings.CHAIN_RPC_URL, timeout=CHAIN_TIMEOUT_SECONDS).eth.block_number)
    except CHAIN_ERRORS:
        return None


@dataclass(frozen=True)
class SwapTotals:
    """The swaps of one direction: the user gave `give_asset` and took `take_asset`."""

    give_asset: str
    take_asset: str
    count: int
    given: int  # what users gave the node
    taken: int  # what the node paid users
    spread: int  # what the node kept against its source's mid price, in the take asset


def swap_totals(*, since: datetime | None = None) -> list[SwapTotals]:
    """Swap volume and spread earned per direction (all time, or since `since`)."""
    swaps = Swap.objects.all() if since is None else Swap.objects.filter(created_at__gte=since)
    rows = (
        swaps.values("give_asset", "take_asset")
        .annotate(n=Count("pk"), given=Sum("give_amount"), taken=Sum("take_amount"), spread=Sum("spread"))
        .order_by("give_asset", "take_asset")
    )
    return [
        SwapTotals(
            give_asset=row["give_asset"],
            take_asset=row["take_asset"],
            count=row["n"],
            given=_int(row["given"]),
            taken=_int(row["taken"]),
            spread=_int(row["spread"]),
        )
        for row in rows
    ]


def swap_exposure() -> dict[str, int]:
    """Per asset (lower-case address), how much more the node paid out in swaps than it took in."""
    return {row.asset_id: int(row.paid_out) for row in SwapExposure.objects.order_by("asset_id")}


@dataclass(frozen=True)
class ExposureRow:
    asset_id: str
    paid_out: int
    limit: int | None  # maxExposure; None: not bounded

    @property
    def used(self) -> float | None:
        """The share of the limit in use (paid out beyond what came in), when there is a limit."""
        if not self.limit:
            return None
        return max(0, self.paid_out) / self.limit


def swap_exposure_rows() -> list[ExposureRow]:
    """The node's exposure per asset with its configured limit (assets with a limit and no swaps yet too)."""
    from channels_app.services import swaps

    limits = swaps.exposure_limits()
    exposure = swap_exposure()
    return [
        ExposureRow(asset_id=asset_id, paid_out=exposure.get(asset_id, 0), limit=limits.get(asset_id))
        for asset_id in sorted(set(exposure) | set(limits))
    ]


@dataclass(frozen=True)
class SwapSummary:
    give_asset: str
    take_asset: str
    day: SwapTotals  # the last 24 hours
    all: SwapTotals


def swap_summary(*, now: datetime) -> list[SwapSummary]:
    """Per direction, the last day's swaps beside all of them."""
    day = {(row.give_asset, row.take_asset): row for row in swap_totals(since=now - timedelta(days=1))}
    return [
        SwapSummary(
            give_asset=row.give_asset,
            take_asset=row.take_asset,
            day=day.get((row.give_asset, row.take_asset))
            or SwapTotals(row.give_asset, row.take_asset, count=0, given=0, taken=0, spread=0),
            all=row,
        )
        for row in swap_totals()
    ]
