"""The exchange of signed updates with the node: the user's own updates, the countersignature of the
node's proposals, syncing, re-sending, reconciling and adopting states. Every method named `_locked`
runs under the core's lock.

Invariants:
- Every state the client signs is one it derived itself with `connext.protocol` from its own latest
  doubly signed state; node proposals are countersigned only after `policy.check_node_proposal`.
- The client adopts a state from the node only when both signatures on it verify and it names this
  channel, this user, the node and the chain; it never goes back to a lower nonce.
- One update at a time: every exchange that signs runs under one lock; waits (receipts, events) run
  outside it, so node proposals keep being answered while the user waits.

What a countersigned proposal does to the user's payments, and what the user owes the channel after a
change, is its `FollowUp` (`connext.client.incoming`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from connext.chain import disputes
from connext.client import policy
from connext.client.core import ClientCore, processed_user
from connext.client.store import SignedState as SignedChannelState
from connext.errors import ConnextError, NodeError, ValidationError
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization, signing, validation
from connext.protocol.errors import ProtocolError
from connext.protocol.types import (
    ChainDispute,
    ChannelState,
    CreateUpdate,
    DepositUpdate,
    ResolveUpdate,
    ResumeUpdate,
    SetupUpdate,
    Update,
)

logger = logging.getLogger("connext.client")

# A node reconciling after a restore first reads the chain's record of the time in between.
RECONCILE_WAIT_SECONDS = 60.0
RECONCILE_RETRY_SECONDS = 1.0
MAX_UPDATE_ATTEMPTS = 8

Build = Callable[[ChannelState], tuple[Update, dict[str, tuple[int, int]]] | None]


@dataclass(frozen=True)
class PreparedAnswer:
    """The user's countersignature of a node proposal, checked and signed, not yet sent."""

    previous: ChannelState
    update: Update
    new: ChannelState
    node_signature: bytes
    signature: bytes
    meta: dict[str, Any]


class FollowUp(Protocol):
    """What the user does about the node's proposals beyond countersigning them."""

    def note_countersigned(self, previous: ChannelState, update: Update, meta: dict[str, Any]) -> None:
        """Record what a proposal the user countersigned did to the user's payments."""

    async def resolve_with_answer_locked(self, prepared: PreparedAnswer) -> bool:
        """Countersign the proposal and resolve what it pays the user in one request; True when done."""

    async def follow_up_locked(self) -> None:
        """Settle what the latest state leaves waiting for the user."""


class Exchange:
    """The user's side of the update exchange for one channel."""

    follow_up: FollowUp  # given once the part that settles the node's transfers exists

    def __init__(self, core: ClientCore) -> None:
        self._core = core

    async def propose_locked(
        self, build: Build, *, meta: dict[str, Any] | None = None, with_answer: PreparedAnswer | None = None
    ) -> ChannelState | None:
        """Sign and send the update `build` makes from the latest state (with `meta` for a transfer's
        creation). When the node holds a proposal open, the client checks and countersigns it and
        sends that answer with its own update built on top, in one request (a stream of proposals
        cannot starve the user's updates); on a stale state it syncs first. Returns the new state, or
        None when `build` finds nothing to do. `with_answer`: a proposal already checked and signed,
        sent with the update."""
        prepared: PreparedAnswer | None = with_answer
        for _ in range(MAX_UPDATE_ATTEMPTS):
            if prepared is None and self._countersigned_unsettled():
                # A countersignature sent at the next nonce whose answer was not seen: the node's state
                # settles it, or its proposal is still open and goes with this update (the same state,
                # so the same signature); else `_sign_own` refuses to sign at that nonce.
                await self.sync_locked(answer_proposal=False)
                if self._countersigned_unsettled():
                    channel = await self.fetch_channel()
                    prepared = await self._prepare_answer_locked(channel.get("proposal") if channel else None)
            base = prepared.new if prepared is not None else self._core.state
            built = build(base)
            if built is None:
                if prepared is not None:
                    await self._send_answer_locked(prepared)
                return None
            update, chain_deposits = built
            new, signature = self._sign_own(update, chain_deposits, base=base, answered=prepared)
            body: dict[str, Any] = {
                "update": serialization.update_to_json(update),
                "signature": serialization.hex_bytes(signature),
            }
            if meta:
                body["meta"] = meta
            if prepared is not None:
                body["answer"] = {
                    "nonce": str(prepared.new.nonce),
                    "signature": serialization.hex_bytes(prepared.signature),
                }
            try:
                answer = await self._core.api.post("/api/channel/updates", body)
            except NodeError as exc:
                prepared = None
                if exc.code == "update_pending" and exc.details.get("proposal"):
                    if "latest" in exc.details:
                        self.adopt_if_newer_json(exc.details["latest"])
                    prepared = await self._prepare_answer_locked(exc.details["proposal"])
                    if prepared is not None:
                        continue
                if not await self._recover_locked(exc):
                    self._core.store.clear_pending(self._core.channel_address)
                    raise
                continue
            if prepared is not None:
                self._adopt_answered(prepared, prepared.node_signature)
            self._accept_answer(answer, new, signature)
            if prepared is not None:
                self._background_follow_up()
            return new
        raise ConnextError("update_contended", "the node kept proposing updates; try again")

    def _sign_own(
        self,
        update: Update,
        chain_deposits: dict[str, tuple[int, int]],
        *,
        base: ChannelState | None = None,
        answered: PreparedAnswer | None = None,
    ) -> tuple[ChannelState, bytes]:
        """Derive and sign the user's own update (on `base`, the latest state by default); it is kept
        as pending until answered, synced before it is sent, with `answered` (the node's proposal the
        same request countersigns) in the same commit. No transfer of the user's has an on-chain window
        its watcher could not answer in, and no update is signed at the nonce of a proposal the user
        countersigned."""
        if self._countersigned_unsettled(update.nonce):
            raise ConnextError(
                "countersign_unsettled",
                f"the user countersigned the node's proposal at nonce {update.nonce} and the node has not"
                " confirmed it yet; try again once the client has synced",
            )
        if isinstance(update, CreateUpdate):
            policy.check_window("transfer_timeout", update.transfer_timeout, self._core.min_window)
        context = self._core.context(chain_deposits)
        try:
            new, signature = validation.initiate_update(
                base if base is not None else self._core.state, update, self._core.signer, context=context
            )
        except ProtocolError as exc:
            raise policy.from_protocol(exc) from None
        held = (
            None
            if answered is None
            else SignedChannelState(answered.new, answered.node_signature, answered.signature)
        )
        self._core.store.save_pending(update, signature, answered=held)
        return new, signature

    def _countersigned_unsettled(self, nonce: int | None = None) -> bool:
        """The store holds a proposal the user countersigned at `nonce` (by default, the latest
        state's next) that the client has not adopted yet."""
        held = self._core.store.countersigned(self._core.channel_address)
        if held is None:
            return False
        return held.state.nonce == (self._core.state.nonce + 1 if nonce is None else nonce)

    async def _recover_locked(self, exc: NodeError) -> bool:
        """Bring the client up to date after a refusal the client can recover from; False otherwise."""
        if exc.code == "channel_reconciling" or (
            exc.code in ("stale_nonce", "nonce_gap") and self._node_behind(exc.details.get("latest"))
        ):
            self._core.store.clear_pending(self._core.channel_address)
            await self.reconcile_locked()
            return True
        if exc.code == "update_pending":
            if "latest" in exc.details:
                self.adopt_if_newer_json(exc.details["latest"])
            await self.answer_proposal_locked(exc.details.get("proposal"))
            return True
        if exc.code in ("stale_nonce", "nonce_gap"):
            self._core.store.clear_pending(self._core.channel_address)
            if "latest" in exc.details:
                self.adopt_if_newer_json(exc.details["latest"])
            else:
                await self.sync_locked()
            return True
        return False

    def _accept_answer(self, answer: dict[str, Any], new: ChannelState, user_signature: bytes) -> None:
        node_signature = _hex(answer.get("nodeSignature"), "nodeSignature")
        try:
            signer = signing.recover_signer(new, node_signature)
        except ProtocolError as exc:
            raise policy.from_protocol(exc) from None
        if signer != self._core.node_address:
            raise ValidationError(
                "bad_signature", "the node's countersignature is not over the state we signed"
            )
        self.adopt(SignedChannelState(new, node_signature, user_signature))

    # -- the node's proposals -----------------------------------------------------------------------

    async def answer_proposal_locked(self, proposal: dict[str, Any] | None) -> None:
        """Validate the node's open proposal and countersign it; refusals are emitted, never signed."""
        prepared = await self._prepare_answer_locked(proposal)
        if prepared is None or await self.follow_up.resolve_with_answer_locked(prepared):
            return
        await self._send_answer_locked(prepared)
        await self.follow_up.follow_up_locked()

    async def _prepare_answer_locked(self, proposal: dict[str, Any] | None) -> PreparedAnswer | None:
        """The client's checked countersignature of the node's open proposal (built on the latest
        state), or None when there is nothing to answer or the client refuses (emitted)."""
        if not proposal:
            return None
        core = self._core
        try:
            update = serialization.update_from_json(proposal["update"])
            node_signature = _hex(proposal.get("nodeSignature"), "nodeSignature")
        except (ProtocolError, KeyError, TypeError) as exc:
            self._refused(ValidationError("malformed", f"unreadable proposal: {exc}"), None)
            return None
        if update.nonce <= core.state.nonce:
            return None  # already answered (by this client or another device of the same user)
        if update.nonce > core.state.nonce + 1:
            await self.sync_locked(answer_proposal=False)
            if update.nonce != core.state.nonce + 1:
                return None
        chain_deposits: dict[str, tuple[int, int]] = {}
        if isinstance(update, DepositUpdate) and core.chain is not None:
            chain = core.chain
            block = await asyncio.to_thread(chain.block_number)
            totals = await asyncio.to_thread(
                chain.deposit_totals, core.channel_address, update.asset_id, block
            )
            chain_deposits[update.asset_id] = totals
        dispute: ChainDispute | None = None
        # Checked against the chain's own record of a past dispute, never the node's word; a resolve
        # needs no read of its own when the watcher found no dispute moments ago.
        needs_reading = isinstance(update, ResumeUpdate) or (
            isinstance(update, ResolveUpdate) and not core.recently_undisputed()
        )
        if needs_reading and core.chain is not None:
            dispute = await asyncio.to_thread(
                disputes.read_chain_dispute, core.chain.w3, core.state, core.supported_assets
            )
        meta = proposal.get("meta") or {}
        if not isinstance(meta, dict):
            self._refused(ValidationError("bad_meta", "the proposal's meta is not an object"), update)
            return None
        previous = core.state
        try:
            new = policy.check_node_proposal(
                previous,
                update,
                node_signature,
                context=replace(core.context(chain_deposits), dispute=dispute),
                meta=meta,
                min_window=core.min_window,
            )
        except ValidationError as exc:
            self._refused(exc, update)
            return None
        held = core.store.countersigned(core.channel_address)
        if held is not None and held.state.nonce == new.nonce and held.state.state_hash != new.state_hash:
            self._refused(
                ValidationError(
                    "conflicting_proposal",
                    f"the user countersigned another state at nonce {new.nonce}: it signs no second one",
                ),
                update,
            )
            return None
        signature = signing.sign_state(new, core.signer)
        return PreparedAnswer(previous, update, new, node_signature, signature, meta)

    async def _send_answer_locked(self, prepared: PreparedAnswer) -> None:
        new = prepared.new
        self._core.store.save_countersigned(
            SignedChannelState(new, prepared.node_signature, prepared.signature)
        )
        try:
            answer = await self._core.api.post(
                "/api/channel/countersign",
                {"nonce": str(new.nonce), "signature": serialization.hex_bytes(prepared.signature)},
            )
        except NodeError as exc:
            if exc.code != "no_proposal":
                raise
            await self.sync_locked(answer_proposal=False)  # the node moved on (another device answered)
            return
        if not self._restates(answer, prepared):
            answered = self.verified(answer)
            if answered.state.state_hash != new.state_hash:
                raise ValidationError("state_mismatch", "the node stored a different state than the proposal")
        self._adopt_answered(prepared, prepared.node_signature)

    @staticmethod
    def _restates(answer: dict[str, Any], prepared: PreparedAnswer) -> bool:
        """The node's answer carries the signatures the client already checked on the proposal's state
        (the node's, recovered from the proposal, and the user's own): the same doubly signed state, so
        it is not parsed and verified again. ECDSA signatures by one key over two hashes never match."""
        try:
            node_signature = serialization.parse_bytes(answer.get("nodeSignature"), field="nodeSignature")
            user_signature = serialization.parse_bytes(answer.get("userSignature"), field="userSignature")
        except ProtocolError:
            return False
        return (node_signature, user_signature) == (prepared.node_signature, prepared.signature)

    def _adopt_answered(self, prepared: PreparedAnswer, node_signature: bytes) -> None:
        """Adopt the node's proposal the user countersigned, and record what it did to payments."""
        self.adopt(SignedChannelState(prepared.new, node_signature, prepared.signature))
        self.follow_up.note_countersigned(prepared.previous, prepared.update, prepared.meta)

    def _background_follow_up(self) -> None:
        """Run the follow-up of a proposal answered inside another update once the lock is free."""

        async def follow_up() -> None:
            async with self._core.lock:
                await self.follow_up.follow_up_locked()

        self._core.background(follow_up())

    def _refused(self, error: ValidationError, update: Update | None) -> None:
        logger.warning("refused to countersign the node's proposal: %s", error)
        self._core.events.emit(
            "update.refused",
            {
                "code": error.code,
                "message": error.message,
                "update": serialization.update_to_json(update) if update is not None else None,
            },
        )

    # -- matching the node --------------------------------------------------------------------------

    async def sync_locked(self, *, answer_proposal: bool = True) -> None:
        """Match the node: adopt its latest state when newer, re-send the update left unanswered,
        answer its open proposal and resolve what waits for the user."""
        core = self._core
        channel = await self.fetch_channel()
        if channel is None and core.signed is not None:
            await self.reconcile_locked()
            channel = await self.fetch_channel()
        if channel is None:
            raise ConnextError("node_lost_channel", "the node has no record of this channel")
        node_latest = self.verified(channel)
        if channel.get("fenced") or (
            core.signed is not None and node_latest.state.nonce < core.signed.state.nonce
        ):
            await self.reconcile_locked()
            channel = await self.fetch_channel() or channel
            node_latest = self.verified(channel)
        self.adopt_if_newer(node_latest)
        held = core.store.countersigned(core.channel_address)
        if held is not None and held.state.nonce == core.state.nonce + 1 and not _proposes(channel, held):
            # The user countersigned the node's proposal at the next nonce and the node holds neither
            # it nor that proposal: it lost a state it signed (a restore). Show it that state.
            logger.warning(
                "the node lost its proposal at nonce %s that the user countersigned", held.state.nonce
            )
            self.adopt(held)
            await self.reconcile_locked()
            channel = await self.fetch_channel() or channel
        pending = core.store.pending(core.channel_address)
        if (
            pending is not None
            and pending.update.nonce == core.state.nonce + 1
            and channel.get("proposal") is None
        ):
            await self._resend_locked(pending.update, pending.signature)
        if answer_proposal:
            await self.answer_proposal_locked(channel.get("proposal"))
            await self.follow_up.follow_up_locked()

    async def _resend_locked(self, update: Update, signature: bytes) -> None:
        """Send again exactly the update signed before a crash or a lost answer (never a new one)."""
        try:
            new = validation.validate_update(
                self._core.state, update, signature, context=self._core.context({}, lenient=True)
            )
        except ProtocolError:
            self._core.store.clear_pending(self._core.channel_address)
            return
        body: dict[str, Any] = {
            "update": serialization.update_to_json(update),
            "signature": serialization.hex_bytes(signature),
        }
        meta = self._sent_meta(update)
        if meta:
            body["meta"] = meta
        try:
            answer = await self._core.api.post("/api/channel/updates", body)
        except NodeError as exc:
            self._core.store.clear_pending(self._core.channel_address)
            logger.info("the node refused the update left unanswered: %s", exc)
            return
        self._accept_answer(answer, new, signature)

    def _sent_meta(self, update: Update) -> dict[str, Any]:
        """The meta a payment's create was sent with (its record keeps it), so it can be sent again."""
        if not isinstance(update, CreateUpdate):
            return {}
        record = self._core.store.payment(serialization.hex_bytes(update.payment_id))
        if record is None or transfer_meta.meta_hash(record.meta) != update.meta_hash:
            return {}
        return record.meta

    async def restore_state(self) -> None:
        """Replace the local state with the node's latest, verified; never an older one."""
        core = self._core
        async with core.lock:
            channel = await self.fetch_channel()
            if channel is None:
                raise NodeError("no_channel", "the node has no channel for this user", 404)
            signed = self.verified(channel)
            if core.signed is not None and signed.state.nonce < core.signed.state.nonce:
                raise ValidationError(
                    "node_behind",
                    f"the node's latest state has nonce {signed.state.nonce}, this client holds"
                    f" {core.signed.state.nonce} signed by both",
                )
            self.adopt(signed, restoring=True)
            await self.answer_proposal_locked(channel.get("proposal"))

    # -- adopting states ----------------------------------------------------------------------------

    async def fetch_channel(self) -> dict[str, Any] | None:
        try:
            channel: dict[str, Any] = await self._core.api.get("/api/channel")
        except NodeError as exc:
            if exc.code == "no_channel":
                return None
            raise
        if channel.get("channelAddress") != self._core.channel_address:
            raise ValidationError(
                "channel_address_mismatch",
                f"the node names channel {channel.get('channelAddress')}, this client computes {self._core.channel_address}",
            )
        return channel

    def verified(self, body: dict[str, Any]) -> SignedChannelState:
        """A doubly signed state from the node's JSON, checked to be this channel's and signed by both."""
        try:
            state = serialization.channel_state_from_json(body["state"])
            node_signature = _hex(body.get("nodeSignature"), "nodeSignature")
            user_signature = _hex(body.get("userSignature"), "userSignature")
            signing.verify_state_signatures(state, node_signature, user_signature)
        except (ProtocolError, KeyError, TypeError) as exc:
            if isinstance(exc, ProtocolError):
                raise policy.from_protocol(exc) from None
            raise ValidationError("malformed", f"the node sent an unreadable state: {exc!r}") from None
        expected = {
            "channel_address": self._core.channel_address,
            "chain_id": self._core.chain_id,
            "node": self._core.node_address,
            "user": self._core.address,
        }
        for field, value in expected.items():
            if getattr(state, field) != value:
                raise ValidationError(
                    "wrong_channel", f"the node's state has {field} {getattr(state, field)}"
                )
        return SignedChannelState(state, node_signature, user_signature)

    def _node_behind(self, latest: Any) -> bool:
        """The node's latest state (from a refusal) is older than ours: its records were restored."""
        if not isinstance(latest, dict) or self._core.signed is None:
            return False
        if _nonce_of(latest) == self._core.signed.state.nonce:
            return False
        return self.verified(latest).state.nonce < self._core.signed.state.nonce

    async def reconcile_locked(self) -> None:
        """Show the node our latest doubly signed state. A node whose records are behind it (restored
        from a backup) adopts it, and signs nothing for the channel until it has; while it is still
        reading the chain's record of the time in between, wait and show it again."""
        signed = self._core.signed
        assert signed is not None, "nothing to reconcile with"
        body = {
            "state": serialization.channel_state_to_json(signed.state),
            "nodeSignature": serialization.hex_bytes(signed.node_signature),
            "userSignature": serialization.hex_bytes(signed.user_signature),
        }
        deadline = asyncio.get_running_loop().time() + RECONCILE_WAIT_SECONDS
        while True:
            try:
                answer = await self._core.api.post("/api/channel/reconcile", body)
            except NodeError as exc:
                if exc.code == "stale_state" and "latest" in exc.details:  # the node is ahead: adopt
                    self.adopt_if_newer_json(exc.details["latest"])
                    return
                raise
            self.adopt_if_newer_json(answer)
            if not answer.get("fenced"):
                logger.info("reconciled the channel with the node at nonce %s", signed.state.nonce)
                return
            if answer.get("waitingFor") != "chain":
                raise ConnextError(
                    "channel_fenced",
                    "the chain shows this channel at a later nonce than this client holds; the node"
                    " signs nothing for it until that state is shown",
                )
            if asyncio.get_running_loop().time() > deadline:
                raise ConnextError(
                    "channel_reconciling", "the node is still reading the chain before it signs again"
                )
            await asyncio.sleep(RECONCILE_RETRY_SECONDS)

    def adopt_if_newer_json(self, body: Any) -> None:
        """`adopt_if_newer` for the node's JSON of a doubly signed state. One at the nonce the client
        holds is dropped unread: the client adopts no state at a nonce it holds, so it is not parsed and
        verified again."""
        if self._core.signed is not None and _nonce_of(body) == self._core.signed.state.nonce:
            return
        self.adopt_if_newer(self.verified(body))

    def adopt_if_newer(self, signed: SignedChannelState) -> None:
        latest = self._core.signed
        if latest is None or signed.state.nonce > latest.state.nonce:
            self.adopt(signed)
        elif signed.state.nonce < latest.state.nonce:
            logger.warning(
                "the node's latest state (nonce %s) is behind ours (%s)",
                signed.state.nonce,
                latest.state.nonce,
            )

    def adopt(self, signed: SignedChannelState, *, restoring: bool = False) -> None:
        core = self._core
        previous = core.signed.state if core.signed is not None else None
        core.store.save_latest(signed)
        core.signed = signed
        core.signal_state()
        state = signed.state
        if not restoring:
            for index, asset_id in enumerate(state.asset_ids):
                before = processed_user(previous, asset_id) if previous is not None else 0
                after = state.processed_deposits[index][1]
                if after > before:
                    core.events.emit(
                        "deposit.confirmed",
                        {
                            "assetId": asset_id,
                            "amount": str(after - before),
                            "totalDepositsUser": str(after),
                            "nonce": state.nonce,
                        },
                    )
        core.events.emit("channel.updated", {"nonce": state.nonce, "channelAddress": state.channel_address})

    async def open_locked(self) -> None:
        """Open the channel with the node's dispute timeout, once the watcher can answer inside it."""
        core = self._core
        policy.check_window("timeout", int(core.config["disputeTimeout"]), core.min_window)
        update = SetupUpdate(
            channel_address=core.channel_address,
            nonce=1,
            initiator=core.address,
            chain_id=core.chain_id,
            node=core.node_address,
            user=core.address,
            timeout=int(core.config["disputeTimeout"]),
        )
        try:
            new, signature = validation.initiate_update(None, update, core.signer, context=core.context({}))
        except ProtocolError as exc:
            raise policy.from_protocol(exc) from None
        answer = await core.api.post(
            "/api/channel",
            {"update": serialization.update_to_json(update), "signature": serialization.hex_bytes(signature)},
        )
        if answer.get("state", {}).get("nonce") == "1":
            self._accept_answer(answer, new, signature)
        else:  # opened meanwhile by another device: take the node's latest, verified
            self.adopt(self.verified(answer), restoring=True)


def _nonce_of(body: Any) -> int | None:
    """The nonce of the node's JSON of a state (`{"state": {"nonce": …}}`), None when unreadable."""
    try:
        return serialization.parse_uint(body["state"]["nonce"], field="nonce")
    except (ProtocolError, KeyError, TypeError):
        return None


def _proposes(channel: dict[str, Any], held: SignedChannelState) -> bool:
    """The node's channel has `held` open as its proposal: the node's signature on it is the same
    (one key's signatures over two states never are)."""
    proposal = channel.get("proposal")
    if not isinstance(proposal, dict):
        return False
    try:
        signature = serialization.parse_bytes(proposal.get("nodeSignature"), field="nodeSignature")
    except ProtocolError:
        return False
    return signature == held.node_signature


def _hex(value: object, field: str) -> bytes:
    try:
        return serialization.parse_bytes(value, field=field)
    except ProtocolError as exc:
        raise policy.from_protocol(exc) from None
