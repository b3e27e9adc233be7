"""The user's side of a dispute: taking the latest doubly signed state to the chain, answering a stale
dispute of its channel, and getting out what the chain owes the user.

Invariants:
- Only the latest doubly signed state in the client's store is ever sent, from the user's own account
  (the user pays the gas). A step the chain would refuse, or that would pay the user nothing, is refused
  first with a `DisputeError` and nothing is sent.
- Windows are measured in chain time (the latest block's timestamp), never the local clock.
- The chain is the only record of progress: every step reads it first and sends only what is missing,
  so `step` may run any number of times, in several processes, after any restart.
- Owed to the user: its balances (plus deposits the state did not credit) of the disputed state, the
  refund of the transfers it locked (after their window, unless the node resolved them in it), and the
  incoming Linked/HashLock transfers whose preimage the store holds (inside their window).

Blocking web3 calls: `AsyncClient` runs them in a worker thread; `connext watch` and `connext exit` call
them directly.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from web3.logs import DISCARD
from web3.types import TxReceipt

from connext.chain import channel_reads, disputes
from connext.chain import logs as chain_logs
from connext.chain.contracts import contract_at, create_channel_calldata
from connext.client.onchain import UserChain
from connext.client.store import ChannelSetup, SignedState, Store
from connext.errors import ChainError, DisputeError, InvalidArgumentError
from connext.protocol import definitions, serialization
from connext.protocol.definitions import PreimageResolver, WithdrawState
from connext.protocol.encoding import normalize_address
from connext.protocol.errors import ProtocolError
from connext.protocol.types import ChannelState, DefinitionKind, TransferState

logger = logging.getLogger("connext.client")

RECEIPT_TIMEOUT = 120.0
MAX_FAILED_STEPS = 3  # in a row, in `exit`: then the error is the user's to see
PREIMAGE_KINDS = (DefinitionKind.LINKED, DefinitionKind.HASHLOCK)

Report = Callable[[str, dict[str, Any]], None]  # (event name, payload)
Say = Callable[[str], None]  # one progress line for a person


class Phase(enum.StrEnum):
    NONE = "none"  # never disputed (or not deployed)
    CONSENSUS = "consensus"  # a state with a higher nonce may replace the disputed one
    DEFUND = "defund"  # defundChannel and disputeTransfer
    ENDED = "ended"  # after the defund window: only disputed transfers can still be paid out


@dataclass(frozen=True)
class DisputeView:
    """The channel's dispute as the chain holds it, at chain time `now`."""

    phase: Phase
    now: int
    nonce: int
    state_hash: bytes
    consensus_expiry: int
    defund_expiry: int

    def as_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "chainTime": self.now,
            "nonce": self.nonce,
            "stateHash": serialization.hex_bytes(self.state_hash),
            "consensusExpiry": self.consensus_expiry,
            "defundExpiry": self.defund_expiry,
        }


@dataclass(frozen=True)
class Owed:
    """Something the chain still owes the user, and the next step that gets it: `dispute_channel` (a new
    round is needed), `defund_channel` / `dispute_transfer` (in the defund phase), `defund_transfer`
    (from chain time `ready_at`)."""

    what: str  # "balance" or "transfer"
    asset_id: str
    amount: int
    step: str
    ready_at: int = 0
    payment_id: str = ""

    def describe(self) -> str:
        thing = f"balance of {self.asset_id}" if self.what == "balance" else f"transfer {self.payment_id}"
        return f"{thing} ({self.amount} wei)"


@dataclass(frozen=True)
class Outlook:
    view: DisputeView
    owed: tuple[Owed, ...]


def parse_payment_id(payment_id: str | bytes) -> bytes:
    if isinstance(payment_id, bytes):
        raw = payment_id
    else:
        try:
            raw = bytes.fromhex(str(payment_id).removeprefix("0x"))
        except ValueError:
            raw = b""
    if len(raw) != 32:
        raise InvalidArgumentError(
            "invalid_payment_id", f"a payment id is 32 bytes of hex, not {payment_id!r}"
        )
    return raw


def _asset_argument(asset_id: str) -> str:
    try:
        return normalize_address(asset_id, field="asset_id")
    except ProtocolError:
        raise InvalidArgumentError("invalid_address", f"asset {asset_id!r} is not an address") from None


class ChannelDisputes:
    """Disputes of one channel from the user's side, over its own chain access and store."""

    def __init__(
        self,
        chain: UserChain,
        store: Store,
        setup: ChannelSetup,
        *,
        report: Report | None = None,
        say: Say | None = None,
    ) -> None:
        self._chain = chain
        self._store = store
        self._setup = setup
        self._report = report or (lambda event, payload: None)
        self._say = say or (lambda text: logger.info("%s", text))
        self._lock = threading.RLock()  # one step at a time: the watcher and the user's own calls
        # The last reading of the chain (monotonic time, view), and the view the events were told from.
        self._last_view: tuple[float, DisputeView] | None = None
        self._seen: DisputeView | None = None
        self._log_cursor = 0
        self._last_disputer = ""

    @property
    def channel_address(self) -> str:
        return self._setup.channel_address

    @property
    def user(self) -> str:
        return self._setup.user

    # -- reads ----------------------------------------------------------------------------------------

    def latest(self) -> SignedState:
        signed = self._store.latest(self.channel_address)
        if signed is None:
            raise DisputeError("no_state", "the store holds no doubly signed state of this channel")
        return signed

    def view(self) -> DisputeView:
        """The channel's dispute as of the latest block: its time, code and record read at that one
        block (a dispute mined between two reads would otherwise be judged by the older clock)."""
        w3 = self._chain.w3
        head = w3.eth.get_block("latest")
        now, block = int(head["timestamp"]), int(head["number"])
        if not channel_reads.is_deployed(w3, self.channel_address, block=block):
            view = DisputeView(Phase.NONE, now, 0, b"\x00" * 32, 0, 0)
            self._last_view = (time.monotonic(), view)
            return view
        onchain = disputes.read_dispute(w3, self.channel_address, block=block)
        if onchain.consensus_expiry == 0:
            phase = Phase.NONE
        elif now < onchain.consensus_expiry:
            phase = Phase.CONSENSUS
        elif now < onchain.defund_expiry:
            phase = Phase.DEFUND
        else:
            phase = Phase.ENDED
        view = DisputeView(
            phase, now, onchain.nonce, onchain.state_hash, onchain.consensus_expiry, onchain.defund_expiry
        )
        self._last_view = (time.monotonic(), view)
        return view

    def never_disputed(self, *, within_seconds: float) -> bool:
        """True when a read of the chain at most `within_seconds` ago found no dispute ever started.

        What lets the client countersign an off-chain resolve without reading the chain again: a dispute
        started since is still in its consensus window, where the watcher answers it with the newer
        state (so the resolved transfer is no longer in the disputed root and cannot be paid on chain).
        """
        seen = self._last_view
        return (
            seen is not None
            and time.monotonic() - seen[0] <= within_seconds
            and seen[1].consensus_expiry == 0
        )

    def outlook(self) -> Outlook:
        with self._lock:
            view = self.view()
            return Outlook(view, tuple(self._owed(view, self.latest().state)))

    def _assets(self, state: ChannelState) -> list[str]:
        """The state's assets, and every served asset the channel holds (deposits nobody credited)."""
        assets = list(state.asset_ids)
        for asset_id in self._setup.assets:
            if asset_id not in assets and self._chain.balance(self.channel_address, asset_id) > 0:
                assets.append(asset_id)
        return assets

    def _channel_payout(self, state: ChannelState, asset_id: str) -> tuple[int, int] | None:
        """(to node, to user) that `defundChannel` pays for `asset_id`; None when already defunded."""
        w3 = self._chain.w3
        index = state.asset_index(asset_id)
        balance, processed, defund_nonce = (
            ((0, 0), (0, 0), 1)
            if index is None
            else (state.balances[index], state.processed_deposits[index], state.defund_nonces[index])
        )
        deployed = channel_reads.is_deployed(w3, self.channel_address)
        if deployed and disputes.read_defund_nonce(w3, self.channel_address, asset_id) >= defund_nonce:
            return None
        totals = channel_reads.deposit_totals(w3, self.channel_address, asset_id, block="latest")
        return balance[0] + max(0, totals.node - processed[0]), balance[1] + max(
            0, totals.user - processed[1]
        )

    def _paying_resolver(self, transfer: TransferState, now: int) -> bytes | None:
        """A resolver the store holds that pays an incoming transfer to the user at chain time `now`."""
        kind = self._setup.definitions.get(transfer.definition)
        if transfer.responder != self.user or kind not in PREIMAGE_KINDS:
            return None
        record = self._store.payment(serialization.hex_bytes(transfer.payment_id))
        if record is None or len(record.secret) != 32:
            return None
        resolver = PreimageResolver(record.secret).encode()
        try:
            payout = definitions.resolve(
                kind,
                transfer.balance,
                transfer.encoded_state,
                resolver,
                chain_id=self._setup.chain_id,
                definition=transfer.definition,
                now=now,
            )
        except ProtocolError:
            return None
        return resolver if payout[1] > 0 else None

    def _refund_owed(self, transfer: TransferState) -> bool:
        """The user locked this transfer, so its refund is the user's (a withdraw that executed through
        `withdraw` already paid, and refunds nothing)."""
        if transfer.initiator != self.user:
            return False
        if self._setup.definitions.get(transfer.definition) is DefinitionKind.WITHDRAW:
            try:
                nonce = WithdrawState.decode(transfer.encoded_state).nonce
            except ProtocolError:
                return True
            return not disputes.is_withdraw_executed(self._chain.w3, self.channel_address, nonce)
        return True

    def _owed(self, view: DisputeView, state: ChannelState) -> list[Owed]:
        in_round = view.phase in (Phase.CONSENSUS, Phase.DEFUND) and view.state_hash == state.state_hash
        round_step_ready = view.consensus_expiry if in_round else 0
        round_step = "dispute_channel" if not in_round else ""
        owed: list[Owed] = []
        for asset_id in self._assets(state):
            payout = self._channel_payout(state, asset_id)
            if payout is not None and payout[1] > 0:
                owed.append(
                    Owed("balance", asset_id, payout[1], round_step or "defund_channel", round_step_ready)
                )
        for transfer in state.transfers:
            record = disputes.read_transfer_dispute(
                self._chain.w3, self.channel_address, transfer.transfer_hash
            )
            if record.defunded:
                continue
            refund = self._refund_owed(transfer)
            if not refund and self._paying_resolver(transfer, view.now) is None:
                continue
            payment_id = serialization.hex_bytes(transfer.payment_id)
            if record.expiry == 0:
                step, ready = round_step or "dispute_transfer", round_step_ready
            else:
                step, ready = "defund_transfer", record.expiry if refund else 0
            owed.append(Owed("transfer", transfer.asset_id, transfer.locked, step, ready, payment_id))
        return owed

    def _active_transfer(self, payment_id: str | bytes, state: ChannelState) -> TransferState:
        raw = parse_payment_id(payment_id)
        transfer = next((t for t in state.transfers if t.payment_id == raw), None)
        if transfer is None:
            raise DisputeError(
                "unknown_payment",
                f"no active transfer of payment {serialization.hex_bytes(raw)} in your latest signed state",
            )
        return transfer

    def seen_disputed(self) -> bool:
        """The last reading of the chain saw the channel in its consensus or defund phase."""
        last = self._last_view
        return last is not None and last[1].phase in (Phase.CONSENSUS, Phase.DEFUND)

    def refuse_while_disputed(self) -> None:
        """`channel_disputed` while the chain shows the channel in its consensus or defund phase: a state
        signed now could be worthless once the disputed one is paid out. The chain is read again only
        when the watcher's last reading (or the user's own dispute step) saw the channel disputed."""
        if not self.seen_disputed():
            return  # no chain reads on the way of every payment
        with self._lock:
            seen = self.view()  # the watcher's reading may be a poll old: the window may have closed
            self._observe(seen, self.latest().state)
        if seen.phase in (Phase.CONSENSUS, Phase.DEFUND):
            raise DisputeError(
                "channel_disputed",
                f"the channel is in a dispute on chain ({seen.phase.value} phase, state nonce {seen.nonce}"
                f" until chain time {seen.defund_expiry}); nothing is signed until it resumes",
            )

    # -- checks ---------------------------------------------------------------------------------------

    @staticmethod
    def _require_defund_phase(view: DisputeView) -> None:
        if view.phase is Phase.DEFUND:
            return
        if view.phase is Phase.NONE:
            raise DisputeError("no_dispute", "the channel is not in a dispute: dispute_channel first")
        if view.phase is Phase.CONSENSUS:
            raise DisputeError(
                "not_in_defund_phase",
                f"the consensus window is open until chain time {view.consensus_expiry}"
                f" (now {view.now}); defunds start then",
            )
        raise DisputeError(
            "not_in_defund_phase",
            f"the defund window closed at chain time {view.defund_expiry} (now {view.now});"
            " dispute_channel again to start a new round",
        )

    @staticmethod
    def _require_holds(view: DisputeView, state: ChannelState) -> None:
        if view.state_hash != state.state_hash:
            raise DisputeError(
                "disputed_state_unknown",
                f"the chain holds a state at nonce {view.nonce} that is not your latest (nonce {state.nonce})",
            )

    # -- the user's own steps -------------------------------------------------------------------------

    def dispute_channel(self) -> str:
        """Take the latest doubly signed state to the chain: start a round, replace a stale disputed state,
        or restart a finished round to defund what nobody defunded. The transaction hash."""
        with self._lock:
            state = self.latest()
            view = self.view()
            if view.phase is Phase.CONSENSUS and view.nonce >= state.state.nonce:
                raise DisputeError(
                    "already_disputed",
                    f"the chain holds nonce {view.nonce}, your latest is {state.state.nonce}; the defund"
                    f" phase starts at chain time {view.consensus_expiry}",
                )
            if view.phase is Phase.DEFUND:
                raise DisputeError(
                    "dispute_in_progress",
                    f"the channel is in its defund phase until chain time {view.defund_expiry}: defund now",
                )
            if view.phase is Phase.ENDED and view.nonce > state.state.nonce:
                raise DisputeError(
                    "stale_state",
                    f"the chain's last dispute had nonce {view.nonce}, your latest is {state.state.nonce}",
                )
            return self._send_dispute(state)

    def defund_channel(self, assets: Sequence[str] | None = None) -> str:
        """Pay out the disputed state's balances of `assets` (default: every asset that pays the user).
        The transaction hash."""
        with self._lock:
            state = self.latest().state
            view = self.view()
            self._require_defund_phase(view)
            self._require_holds(view, state)
            if assets is None:
                chosen = [a for a in self._assets(state) if (self._channel_payout(state, a) or (0, 0))[1] > 0]
                if not chosen:
                    raise DisputeError(
                        "nothing_to_defund", "the disputed state owes you nothing that was not defunded yet"
                    )
            else:
                chosen = list(dict.fromkeys(_asset_argument(a) for a in assets))
                if not chosen:
                    raise InvalidArgumentError("no_assets", "name at least one asset to defund")
                for asset_id in chosen:
                    payout = self._channel_payout(state, asset_id)
                    if payout is None or payout == (0, 0):
                        raise DisputeError(
                            "nothing_to_defund", f"asset {asset_id} pays nothing or was defunded already"
                        )
            return self._send_defund_channel(state, chosen)

    def dispute_transfer(self, payment_id: str | bytes) -> str:
        """Prove an active transfer of the disputed state on chain, starting its window. The hash."""
        with self._lock:
            state = self.latest().state
            transfer = self._active_transfer(payment_id, state)
            view = self.view()
            self._require_defund_phase(view)
            self._require_holds(view, state)
            record = disputes.read_transfer_dispute(
                self._chain.w3, self.channel_address, transfer.transfer_hash
            )
            if record.expiry:
                raise DisputeError(
                    "transfer_already_disputed",
                    f"the transfer's window runs until chain time {record.expiry}",
                )
            return self._send_dispute_transfer(state, transfer)

    def defund_transfer(self, payment_id: str | bytes) -> str:
        """Pay out a disputed transfer: an incoming one with the preimage the store holds, inside its
        window; one the user locked, refunded after it. The transaction hash."""
        with self._lock:
            state = self.latest().state
            transfer = self._active_transfer(payment_id, state)
            record = disputes.read_transfer_dispute(
                self._chain.w3, self.channel_address, transfer.transfer_hash
            )
            if not record.expiry:
                raise DisputeError("transfer_not_disputed", "dispute_transfer first (in the defund phase)")
            if record.defunded:
                raise DisputeError("transfer_already_defunded", "the transfer was paid out already")
            now = disputes.chain_time(self._chain.w3)
            if now >= record.expiry:
                if not self._refund_owed(transfer):
                    raise DisputeError(
                        "nothing_to_defund",
                        f"the transfer's window closed at chain time {record.expiry}: its lock goes back to"
                        " the node, nothing to you",
                    )
                return self._send_defund_transfer(transfer, b"")
            resolver = self._paying_resolver(transfer, now)
            if resolver is not None:
                return self._send_defund_transfer(transfer, resolver)
            if transfer.initiator == self.user:
                raise DisputeError(
                    "transfer_window_open",
                    f"your refund opens at chain time {record.expiry} (now {now}); until then only the node"
                    " may resolve it",
                )
            raise DisputeError("no_resolver", "you hold no secret that resolves this transfer to you")

    # -- the watcher's round --------------------------------------------------------------------------

    def step(self, *, idle_owed: bool = True) -> Outlook:
        """Whatever is missing at the current chain time: answer a stale dispute with the latest state;
        in the defund phase defund the user's balances and dispute the transfers it has a stake in;
        resolve incoming transfers inside their window, refund its own after it. What is still owed
        (with no dispute on chain only when `idle_owed`: the watcher's idle polls stay three reads)."""
        with self._lock:
            state = self.latest()
            view = self.view()
            self._observe(view, state.state)
            if view.phase is Phase.NONE and not idle_owed:
                return Outlook(view, ())
            if view.phase is Phase.CONSENSUS and view.nonce < state.state.nonce:
                self._say(
                    f"the chain holds a stale state (nonce {view.nonce}); answering with nonce {state.state.nonce}"
                )
                self._send_dispute(state)
                view = self.view()
            if view.phase is Phase.DEFUND and view.state_hash == state.state.state_hash:
                due = [
                    a
                    for a in self._assets(state.state)
                    if (self._channel_payout(state.state, a) or (0, 0))[1] > 0
                ]
                if due:
                    self._send_defund_channel(state.state, due)
                for transfer in state.state.transfers:
                    if not self._refund_owed(transfer) and self._paying_resolver(transfer, view.now) is None:
                        continue
                    record = disputes.read_transfer_dispute(
                        self._chain.w3, self.channel_address, transfer.transfer_hash
                    )
                    if not record.expiry:
                        self._send_dispute_transfer(state.state, transfer)
            if view.phase is not Phase.NONE:
                self._defund_transfers(state.state)
            view = self.view()
            return Outlook(view, tuple(self._owed(view, state.state)))

    def _defund_transfers(self, state: ChannelState) -> None:
        w3 = self._chain.w3
        now = disputes.chain_time(w3)
        for transfer in state.transfers:
            record = disputes.read_transfer_dispute(w3, self.channel_address, transfer.transfer_hash)
            if not record.expiry or record.defunded:
                continue
            if now < record.expiry:
                resolver = self._paying_resolver(transfer, now)
                if resolver is not None:
                    self._send_defund_transfer(transfer, resolver)
            elif self._refund_owed(transfer):
                self._send_defund_transfer(transfer, b"")

    def exit(self, *, poll_seconds: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> Outlook:
        """The whole unilateral exit: dispute with the latest state, wait out the consensus window, defund
        the balances and dispute the transfers, wait out their windows, defund them. Returns once the
        chain owes the user nothing more of this state."""
        waiting_for: tuple[int, str] | None = None
        failures = 0
        while True:
            try:
                outlook = self.step()
                failures = 0
            except ChainError as exc:  # lost a race with the node's own step, or the RPC hiccuped
                failures += 1
                if failures >= MAX_FAILED_STEPS:
                    raise
                self._say(f"a transaction failed ({exc}); looking again")
                sleep(poll_seconds)
                continue
            view, owed = outlook.view, outlook.owed
            if not owed:
                self._say("done: the chain owes you nothing more of this channel")
                return outlook
            if any(item.step == "dispute_channel" for item in owed):
                if view.phase is Phase.CONSENSUS or view.phase is Phase.DEFUND:
                    self._require_holds(view, self.latest().state)
                self._say(
                    f"disputing the channel with your latest state (nonce {self.latest().state.nonce})…"
                )
                self.dispute_channel()
                continue
            ready_at = min(item.ready_at for item in owed)
            if ready_at <= view.now:
                sleep(poll_seconds)  # a step that was ready just failed or is being mined: look again
                continue
            what = ", ".join(item.describe() for item in owed if item.ready_at == ready_at)
            if waiting_for != (ready_at, what):
                waiting_for = (ready_at, what)
                self._say(
                    f"waiting until chain time {ready_at} ({ready_at - view.now}s from now) for: {what}"
                )
            sleep(poll_seconds)

    # -- sending --------------------------------------------------------------------------------------

    def _send(self, data: bytes, what: str) -> TxReceipt:
        receipt = self._chain.send_call(self.channel_address, data, RECEIPT_TIMEOUT)
        self._say(f"{what}: {receipt['transactionHash'].to_0x_hex()}")
        return receipt

    def _deploy_if_needed(self) -> None:
        w3 = self._chain.w3
        if channel_reads.is_deployed(w3, self.channel_address):
            return
        data = create_channel_calldata(
            w3, factory=self._setup.factory, node=self._setup.node, user=self._setup.user
        )
        try:
            receipt = self._chain.send_call(self._setup.factory, data, RECEIPT_TIMEOUT)
        except ChainError:
            if not channel_reads.is_deployed(w3, self.channel_address):  # else the node deployed it meanwhile
                raise
            return
        self._say(f"deployed the channel contract: {receipt['transactionHash'].to_0x_hex()}")

    def _send_dispute(self, signed: SignedState) -> str:
        self._deploy_if_needed()
        data = disputes.dispute_channel_calldata(
            self._chain.w3, signed.state, signed.node_signature, signed.user_signature
        )
        receipt = self._send(data, f"disputed the channel at nonce {signed.state.nonce}")
        self._observe(self.view(), signed.state)
        return str(receipt["transactionHash"].to_0x_hex())

    def _send_defund_channel(self, state: ChannelState, asset_ids: list[str]) -> str:
        data = disputes.defund_channel_calldata(self._chain.w3, state, asset_ids)
        receipt = self._send(data, f"defunded the channel ({', '.join(asset_ids)})")
        channel = contract_at(self._chain.w3, "Channel", self.channel_address)
        for log in channel.events.ChannelDefunded().process_receipt(receipt, errors=DISCARD):
            self._report(
                "dispute.defunded",
                {
                    "channelAddress": self.channel_address,
                    "kind": "channel",
                    "assetId": log["args"]["assetId"],
                    "toUser": str(log["args"]["toUser"]),
                    "toNode": str(log["args"]["toNode"]),
                    "transactionHash": receipt["transactionHash"].to_0x_hex(),
                },
            )
        return str(receipt["transactionHash"].to_0x_hex())

    def _send_dispute_transfer(self, state: ChannelState, transfer: TransferState) -> str:
        data = disputes.dispute_transfer_calldata(self._chain.w3, state, transfer)
        receipt = self._send(data, f"disputed transfer {serialization.hex_bytes(transfer.payment_id)}")
        return str(receipt["transactionHash"].to_0x_hex())

    def _send_defund_transfer(self, transfer: TransferState, resolver: bytes) -> str:
        data = disputes.defund_transfer_calldata(self._chain.w3, transfer, resolver)
        how = "resolved" if resolver else "refunded"
        payment_hex = serialization.hex_bytes(transfer.payment_id)
        receipt = self._send(data, f"{how} transfer {payment_hex} on chain")
        channel = contract_at(self._chain.w3, "Channel", self.channel_address)
        for log in channel.events.TransferDefunded().process_receipt(receipt, errors=DISCARD):
            to_initiator, to_responder = int(log["args"]["toInitiator"]), int(log["args"]["toResponder"])
            self._report(
                "dispute.defunded",
                {
                    "channelAddress": self.channel_address,
                    "kind": "transfer",
                    "paymentId": payment_hex,
                    "assetId": transfer.asset_id,
                    "toUser": str(to_initiator if transfer.initiator == self.user else to_responder),
                    "toNode": str(to_responder if transfer.initiator == self.user else to_initiator),
                    "transactionHash": receipt["transactionHash"].to_0x_hex(),
                },
            )
        return str(receipt["transactionHash"].to_0x_hex())

    # -- events ---------------------------------------------------------------------------------------

    def _disputer(self) -> str:
        """Who sent the newest `ChannelDisputed` of this channel."""
        w3 = self._chain.w3
        head = int(w3.eth.block_number)
        channel = contract_at(w3, "Channel", self.channel_address)
        found = chain_logs.scan_back(  # the newest one is near the head: no scan from block 0
            channel.events.ChannelDisputed, to_block=head, from_block=self._log_cursor, enough=bool
        )
        if found:
            self._last_disputer = str(found[-1]["args"]["disputer"])
        self._log_cursor = head + 1
        return self._last_disputer

    def _observe(self, view: DisputeView, latest: ChannelState) -> None:
        """`dispute.started` for a round seen for the first time, `dispute.answered` once the chain holds
        at least the latest state after a staler one."""
        seen, self._seen = self._seen, view
        if view.phase is Phase.NONE:
            return
        payload = {
            "channelAddress": self.channel_address,
            "latestNonce": latest.nonce,
            **view.as_json(),
        }
        new_round = seen is None or seen.consensus_expiry != view.consensus_expiry
        if new_round:
            if view.phase is Phase.ENDED:
                return  # a finished round from before: nothing to tell
            disputer = self._disputer()
            self._report(
                "dispute.started", {**payload, "disputer": disputer, "stale": view.nonce < latest.nonce}
            )
            self._say(
                f"dispute of nonce {view.nonce} by {disputer or 'unknown'}; consensus window until chain time"
                f" {view.consensus_expiry}, defund window until {view.defund_expiry}"
            )
            if seen is None or view.nonce >= latest.nonce:
                return
        assert seen is not None
        if seen.nonce < latest.nonce <= view.nonce and seen.nonce != view.nonce:
            self._report(
                "dispute.answered", {**payload, "answeredBy": self._disputer(), "staleNonce": seen.nonce}
            )
            self._say(f"the stale dispute was answered: the chain holds nonce {view.nonce}")
