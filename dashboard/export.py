"""CSV of the filtered payments or channels, streamed in chunks: an export of every row never sits
in memory whole. Amounts are whole wei; times are ISO 8601 UTC."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from channels_app.api.errors import error_body
from dashboard import filters, selectors
from dashboard.views import staff_required


class _Line:
    """csv.writer's file: hands back each written line instead of storing it."""

    def write(self, line: str) -> str:
        return line


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if value is None:
        return ""
    if isinstance(value, Decimal):  # wei
        return str(int(value))
    return value


def _lines(columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(columns)
    for row in rows:
        yield writer.writerow([_cell(value) for value in row])


def _csv(name: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(_lines(columns, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


def _invalid(form: filters.PageForm) -> JsonResponse:
    body = error_body("invalid_input", "The request has invalid fields.", fields=form.errors.get_json_data())
    return JsonResponse(body, status=400)


@require_GET
@staff_required
def payments_csv(request: HttpRequest) -> HttpResponse:
    """The payments table's filters (status, definition, asset, user, id, created_from/created_until)."""
    form = filters.PaymentFilterForm(request.GET)
    if not form.is_valid():
        return _invalid(form)
    return _csv("payments", selectors.PAYMENT_EXPORT_COLUMNS, selectors.payments_for_export(form.to_filter()))


@require_GET
@staff_required
def channels_csv(request: HttpRequest) -> HttpResponse:
    """The channels table's filters; balances are of the filter's asset (ETH by default)."""
    form = filters.ChannelFilterForm(request.GET)
    if not form.is_valid():
        return _invalid(form)
    return _csv("channels", selectors.CHANNEL_EXPORT_COLUMNS, selectors.channels_for_export(form.to_filter()))
