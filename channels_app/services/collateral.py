"""Collateral: the node's side of each channel, kept inside the channel's rebalance profile.

Below the collateralize threshold the node deposits up to the target; above the reclaim threshold it
withdraws down to the target. At most one collateral transaction is in flight per channel and asset,
and a node deposit that is mined but not yet credited off chain counts as in flight.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from web3 import Web3
from web3.exceptions import TransactionNotFound

from channels_app import after_commit, chain, network, rows
from channels_app.models import Channel, OnchainTransaction, RebalanceProfile
from channels_app.services import channels
from channels_app.services.transactions import transaction_enqueue
from channels_app.services.withdrawals import channel_deployment
from connext.chain import channel_reads
from connext.chain.contracts import contract_at
from connext.protocol import signing
from connext.protocol.definitions import WithdrawState
from connext.protocol.types import ChannelState, CreateUpdate, DefinitionKind, DepositUpdate

Reason = OnchainTransaction.Reason
TxStatus = OnchainTransaction.Status
WITHDRAW_TRANSFER_TIMEOUT = 3 * 24 * 3600

_ERC20_APPROVE = [
    {
        "type": "function",
        "name": "approve",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "type": "function",
        "name": "allowance",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
]
UNLIMITED_ALLOWANCE = 2**256 - 1


class CollateralError(Exception):
    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def rebalance_profile(channel: Channel, asset_id: str) -> tuple[int, int, int]:
    """(collateralize threshold, target, reclaim threshold) for the channel and asset."""
    return rebalance_profiles(channel, asset_filter=asset_id).get(asset_id) or _default_profile(asset_id)


def rebalance_profiles(
    channel: Channel, *, asset_filter: str | None = None
) -> dict[str, tuple[int, int, int]]:
    """The channel's operator-set profiles by asset (in one read); assets without one use the defaults."""
    equal = (
        {"channel_id": channel.pk}
        if asset_filter is None
        else {"channel_id": channel.pk, "asset_id": asset_filter}
    )
    return {
        row.asset_id: (int(row.collateralize_threshold), int(row.target), int(row.reclaim_threshold))
        for row in rows.find(RebalanceProfile, **equal)
    }


def _default_profile(asset_id: str) -> tuple[int, int, int]:
    threshold, target, reclaim_threshold = settings.REBALANCE_DEFAULTS[
        "eth" if int(asset_id, 16) == 0 else "token"
    ]
    return int(threshold), int(target), int(reclaim_threshold)


def _rebalance_needed(channel: Channel, state: ChannelState) -> list[tuple[str, int, int]]:
    """Per asset whose node balance left its profile: (asset, balance, the profile's target). Below the
    collateralize threshold the node deposits up to the target; above the reclaim threshold it
    reclaims down to it."""
    profiles = rebalance_profiles(channel)
    needed = []
    for asset_id in state.asset_ids:
        threshold, target, reclaim_threshold = profiles.get(asset_id) or _default_profile(asset_id)
        balance = node_balance(state, asset_id)
        if not threshold <= balance <= reclaim_threshold:
            needed.append((asset_id, balance, target))
    return needed


def node_balance(state: ChannelState, asset_id: str) -> int:
    index = state.asset_index(asset_id)
    return 0 if index is None else state.balances[index][0]


def _in_flight(channel: Channel, asset_id: str) -> bool:
    """A collateral deposit of this asset is on its way: queued, or sent and not yet at the
    confirmation depth. One already confirmed counts as arrived even before the transaction tracker
    marks it mined: the chain's confirmed totals (`_uncredited_node_deposit`) then speak for it, and a
    request right after its credit must not be refused as a duplicate."""
    pending = OnchainTransaction.objects.filter(
        reason=Reason.COLLATERALIZATION,
        channel_address=channel.address,
        asset_id=asset_id,
        status__in=[TxStatus.QUEUED, TxStatus.PENDING],
    ).prefetch_related("attempts")
    if not pending:
        return False
    w3 = chain.web3()
    confirmed = channel_reads.confirmed_block(w3, settings.CHAIN_CONFIRMATIONS)
    for record in pending:
        if record.status == TxStatus.QUEUED:
            return True
        if not any(_mined_by(w3, attempt.hash, confirmed) for attempt in record.attempts.all()):
            return True
    return False


def _mined_by(w3: Web3, tx_hash: str, block: int) -> bool:
    try:
        receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return False
    return int(receipt["status"]) == 1 and int(receipt["blockNumber"]) <= block


def collateral_request(
    *, channel_id: int, asset_id: str, amount: int | None = None, for_payment: bool = False
) -> OnchainTransaction | None:
    """Top the node's side up to `amount` (default: the profile's target). Returns the deposit
    transaction, or None when the node already holds enough or a deposit is already on its way."""
    net = network.network()
    if asset_id not in net.assets:
        raise CollateralError("unknown_asset", f"The node does not serve asset {asset_id}.")
    _, target, reclaim_threshold = rebalance_profile(Channel.objects.get(pk=channel_id), asset_id)
    wanted = target if amount is None else amount
    if wanted > reclaim_threshold and not for_payment:
        raise CollateralError(
            "collateral_limit", f"The node keeps at most {reclaim_threshold} of this asset in a channel."
        )
    with transaction.atomic():
        channel = Channel.objects.select_for_update().get(pk=channel_id)
        if channel.status != Channel.Status.OPEN:
            # Money sent into a disputed channel is only paid back by its defund, days later.
            raise CollateralError("channel_not_open", f"The channel is {channel.status}.", status=409)
        if _in_flight(channel, asset_id) or _uncredited_node_deposit(channel, asset_id):
            return None
        deposit = wanted - node_balance(channels.latest_state(channel), asset_id)
        if deposit <= 0:
            return None
        return _enqueue_node_deposit(channel, asset_id, deposit)


def _uncredited_node_deposit(channel: Channel, asset_id: str) -> int:
    """How much the node deposited on chain (confirmed) that the latest state does not credit yet."""
    state = channels.latest_state(channel)
    index = state.asset_index(asset_id)
    processed = 0 if index is None else state.processed_deposits[index][0]
    w3 = chain.web3()
    block = channel_reads.confirmed_block(w3, settings.CHAIN_CONFIRMATIONS)
    return max(0, channel_reads.deposit_totals(w3, channel.address, asset_id, block=block).node - processed)


def _enqueue_node_deposit(channel: Channel, asset_id: str, amount: int) -> OnchainTransaction:
    """`depositNode` on a deployed (or deploying) channel, else deploy and deposit in one transaction.
    A token deposit is preceded, once per spender, by the node's unlimited `approve` of whoever pulls
    the tokens: the factory and every channel pull only from their caller (the node), and exact
    approvals raced, since one spender (the factory) serves many deposits in flight at once and each
    `approve` overwrote the allowance another deposit had not spent yet."""
    net = network.network()
    w3 = chain.web3()
    is_eth = int(asset_id, 16) == 0
    deployed, deploying = channel_deployment(channel)
    if deployed or deploying is not None:
        to = channel.address
        calldata = contract_at(w3, "Channel", channel.address).encode_abi(
            "depositNode", args=[asset_id, amount]
        )
    else:
        to = net.factory
        calldata = contract_at(w3, "ChannelFactory", net.factory).encode_abi(
            "createChannelAndDepositNode", args=[channel.user_address, asset_id, amount]
        )
    previous = deploying
    token = None if is_eth else w3.eth.contract(address=asset_id, abi=_ERC20_APPROVE)
    if (
        token is not None
        and token.functions.allowance(net.node_address, to).call() < UNLIMITED_ALLOWANCE // 2
    ):
        previous = transaction_enqueue(
            reason=Reason.COLLATERALIZATION,
            to=asset_id,
            data=bytes.fromhex(token.encode_abi("approve", args=[to, UNLIMITED_ALLOWANCE])[2:]),
            channel_address=channel.address,
            asset_id=asset_id,
            after=deploying,
        )
    return transaction_enqueue(
        reason=Reason.COLLATERALIZATION,
        to=to,
        data=bytes.fromhex(calldata[2:]),
        value=amount if is_eth else 0,
        channel_address=channel.address,
        asset_id=asset_id,
        after=previous,
    )


def collateral_settle(*, transaction_id: int) -> None:
    """A collateral deposit settled: the channel learns it is deployed (the credit is `node_deposits_credit`)."""
    record = OnchainTransaction.objects.get(pk=transaction_id)
    if record.status != TxStatus.MINED or record.to_address == record.asset_id:
        return  # failed, or a token approval: nothing deposited
    if record.to_address == network.network().factory:
        Channel.objects.filter(address=record.channel_address).update(deployed=True)
    node_deposit_seen(channel_address=record.channel_address)


def node_deposit_seen(*, channel_address: str) -> None:
    """A node deposit may be on chain for this channel: the next reconcile looks for it."""
    Channel.objects.filter(address=channel_address).update(node_deposit_seen_at=timezone.now())


def node_deposits_credit(*, channel_id: int) -> bool:
    """Propose a deposit update crediting the node's confirmed on-chain deposits, one asset at a time.

    Returns True when an update was proposed.
    """
    channel = Channel.objects.get(pk=channel_id)
    if channel.node_deposit_seen_at is None:
        return False
    looked_at = timezone.now()
    for asset_id in network.network().assets:
        if not _uncredited_node_deposit(channel, asset_id):
            continue
        w3 = chain.web3()
        totals = channel_reads.deposit_totals(
            w3,
            channel.address,
            asset_id,
            block=channel_reads.confirmed_block(w3, settings.CHAIN_CONFIRMATIONS),
        )
        with transaction.atomic():
            locked = channels.lock_for_proposal(channel_id)
            if locked is None:
                return False
            state = channels.latest_state(locked)
            index = state.asset_index(asset_id)
            if index is not None and state.processed_deposits[index] == (totals.node, totals.user):
                return False  # credited meanwhile (another worker, or the user's own deposit update)
            channels.propose_locked(
                locked,
                DepositUpdate(
                    channel_address=locked.address,
                    nonce=state.nonce + 1,
                    initiator=locked.node_address,
                    asset_id=asset_id,
                    total_deposits_node=totals.node,
                    total_deposits_user=totals.user,
                ),
            )
        return True
    # Everything is credited: stop looking, unless another deposit was seen while we read the chain.
    Channel.objects.filter(pk=channel_id, node_deposit_seen_at__lte=looked_at).update(
        node_deposit_seen_at=None
    )
    return False


def collateral_rebalance(*, channel_id: int) -> None:
    """Keep each asset's node balance inside the profile: deposit below, reclaim above."""
    channel = Channel.objects.get(pk=channel_id)
    for asset_id, balance, target in _rebalance_needed(channel, channels.latest_state(channel)):
        if balance < target:
            collateral_request(channel_id=channel_id, asset_id=asset_id)
        else:
            collateral_reclaim(channel_id=channel_id, asset_id=asset_id, amount=balance - target)


def collateral_check_profile(*, channel: Channel, state: ChannelState) -> None:
    """After a payment moved the node's balance (`state`, just stored): queue the channel's reconcile
    (which deposits or reclaims) only when a balance left the profile; a payment inside the profile
    costs no worker."""
    if _rebalance_needed(channel, state):
        after_commit.run_task("channels_app.tasks.channel_reconcile", channel.pk)


def collateral_reclaim(*, channel_id: int, asset_id: str, amount: int) -> bool:
    """Withdraw `amount` of the node's side to the node: a withdraw transfer the user resolves."""
    net = network.network()
    with transaction.atomic():
        channel = channels.lock_for_proposal(channel_id)
        if channel is None:
            return False
        state = channels.latest_state(channel)
        if any(
            t.initiator == net.node_address and net.definitions.get(t.definition) is DefinitionKind.WITHDRAW
            for t in state.transfers
        ):
            return False  # one reclaim at a time
        nonce = state.nonce + 1
        withdraw = WithdrawState(
            channel_address=channel.address,
            asset_id=asset_id,
            recipient=net.node_address,
            amount=amount,
            nonce=nonce,
            initiator=net.node_address,
            responder=channel.user_address,
            initiator_signature=b"",
        )
        signature = signing.sign_withdraw(withdraw.commitment(state.chain_id), network.node_signer())
        signed = WithdrawState(**{**withdraw.__dict__, "initiator_signature": signature})
        channels.propose_locked(
            channel,
            CreateUpdate(
                channel_address=channel.address,
                nonce=nonce,
                initiator=net.node_address,
                asset_id=asset_id,
                amount=amount,
                definition=net.definition_address(DefinitionKind.WITHDRAW),
                payment_id=secrets.token_bytes(32),
                encoded_state=signed.encode(),
                transfer_timeout=WITHDRAW_TRANSFER_TIMEOUT,
            ),
        )
    return True
