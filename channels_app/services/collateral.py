"""Collateral: the node's side of each channel, kept inside the channel's rebalance profile.

Below the collateralize threshold the node deposits up to the target; above the reclaim threshold it
withdraws down to the target. At most one collateral transaction is in flight per channel and asset,
and a node deposit that is mined but not yet credited off chain counts as in flight.

Under the default profile the target is also bounded by what the account's own activity justifies
(`capital.collateral_justified`: its balance or what it received lately, capped per account), and
collateral above that comes back once it sat idle for `COLLATERAL_IDLE_SECONDS`. A channel with an
operator-set profile gets that profile: the operator chose to trust that account. Payments waiting
for collateral get what they need, whatever the account's history.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from web3 import Web3
from web3.exceptions import TransactionNotFound

from channels_app import after_commit, chain, network, rows
from channels_app.models import Channel, OnchainTransaction, RebalanceProfile
from channels_app.services import capital, channels
from channels_app.services.errors import ServiceError
from channels_app.services.transactions import transaction_enqueue
from channels_app.services.withdrawals import channel_deployment
from connext.chain import channel_reads
from connext.chain.contracts import contract_at
from connext.protocol import signing
from connext.protocol.definitions import WithdrawState
from connext.protocol.encoding import MAX_UINT256
from connext.protocol.types import ChannelState, CreateUpdate, DefinitionKind, DepositUpdate

logger = logging.getLogger(__name__)

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


class CollateralError(ServiceError):
    """Refused by the collateral service."""


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


def outside_profile(
    state: ChannelState, profiles: Mapping[str, tuple[int, int, int]]
) -> list[tuple[str, int, tuple[int, int, int]]]:
    """Per asset whose node balance in `state` lies outside its profile (`profiles` the operator's, as
    `rebalance_profiles` reads them; the defaults for the rest): (asset, balance, its profile). None
    outside, no rebalance is needed, whatever the account's activity."""
    outside = []
    for asset_id in state.asset_ids:
        profile = profiles.get(asset_id) or _default_profile(asset_id)
        balance = node_balance(state, asset_id)
        if not profile[0] <= balance <= profile[2]:
            outside.append((asset_id, balance, profile))
    return outside


def _rebalance_needed(channel: Channel, state: ChannelState) -> list[tuple[str, int, int]]:
    """Per asset whose node balance left its profile: (asset, balance, the profile's target). Below the
    collateralize threshold the node deposits up to the target (under the default profile: as far as
    the account's activity justifies, and only a deposit worth its gas); above the reclaim threshold
    it reclaims down to it."""
    profiles = rebalance_profiles(channel)
    needed = []
    for asset_id, balance, (threshold, target, _) in outside_profile(state, profiles):
        if balance < threshold and asset_id not in profiles:
            target = collateral_ceiling(channel, asset_id, state, now=timezone.now())
            if target - balance < capital.min_onchain_amount(asset_id):
                continue  # nothing the account justifies, or not worth a transaction
        needed.append((asset_id, balance, target))
    return needed


def collateral_ceiling(channel: Channel, asset_id: str, state: ChannelState, *, now: datetime) -> int:
    """The most the node keeps in the channel of its own accord: the profile's target, and under the
    default profile no more than the account's activity justifies."""
    profiles = rebalance_profiles(channel, asset_filter=asset_id)
    _, target, _ = profiles.get(asset_id) or _default_profile(asset_id)
    if asset_id in profiles:
        return target
    return min(target, capital.collateral_justified(channel=channel, asset_id=asset_id, state=state, now=now))


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
    *,
    channel_id: int,
    asset_id: str,
    amount: int | None = None,
    for_payment: bool = False,
    now: datetime | None = None,
) -> OnchainTransaction | None:
    """Top the node's side up to `amount` (default: the profile's target). Returns the deposit
    transaction, or None when the node already holds enough or a deposit is already on its way.

    Unless it is for a payment waiting for it (`for_payment`), a request under the default profile
    is bounded by what the account's activity justifies (`collateral_not_justified`; without
    `amount`, the target is cut down to that) and moves at least the asset's least on-chain amount
    (`collateral_too_small`). Every refusal comes before any transaction is queued."""
    net = network.network()
    if asset_id not in net.assets:
        raise CollateralError("unknown_asset", f"The node does not serve asset {asset_id}.")
    profiles = rebalance_profiles(Channel.objects.get(pk=channel_id), asset_filter=asset_id)
    _, target, reclaim_threshold = profiles.get(asset_id) or _default_profile(asset_id)
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
        state = channels.latest_state(channel)
        balance = node_balance(state, asset_id)
        if not for_payment and asset_id not in profiles:
            wanted = _justified_request(channel, asset_id, state, balance, wanted, amount, now=now)
        if wanted <= balance:
            return None
        if _in_flight(channel, asset_id) or _uncredited_node_deposit(channel, asset_id):
            return None
        return _enqueue_node_deposit(channel, asset_id, wanted - balance)


def _justified_request(
    channel: Channel,
    asset_id: str,
    state: ChannelState,
    balance: int,
    wanted: int,
    amount: int | None,
    *,
    now: datetime | None,
) -> int:
    """The level a request under the default profile may fill the node's side to, or a refusal."""
    if wanted <= balance:
        return wanted  # nothing to deposit: no bound to apply
    justified = capital.collateral_justified(
        channel=channel, asset_id=asset_id, state=state, now=now or timezone.now()
    )
    if amount is None:
        wanted = min(wanted, justified)
    elif wanted > justified:
        raise CollateralError(
            "collateral_not_justified",
            f"The node matches collateral to your own balance and the payments you received lately: "
            f"at most {justified} of this asset now.",
            extra={"justified": str(justified)},
        )
    minimum = capital.min_onchain_amount(asset_id)
    if wanted - balance < minimum:
        if amount is None:
            raise CollateralError(
                "collateral_not_justified",
                f"Your own balance and the payments you received lately justify no more collateral "
                f"(at most {justified} of this asset; the node deposits at least {minimum}).",
                extra={"justified": str(justified)},
            )
        raise CollateralError(
            "collateral_too_small",
            f"The node deposits at least {minimum} of this asset at a time.",
            extra={"minimum": str(minimum)},
        )
    return wanted


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
            try:
                collateral_request(channel_id=channel_id, asset_id=asset_id, amount=target)
            except CollateralError as exc:  # the account's justification moved meanwhile
                logger.info("no collateral for channel %s: %s", channel_id, exc.message)
        else:
            collateral_reclaim(channel_id=channel_id, asset_id=asset_id, amount=balance - target)


def collateral_reclaim_idle(*, channel_id: int, now: datetime | None = None) -> bool:
    """Take back collateral above what the account's recent activity justifies once it sat idle for
    `COLLATERAL_IDLE_SECONDS` (no payment to the account open or changed, no deposit of the node's).
    Channels with an operator-set profile keep what the operator set. Returns True when a reclaim was
    proposed (the user's client resolves it; then the node's withdraw goes on chain)."""
    now = now or timezone.now()
    channel = Channel.objects.get(pk=channel_id)
    if channel.status != Channel.Status.OPEN or channel.pending_update is not None:
        return False
    state = channels.latest_state(channel)
    profiles = rebalance_profiles(channel)
    for asset_id in state.asset_ids:
        if asset_id in profiles:
            continue
        excess = node_balance(state, asset_id) - collateral_ceiling(channel, asset_id, state, now=now)
        if excess < capital.min_onchain_amount(asset_id):
            continue
        if not capital.collateral_idle(channel=channel, asset_id=asset_id, now=now):
            continue
        if collateral_reclaim(channel_id=channel_id, asset_id=asset_id, amount=excess):
            return True
    return False


def collateral_reclaim_idle_all(*, now: datetime | None = None) -> int:
    """The idle-collateral sweep over every open channel; returns how many reclaims it proposed."""
    proposed = 0
    for channel_id in Channel.objects.filter(
        status=Channel.Status.OPEN, pending_update__isnull=True
    ).values_list("pk", flat=True):
        try:
            proposed += collateral_reclaim_idle(channel_id=channel_id, now=now)
        except Exception:
            logger.exception("idle collateral of channel %s", channel_id)
    return proposed


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


def rebalance_profile_set(
    *, channel_id: int, asset_id: str, collateralize_threshold: int, target: int, reclaim_threshold: int
) -> RebalanceProfile:
    """The operator's profile for one channel and asset, replacing any earlier one. The channel's
    collateral follows it from its next reconcile, which is scheduled after commit."""
    if not 0 <= collateralize_threshold <= target <= reclaim_threshold <= MAX_UINT256:
        raise CollateralError(
            "invalid_profile",
            "A profile needs 0 ≤ collateralize threshold ≤ target ≤ reclaim threshold ≤ 2^256 − 1.",
        )
    if asset_id not in network.network().assets:
        raise CollateralError("unknown_asset", f"The node does not serve the asset {asset_id}.")
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(pk=channel_id).first()
        if channel is None:
            raise CollateralError("unknown_channel", "No such channel.", status=404)
        profile, _ = RebalanceProfile.objects.update_or_create(
            channel=channel,
            asset_id=asset_id,
            defaults={
                "collateralize_threshold": collateralize_threshold,
                "target": target,
                "reclaim_threshold": reclaim_threshold,
            },
        )
        after_commit.run_task("channels_app.tasks.channel_reconcile", channel_id)
    logger.info("operator set the %s profile of channel %s", asset_id, channel.address)
    return profile
