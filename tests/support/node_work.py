"""What the node's workers do between requests, run in the test process: send and track transactions,
watch the chain, reconcile every channel; and test wallets answering the node's proposals."""

from __future__ import annotations

from channels_app.models import Channel, OnchainTransaction, RebalanceProfile
from channels_app.services import node_actions, transactions, watcher
from connext.chain import channel_reads
from tests.support.wallet import ETH, Wallet

IN_FLIGHT = (OnchainTransaction.Status.QUEUED, OnchainTransaction.Status.PENDING)


def run_node_work(*wallets: Wallet, rounds: int = 12) -> None:
    """Run the node's work and let each wallet countersign what the node proposes, until quiet."""
    for _ in range(rounds):
        for queued in OnchainTransaction.objects.filter(status=OnchainTransaction.Status.QUEUED):
            transactions.transaction_send(transaction_id=queued.pk)  # what `.delay` after commit does
        transactions.transactions_track_all()
        for channel_id in watcher.deposits_watch():
            node_actions.channel_reconcile(channel_id=channel_id)
        watcher.logs_watch()
        for channel in Channel.objects.all():
            node_actions.channel_reconcile(channel_id=channel.pk)
        answered = False
        for wallet in wallets:
            if wallet.proposal() is not None:
                totals = channel_reads.deposit_totals(
                    wallet.w3, wallet.state.channel_address, ETH, block="latest"
                )
                wallet.countersign_proposal(deposits={ETH: (totals.node, totals.user)})
                answered = True
        if not answered and not OnchainTransaction.objects.filter(status__in=IN_FLIGHT).exists():
            return


def queued_reconciles() -> list[int]:
    """The channels whose reconcile task waits in the Celery broker (no worker runs in these tests)."""
    import ast
    import json

    import redis
    from django.conf import settings

    queued = []
    for raw in redis.Redis.from_url(settings.CELERY_BROKER_URL).lrange("celery", 0, -1):
        headers = json.loads(raw)["headers"]
        if headers["task"] == "channels_app.tasks.channel_reconcile":
            queued.append(ast.literal_eval(headers["argsrepr"])[0])
    return queued


def set_profile(wallet: Wallet, *, collateralize: int, target: int, reclaim: int) -> Channel:
    """The operator's ETH rebalance profile for `wallet`'s channel; the channel."""
    channel = Channel.objects.get(address=wallet.state.channel_address)
    RebalanceProfile.objects.create(
        channel=channel,
        asset_id=ETH,
        collateralize_threshold=collateralize,
        target=target,
        reclaim_threshold=reclaim,
    )
    return channel
