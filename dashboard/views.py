"""The dashboard's pages: server-rendered, staff only, usable without JavaScript.

Each page parses its query with a form, reads through `dashboard.selectors` and renders; the two
actions (a channel's rebalance profile, a dispute) call the node's services.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from channels_app import chain
from channels_app.services import collateral, watchtower
from channels_app.services.errors import ServiceError
from dashboard import filters, selectors

View = Callable[..., HttpResponse]
CHAIN_DOWN = "The node cannot read the chain right now; nothing changed. Retry shortly."


def staff_required(view: View) -> View:
    """Anonymous: to the login page. Logged in but not staff: 403."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("dashboard:login"))
        if not request.user.is_staff:
            raise PermissionDenied("The dashboard is for the node's staff.")
        if request.method != "GET":
            return view(request, *args, **kwargs)  # actions: the services' own transactions
        with selectors.custom_plans():
            return view(request, *args, **kwargs)

    return guarded


def _page(rows: Any, form: filters.PageForm, default_size: int = 50) -> Page:
    return Paginator(rows, form.page_size(default_size)).get_page(form.page_number())


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], *, valid: bool = True
) -> HttpResponse:
    context = {"query": _query_without_page(request), **context}
    return render(request, f"dashboard/{template}", context, status=200 if valid else 400)


def overview_context(now: datetime) -> dict[str, Any]:
    windows = selectors.payment_windows(now=now)
    return {
        "channels_by_status": selectors.channels_by_status(),
        "value_locked": selectors.value_locked(),
        "hot_wallet": selectors.hot_wallet(),
        "windows": windows,
        "in_flight": selectors.payments_in_flight(),
        "open_disputes": selectors.open_disputes_count(),
        "swaps": selectors.swap_summary(now=now),
        "swap_exposure": selectors.swap_exposure_rows(),
    }


@require_GET
@staff_required
def overview(request: HttpRequest) -> HttpResponse:
    series = filters.SeriesForm(request.GET)
    valid = series.is_valid()
    window = (series.cleaned_data.get("window") if valid else None) or "7d"
    context = overview_context(timezone.now())
    return _render(
        request,
        "overview.html",
        {**context, "series_form": series, "window": window, "windows_choices": list(filters.WINDOW_CHOICES)},
        valid=valid,
    )


@require_GET
@staff_required
def channel_list(request: HttpRequest) -> HttpResponse:
    form = filters.ChannelFilterForm(request.GET)
    if not form.is_valid():
        return _render(request, "channels.html", {"form": form, "page": None}, valid=False)
    page = _page(selectors.channels_filtered(form.to_filter()), form)
    return _render(request, "channels.html", {"form": form, "page": page, "asset": form.to_filter().asset_id})


@require_GET
@staff_required
def channel_page(request: HttpRequest, address: str) -> HttpResponse:
    form = filters.ChannelPageForm(request.GET)
    valid = form.is_valid()
    detail = selectors.channel_detail(address=address, updates_page=form.page_number() if valid else 1)
    if detail is None:
        raise Http404("No such channel.")
    return _render(
        request,
        "channel.html",
        {
            "detail": detail,
            "profile_form": filters.RebalanceProfileForm(),
            "dispute_form": filters.DisputeForm(),
            "head": selectors.chain_head(),
            "page_form": form,
        },
        valid=valid,
    )


def _back_to_channel(address: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("dashboard:channel", args=[address]))


def _channel_action(
    request: HttpRequest,
    address: str,
    form_class: type[forms.Form],
    act: Callable[[selectors.ChannelDetail, forms.Form], str],
) -> HttpResponse:
    """A channel page's action: its form checked (the page again, with the errors, when it is not),
    then `act`, whose answer is said on the channel's page, as is a service's refusal or a chain that
    does not answer."""
    detail = selectors.channel_detail(address=address)
    if detail is None:
        raise Http404("No such channel.")
    form = form_class(request.POST)
    if not form.is_valid():
        context = {
            "detail": detail,
            "profile_form": filters.RebalanceProfileForm(),
            "dispute_form": filters.DisputeForm(),
            ("profile_form" if form_class is filters.RebalanceProfileForm else "dispute_form"): form,
        }
        return _render(request, "channel.html", context, valid=False)
    try:
        done = act(detail, form)
    except ServiceError as exc:
        messages.error(request, exc.message)
    except chain.READ_ERRORS:
        messages.error(request, CHAIN_DOWN)
    else:
        messages.success(request, done)
    return _back_to_channel(detail.channel.address)


@require_POST
@staff_required
def channel_set_profile(request: HttpRequest, address: str) -> HttpResponse:
    def act(detail: selectors.ChannelDetail, form: forms.Form) -> str:
        collateral.rebalance_profile_set(
            channel_id=detail.channel.pk,
            asset_id=form.cleaned_data["asset"],
            collateralize_threshold=int(form.cleaned_data["collateralize_threshold"]),
            target=int(form.cleaned_data["target"]),
            reclaim_threshold=int(form.cleaned_data["reclaim_threshold"]),
        )
        return "Rebalance profile saved; the node reconciles the channel's collateral."

    return _channel_action(request, address, filters.RebalanceProfileForm, act)


@require_POST
@staff_required
def channel_dispute(request: HttpRequest, address: str) -> HttpResponse:
    def act(detail: selectors.ChannelDetail, form: forms.Form) -> str:
        reason = form.cleaned_data["reason"] or "no reason given"
        dispute = watchtower.dispute_start(
            channel_id=detail.channel.pk, reason=f"operator {request.user} disputed the channel: {reason}"
        )
        return f"Dispute {dispute.pk} is {dispute.status}."

    return _channel_action(request, address, filters.DisputeForm, act)


@require_GET
@staff_required
def payment_list(request: HttpRequest) -> HttpResponse:
    form = filters.PaymentFilterForm(request.GET)
    stuck, stuck_total = selectors.stuck_payments(older_than=_stuck_before(), limit=20)
    context: dict[str, Any] = {
        "form": form,
        "page": None,
        "stuck": stuck,
        "stuck_total": stuck_total,
        "stuck_after": settings.DASHBOARD_STUCK_AFTER_SECONDS,
    }
    if not form.is_valid():
        return _render(request, "payments.html", context, valid=False)
    context["page"] = _page(selectors.payments_filtered(form.to_filter()), form)
    return _render(request, "payments.html", context)


def _stuck_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.DASHBOARD_STUCK_AFTER_SECONDS)


@require_GET
@staff_required
def stuck_list(request: HttpRequest) -> HttpResponse:
    stuck, total = selectors.stuck_payments(older_than=_stuck_before(), limit=500)
    return _render(
        request,
        "stuck.html",
        {"stuck": stuck, "stuck_total": total, "stuck_after": settings.DASHBOARD_STUCK_AFTER_SECONDS},
    )


@require_GET
@staff_required
def onchain(request: HttpRequest) -> HttpResponse:
    form = filters.TransactionFilterForm(request.GET)
    head = selectors.chain_head()
    context: dict[str, Any] = {
        "form": form,
        "page": None,
        "head": head,
        "by_status": selectors.transactions_by_status(),
        "gas": selectors.gas_per_day(since=timezone.now() - timedelta(days=30)),
        "cursors": [
            (cursor, None if head is None else head - cursor.block_number)
            for cursor in selectors.watcher_cursors()
        ],
        "failed": list(selectors.transactions_filtered(selectors.TransactionFilter(status="failed"))[:20]),
    }
    if not form.is_valid():
        return _render(request, "onchain.html", context, valid=False)
    context["page"] = _page(selectors.transactions_filtered(form.to_filter()), form)
    return _render(request, "onchain.html", context)


@require_GET
@staff_required
def dispute_list(request: HttpRequest) -> HttpResponse:
    form = filters.DisputeFilterForm(request.GET)
    if not form.is_valid():
        return _render(request, "disputes.html", {"form": form, "page": None}, valid=False)
    disputes = selectors.disputes_filtered(active_only=form.cleaned_data.get("active") == "true")
    page = _page(disputes, form, default_size=20)
    # The windows run on chain time; with the chain down the bar is left out rather than guessed.
    return _render(request, "disputes.html", {"form": form, "page": page, "now": selectors.chain_now()})
