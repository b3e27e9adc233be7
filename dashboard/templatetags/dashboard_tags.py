"""How the pages write amounts, assets and long hex values."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.http import QueryDict

from dashboard import tokens

register = template.Library()


@register.filter
def units(value: Any, asset_id: str | None = None) -> str:
    """Base units as a decimal number of whole units of `asset_id` (ETH when not given), every
    significant digit kept; a token of unknown decimals stays in base units (see `dashboard.tokens`)."""
    if value is None or value == "":
        return "—"
    return tokens.scaled(int(value), asset_id)


@register.filter
def asset(value: str) -> str:
    if not value:
        return "—"
    return tokens.describe(value).label


@register.filter
def short(value: str | None) -> str:
    if not value:
        return "—"
    return value if len(value) <= 14 else f"{value[:8]}…{value[-4:]}"


@register.filter
def percent(value: Any) -> str:
    return "—" if value is None else f"{value * 100:.2f} %"


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


@register.filter
def get(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key)


@register.simple_tag
def sort_query(query: str, column: str, current: str | None, order: str | None) -> str:
    """The query string of the same view sorted by `column` (again on the current column: reversed)."""
    params = QueryDict(query, mutable=True)
    params["sort"] = column
    params["order"] = "asc" if column == (current or "activity") and (order or "desc") == "desc" else "desc"
    return params.urlencode()


@register.filter
def timestamp(value: int | None) -> str:
    """Unix seconds (chain time) as a UTC date and time."""
    from datetime import UTC, datetime

    return "—" if value is None else datetime.fromtimestamp(int(value), UTC).strftime("%Y-%m-%d %H:%M:%S")


@register.simple_tag
def window_percent(dispute: Any, now: int) -> int:
    """How far through its whole window a dispute round is at chain time `now`, 0 to 100. All in chain
    time: the contract set consensus = start + timeout and defund = start + 2 timeout."""
    consensus, defund = dispute.consensus_expiry, dispute.defund_expiry
    if not consensus or not defund or defund <= consensus:
        return 100
    start = 2 * int(consensus) - int(defund)
    return max(0, min(100, (now - start) * 100 // (int(defund) - start)))


@register.simple_tag
def fee_cap(tx: Any) -> str:
    """Gas used × the mined attempt's max fee per gas: what the transaction cost at most."""
    cap = getattr(tx, "max_fee_per_gas", None)
    if tx.gas_used is None or cap is None:
        return "—"
    return units(int(tx.gas_used) * int(cap))


@register.simple_tag
def confirmations(tx: Any, head: int | None) -> str:
    if not isinstance(head, int) or tx.block_number is None:  # the chain did not answer (or not asked)
        return "—"
    return str(max(0, head - int(tx.block_number) + 1))
