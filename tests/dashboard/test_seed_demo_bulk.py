"""seed_demo --bulk: rows for the dashboard at scale (no live node here: its records would mix in)."""

from __future__ import annotations

import io

import pytest

from channels_app.models import Payment
from dashboard import selectors
from dashboard.models import ValueSnapshot
from tests.channels_app.conftest import w3  # noqa: F401 - the node configured for the test's chain

pytestmark = [pytest.mark.chain, pytest.mark.django_db]


def test_seed_demo_bulk_rows_keep_the_channel_invariant_and_carry_real_signatures(w3):  # noqa: F811
    from django.core.management import call_command

    from channels_app.models import Channel, Transfer
    from connext.protocol import serialization, signing

    call_command("seed_demo", payments=0, bulk=[4, 30], stdout=io.StringIO())

    assert Payment.objects.count() == 30
    assert Transfer.objects.count() == 60
    assert Payment.objects.filter(receiver_transfer__isnull=True).count() == 0
    for channel in Channel.objects.all():
        state = serialization.channel_state_from_json(channel.latest_state)  # parses only valid states
        (node_side, user_side), (deposit_node, deposit_user) = state.balances[0], state.processed_deposits[0]
        assert node_side + user_side == deposit_node + deposit_user
        assert (
            signing.recover_signer(state, bytes.fromhex(channel.user_signature[2:])) == channel.user_address
        )
        assert (
            signing.recover_signer(state, bytes.fromhex(channel.node_signature[2:])) == channel.node_address
        )
    (value,) = selectors.value_locked()
    assert value.on_chain == value.off_chain
    # The value history ends where the channels are now, and never counts a channel before it exists.
    history = list(ValueSnapshot.objects.order_by("taken_at"))
    assert len(history) >= 30 * 24
    assert (int(history[-1].node), int(history[-1].users)) == (value.node, value.users)
    first_channel = Channel.objects.order_by("created_at").first()
    assert all(int(row.on_chain) == 0 for row in history if row.taken_at < first_channel.created_at)


def test_seed_demo_wants_two_users_at_least(w3):  # noqa: F811
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="at least 2"):
        call_command("seed_demo", users=1, stdout=io.StringIO())
