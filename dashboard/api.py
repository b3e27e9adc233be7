"""The dashboard's JSON API under /api/dashboard/: what each page shows, for staff sessions.

Logged out: 401 `not_authenticated`; logged in without staff status: 403 `permission_denied`; the
node's one error shape throughout. Query parameters are the pages' (an empty one is refused here,
unlike in the pages' forms); a page is `page` (from 1) of `per_page` (1 to 200) rows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core.paginator import Paginator
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from web3 import Web3

from channels_app.api.errors import ApiError
from channels_app.api.schema import refusals
from channels_app.services import collateral, watchtower
from dashboard import filters, selectors, shapes
from dashboard.views import overview_context


class StaffSession(SessionAuthentication):
    """Django's session login; a request without one is answered 401 (not 403, DRF's default for sessions)."""

    def authenticate_header(self, request: Request) -> str:
        return 'Session realm="dashboard"'


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "dashboard.api.StaffSession"
    name = "staffSession"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "A Django session of a staff account (log in at /dashboard/login/); "
            "requests that change something also need the CSRF token (X-CSRFToken).",
        }


class StaffApiView(APIView):
    authentication_classes = [StaffSession]
    permission_classes = [IsAdminUser]
    throttle_classes: list[Any] = []  # the per-IP limit of every /api/ request still applies

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.method != "GET":
            return super().dispatch(request, *args, **kwargs)  # actions: the services' own transactions
        with selectors.custom_plans():
            return super().dispatch(request, *args, **kwargs)


def _form(form_class: type[Any], request: Request) -> Any:
    empty = sorted(name for name, value in request.query_params.items() if value == "")
    if empty:
        raise exceptions.ValidationError({name: ["Given empty; leave it out instead."] for name in empty})
    form = form_class(request.query_params)
    if not form.is_valid():
        raise exceptions.ValidationError(
            {
                name: [error["message"] for error in errors]
                for name, errors in form.errors.get_json_data().items()
            }
        )
    return form


def _paged(rows: Any, form: filters.PageForm, shape: Any) -> dict[str, Any]:
    page = Paginator(rows, form.page_size()).get_page(form.page_number())
    return {
        "page": page.number,
        "pages": page.paginator.num_pages,
        "count": page.paginator.count,
        "results": [shape(row) for row in page.object_list],
    }


def _parameters(form_class: type[Any]) -> list[OpenApiParameter]:
    parameters = []
    for name, field in form_class.base_fields.items():
        kind: type = int if isinstance(field, forms.IntegerField) else str
        enum = [value for value, _ in getattr(field, "choices", []) if value] or None
        description = str(field.label or name.replace("_", " "))
        parameters.append(
            OpenApiParameter(name, kind, OpenApiParameter.QUERY, enum=enum, description=description)
        )
    return parameters


def _answer(name: str, **fields: Any) -> Any:
    return inline_serializer(name, fields)


_PAGE = {
    "page": serializers.IntegerField(),
    "pages": serializers.IntegerField(),
    "count": serializers.IntegerField(),
    "results": serializers.ListField(child=serializers.DictField()),
}
_ADDRESS = OpenApiParameter("address", str, OpenApiParameter.PATH, pattern="^0x[0-9a-fA-F]{40}$")
_READ_REFUSALS = refusals(400, 401, 403)


class OverviewView(StaffApiView):
    """Channels by status, value locked per asset, the hot wallet, payments per window, in flight, disputes,
    swaps per direction and the node's swap exposure per asset."""

    @extend_schema(
        operation_id="dashboard_overview",
        responses={
            200: _answer(
                "DashboardOverview",
                channelsByStatus=serializers.DictField(child=serializers.IntegerField()),
                valueLocked=serializers.ListField(child=serializers.DictField()),
                hotWallet=serializers.DictField(allow_null=True),
                payments=serializers.ListField(child=serializers.DictField()),
                inFlight=serializers.ListField(child=serializers.DictField()),
                openDisputes=serializers.IntegerField(),
                swaps=serializers.ListField(
                    child=serializers.DictField(),
                    help_text="Per direction, the last day's and all swaps: count, given, taken, spread earned.",
                ),
                swapExposure=serializers.ListField(
                    child=serializers.DictField(),
                    help_text="Per asset: paid out in swaps less taken in (may be negative), and maxExposure.",
                ),
            ),
            **refusals(401, 403),
        },
    )
    def get(self, request: Request) -> Response:
        return Response(shapes.overview_json(overview_context(timezone.now())))


class SeriesView(StaffApiView):
    """The charts: payments per hour or day (count, failed, completed volume per asset) and the
    value history (the node's and the users' balances, on chain; per asset), over a window (24h, 7d: per hour; 30d, 90d: per day)."""

    @extend_schema(
        operation_id="dashboard_series",
        parameters=_parameters(filters.SeriesForm),
        responses={
            200: _answer(
                "DashboardSeries",
                window=serializers.CharField(),
                bucket=serializers.CharField(),
                payments=serializers.ListField(child=serializers.DictField()),
                collateral=serializers.ListField(child=serializers.DictField()),
            ),
            **_READ_REFUSALS,
        },
    )
    def get(self, request: Request) -> Response:
        form = _form(filters.SeriesForm, request)
        since, until, bucket, window = form.span(timezone.now())
        points = selectors.payment_series(since=since, until=until, bucket=bucket)
        history = selectors.collateral_series(since=since, until=until, bucket=bucket)
        return Response(shapes.series_json(window, bucket, points, history))


class ChannelListView(StaffApiView):
    """Channels, filtered and sorted; balances are of `asset` (ETH by default)."""

    @extend_schema(
        operation_id="dashboard_channels",
        parameters=_parameters(filters.ChannelFilterForm),
        responses={200: _answer("DashboardChannelPage", **_PAGE), **_READ_REFUSALS},
    )
    def get(self, request: Request) -> Response:
        form = _form(filters.ChannelFilterForm, request)
        return Response(_paged(selectors.channels_filtered(form.to_filter()), form, shapes.channel_row_json))


def _detail(address: str, updates_page: int = 1) -> selectors.ChannelDetail:
    if filters.ADDRESS.regex.match(address) is None:
        raise exceptions.ValidationError({"address": ["Expected an address: 0x and 40 hex digits."]})
    detail = selectors.channel_detail(address=address, updates_page=updates_page)
    if detail is None:
        raise ApiError("unknown_channel", "No channel at this address.", http_status=404)
    return detail


class ChannelView(StaffApiView):
    """One channel: balances and collateral per asset against its profile, the latest doubly signed
    state with both signatures, its latest updates, transfers, withdrawals, disputes, transactions."""

    @extend_schema(
        operation_id="dashboard_channel",
        parameters=[_ADDRESS, *_parameters(filters.ChannelPageForm)],
        responses={
            200: _answer(
                "DashboardChannel",
                channel=serializers.DictField(),
                assets=serializers.ListField(child=serializers.DictField()),
                latest=serializers.DictField(),
                updateCount=serializers.IntegerField(),
                updates=serializers.ListField(child=serializers.DictField()),
                transfers=serializers.ListField(child=serializers.DictField()),
                withdrawals=serializers.ListField(child=serializers.DictField()),
                disputes=serializers.ListField(child=serializers.DictField()),
                transactions=serializers.ListField(child=serializers.DictField()),
            ),
            **refusals(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, address: str) -> Response:
        form = _form(filters.ChannelPageForm, request)
        detail = _detail(address, updates_page=form.page_number())
        return Response(shapes.channel_detail_json(detail, selectors.chain_head()))


_WEI_TEXT = serializers.RegexField(r"^[0-9]{1,78}$", help_text="wei, as decimal digits")


class ProfileView(StaffApiView):
    """Set the channel's rebalance profile for an asset (replaces any earlier one)."""

    class InputSerializer(serializers.Serializer):
        assetId = serializers.RegexField(r"^0x[0-9a-fA-F]{40}$")
        collateralizeThreshold = _WEI_TEXT
        target = _WEI_TEXT
        reclaimThreshold = _WEI_TEXT

        class Meta:
            ref_name = "DashboardProfileInput"

    @extend_schema(
        operation_id="dashboard_channel_profile",
        parameters=[_ADDRESS],
        request=InputSerializer,
        responses={
            200: _answer(
                "DashboardProfile",
                assetId=serializers.CharField(),
                collateralizeThreshold=serializers.CharField(),
                target=serializers.CharField(),
                reclaimThreshold=serializers.CharField(),
            ),
            **refusals(400, 401, 403, 404),
        },
    )
    def post(self, request: Request, address: str) -> Response:
        detail = _detail(address)
        given = self.InputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        profile = collateral.rebalance_profile_set(
            channel_id=detail.channel.pk,
            asset_id=Web3.to_checksum_address(given.validated_data["assetId"]),
            collateralize_threshold=int(given.validated_data["collateralizeThreshold"]),
            target=int(given.validated_data["target"]),
            reclaim_threshold=int(given.validated_data["reclaimThreshold"]),
        )
        return Response(
            {
                "assetId": profile.asset_id,
                "collateralizeThreshold": str(int(profile.collateralize_threshold)),
                "target": str(int(profile.target)),
                "reclaimThreshold": str(int(profile.reclaim_threshold)),
            }
        )


class DisputeView(StaffApiView):
    """Take the channel to the chain with the node's latest doubly signed state (it freezes off chain);
    again while a round is active returns that round."""

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=200)

        class Meta:
            ref_name = "DashboardDisputeInput"

    @extend_schema(
        operation_id="dashboard_channel_dispute",
        parameters=[_ADDRESS],
        request=InputSerializer,
        responses={
            200: _answer("DashboardDispute", dispute=serializers.DictField()),
            **refusals(400, 401, 403, 404, 409, 503),
        },
    )
    def post(self, request: Request, address: str) -> Response:
        detail = _detail(address)
        given = self.InputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        dispute = watchtower.dispute_start(
            channel_id=detail.channel.pk,
            reason=f"operator {request.user} disputed the channel: {given.validated_data['reason']}",
        )
        fresh = selectors.disputes_filtered(active_only=False).get(pk=dispute.pk)
        return Response({"dispute": shapes.dispute_json(fresh)})


class PaymentListView(StaffApiView):
    """Payments, newest first, filtered."""

    @extend_schema(
        operation_id="dashboard_payments",
        parameters=_parameters(filters.PaymentFilterForm),
        responses={200: _answer("DashboardPaymentPage", **_PAGE), **_READ_REFUSALS},
    )
    def get(self, request: Request) -> Response:
        form = _form(filters.PaymentFilterForm, request)
        return Response(_paged(selectors.payments_filtered(form.to_filter()), form, shapes.payment_json))


class StuckPaymentsView(StaffApiView):
    """Payments pending or forwarded for longer than DASHBOARD_STUCK_AFTER_SECONDS, oldest first (at
    most 500), each with the reason it waits; `count` is all of them."""

    @extend_schema(
        operation_id="dashboard_payments_stuck",
        responses={
            200: _answer(
                "DashboardStuckPayments",
                stuckAfterSeconds=serializers.IntegerField(),
                count=serializers.IntegerField(),
                results=serializers.ListField(child=serializers.DictField()),
            ),
            **refusals(401, 403),
        },
    )
    def get(self, request: Request) -> Response:
        older_than = timezone.now() - timedelta(seconds=settings.DASHBOARD_STUCK_AFTER_SECONDS)
        stuck, total = selectors.stuck_payments(older_than=older_than, limit=500)
        return Response(
            {
                "stuckAfterSeconds": settings.DASHBOARD_STUCK_AFTER_SECONDS,
                "count": total,
                "results": [{**shapes.payment_json(item.payment), "reason": item.reason} for item in stuck],
            }
        )


class OnchainView(StaffApiView):
    """The node's transactions (filtered, paged), per status, gas per day and reason over 30 days, the
    chain watchers' cursors and their lag behind the chain's head."""

    @extend_schema(
        operation_id="dashboard_onchain",
        parameters=_parameters(filters.TransactionFilterForm),
        responses={
            200: _answer(
                "DashboardOnchain",
                **{
                    **_PAGE,
                    "head": serializers.IntegerField(allow_null=True),
                    "byStatus": serializers.DictField(child=serializers.IntegerField()),
                    "gasPerDay": serializers.ListField(child=serializers.DictField()),
                    "cursors": serializers.ListField(child=serializers.DictField()),
                },
            ),
            **_READ_REFUSALS,
        },
    )
    def get(self, request: Request) -> Response:
        form = _form(filters.TransactionFilterForm, request)
        head = selectors.chain_head()
        page = _paged(
            selectors.transactions_filtered(form.to_filter()),
            form,
            lambda tx: shapes.transaction_json(tx, head),
        )
        gas = selectors.gas_per_day(since=timezone.now() - timedelta(days=30))
        return Response(
            {
                **page,
                "head": head,
                "byStatus": selectors.transactions_by_status(),
                "gasPerDay": [
                    {
                        "day": row["day"].date().isoformat(),
                        "reason": row["reason"],
                        "count": row["count"],
                        "gasUsed": str(row["gas"]),
                        "feeAtMost": str(row["fee"]),
                    }
                    for row in gas
                ],
                "cursors": [
                    {
                        "name": cursor.name,
                        "chainId": cursor.chain_id,
                        "block": cursor.block_number,
                        "lag": None if head is None else head - cursor.block_number,
                        "updatedAt": cursor.updated_at.isoformat(),
                    }
                    for cursor in selectors.watcher_cursors()
                ],
            }
        )


class DisputeListView(StaffApiView):
    """Dispute rounds, newest first, with their windows (chain time, unix seconds) and the node's actions."""

    @extend_schema(
        operation_id="dashboard_disputes",
        parameters=_parameters(filters.DisputeFilterForm),
        responses={200: _answer("DashboardDisputePage", **_PAGE), **_READ_REFUSALS},
    )
    def get(self, request: Request) -> Response:
        form = _form(filters.DisputeFilterForm, request)
        disputes = selectors.disputes_filtered(active_only=form.cleaned_data.get("active") == "true")
        return Response(_paged(disputes, form, shapes.dispute_json))
