"""The dashboard's own rows: a history of the value the node holds, which no other table keeps.

Balances live in each channel's latest state, so the past of "how much collateral did the node have"
is gone once the next state lands. A beat task writes what the overview shows (`value_locked`) every
few minutes; the collateral chart reads these rows.
"""

from __future__ import annotations

from django.db import models

WEI = {"max_digits": 78, "decimal_places": 0}


class ValueSnapshot(models.Model):
    """Per asset at one moment: the node's and the users' balances over the open channels' latest
    states, what active transfers locked, and what the channels hold on chain."""

    taken_at = models.DateTimeField(db_index=True)
    asset_id = models.CharField(max_length=42)
    node = models.DecimalField(**WEI)
    users = models.DecimalField(**WEI)
    locked = models.DecimalField(**WEI)
    on_chain = models.DecimalField(**WEI)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["taken_at", "asset_id"], name="one_snapshot_per_asset")
        ]

    def __str__(self) -> str:
        return f"{self.asset_id} at {self.taken_at:%Y-%m-%d %H:%M}"
