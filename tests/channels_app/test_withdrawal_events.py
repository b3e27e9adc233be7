"""What the user hears about a withdrawal, whichever worker notices its execution first."""

from __future__ import annotations

import pytest
from web3 import Web3

from channels_app import realtime
from channels_app.models import BlockCursor, Channel, OnchainTransaction
from channels_app.services import node_actions, transactions, watcher
from connext.chain import channel_reads
from tests.channels_app.conftest import FUNDER_KEY
from tests.support.wallet import Wallet

pytestmark = pytest.mark.django_db
E = 10**18


@pytest.mark.parametrize("start", ["genesis", "after the withdrawal"])
def test_a_withdrawal_seen_in_the_logs_before_its_transaction_settles_is_confirmed_with_its_hash(
    client, w3, monkeypatch, settings, start
):
    """`CHAIN_START_BLOCK` is where the watcher's first scan begins: a log before it is never read."""
    wallet = Wallet(client=client, w3=w3)
    wallet.log_in()
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    wallet.deposit_update()
    wallet.withdraw_update(E // 4, Web3().eth.account.create().address)
    node_actions.channel_reconcile(channel_id=Channel.objects.get().pk)
    wallet.countersign_proposal()
    withdraw_tx = OnchainTransaction.objects.get(reason=OnchainTransaction.Reason.USER_WITHDRAWAL)
    for _ in range(4):  # deploy, then the withdraw (sent once the deployment is mined); anvil mines at once
        for queued in OnchainTransaction.objects.filter(status=OnchainTransaction.Status.QUEUED):
            transactions.transaction_send(transaction_id=queued.pk)
        withdraw_tx.refresh_from_db()
        if withdraw_tx.status == OnchainTransaction.Status.PENDING:
            break
        transactions.transactions_track_all()
    assert withdraw_tx.status == OnchainTransaction.Status.PENDING  # mined, not yet settled by the tracker
    mined_hash = withdraw_tx.attempts.get().hash
    pushed: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        realtime, "push_event_on_commit", lambda group, event, payload: pushed.append((event, payload))
    )

    if start == "after the withdrawal":
        settings.CHAIN_START_BLOCK = int(w3.eth.block_number) + 1
        w3.provider.make_request("anvil_mine", [hex(3)])

    watcher.logs_watch()

    heard = [(event, payload["status"], payload["transactionHash"]) for event, payload in pushed]
    if start == "genesis":
        assert heard == [("withdrawal.confirmed", "confirmed", mined_hash)]
    else:
        assert heard == []
        cursor = BlockCursor.objects.get(name="logs")
        assert cursor.block_number == channel_reads.confirmed_block(w3, settings.CHAIN_CONFIRMATIONS)
