"""seed_demo's live activity against a live node: what it reports is what the node recorded."""

from __future__ import annotations

import pytest

from channels_app.models import Dispute, Payment, Withdrawal
from dashboard import demo
from tests.dashboard.test_browser import node  # noqa: F401 - a live node of this module's own
from tests.integration.conftest import node_database_url  # noqa: F401
from tests.support.processes import wait_until

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]


def test_seed_demo_makes_payments_refunds_withdrawals_and_a_dispute(node, anvil_url):  # noqa: F811
    counts = demo.seed_live(node_url=node, chain_url=anvil_url, users=3, payments=40, say=lambda _: None)

    assert (counts.users, counts.cancelled, counts.withdrawals, counts.disputes) == (3, 1, 2, 1)
    assert counts.completed + counts.refused == 39
    wait_until(
        lambda: Payment.objects.filter(status=Payment.Status.COMPLETED).count() == counts.completed,
        timeout=60,
        what="every sent payment completed",
    )
    assert Payment.objects.filter(status__in=["failed", "refunded"]).count() == 1
    assert Withdrawal.objects.count() == 2
    wait_until(lambda: Dispute.objects.exists(), timeout=60, what="the user's dispute seen by the node")
