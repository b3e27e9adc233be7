"""The signing fence (docs/protocol.md, "Restored data"): a node whose records are behind what it has
signed signs nothing for a channel until its user shows the latest state, and adopts that state.

A restore is simulated here by putting the node's rows back as they were at a "backup" (what
`manage.py restore` leaves behind; the real backup and restore run in tests/integration/test_restore.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from web3 import Web3

from channels_app.models import (
    BlockCursor,
    Channel,
    ChannelUpdate,
    DataFence,
    ProcessedLog,
    Transfer,
    Withdrawal,
)
from channels_app.services import channels, fence, watcher
from connext.protocol import serialization, signing
from tests.channels_app.conftest import FUNDER_KEY, NODE_KEY, new_wallet
from tests.support.node_work import run_node_work
from tests.support.wallet import ETH, Wallet

pytestmark = pytest.mark.django_db
E = 10**18


@dataclass
class Backup:
    """The rows a backup of the node held for a channel, and the chain watchers' cursors."""

    channel: dict
    nonce: int
    cursors: dict[int, int]
    last_log: int


def take_backup(wallet: Wallet) -> Backup:
    channel = Channel.objects.get(address=wallet.state.channel_address)
    fields = ["nonce", "latest_state", "node_signature", "user_signature"]
    fields += ["pending_update", "pending_state", "pending_node_signature", "pending_meta"]
    return Backup(
        channel={name: getattr(channel, name) for name in fields},
        nonce=channel.nonce,
        cursors=dict(BlockCursor.objects.values_list("pk", "block_number")),
        last_log=max(ProcessedLog.objects.values_list("pk", flat=True), default=0),
    )


def restore(wallet: Wallet, backup: Backup, *, fenced: bool = True, w3: Web3 | None = None) -> Channel:
    """The node's rows as the backup held them; fenced as `manage.py restore` does, unless not."""
    channel = Channel.objects.get(address=wallet.state.channel_address)
    Withdrawal.objects.filter(channel=channel, nonce__gt=backup.nonce).delete()
    Transfer.objects.filter(channel=channel, created_nonce__gt=backup.nonce).delete()
    ChannelUpdate.objects.filter(channel=channel, nonce__gt=backup.nonce).delete()
    Channel.objects.filter(pk=channel.pk).update(**backup.channel)
    for pk, block in backup.cursors.items():
        BlockCursor.objects.filter(pk=pk).update(block_number=block)
    BlockCursor.objects.exclude(pk__in=list(backup.cursors)).delete()
    ProcessedLog.objects.filter(pk__gt=backup.last_log).delete()
    if fenced:
        assert w3 is not None
        fence.data_behind(reason="restored", detail={}, chain_block=w3.eth.block_number)
    return Channel.objects.get(pk=channel.pk)


def deposited(client, w3, amount: int = 3 * E) -> Wallet:
    wallet = new_wallet(client, w3)
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, amount)
    assert wallet.deposit_update().status_code == 200
    return wallet


def test_a_restored_node_signs_nothing_at_a_nonce_it_signed_before(client, w3):
    """The attack: the user spent a balance after the backup (a withdrawal at nonce 3); against the
    restored records it asks for a second, different state at nonce 3 on the old balance."""
    wallet = deposited(client, w3)
    backup = take_backup(wallet)
    recipient = Web3().eth.account.create().address
    assert wallet.withdraw_update(E, recipient).status_code == 200
    channel = restore(wallet, backup, w3=w3)
    wallet.state = serialization.channel_state_from_json(backup.channel["latest_state"])

    response = wallet.withdraw_update(2 * E, recipient)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "channel_reconciling"
    assert Channel.objects.get(pk=channel.pk).nonce == backup.nonce
    assert not ChannelUpdate.objects.filter(channel=channel, nonce__gt=backup.nonce).exists()
    # Nor a deposit, nor the node's own proposals (collateral): nothing is signed at all.
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    assert wallet.deposit_update().json()["error"]["code"] == "channel_reconciling"
    assert channels.lock_for_proposal(channel.pk) is None
    assert wallet.post("/api/channel/collateral", {"assetId": ETH}).status_code in (200, 202)
    run_node_work()
    assert Channel.objects.get(pk=channel.pk).pending_update is None


def test_the_users_newer_state_is_adopted_and_the_channel_carries_on(client, w3):
    wallet = deposited(client, w3)
    backup = take_backup(wallet)
    recipient = Web3().eth.account.create().address
    assert wallet.withdraw_update(E, recipient).status_code == 200
    restore(wallet, backup, w3=w3)
    watcher.logs_watch()  # the chain read up to the fence

    response = wallet.post("/api/channel/reconcile", wallet.signed_state())

    body = response.json()
    assert response.status_code == 200, body
    assert (body["adopted"], body["fenced"], body["waitingFor"]) == (True, False, None)
    channel = Channel.objects.get()
    assert channel.nonce == wallet.state.nonce == backup.nonce + 1
    assert channel.fenced_since is None
    withdraw = Transfer.objects.get(channel=channel)
    assert (withdraw.status, withdraw.amount) == (Transfer.Status.ACTIVE, E)
    # The adopted state is kept whole: the node can rebuild it (to dispute with, say).
    assert channels.state_at(channel, channel.nonce) == wallet.state
    # ... and the channel goes on from it.
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    assert wallet.deposit_update().status_code == 200
    assert Channel.objects.get().nonce == backup.nonce + 2


def test_showing_the_same_state_lets_the_channel_go_and_an_older_one_is_refused(client, w3):
    wallet = deposited(client, w3)
    old = wallet.signed_state()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    assert wallet.deposit_update().status_code == 200
    fence.data_behind(reason="restored", detail={}, chain_block=w3.eth.block_number)
    watcher.logs_watch()

    older = wallet.post("/api/channel/reconcile", old)
    assert older.status_code == 409
    assert older.json()["error"]["code"] == "stale_state"
    assert older.json()["error"]["latest"]["state"]["nonce"] == str(wallet.state.nonce)
    assert Channel.objects.get().fenced_since is not None

    same = wallet.post("/api/channel/reconcile", wallet.signed_state()).json()
    assert (same["adopted"], same["fenced"]) == (False, False)


def test_a_channel_stays_fenced_until_the_chain_is_read_up_to_the_fence(client, w3):
    wallet = deposited(client, w3)
    watcher.logs_watch()
    fence.data_behind(reason="restored", detail={}, chain_block=w3.eth.block_number + 3)

    waiting = wallet.post("/api/channel/reconcile", wallet.signed_state()).json()
    assert (waiting["fenced"], waiting["waitingFor"]) == (True, "chain")
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    assert wallet.deposit_update().json()["error"]["code"] == "channel_reconciling"

    w3.provider.make_request("anvil_mine", [3])  # type: ignore[arg-type]
    watcher.logs_watch()
    done = wallet.post("/api/channel/reconcile", wallet.signed_state()).json()
    assert (done["fenced"], done["waitingFor"]) == (False, None)


def test_states_that_are_not_both_signed_or_not_the_users_are_refused_and_change_nothing(client, w3):
    wallet = deposited(client, w3)
    other = deposited(client, w3)
    fence.data_behind(reason="restored", detail={}, chain_block=w3.eth.block_number)
    watcher.logs_watch()
    stored = dict(Channel.objects.values_list("address", "nonce"))
    body = wallet.signed_state()
    newer = replace(wallet.state, nonce=wallet.state.nonce + 1)
    self_signed = {
        "state": serialization.channel_state_to_json(newer),
        "nodeSignature": "0x" + signing.sign_state(newer, wallet.key).hex(),  # not the node's
        "userSignature": "0x" + signing.sign_state(newer, wallet.key).hex(),
    }
    cases = {
        "bad_signature": wallet.post("/api/channel/reconcile", self_signed),
        "unauthorized": wallet.post("/api/channel/reconcile", other.signed_state()),
        "invalid_state": wallet.post("/api/channel/reconcile", {**body, "state": {"nonce": "1"}}),
    }
    for code, response in cases.items():
        assert 400 <= response.status_code < 500, (code, response.json())
        assert response.json()["error"]["code"] == code, response.json()
    assert dict(Channel.objects.values_list("address", "nonce")) == stored
    assert Channel.objects.filter(fenced_since__isnull=True).count() == 0


def test_a_second_state_the_node_signed_at_one_nonce_is_refused_loudly(client, w3, caplog):
    """Should the node ever have signed two states at one nonce, showing the other changes nothing."""
    wallet = deposited(client, w3)
    fence.data_behind(reason="restored", detail={}, chain_block=w3.eth.block_number)
    watcher.logs_watch()
    twin = replace(wallet.state, balances=((E, 2 * E),))  # a third of the user's deposit moved to the node
    response = wallet.post(
        "/api/channel/reconcile",
        {
            "state": serialization.channel_state_to_json(twin),
            "nodeSignature": "0x" + signing.sign_state(twin, bytes.fromhex(NODE_KEY[2:])).hex(),
            "userSignature": "0x" + signing.sign_state(twin, wallet.key).hex(),
        },
    )

    assert response.status_code == 409, response.json()
    assert response.json()["error"]["code"] == "conflicting_state"
    assert Channel.objects.get().latest_state == serialization.channel_state_to_json(wallet.state)
    assert "two doubly signed states" in caplog.text


def test_a_users_state_newer_than_the_records_fences_every_other_channel(client, w3):
    """No restore announced: the first user to show a newer state proves the records behind."""
    wallet = deposited(client, w3)
    bystander = deposited(client, w3)
    backup = take_backup(wallet)
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    assert wallet.deposit_update().status_code == 200
    restore(wallet, backup, fenced=False)

    answer = wallet.post("/api/channel/reconcile", wallet.signed_state())

    assert answer.json()["adopted"] is True
    assert DataFence.objects.get().reason == DataFence.Reason.USER_STATE_AHEAD
    fenced = Channel.objects.get(address=bystander.state.channel_address)
    assert fenced.fenced_since is not None
    bystander.send_eth(FUNDER_KEY, bystander.state.channel_address, E)
    assert bystander.deposit_update().json()["error"]["code"] == "channel_reconciling"


def test_a_withdrawal_the_chain_shows_beyond_the_records_fences_and_sets_the_least_nonce(client, w3):
    """The watcher, reading the chain again from the backup's cursor, meets a withdrawal executed at
    a nonce the records never reached: a user hiding that state is not let go with an older one."""
    wallet = deposited(client, w3, 2 * E)
    run_node_work(wallet)
    backup = take_backup(wallet)
    recipient = Web3().eth.account.create().address
    assert wallet.withdraw_update(E // 2, recipient).status_code == 200
    withdraw_nonce = wallet.state.nonce
    run_node_work(wallet)
    assert Withdrawal.objects.get().status == Withdrawal.Status.CONFIRMED
    latest = wallet.signed_state()
    restore(wallet, backup, fenced=False)
    hidden = wallet.state
    wallet.state = serialization.channel_state_from_json(backup.channel["latest_state"])
    wallet.signatures = (
        bytes.fromhex(backup.channel["node_signature"][2:]),
        bytes.fromhex(backup.channel["user_signature"][2:]),
    )

    watcher.logs_watch()

    channel = Channel.objects.get(address=wallet.state.channel_address)
    assert channel.fenced_since is not None
    assert channel.fence_min_nonce == withdraw_nonce
    assert DataFence.objects.get().reason == DataFence.Reason.CHAIN_AHEAD
    behind = wallet.post("/api/channel/reconcile", wallet.signed_state()).json()
    assert (behind["fenced"], behind["waitingFor"]) == (True, "state")
    assert wallet.withdraw_update(E // 2, recipient).json()["error"]["code"] == "channel_reconciling"

    wallet.state = hidden
    shown = wallet.post("/api/channel/reconcile", latest).json()
    assert (shown["adopted"], shown["fenced"]) == (True, False)


def test_the_channel_answer_says_when_it_is_fenced(client, w3):
    wallet = deposited(client, w3)
    assert wallet.get("/api/channel").json()["fenced"] is False
    fence.data_behind(reason="restored", detail={}, chain_block=w3.eth.block_number)
    assert wallet.get("/api/channel").json()["fenced"] is True
