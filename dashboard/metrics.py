"""GET /metrics: Prometheus text format, for a staff session or `Authorization: Bearer $METRICS_TOKEN`.

Three sources in one answer: django-prometheus (requests, responses, database queries), the node's
live counters (channels_app.metrics), both added up over every process when PROMETHEUS_MULTIPROC_DIR
is set; and the node's records, read when scraped with the dashboard's aggregate queries (so every
process answers the same, and a restart loses nothing). Amounts are in whole ETH or tokens
(10^18 base units): Prometheus values are doubles.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from channels_app.models import Dispute, OnchainTransaction, Payment
from dashboard import selectors, tokens

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def _units(amount: int, asset_id: str) -> float | None:
    """Base units as whole units of the asset (ETH: 18 decimals; a token: its own `decimals()`); None for
    a token whose decimals are unknown, whose sample is left out rather than scaled by a guess."""
    decimals = tokens.describe(asset_id).decimals
    return None if decimals is None else amount / 10**decimals


def _add(
    family: GaugeMetricFamily | CounterMetricFamily, labels: list[str], amount: int, asset_id: str
) -> None:
    if (value := _units(amount, asset_id)) is not None:
        family.add_metric(labels, value)


class NodeRecords(Collector):
    """The node's state as metrics, from aggregate queries at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield from self._payments()
        status = GaugeMetricFamily("connext_channels", "Channels by status.", labels=["status"])
        for name, count in selectors.channels_by_status().items():
            status.add_metric([name], count)
        yield status
        value = GaugeMetricFamily(
            "connext_value_locked",
            "Value in the channels per asset (whole units): on_chain = credited deposits less confirmed "
            "withdrawals; node, users and transfers split what is off chain.",
            labels=["asset", "holder"],
        )
        for row in selectors.value_locked():
            for holder, amount in (
                ("on_chain", row.on_chain),
                ("node", row.node),
                ("users", row.users),
                ("transfers", row.locked),
            ):
                _add(value, [row.asset_id, holder], amount, row.asset_id)
        yield value
        yield from self._chain()
        disputes = GaugeMetricFamily("connext_disputes_open", "Dispute rounds not over yet.")
        disputes.add_metric([], Dispute.objects.filter(status__in=Dispute.ACTIVE).count())
        yield disputes
        yield from self._swaps()

    def _swaps(self) -> Iterator[Metric]:
        labels = ["give_asset", "take_asset"]
        count = CounterMetricFamily(
            "connext_swaps", "Swaps the node countersigned, per direction.", labels=labels
        )
        given = CounterMetricFamily(
            "connext_swap_given_volume",
            "What users gave in swaps (whole units of the give asset).",
            labels=labels,
        )
        taken = CounterMetricFamily(
            "connext_swap_taken_volume",
            "What the node paid in swaps (whole units of the take asset).",
            labels=labels,
        )
        spread = CounterMetricFamily(
            "connext_swap_spread_earned",
            "What the node kept against its source's mid price (whole units of the take asset).",
            labels=labels,
        )
        for row in selectors.swap_totals():
            key = [row.give_asset, row.take_asset]
            count.add_metric(key, row.count)
            _add(given, key, row.given, row.give_asset)
            _add(taken, key, row.taken, row.take_asset)
            _add(spread, key, row.spread, row.take_asset)
        exposure = GaugeMetricFamily(
            "connext_swap_exposure",
            "Per asset, what the node paid out in swaps less what it took in (whole units; negative: took in more).",
            labels=["asset"],
        )
        for asset_id, paid_out in selectors.swap_exposure().items():
            _add(exposure, [asset_id], paid_out, asset_id)
        yield from (count, given, taken, spread, exposure)

    def _payments(self) -> Iterator[Metric]:
        """Counts, volume and the latency histogram in one pass over the payments."""
        completed_q = Q(status=Payment.Status.COMPLETED)
        took = ExpressionWrapper(F("updated_at") - F("created_at"), output_field=DurationField())
        rows = (
            Payment.objects.annotate(took=took)
            .values("kind", "asset_id")
            .annotate(
                n=Count("pk"),
                completed=Count("pk", filter=completed_q),
                failed=Count("pk", filter=Q(status__in=selectors.NOT_COMPLETED)),
                in_flight=Count("pk", filter=Q(status__in=selectors.IN_FLIGHT)),
                volume=Sum("amount", filter=completed_q),
                took_total=Sum("took", filter=completed_q),
                **{
                    f"le_{i}": Count("pk", filter=completed_q & Q(took__lte=timedelta(seconds=bound)))
                    for i, bound in enumerate(LATENCY_BUCKETS)
                },
            )
            .order_by("kind", "asset_id")
        )
        labels = ["definition", "asset"]
        attempted = CounterMetricFamily(
            "connext_payments_attempted", "Payments the node accepted.", labels=labels
        )
        completed = CounterMetricFamily("connext_payments_completed", "Payments completed.", labels=labels)
        failed = CounterMetricFamily("connext_payments_failed", "Payments failed or refunded.", labels=labels)
        in_flight = GaugeMetricFamily(
            "connext_payments_in_flight", "Payments pending or forwarded.", labels=labels
        )
        volume = CounterMetricFamily(
            "connext_routed_volume", "Completed payments' amounts (whole units).", labels=labels
        )
        buckets = [0] * len(LATENCY_BUCKETS)
        count, total = 0, timedelta(0)
        for row in rows:
            key = [row["kind"], row["asset_id"]]
            attempted.add_metric(key, row["n"])
            completed.add_metric(key, row["completed"])
            failed.add_metric(key, row["failed"])
            in_flight.add_metric(key, row["in_flight"])
            _add(volume, key, int(row["volume"] or 0), row["asset_id"])
            buckets = [
                sum(pair) for pair in zip(buckets, (row[f"le_{i}"] for i in range(len(buckets))), strict=True)
            ]
            count += row["completed"]
            total += row["took_total"] or timedelta(0)
        histogram = HistogramMetricFamily(
            "connext_payment_latency_seconds",
            "From a payment's creation to its completion (completed payments).",
        )
        histogram.add_metric(
            [],
            [*((str(bound), n) for bound, n in zip(LATENCY_BUCKETS, buckets, strict=True)), ("+Inf", count)],
            sum_value=total.total_seconds(),
        )
        yield from (attempted, completed, failed, in_flight, volume, histogram)

    def _chain(self) -> Iterator[Metric]:
        transactions = GaugeMetricFamily(
            "connext_chain_transactions",
            "The node's transactions by status (queued, pending, mined, failed).",
            labels=["status"],
        )
        for status, count in selectors.transactions_by_status().items():
            transactions.add_metric([status], count)
        yield transactions
        failed_day = GaugeMetricFamily(
            "connext_chain_transactions_failed_24h", "Transactions failed in the last 24 h."
        )
        failed_day.add_metric(
            [],
            OnchainTransaction.objects.filter(
                status=OnchainTransaction.Status.FAILED, updated_at__gte=timezone.now() - timedelta(days=1)
            ).count(),
        )
        yield failed_day
        head = selectors.chain_head()
        up = GaugeMetricFamily("connext_chain_up", "1 when the chain's RPC answered this scrape.")
        up.add_metric([], 0 if head is None else 1)
        yield up
        lag = GaugeMetricFamily(
            "connext_watcher_lag_blocks", "Blocks a chain watcher is behind the head.", labels=["watcher"]
        )
        if head is not None:
            for cursor in selectors.watcher_cursors():
                lag.add_metric([cursor.name], max(0, head - cursor.block_number))
        yield lag
        wallet = GaugeMetricFamily(
            "connext_hot_wallet_balance",
            "The node account's balance per asset (whole units).",
            labels=["asset"],
        )
        low = GaugeMetricFamily(
            "connext_hot_wallet_low",
            "1 when the balance is under DASHBOARD_HOT_WALLET_MIN_*.",
            labels=["asset"],
        )
        hot = selectors.hot_wallet() if head is not None else None
        for entry in hot[1] if hot else []:
            _add(wallet, [entry.asset_id], entry.balance, entry.asset_id)
            low.add_metric([entry.asset_id], 1 if entry.low else 0)
        yield wallet
        yield low


def _allowed(request: HttpRequest) -> bool:
    user = request.user
    if user.is_authenticated and user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return (
        bool(token)
        and given.startswith("Bearer ")
        and hmac.compare_digest(given[7:].encode(), token.encode())
    )


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        response = HttpResponse(
            "A staff session or the metrics bearer token is required.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    records = CollectorRegistry()
    records.register(NodeRecords())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
        live = generate_latest(processes)
    else:
        live = generate_latest(REGISTRY)
    with selectors.custom_plans():
        counted = generate_latest(records)  # NodeRecords' aggregate queries run here
    return HttpResponse(live + counted, content_type=CONTENT_TYPE_LATEST)
