"""Routing windows on anvil (docs/protocol.md, "Routing windows"): a sender and a receiver working
together cannot make the node pay downstream what it can no longer claim upstream.

The attack: A pays B; A takes her channel to the chain and disputes her own transfer, to collect its
refund when its window closes; B reveals as late as the node lets him, on chain at the last moment of
his window, or off chain or on chain after A's refund. It is played for Linked, HashLock and Signed, with
the shortest windows the node accepts and with the default ones, with A disputing before the node
forwards (the node has not seen it yet), after it forwarded (B holds the node's signature alone) and after
B countersigned. Every scenario ends with both channels paid out on chain: the node's deposits equal
what it was paid, and each channel's conservation check holds. Chain time moves with
`evm_increaseTime`; nothing sleeps."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import pytest
from django.test import Client, override_settings
from web3 import Web3

from channels_app.models import Channel, Dispute, Payment, Transfer, TransferDispute
from channels_app.services import collateral, payments, watchtower
from connext.chain import disputes
from connext.chain.contracts import contract_at
from connext.protocol import definitions, serialization, signing
from connext.protocol.encoding import keccak256
from connext.protocol.types import ChannelState, TransferState
from tests.channels_app.conftest import FUNDER_KEY, new_wallet
from tests.support.conservation import assert_conserved, node_net
from tests.support.disputes import (
    advance_chain,
    run_tower_work,
    send_from,
    user_defunds_transfer,
    user_disputes_channel,
    user_disputes_transfer,
)
from tests.support.node_work import run_node_work
from tests.support.wallet import ETH, Wallet

pytestmark = pytest.mark.django_db
E = 10**18
AMOUNT = E // 10
SIGNER_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class Windows:
    dispute_timeout: int
    transfer_timeout: int  # the sender's


SHORT = Windows(dispute_timeout=3600, transfer_timeout=0)  # 0: the least the node accepts
DEFAULT = Windows(dispute_timeout=86_400, transfer_timeout=86_400)  # the node's and the client's defaults


def chain_now(w3: Web3) -> int:
    return disputes.chain_time(w3)


def resolver_for(kind: str, preimage: bytes, payment_id: str, w3: Web3, wallet: Wallet) -> bytes:
    if kind != "signed":
        return definitions.PreimageResolver(preimage).encode()
    data = keccak256(b"delivered")
    definition = wallet.config["transferDefinitions"]["signed"]
    signature = signing.sign_receipt(
        w3.eth.chain_id, definition, bytes.fromhex(payment_id[2:]), data, SIGNER_KEY
    )
    return definitions.SignedResolver(data, signature).encode()


def pay(alice: Wallet, bob: Wallet, kind: str, transfer_timeout: int, w3: Web3) -> tuple[str, bytes]:
    now = max(chain_now(w3), int(time.time()))
    extra: dict = {}
    if kind == "hashlock":
        extra["expiry"] = now + payments.hop_margin() + 3 * transfer_timeout + 4 * 3600
    if kind == "signed":
        extra["meta"] = {"signer": signing.as_signer(SIGNER_KEY).address}
    response, payment_id, preimage = alice.pay(
        bob.address, AMOUNT, kind=kind, transfer_timeout=transfer_timeout, **extra
    )
    assert response.status_code == 200, response.json()
    return payment_id, preimage


def receiver_side(payment_id: str) -> Transfer | None:
    return Payment.objects.select_related("receiver_transfer").get(payment_id=payment_id).receiver_transfer


def own_dispute_with_proposal(bob: Wallet, held: dict[bytes, tuple[bytes, bytes]]) -> None:
    """B countersigns the node's open proposal on his own and takes that state to the chain."""
    proposal = bob.proposal()
    assert proposal is not None
    _, new, bob_signature = bob.sign_proposal()
    bob.state = new
    held[new.state_hash] = (bytes.fromhex(proposal["nodeSignature"][2:]), bob_signature)
    bob_disputes_channel(bob, held)


def bob_disputes_channel(bob: Wallet, held: dict[bytes, tuple[bytes, bytes]]) -> None:
    """B disputes with his latest state: one the node stored, or one he countersigned alone."""
    if bob.state.state_hash not in held:
        user_disputes_channel(bob, bob.state)
        return
    calldata = disputes.dispute_channel_calldata(bob.w3, bob.state, *held[bob.state.state_hash])
    send_from(bob.w3, bob.key, bob.state.channel_address, calldata)


def try_send(call, *args) -> bool:
    try:
        call(*args)
    except Exception:
        return False
    return True


def play_attack(
    w3,
    chain,
    alice: Wallet,
    bob: Wallet,
    *,
    kind: str,
    windows: Windows,
    moment: str,
    bob_waits: bool = False,
) -> None:
    """`bob_waits`: B does not reveal in his window but only after A's refund (off chain, then on chain
    in a round of his own); otherwise he reveals on chain at the last moment of the window he gets."""
    transfer_timeout = windows.transfer_timeout or payments.sender_min_transfer_timeout()
    T = windows.dispute_timeout
    payment_id, preimage = pay(alice, bob, kind, transfer_timeout, w3)
    bob_channel = Channel.objects.get(user_address=bob.address)
    alice_channel = Channel.objects.get(user_address=alice.address)
    disputed: ChannelState = alice.state
    (sender_side,) = [t for t in disputed.transfers if "0x" + t.payment_id.hex() == payment_id]

    if moment == "before_forward":
        user_disputes_channel(alice, disputed)
        payments.payments_forward(channel_id=bob_channel.pk)  # the node has not seen her dispute yet
        bob.countersign_proposal()
    elif moment == "after_forward":
        run_node_work()  # the node proposes B's side; B keeps its signature and does not answer
        assert bob.proposal() is not None
        user_disputes_channel(alice, disputed)
    else:
        run_node_work(bob)  # B countersigns his side
        assert receiver_side(payment_id) is not None
        user_disputes_channel(alice, disputed)

    run_tower_work()  # the node sees A's dispute; both attackers stay silent off chain
    held: dict[bytes, tuple[bytes, bytes]] = {}
    if moment == "after_forward" and Dispute.objects.filter(channel=bob_channel).exists():
        own_dispute_with_proposal(bob, held)  # inside the node's consensus window: the newer state counts
        run_tower_work()

    # A's consensus window ends; she proves her transfer to start its window.
    advance_chain(chain, T + 1)
    user_disputes_transfer(alice, disputed, sender_side)
    run_tower_work()

    receiver_hash = _receiver_hash(bob, payment_id)
    resolver = resolver_for(kind, preimage, payment_id, w3, bob)
    bob_paid = False
    record = TransferDispute.objects.filter(transfer_hash=receiver_hash).first() if receiver_hash else None
    if record is not None and chain_now(w3) < record.expiry and not bob_waits:
        # B reveals on chain at the last moment of his window.
        advance_chain(chain, max(0, record.expiry - chain_now(w3) - 30))
        bob_paid = try_send(user_defunds_transfer, bob, _receiver_transfer(bob, payment_id), resolver)
        run_tower_work()

    # A's window closes; she takes her lock back if the node has not claimed it.
    alice_window_end = int(
        disputes.read_transfer_dispute(w3, disputed.channel_address, sender_side.transfer_hash).expiry
    )
    advance_chain(chain, max(0, alice_window_end - chain_now(w3) + 1))
    try_send(user_defunds_transfer, alice, sender_side, b"")
    run_tower_work()

    if not bob_paid:
        # Too late upstream: the node must neither countersign B's resolve nor let him claim on chain.
        if bob.state is not None and _receiver_transfer(bob, payment_id) is not None:
            response = bob.resolve_incoming(payment_id, resolver=resolver)
            assert response.status_code == 409, response.json()
            assert response.json()["error"]["code"] in {
                "channel_not_open",
                "upstream_refunded",
                "upstream_unclaimable",
            }
        bob_paid = _bob_claims_on_chain(w3, chain, bob, held, payment_id, resolver, T)

    # Everything left in both channels is paid out on chain.
    _pay_everything_out(w3, chain, alice, bob, T)
    for channel in (alice_channel, bob_channel):
        assert_conserved(w3, channel.address)
    node = alice_channel.node_address
    assert node_net(w3, [alice_channel.address, bob_channel.address], node) == 0
    alice_paid = sum(
        d["toResponder"]
        for d in _transfer_defunds(w3, alice_channel.address)
        if d["transferId"] == sender_side.transfer_id
    )
    assert alice_paid == (AMOUNT if bob_paid else 0)


def _receiver_transfer(bob: Wallet, payment_id: str) -> TransferState | None:
    if bob.state is None:
        return None
    return next((t for t in bob.state.transfers if "0x" + t.payment_id.hex() == payment_id), None)


def _receiver_hash(bob: Wallet, payment_id: str) -> str | None:
    transfer = _receiver_transfer(bob, payment_id)
    return None if transfer is None else serialization.hex_bytes(transfer.transfer_hash)


def _bob_claims_on_chain(w3, chain, bob: Wallet, held, payment_id: str, resolver: bytes, T: int) -> bool:
    """B takes his side to the chain himself (a new round of his own when the node's is over)."""
    transfer = _receiver_transfer(bob, payment_id)
    if transfer is None:
        return False
    onchain = disputes.read_transfer_dispute(w3, bob.state.channel_address, transfer.transfer_hash)
    if not onchain.expiry:
        if not try_send(bob_disputes_channel, bob, held):
            advance_chain(chain, 2 * T + 1)  # after the round in progress
            if not try_send(bob_disputes_channel, bob, held):
                return False
        advance_chain(chain, T + 1)
        if not try_send(user_disputes_transfer, bob, bob.state, transfer):
            return False
    return try_send(user_defunds_transfer, bob, transfer, resolver)


def _transfer_defunds(w3, channel_address: str) -> list[dict]:
    channel = contract_at(w3, "Channel", channel_address)
    return [dict(log["args"]) for log in channel.events.TransferDefunded().get_logs(from_block=0)]


def _pay_everything_out(w3, chain, alice: Wallet, bob: Wallet, T: int) -> None:
    """Both channels taken to the chain (the node disputes what is still open) and every round run to
    its end, so whatever either holds is paid out."""
    for wallet in (alice, bob):
        channel = Channel.objects.get(user_address=wallet.address)
        if channel.status == Channel.Status.OPEN:
            watchtower.dispute_start(channel_id=channel.pk, reason="test: pay everything out")
    for _ in range(4):
        run_tower_work()
        advance_chain(chain, 2 * T + 1)
    run_tower_work()


@pytest.mark.parametrize("kind", ["linked", "hashlock", "signed"])
@pytest.mark.parametrize("moment", ["before_forward", "after_forward", "after_countersign"])
def test_a_sender_and_receiver_together_cannot_make_the_node_pay_what_it_cannot_claim_with_short_windows(
    w3, chain, kind, moment
):
    alice, bob = _funded_pair(w3)
    play_attack(w3, chain, alice, bob, kind=kind, windows=SHORT, moment=moment)


@pytest.mark.parametrize("kind", ["linked", "hashlock", "signed"])
@pytest.mark.parametrize("moment", ["before_forward", "after_forward", "after_countersign"])
def test_a_sender_and_receiver_together_cannot_make_the_node_pay_what_it_cannot_claim_with_default_windows(
    w3, chain, kind, moment
):
    with override_settings(DISPUTE_TIMEOUT_SECONDS=DEFAULT.dispute_timeout):
        alice, bob = _funded_pair(w3)
        play_attack(w3, chain, alice, bob, kind=kind, windows=DEFAULT, moment=moment)


def _funded_pair(w3) -> tuple[Wallet, Wallet]:
    alice, bob = new_wallet(Client(), w3), new_wallet(Client(), w3)
    alice.send_eth(FUNDER_KEY, alice.state.channel_address, 2 * E)
    alice.deposit_update()
    bob_channel = Channel.objects.get(user_address=bob.address)
    # As for a payment waiting for it: Bob has brought nothing that would justify it on his own.
    collateral.collateral_request(channel_id=bob_channel.pk, asset_id=ETH, amount=AMOUNT, for_payment=True)
    run_node_work(alice, bob)  # B's channel holds the node's collateral for the payment
    return alice, bob


@pytest.mark.parametrize(
    ("kind", "moment"),
    [("linked", "after_countersign"), ("hashlock", "after_forward"), ("signed", "before_forward")],
)
def test_a_receiver_who_reveals_only_after_the_senders_refund_is_paid_by_nobody(w3, chain, kind, moment):
    alice, bob = _funded_pair(w3)
    play_attack(w3, chain, alice, bob, kind=kind, windows=SHORT, moment=moment, bob_waits=True)


# -- the terms, one at a time ---------------------------------------------------------------------------


def _unchanged(wallet: Wallet) -> tuple:
    channel = Channel.objects.get(user_address=wallet.address)
    return channel.nonce, channel.latest_state, Transfer.objects.count(), Payment.objects.count()


@pytest.mark.parametrize(
    ("transfer_timeout", "code"),
    [
        (1, "transfer_timeout_too_short"),
        (None, "transfer_timeout_too_short"),
        (8 * 86_400, "transfer_timeout_too_long"),
    ],
)
def test_a_routed_create_with_a_window_outside_the_nodes_bounds_is_refused_and_changes_nothing(
    w3, transfer_timeout, code
):
    alice, bob = _funded_pair(w3)
    before = _unchanged(alice)
    timeout = payments.sender_min_transfer_timeout() - 1 if transfer_timeout is None else transfer_timeout
    response, _, _ = alice.pay(bob.address, AMOUNT, transfer_timeout=timeout)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert _unchanged(alice) == before


def test_the_receiver_side_gets_a_window_three_reactions_shorter_than_the_senders(w3):
    alice, bob = _funded_pair(w3)
    payment_id, _ = pay(alice, bob, "linked", 3600, w3)
    run_node_work(alice, bob)
    transfer = _receiver_transfer(bob, payment_id)
    assert transfer is not None
    assert transfer.transfer_timeout == 3600 - 3 * payments.reaction()
    assert payments.reaction() == 300  # half of HASHLOCK_MIN_WINDOW_SECONDS by default


def test_a_payment_into_a_channel_with_a_longer_dispute_window_than_it_leaves_room_for_fails_and_refunds(w3):
    alice = new_wallet(Client(), w3)
    with override_settings(DISPUTE_TIMEOUT_SECONDS=7200):
        bob = new_wallet(Client(), w3)
    alice.send_eth(FUNDER_KEY, alice.state.channel_address, 2 * E)
    alice.deposit_update()
    collateral.collateral_request(
        channel_id=Channel.objects.get(user_address=bob.address).pk,
        asset_id=ETH,
        amount=AMOUNT,
        for_payment=True,
    )
    run_node_work(alice, bob)
    balance = alice.state.balances[0][1]
    payment_id, _ = pay(alice, bob, "linked", 3600, w3)  # 3600 + 3600 - 7200 - 900 < 600
    run_node_work(alice, bob)
    payment = Payment.objects.get(payment_id=payment_id)
    assert payment.status == Payment.Status.REFUNDED, payment.failure
    assert "longer dispute window" in payment.failure
    assert _receiver_transfer(bob, payment_id) is None
    assert alice.state.balances[0][1] == balance
    assert alice.state.transfers == ()


def _disputed_payment(
    w3, chain, alice: Wallet, bob: Wallet, *, answered: bool = True
) -> tuple[str, bytes, TransferState]:
    """A pays B, B countersigns his side (unless not `answered`: the node's forward stays open, B keeps
    its signature), A disputes her channel and, after its consensus window, her transfer. The node's
    watcher has seen both; its watchtower has not acted (so B's channel is open)."""
    payment_id, preimage = pay(alice, bob, "linked", payments.sender_min_transfer_timeout(), w3)
    if answered:
        run_node_work(alice, bob)
    else:
        run_node_work()
        assert bob.proposal() is not None
    disputed = alice.state
    (sender_side,) = disputed.transfers
    user_disputes_channel(alice, disputed)
    advance_chain(chain, 3600 + 1)
    user_disputes_transfer(alice, disputed, sender_side)
    run_node_work()
    assert TransferDispute.objects.filter(
        transfer_id=serialization.hex_bytes(sender_side.transfer_id)
    ).exists()
    return payment_id, preimage, sender_side


def _window_end(w3, alice: Wallet, sender_side: TransferState) -> int:
    return disputes.read_transfer_dispute(w3, alice.state.channel_address, sender_side.transfer_hash).expiry


def test_the_node_refuses_a_receivers_resolve_once_the_senders_window_closes_within_one_reaction(w3, chain):
    alice, bob = _funded_pair(w3)
    payment_id, preimage, sender_side = _disputed_payment(w3, chain, alice, bob)
    window_end = _window_end(w3, alice, sender_side)
    advance_chain(chain, window_end - payments.reaction() - chain_now(w3))
    before = _unchanged(bob)

    response = bob.resolve_incoming(payment_id, preimage)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "upstream_unclaimable"
    assert _unchanged(bob) == before
    # His cancel is always taken: it pays the node back.
    assert bob.resolve_incoming(payment_id, b"\0" * 32).status_code == 200


def test_a_receivers_resolve_inside_the_senders_window_is_paid_and_the_node_claims_upstream_in_time(
    w3, chain
):
    alice, bob = _funded_pair(w3)
    payment_id, preimage, sender_side = _disputed_payment(w3, chain, alice, bob)
    window_end = _window_end(w3, alice, sender_side)
    advance_chain(chain, window_end - 2 * payments.reaction() - chain_now(w3))

    assert bob.resolve_incoming(payment_id, preimage).status_code == 200
    run_tower_work(bob)

    claimed = [
        d
        for d in _transfer_defunds(w3, alice.state.channel_address)
        if d["transferId"] == sender_side.transfer_id
    ]
    assert [(d["toInitiator"], d["toResponder"]) for d in claimed] == [(0, AMOUNT)]


def test_the_node_refuses_a_receivers_resolve_after_the_sender_was_refunded_on_chain(w3, chain):
    alice, bob = _funded_pair(w3)
    payment_id, preimage, sender_side = _disputed_payment(w3, chain, alice, bob)
    window_end = _window_end(w3, alice, sender_side)
    advance_chain(chain, window_end - chain_now(w3) + 1)
    user_defunds_transfer(alice, sender_side, b"")  # her refund
    run_node_work()
    before = _unchanged(bob)

    response = bob.resolve_incoming(payment_id, preimage)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "upstream_refunded"
    assert _unchanged(bob) == before


@pytest.mark.parametrize("late", ["window_closing", "refunded"])
def test_a_receiver_answering_the_forward_and_resolving_it_in_one_request_is_held_to_the_senders_window(
    w3, chain, late
):
    """The attack with B's side never stored: B keeps the node's forward unanswered while A disputes,
    then answers it and resolves it in one request (the client's own way of taking a payment). No
    receiver side is stored when the node checks the sender's window, so the check finds the payment
    through the proposal being answered; otherwise the node paid B what A was then refunded."""
    alice, bob = _funded_pair(w3)
    payment_id, preimage, sender_side = _disputed_payment(w3, chain, alice, bob, answered=False)
    window_end = _window_end(w3, alice, sender_side)
    if late == "refunded":
        advance_chain(chain, window_end - chain_now(w3) + 1)
        user_defunds_transfer(alice, sender_side, b"")
        run_node_work()
    else:
        advance_chain(chain, window_end - payments.reaction() - chain_now(w3))
    proposal, before = bob.proposal(), _unchanged(bob)
    state = bob.state

    response = bob.resolve_incoming(payment_id, preimage, answering=True)

    assert response.status_code == 409, response.json()
    code = "upstream_refunded" if late == "refunded" else "upstream_unclaimable"
    assert response.json()["error"]["code"] == code
    assert (_unchanged(bob), bob.proposal()) == (before, proposal)  # the forward still open, unanswered
    bob.state = state
    assert (
        bob.resolve_incoming(payment_id, b"\0" * 32, answering=True).status_code == 200
    )  # a cancel is taken
