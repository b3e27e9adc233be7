"""Query parameters of the dashboard's pages and API, parsed once into the selectors' filters.

A value that does not parse is an error for that field (the page shows it; the API answers 400
`invalid_input` with the fields). In the pages an empty field means "any": that is what a form
submits for a field left blank.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.validators import RegexValidator
from django.utils import timezone
from web3 import Web3

from channels_app.models import Channel, OnchainTransaction, Payment
from dashboard import selectors

ADDRESS = RegexValidator(r"^0x[0-9a-fA-F]{40}$", "Expected an address: 0x and 40 hex digits.")
ADDRESS_PREFIX = RegexValidator(
    r"^0x[0-9a-fA-F]{1,40}$", "Expected an address or its start: 0x and up to 40 hex digits."
)
PAYMENT_ID = RegexValidator(r"^0x[0-9a-fA-F]{64}$", "Expected a payment id: 0x and 64 hex digits.")
HASH_OR_ADDRESS = RegexValidator(
    r"^0x([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$", "Expected a transaction hash or a channel address."
)
WEI = RegexValidator(r"^[0-9]{1,78}$", "Expected a whole amount in wei, as decimal digits.")
KINDS = [("linked", "linked"), ("hashlock", "hashlock"), ("signed", "signed")]
PER_PAGE_MAX = 200


class Address(forms.CharField):
    """An address, checksummed (how the node stores them), so lookups use the indexes."""

    default_validators = [ADDRESS]

    def clean(self, value: Any) -> str:
        text = super().clean(value)
        return Web3.to_checksum_address(text) if text else text


def _blank(choices: Any) -> list[tuple[str, str]]:
    return [("", "any"), *choices]


class Moment(forms.Field):
    """A date (its midnight UTC) or an ISO 8601 date and time (UTC when it names no zone)."""

    default_error_messages = {"invalid": "Expected a date (2026-12-01) or an ISO 8601 date and time."}

    def __init__(self, *, end_of_day: bool = False, **kwargs: Any) -> None:
        self.end_of_day = end_of_day  # a bare date as an upper bound means the whole of that day
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> datetime | None:
        if value in (None, ""):
            return None
        text = str(value).strip()
        try:
            if len(text) == 10:
                day = datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time(), tzinfo=UTC)
                return day + timedelta(days=1) if self.end_of_day else day
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


class PageForm(forms.Form):
    page = forms.IntegerField(required=False, min_value=1)
    per_page = forms.IntegerField(required=False, min_value=1, max_value=PER_PAGE_MAX)

    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1

    def page_size(self, default: int = 50) -> int:
        return self.cleaned_data.get("per_page") or default


class ChannelFilterForm(PageForm):
    asset = Address(required=False)
    status = forms.ChoiceField(required=False, choices=_blank(Channel.Status.choices))
    q = forms.CharField(required=False, validators=[ADDRESS_PREFIX], label="user or channel address")
    min_user_balance = forms.CharField(required=False, validators=[WEI], label="user balance at least (wei)")
    active_since = Moment(required=False)
    idle_since = Moment(required=False, label="no update since")
    sort = forms.ChoiceField(
        required=False, choices=[(key, key.replace("_", " ")) for key in selectors.CHANNEL_SORTS]
    )
    order = forms.ChoiceField(required=False, choices=[("desc", "descending"), ("asc", "ascending")])

    def to_filter(self) -> selectors.ChannelFilter:
        data = self.cleaned_data
        return selectors.ChannelFilter(
            asset_id=data.get("asset") or selectors.ETH,
            status=data.get("status") or None,
            search=data.get("q") or None,
            min_user_balance=int(data["min_user_balance"]) if data.get("min_user_balance") else None,
            active_since=data.get("active_since"),
            idle_since=data.get("idle_since"),
            sort=data.get("sort") or "activity",
            descending=(data.get("order") or "desc") == "desc",
        )


class PaymentFilterForm(PageForm):
    status = forms.ChoiceField(required=False, choices=_blank(Payment.Status.choices))
    kind = forms.ChoiceField(required=False, choices=_blank(KINDS), label="definition")
    asset = Address(required=False)
    user = Address(required=False, label="sender or recipient")
    payment_id = forms.CharField(required=False, validators=[PAYMENT_ID])
    created_from = Moment(required=False)
    created_until = Moment(required=False, end_of_day=True)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("created_from"), data.get("created_until")
        if start is not None and end is not None and end <= start:
            self.add_error("created_until", "Must be after created_from.")
        return data

    def to_filter(self) -> selectors.PaymentFilter:
        data = self.cleaned_data
        return selectors.PaymentFilter(
            status=data.get("status") or None,
            kind=data.get("kind") or None,
            asset_id=data.get("asset") or None,
            user=data.get("user") or None,
            payment_id=data.get("payment_id") or None,
            created_from=data.get("created_from"),
            created_until=data.get("created_until"),
        )


class TransactionFilterForm(PageForm):
    status = forms.ChoiceField(required=False, choices=_blank(OnchainTransaction.Status.choices))
    reason = forms.ChoiceField(required=False, choices=_blank(OnchainTransaction.Reason.choices))
    q = forms.CharField(required=False, validators=[HASH_OR_ADDRESS], label="transaction hash or channel")

    def to_filter(self) -> selectors.TransactionFilter:
        data = self.cleaned_data
        return selectors.TransactionFilter(
            status=data.get("status") or None, reason=data.get("reason") or None, search=data.get("q") or None
        )


class DisputeFilterForm(PageForm):
    active = forms.ChoiceField(required=False, choices=[("", "all"), ("true", "active only")])


WINDOW_CHOICES: dict[str, tuple[timedelta, selectors.Bucket]] = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "hour"),
    "30d": (timedelta(days=30), "day"),
    "90d": (timedelta(days=90), "day"),
}


class SeriesForm(forms.Form):
    window = forms.ChoiceField(required=False, choices=[(key, key) for key in WINDOW_CHOICES])

    def span(self, now: datetime) -> tuple[datetime, datetime, selectors.Bucket, str]:
        """(since, until, bucket, window): the last bucket is the one now is in."""
        key = self.cleaned_data.get("window") or "7d"
        length, bucket = WINDOW_CHOICES[key]
        if bucket == "hour":
            until = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        else:
            until = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        return until - length, until, bucket, key


class RebalanceProfileForm(forms.Form):
    asset = Address()
    collateralize_threshold = forms.CharField(validators=[WEI])
    target = forms.CharField(validators=[WEI])
    reclaim_threshold = forms.CharField(validators=[WEI])


class DisputeForm(forms.Form):
    reason = forms.CharField(max_length=200, required=False)
    confirm = forms.BooleanField(
        required=True, label="I want to take this channel to the chain (it freezes off chain)"
    )


class ChannelPageForm(forms.Form):
    updates_page = forms.IntegerField(required=False, min_value=1)

    def page_number(self) -> int:
        return self.cleaned_data.get("updates_page") or 1
