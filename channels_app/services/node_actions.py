"""What the node owes a channel after anything changed in it, done in order, each step idempotent.

`channel_reconcile` runs after every doubly signed update, after the node's transactions settle and
from a slow periodic sweep; running it twice, or in two processes at once, does the same thing once
(row locks, open-proposal checks and in-flight transaction checks).
"""

from __future__ import annotations

import logging

from channels_app import network
from channels_app.models import Channel, Transfer, Withdrawal
from channels_app.services import channels, collateral, payments, watchtower, withdrawals
from connext.protocol import serialization
from connext.protocol.types import DefinitionKind

logger = logging.getLogger(__name__)


def channel_reconcile(*, channel_id: int) -> None:
    # 1. Payments touching this channel move on (possibly proposing in the other channel; a payment
    #    from a channel in dispute is recorded and failed, never forwarded).
    payments.payments_sync(channel_id=channel_id)
    channel = Channel.objects.get(pk=channel_id)
    if channel.status != Channel.Status.OPEN:
        return
    net = network.network()

    #    The node's own withdrawals the user resolved are sent; that needs no proposal either.
    resolved_node_withdraws = Transfer.objects.filter(
        channel=channel,
        kind=DefinitionKind.WITHDRAW.value,
        initiator=net.node_address,
        status=Transfer.Status.RESOLVED,
    ).exclude(pk__in=Withdrawal.objects.values("transfer_id"))
    for transfer in resolved_node_withdraws:
        withdrawals.withdrawal_submit_for_node(transfer_pk=transfer.pk)

    if channels.proposal_remind(channel_id=channel_id):
        return  # everything below needs a new proposal: wait for the user to answer the open one

    # 1b. A transfer the chain paid out after a dispute leaves the state before anything else.
    if watchtower.channel_resume_propose(channel_id=channel_id):
        return

    # 2. Payments first: settle what the receiver decided (frees the node's money), then forward.
    if payments.payments_settle_upstream(channel_id=channel_id) or payments.payments_forward(
        channel_id=channel_id
    ):
        return

    # 3. The user's withdrawals waiting for the node's signature.
    state = channels.latest_state(channel)
    for transfer in state.transfers:
        if (
            net.definitions.get(transfer.definition) is DefinitionKind.WITHDRAW
            and transfer.responder == net.node_address
        ):
            withdrawals.withdrawal_resolve_for_user(
                channel_id=channel_id, transfer_id=serialization.hex_bytes(transfer.transfer_id)
            )
            return

    # 4. Credit the node's confirmed deposits, then 5. keep collateral inside the profile.
    if collateral.node_deposits_credit(channel_id=channel_id):
        return
    collateral.collateral_rebalance(channel_id=channel_id)
