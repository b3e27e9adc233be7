"""Making a swap possible before it is signed: the node deposits what a swap would pay out when it
holds too little of that asset in the channel (`POST /api/swap/prepare`).

The protocol core refuses a swap the node cannot pay, so the client asks first. The swap is checked
as if it were sent (pair, fresh price, the user's balance, the offer and tolerance, the limits, the
exposure), so the node only locks collateral for a swap it would countersign: a user who holds what it
gives, for at most one swap's worth, one deposit in flight per channel and asset (`collateral`), and
collateral left unused comes back after `COLLATERAL_IDLE_SECONDS` like any other.
"""

from __future__ import annotations

from django.db import transaction

from channels_app.models import OnchainTransaction
from channels_app.services import channels, collateral, swaps


def swap_prepare(
    *, user: str, channel_address: str, terms: swaps.Terms
) -> tuple[int, OnchainTransaction | None]:
    """Check `terms` against the node's offer and the channel's latest state; when the node holds less
    than the swap takes, deposit the shortfall plus the asset's usual target. Returns (the shortfall,
    the deposit transaction or None when one is already on its way or nothing is short)."""
    quote = swaps.quote_for(terms.give_asset, terms.take_asset)
    with transaction.atomic():
        channel = channels.locked_channel(channel_address, user)
        state = channels.latest_state(channel)
        swaps.check_locked(channel, state, terms, quote)
        short = swaps.node_short(state, terms)
    if not short:
        return 0, None
    _, target, _ = collateral.rebalance_profile(channel, terms.take_asset)
    held = collateral.node_balance(state, terms.take_asset)
    record = collateral.collateral_request(
        channel_id=channel.pk,
        asset_id=terms.take_asset,
        amount=held + short + target,
        for_payment=True,
    )
    return short, record
